//! The smallest Forge application. Run it with `./dev.sh run` (or `cargo run -p quickstart`):
//! with no `DATABASE_URL` it starts its own PostgreSQL under `.forge/postgres/`, applies
//! migrations, serves `GET /health`, `GET /ready` and two functions on http://127.0.0.1:8080,
//! runs the `greet` job it dispatches at start-up, and the `tick` cron every ten seconds.
//!
//! ```sh
//! curl -X POST localhost:8080/rpc/hello -H 'content-type: application/json' -d '{"name": "Ada"}'
//! curl -X POST localhost:8080/rpc/greet_later -H 'content-type: application/json' -d '{"name": "Ada"}'
//! ```

use forge::prelude::*;
use serde::{Deserialize, Serialize};

/// The `greet` job's arguments.
#[derive(Debug, Serialize, Deserialize)]
pub struct Greeting {
    /// Who to greet.
    pub name: String,
}

/// Greets someone; the returned text is stored as the job's output.
#[forge::job(max_attempts = 3)]
pub async fn greet(ctx: &JobContext, args: Greeting) -> Result<String, JobError> {
    tracing::info!(job = %ctx.id(), attempt = ctx.attempt(), "greeting {}", args.name);
    Ok(format!("hello, {}", args.name))
}

/// A public query: `POST /rpc/hello` with `{"name": "Ada"}`.
#[forge::query(public)]
pub async fn hello(_ctx: &QueryContext, args: Greeting) -> Result<String, ForgeError> {
    if args.name.trim().is_empty() {
        return Err(ForgeError::invalid_field("name", "must not be empty"));
    }
    Ok(format!("hello, {}", args.name))
}

/// A public mutation that dispatches the `greet` job in its transaction; answers the job's id.
#[forge::mutation(public, rate_limit(requests = 60, per = "1m", key = "ip"))]
pub async fn greet_later(ctx: &MutationContext, args: Greeting) -> Result<JobId, ForgeError> {
    ctx.dispatch::<Greet>(args).await
}

/// Every ten seconds, once across all running copies of this app.
#[forge::cron("*/10 * * * * *")]
pub async fn tick(ctx: &CronContext) -> Result<(), JobError> {
    tracing::info!(tick = %ctx.scheduled_time(), delay_ms = ctx.delay().num_milliseconds(), "tick");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let started = async {
        let config = ForgeConfig::load_or_default("forge.toml")?;
        forge::init_tracing(&config.observability)?;
        let node = Forge::builder().config(config).build()?.start().await?;
        Greet::dispatch(&node, Greeting { name: "world".into() }).await.map_err(|e| e.to_string())?;
        node.run_until_signal().await?;
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
