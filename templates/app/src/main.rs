//! {{name}}'s binary. `forge run` (or `cargo run`) starts it: with no `DATABASE_URL` it starts
//! its own PostgreSQL under `.forge/postgres/`, applies the migrations, and serves
//! http://127.0.0.1:8080 (the dashboard is at /_dashboard). `{{name}} --help` says what it reads.

use forge::prelude::*;

/// mimalloc instead of the system allocator: with glibc's, a node spends a sizeable share of
/// its time in `malloc` and `free` (Forge's performance page measures the difference).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `--help`, `--version`, `--config PATH` (default forge.toml).
    let args = forge::AppArgs::parse(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
    let started = async {
        // `run` installs logging (`[observability]`) before it starts the node.
        let config = ForgeConfig::load_or_default(&args.config)?;
        {{crate}}::app(config).build()?.run().await?;
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
