//! The `forge` command line: one file per command.
//!
//! | command | file |
//! |---------|------|
//! | `forge new` | `new.rs` |
//! | `forge run` | `run.rs` |
//! | `forge jobs …` | `jobs.rs` (dispatch asks the running app through `app_api.rs`) |
//! | `forge queues …` | `queues.rs` |
//! | `forge crons …` | `crons.rs` |
//! | `forge workflows …` | `workflows.rs` |
//! | `forge status` | `status.rs` |
//! | `forge config` | `config.rs` |
//! | `forge migrate …` | `migrate.rs` |
//! | `forge db shell\|create` | `db.rs` |
//! | `forge keys …` | `keys.rs` |
//! | `forge generate ts` | `generate.rs` (the types: `typescript.rs`) |
//!
//! This file parses the command line, reads the configuration and connects where a command
//! needs it; it also holds the output helpers the commands share.

mod app_api;
mod config;
mod crons;
mod db;
mod generate;
mod jobs;
mod keys;
mod migrate;
mod new;
mod output;
mod queues;
mod run;
mod status;
mod typescript;
mod workflows;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use forge::ForgeConfig;
use forge::db::{Database, Migrator, SchemaCheck};
use forge::gateway::ApiKeys;

/// Forge: a job platform in which PostgreSQL is the only infrastructure.
#[derive(Debug, Parser)]
#[command(name = "forge", version, about)]
pub(crate) struct Cli {
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
pub(crate) enum Command {
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
    /// List, show, retry, cancel, delete, run now and dispatch jobs (one, or every job a filter
    /// selects).
    Jobs {
        #[command(subcommand)]
        action: jobs::JobsAction,
    },
    /// List queues with their depths; pause and resume them.
    Queues {
        #[command(subcommand)]
        action: queues::QueuesAction,
    },
    /// List crons; trigger, pause and resume them.
    Crons {
        #[command(subcommand)]
        action: crons::CronsAction,
    },
    /// List workflow runs, show one's steps, cancel, send an event, resume a blocked run.
    Workflows {
        #[command(subcommand)]
        action: workflows::WorkflowsAction,
    },
    /// Nodes and the leader, queue depths, and failures in the last hour.
    Status,
    /// Check forge.toml and the environment, and print the resulting configuration.
    Config,
    /// Apply, roll back or list migrations (Forge's own, then the application's).
    Migrate {
        #[command(subcommand)]
        action: migrate::MigrateAction,
    },
    /// Work with the database directly.
    Db {
        #[command(subcommand)]
        action: db::DbAction,
    },
    /// Create, list, rotate and revoke API keys; sign a development JWT.
    Keys {
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// Write code from the application's functions: `forge generate ts` writes a typed
    /// TypeScript client.
    Generate {
        #[command(subcommand)]
        action: generate::GenerateAction,
    },
}

/// Parses the command line and runs the command.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that need neither the configuration nor a database.
    match &cli.command {
        Command::New { name, forge_path } => {
            return match new::create(&cli.project, name, forge_path.as_deref()) {
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
        Command::Generate { action } => {
            return match generate::run(&cli.project, action) {
                Ok(said) => {
                    println!("{said}");
                    ExitCode::SUCCESS
                }
                Err(message) => fail(&message),
            };
        }
        Command::Migrate { action: migrate::MigrateAction::New { name } } => {
            let config = match ForgeConfig::load_or_default(cli.project.join("forge.toml")) {
                Ok(config) => config,
                Err(e) => return fail(&e.to_string()),
            };
            let dir = cli.project.join(&config.database.migrations_dir);
            return match migrate::new_migration(&dir, name, cli.json) {
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
        return match runtime.block_on(run::run_app(&cli.project, *release, args)) {
            Ok(code) => code,
            Err(message) => fail(&message),
        };
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = ForgeConfig::load_or_default(cli.project.join("forge.toml")).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Config => config::show(&config, cli.json),
        Command::Migrate { action } => migrate::migrate(&cli.project, &config, action, cli.json).await,
        Command::Keys { action: keys::KeysAction::Token { sub, roles, tenant, ttl } } => {
            keys::token(&config, sub, roles, tenant, ttl, cli.json)
        }
        Command::Queues { action } => {
            let access = if action.is_read_only() { Access::Read } else { Access::Write };
            with_database(&cli.project, &config, access, async |pool| queues::queues(&pool, action, cli.json).await)
                .await
        }
        Command::Crons { action } => {
            let access = if action.is_read_only() { Access::Read } else { Access::Write };
            with_database(&cli.project, &config, access, async |pool| crons::crons(&pool, action, cli.json).await).await
        }
        Command::Workflows { action } => {
            let access = if action.is_read_only() { Access::Read } else { Access::Write };
            with_database(&cli.project, &config, access, async |pool| {
                workflows::workflows(&pool, action, cli.json).await
            })
            .await
        }
        Command::Keys { action } => {
            let access = if action.is_read_only() { Access::Read } else { Access::Write };
            with_database(&cli.project, &config, access, |pool| keys::keys(ApiKeys::new(pool), action, cli.json)).await
        }
        Command::Jobs { action } => {
            action.check()?;
            let access = if action.is_read_only() { Access::Read } else { Access::Write };
            with_database(&cli.project, &config, access, async |pool| {
                jobs::jobs(&pool, &config, action, cli.json).await
            })
            .await
        }
        Command::Status => {
            with_database(&cli.project, &config, Access::Read, async |pool| status::status(&pool, cli.json).await).await
        }
        Command::New { .. } | Command::Run { .. } | Command::Generate { .. } => {
            unreachable!("handled before the configuration is read")
        }
        Command::Db { action } => db::run(&cli.project, &config, action, cli.json).await,
    }
}

/// Whether a command only reads: it then works on a database with migrations pending (or an
/// edited one), after a warning, instead of refusing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Connects as a node would and checks the schema is current (a reading command warns, a
/// writing one refuses), runs `f`, and closes.
async fn with_database<F, Fut>(
    project: &std::path::Path,
    config: &ForgeConfig,
    access: Access,
    f: F,
) -> Result<(), String>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let dir = project.join(&config.database.migrations_dir);
    let migrator = Migrator::with_app_dir(dir).map_err(|e| e.to_string())?;
    let db = Database::connect(config, project).await.map_err(|e| e.to_string())?;
    let problem = match migrator.check(db.pool()).await {
        Ok(SchemaCheck::Current) => Ok(None),
        Ok(SchemaCheck::Pending(pending)) => Ok(Some(format!(
            "migrations not applied: {}; run `forge migrate up` (or start the app, which applies them)",
            pending.join(", ")
        ))),
        Ok(SchemaCheck::Changed(e)) => Ok(Some(e.to_string())),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    let result = match (problem, access) {
        (Ok(None), _) => f(db.pool().clone()).await,
        (Ok(Some(problem)), Access::Read) => {
            eprintln!("warning: {problem}");
            f(db.pool().clone()).await
        }
        (Ok(Some(problem)), Access::Write) => Err(format!("the database is not ready: {problem}")),
        (Err(e), _) => Err(e),
    };
    let closed = db.close().await.map_err(|e| e.to_string());
    result.and(closed)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
