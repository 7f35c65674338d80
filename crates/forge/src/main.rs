//! The `forge` command line: create, run and operate a Forge application.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use forge::ForgeConfig;
use forge::db::{Database, Migrator};
use forge::gateway::{ApiKeys, NewApiKey};

/// Forge: a job platform in which PostgreSQL is the only infrastructure.
#[derive(Debug, Parser)]
#[command(name = "forge", version, about)]
struct Cli {
    /// The project folder (holding forge.toml and migrations/).
    #[arg(long, global = true, default_value = ".")]
    project: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new application in the folder NAME (never overwriting anything).
    New {
        /// The application's name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// Depend on the Forge checkout at this path instead of the released version.
        #[arg(long)]
        forge_path: Option<PathBuf>,
    },
    /// Build and run the application in the project folder (`cargo run`), with the environment
    /// passed through.
    Run {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
        /// Arguments for the application, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// List, show, retry, cancel and dispatch jobs.
    Jobs {
        #[command(subcommand)]
        action: cli::ops::JobsAction,
    },
    /// Nodes and the leader, queue depths, and failures in the last hour.
    Status,
    /// Check forge.toml and the environment, and print the resulting configuration.
    Config,
    /// Apply, roll back or list migrations (Forge's own, then the application's).
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Work with the database directly.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Create, list, rotate and revoke API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key; it is printed once and never stored.
    Create {
        /// A name for people: what or who uses the key.
        name: String,
        /// A role the key grants (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: Option<String>,
        /// Make the key stop working after this long, such as "90d".
        #[arg(long)]
        expires_in: Option<forge::config::Duration>,
    },
    /// List every key (never their secrets).
    List,
    /// Revoke a key at once.
    Revoke {
        /// The key's id (from `forge keys list`).
        id: uuid::Uuid,
    },
    /// Replace a key with a new one granting the same; the old one works for --grace more.
    Rotate {
        /// The key's id.
        id: uuid::Uuid,
        /// How long the old key keeps working, such as "1h" (default: revoked at once).
        #[arg(long)]
        grace: Option<forge::config::Duration>,
    },
}

#[derive(Debug, Subcommand)]
enum DbAction {
    /// Open psql on the application's database (starting the embedded cluster if needed).
    Shell {
        /// Extra arguments for psql, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last N applied migrations (default 1).
    Down {
        /// How many to roll back.
        #[arg(default_value_t = 1)]
        n: usize,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Create the next numbered migration file, `NNNN_NAME.sql`, with `-- @up` and `-- @down`.
    New {
        /// What it does, in lowercase letters, digits and `_` (`add_orders`).
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that need neither the configuration nor a database.
    match &cli.command {
        Command::New { name, forge_path } => {
            return match cli::new::create(&cli.project, name, forge_path.as_deref()) {
                Ok(dir) => {
                    if cli.json {
                        println!("{}", serde_json::json!({ "created": dir }));
                    } else {
                        println!("created {}", dir.display());
                        println!("next:  cd {name} && forge run    (tests: cargo test)");
                    }
                    ExitCode::SUCCESS
                }
                Err(message) => fail(&message),
            };
        }
        Command::Migrate { action: MigrateAction::New { name } } => {
            let config = match ForgeConfig::load_or_default(cli.project.join("forge.toml")) {
                Ok(config) => config,
                Err(e) => return fail(&e.to_string()),
            };
            let dir = cli.project.join(&config.database.migrations_dir);
            return match cli::ops::new_migration(&dir, name, cli.json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(&message),
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    if let Command::Run { release, args } = &cli.command {
        return match runtime.block_on(cli::ops::run_app(&cli.project, *release, args)) {
            Ok(code) => code,
            Err(message) => fail(&message),
        };
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// Connects as a node would and checks the schema is current, runs `f`, and closes.
async fn with_database<F, Fut>(project: &std::path::Path, config: &ForgeConfig, f: F) -> Result<(), String>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let dir = project.join(&config.database.migrations_dir);
    let migrator = Migrator::with_app_dir(dir).map_err(|e| e.to_string())?;
    let db = Database::connect(config, project).await.map_err(|e| e.to_string())?;
    let result = match migrator.pending_reason(db.pool()).await {
        Ok(None) => f(db.pool().clone()).await,
        Ok(Some(reason)) => Err(format!("the database is not ready ({reason}); run `forge migrate up` first")),
        Err(e) => Err(e.to_string()),
    };
    let closed = db.close().await.map_err(|e| e.to_string());
    result.and(closed)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = ForgeConfig::load_or_default(cli.project.join("forge.toml")).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Config => {
            let mut value = serde_json::to_value(&config).map_err(|e| e.to_string())?;
            if let Some(secret) = value.pointer_mut("/auth/jwt_secret") {
                *secret = serde_json::Value::String("<redacted>".to_owned());
            }
            let text = if cli.json {
                serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
            } else {
                toml::to_string_pretty(&value).map_err(|e| e.to_string())?
            };
            println!("{text}");
            Ok(())
        }
        Command::Migrate { action } => {
            let dir = cli.project.join(&config.database.migrations_dir);
            let migrator = Migrator::with_app_dir(dir).map_err(|e| e.to_string())?;
            let db = Database::connect(&config, &cli.project).await.map_err(|e| e.to_string())?;
            let result = migrate(&migrator, &db, action, cli.json).await;
            let closed = db.close().await.map_err(|e| e.to_string());
            result.and(closed)
        }
        Command::Keys { action } => {
            with_database(&cli.project, &config, |pool| keys(ApiKeys::new(pool), action, cli.json)).await
        }
        Command::Jobs { action } => {
            action.check()?;
            with_database(&cli.project, &config, async |pool| cli::ops::jobs(&pool, action, cli.json).await).await
        }
        Command::Status => {
            with_database(&cli.project, &config, async |pool| cli::ops::status(&pool, cli.json).await).await
        }
        Command::New { .. } | Command::Run { .. } => unreachable!("handled before the configuration is read"),
        Command::Db { action: DbAction::Shell { args } } => {
            let db = Database::connect(&config, &cli.project).await.map_err(|e| e.to_string())?;
            // The embedded target is a socket URL without secrets; a configured URL is used as is.
            let url = config.database.url.clone().unwrap_or_else(|| db.target().to_owned());
            let status = tokio::process::Command::new("psql").arg(&url).args(&args).status().await;
            let closed = db.close().await.map_err(|e| e.to_string());
            match status {
                Ok(status) if status.success() => closed,
                Ok(status) => Err(format!("psql exited with {status}")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
                    "psql not found; install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client)"
                        .to_owned(),
                ),
                Err(e) => Err(format!("cannot run psql: {e}")),
            }
        }
    }
}

async fn migrate(migrator: &Migrator, db: &Database, action: MigrateAction, json: bool) -> Result<(), String> {
    let pool = db.pool();
    let labels = |ms: Vec<forge::db::Migration>| ms.iter().map(|m| m.label()).collect::<Vec<_>>();
    match action {
        MigrateAction::Up => {
            let done = labels(migrator.run(pool).await.map_err(|e| e.to_string())?);
            report(json, "applied", &done);
        }
        MigrateAction::Down { n } => {
            let done = labels(migrator.down(pool, n).await.map_err(|e| e.to_string())?);
            report(json, "rolled back", &done);
        }
        MigrateAction::New { .. } => unreachable!("handled before connecting"),
        MigrateAction::Status => {
            let applied = migrator.applied(pool).await.map_err(|e| e.to_string())?;
            let rows: Vec<serde_json::Value> = migrator
                .migrations()
                .iter()
                .map(|m| {
                    let a = applied.iter().find(|a| a.source == m.source && a.version == m.version);
                    serde_json::json!({
                        "migration": m.label(),
                        "applied_at": a.map(|a| a.applied_at.to_rfc3339()),
                        "changed": a.is_some_and(|a| a.checksum != m.checksum),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<40} APPLIED AT", "MIGRATION");
                for row in rows {
                    let at = row["applied_at"].as_str().unwrap_or("pending");
                    let changed = if row["changed"].as_bool() == Some(true) { "  (file changed since!)" } else { "" };
                    println!("{:<40} {at}{changed}", row["migration"].as_str().unwrap_or_default());
                }
            }
        }
    }
    Ok(())
}

async fn keys(keys: ApiKeys, action: KeysAction, json: bool) -> Result<(), String> {
    let shown = match action {
        KeysAction::Create { name, roles, tenant, expires_in } => {
            let expires_at = match expires_in {
                Some(d) => Some(
                    chrono::Utc::now()
                        + chrono::Duration::from_std(d.as_std()).map_err(|_| "--expires-in is too long".to_owned())?,
                ),
                None => None,
            };
            let created =
                keys.create(NewApiKey { name, roles, tenant, expires_at }).await.map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string(&created).map_err(|e| e.to_string())?);
            } else {
                println!("created key {} ({})", created.record.id, created.record.name);
                println!("{}", created.key);
                println!("store it now: it is not kept and cannot be shown again");
            }
            return Ok(());
        }
        KeysAction::Rotate { id, grace } => {
            let grace_std = grace.map(|g| g.as_std()).unwrap_or_default();
            let created = keys.rotate(id, grace_std).await.map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string(&created).map_err(|e| e.to_string())?);
            } else {
                println!("rotated {id}: new key {} ({})", created.record.id, created.record.name);
                println!("{}", created.key);
                match grace {
                    Some(grace) => println!("the old key keeps working for {grace}"),
                    None => println!("the old key is revoked"),
                }
            }
            return Ok(());
        }
        KeysAction::Revoke { id } => vec![keys.revoke(id).await.map_err(|e| e.to_string())?],
        KeysAction::List => keys.list().await.map_err(|e| e.to_string())?,
    };
    if json {
        println!("{}", serde_json::to_string(&shown).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("{:<36}  {:<20}  {:<12}  {:<16}  {:<8}  LAST USED", "ID", "NAME", "PREFIX", "ROLES", "STATE");
    for key in shown {
        let state = if key.is_live() {
            "live"
        } else if key.revoked_at.is_some_and(|t| t <= chrono::Utc::now()) {
            "revoked"
        } else {
            "expired"
        };
        let used = key.last_used_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
        println!(
            "{:<36}  {:<20}  {:<12}  {:<16}  {:<8}  {used}",
            key.id,
            key.name,
            key.prefix,
            key.roles.join(","),
            state
        );
    }
    Ok(())
}

fn report(json: bool, verb: &str, labels: &[String]) {
    if json {
        println!("{}", serde_json::json!({ verb: labels }));
    } else if labels.is_empty() {
        println!("nothing {verb}");
    } else {
        for label in labels {
            println!("{verb} {label}");
        }
    }
}
