//! `forge-bench`: Forge's load, latency and chaos driver. Every scenario prints one JSON
//! object on stdout, so results can be compared across commits. Build it in release mode:
//!
//! ```text
//! cargo run --release -p forge-bench -- testdb --iterations 50
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use forge::testing::TestDatabase;

/// Forge's benchmark driver.
#[derive(Debug, Parser)]
#[command(name = "forge-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Time to hand a test a fresh, fully migrated database (template clone), and to drop it.
    Testdb {
        /// How many databases to create.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Testdb { iterations } => testdb(iterations.max(1)).await,
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn testdb(iterations: usize) -> Result<serde_json::Value, forge::Error> {
    // The first call may build the template; it is reported apart.
    let started = Instant::now();
    drop(TestDatabase::new().await?);
    let first = started.elapsed();

    let mut create = Vec::with_capacity(iterations);
    let mut drop_times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let db = TestDatabase::new().await?;
        create.push(started.elapsed());
        let started = Instant::now();
        drop(db);
        drop_times.push(started.elapsed());
    }
    Ok(serde_json::json!({
        "scenario": "testdb",
        "iterations": iterations,
        "first_ms": ms(first),
        "create_ms": summary(&mut create),
        "drop_ms": summary(&mut drop_times),
    }))
}

fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        ms(samples[i])
    };
    serde_json::json!({ "p50": at(0.5), "p90": at(0.9), "max": at(1.0) })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}
