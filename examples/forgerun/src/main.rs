//! ForgeRun: a self-hosted job-execution service for other programs. Clients submit work from
//! the catalogue over `/v1/jobs` (now or at `run_at`), follow it (events, SSE, signed webhooks)
//! and fetch its report; an operator manages clients and their keys. All of it is Forge's job
//! API (`[api] enabled` in forge.toml); this file only starts the node. See README.md.

mod catalogue;

use forge::prelude::*;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let started = async {
        let config = ForgeConfig::load_or_default("forge.toml")?;
        let allow_private = std::env::var("FORGERUN_ALLOW_PRIVATE").is_ok_and(|v| v == "1");
        Forge::builder().config(config).extension(catalogue::Fetcher::new(allow_private)).build()?.run().await?;
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
