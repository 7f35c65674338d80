//! `forge db shell`: psql on the application's database.

use std::path::Path;

use clap::Subcommand;
use forge::ForgeConfig;
use forge::db::Database;

#[derive(Debug, Subcommand)]
pub(crate) enum DbAction {
    /// Open psql on the application's database (starting the embedded cluster if needed).
    Shell {
        /// Extra arguments for psql, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Runs `action`.
pub(crate) async fn run(project: &Path, config: &ForgeConfig, action: DbAction) -> Result<(), String> {
    let DbAction::Shell { args } = action;
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
