//! A durable workflow in a Forge application: sign-up with an e-mail confirmation wait (three
//! days at most), provisioning and compensation. See README.md.

mod signup;

use forge::prelude::*;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let started = async {
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
