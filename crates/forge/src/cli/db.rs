//! `forge db shell|create`: psql on the application's database, and creating that database.

use std::path::Path;

use clap::Subcommand;
use forge::ForgeConfig;
use std::str::FromStr;

use forge::db::{Database, ensure_database, redact_url};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::output::done;

#[derive(Debug, Subcommand)]
pub(crate) enum DbAction {
    /// Create the database `DATABASE_URL` names, if it does not exist yet (through the same
    /// server's `postgres` database); the embedded one is created on first use.
    Create,
    /// Open psql on the application's database (starting the embedded cluster if needed).
    Shell {
        /// Extra arguments for psql, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Runs `action`.
pub(crate) async fn run(project: &Path, config: &ForgeConfig, action: DbAction, json: bool) -> Result<(), String> {
    let args = match action {
        DbAction::Shell { args } => args,
        DbAction::Create => return create(project, config, json).await,
    };
    let db = Database::connect(config, project).await.map_err(|e| e.to_string())?;
    // The embedded target is a socket URL without secrets; a configured URL is used as is.
    let url = config.database.url.clone().unwrap_or_else(|| db.target().to_owned());
    let status = tokio::process::Command::new("psql").arg(&url).args(&args).status().await;
    let closed = db.close().await.map_err(|e| e.to_string());
    match status {
        Ok(status) if status.success() => closed,
        Ok(status) => Err(format!("psql exited with {status}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("psql not found; install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client)"
                .to_owned())
        }
        Err(e) => Err(format!("cannot run psql: {e}")),
    }
}

/// `forge db create`.
async fn create(project: &Path, config: &ForgeConfig, json: bool) -> Result<(), String> {
    let Some(url) = &config.database.url else {
        let db = Database::connect(config, project).await.map_err(|e| e.to_string())?;
        let described = db.describe();
        db.close().await.map_err(|e| e.to_string())?;
        return done(json, json!({ "database": described, "created": false }), &format!("{described} is ready"));
    };
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| format!("DATABASE_URL ({}) is not a PostgreSQL URL: {e}", redact_url(url)))?;
    let name = options.get_database().unwrap_or(options.get_username()).to_owned();
    let exists = match PgConnection::connect_with(&options).await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        // 3D000 invalid_catalog_name: the database does not exist.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => false,
        Err(e) => return Err(format!("cannot connect to {}: {e}", redact_url(url))),
    };
    if exists {
        return done(json, json!({ "database": name, "created": false }), &format!("database {name} already exists"));
    }
    ensure_database(&options.clone().database("postgres"), &name)
        .await
        .map_err(|e| format!("cannot create database {name} on {}: {e}", redact_url(url)))?;
    done(json, json!({ "database": name, "created": true }), &format!("created database {name}"))
}
