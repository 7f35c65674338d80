//! `forge migrate up|down|status|new`: Forge's own migrations, then the application's.

use std::path::Path;

use clap::Subcommand;
use forge::ForgeConfig;
use forge::db::{Database, MigrationState, Migrator};
use serde_json::json;

use super::output::done;

#[derive(Debug, Subcommand)]
pub(crate) enum MigrateAction {
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

/// Connects and runs `action` (all but `new`, which needs no database).
pub(crate) async fn migrate(
    project: &Path,
    config: &ForgeConfig,
    action: MigrateAction,
    json: bool,
) -> Result<(), String> {
    let dir = project.join(&config.database.migrations_dir);
    let migrator = Migrator::with_app_dir(dir)
        .map_err(|e| e.to_string())?
        .with_lock_timeout(config.database.migration_lock_timeout.as_std());
    let db = Database::connect(config, project).await.map_err(|e| e.to_string())?;
    let result = apply(&migrator, &db, action, json).await;
    let closed = db.close().await.map_err(|e| e.to_string());
    result.and(closed)
}

async fn apply(migrator: &Migrator, db: &Database, action: MigrateAction, json: bool) -> Result<(), String> {
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
            let rows = migrator.status(pool).await.map_err(|e| e.to_string())?;
            if json {
                return super::output::print_json(&rows);
            }
            println!("{:<40} {:<8} APPLIED AT", "MIGRATION", "STATE");
            for row in &rows {
                let at = row.applied_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                let note = match row.state {
                    MigrationState::Changed => "  (edited since it was applied: restore the file)",
                    MigrationState::Missing => {
                        "  (its file is gone: restore it, or this database is ahead of the code)"
                    }
                    _ => "",
                };
                println!("{:<40} {:<8} {}{note}", row.label, row.state.as_str(), at.as_deref().unwrap_or("-"));
            }
        }
    }
    Ok(())
}

/// `forge migrate new NAME`: the next numbered file in the migrations folder.
pub(crate) fn new_migration(dir: &Path, name: &str, json: bool) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!("{name:?} is not a valid migration name: use lowercase letters, digits and `_`"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut last = 0u32;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let file = entry.map_err(|e| e.to_string())?.file_name();
        let file = file.to_string_lossy();
        if let Some((number, _)) = file.strip_suffix(".sql").and_then(|f| f.split_once('_'))
            && let Ok(n) = number.parse::<u32>()
        {
            last = last.max(n);
        }
    }
    let path = dir.join(format!("{:04}_{name}.sql", last + 1));
    let body = format!("-- {name}\n\n-- @up\n\n\n-- @down\n\n");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, body.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    done(json, json!({ "created": path }), &format!("created {}", path.display()))
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
