//! {{name}}: a Forge application. Run it with `cargo run`; with no DATABASE_URL it starts its
//! own PostgreSQL under `.forge/postgres/` and serves on http://127.0.0.1:8080.

use forge::prelude::*;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let started = async {
        let config = ForgeConfig::load_or_default("forge.toml")?;
        Forge::builder().config(config).build()?.run().await
    };
    match started.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
