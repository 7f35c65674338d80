//! A realistic Forge application: report requests built by one job and mailed by another, with
//! retries, a transactional step and a nightly cron. See README.md.

mod pipeline;

use forge::prelude::*;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let started = async {
        // `run` installs logging (`[observability]`) before it starts the node.
        let config = ForgeConfig::load_or_default("forge.toml")?;
        Forge::builder().config(config).build()?.run().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    match started.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
