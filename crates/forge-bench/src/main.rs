//! `forge-bench`: Forge's load, latency and chaos driver. Every scenario prints one JSON object
//! per line on stdout. Build it in release mode; it uses `DATABASE_URL`'s server, or the
//! embedded PostgreSQL, with a fresh database per run:
//!
//! ```text
//! cargo run --release -p forge-bench -- jobs --jobs 20000
//! cargo run --release -p forge-bench -- jobs --jobs 30000 --work-ms 5   # jobs of 5 ms
//! cargo run --release -p forge-bench -- observability --pairs 10 --jobs 40000
//! cargo run --release -p forge-bench -- floor --jobs 20000
//! cargo run --release -p forge-bench -- jobs --pairs 5 --jobs 20000   # alternating with floor
//! cargo run --release -p forge-bench -- rpc --pairs 10                 # alternating with rpc-floor
//! cargo run --release -p forge-bench -- chaos --jobs 20000 --nodes 3 --kill-every-ms 2000
//! cargo run --release -p forge-bench -- chaos --jobs 20000 --nodes 3 --restart-db-every-ms 3000
//! cargo run --release -p forge-bench -- chaos --jobs 20000 --nodes 3 --db-outage-ms 45000 --lease 30s --work-ms 20
//! cargo run --release -p forge-bench -- failover --nodes 3
//! cargo run --release -p forge-bench -- testdb --iterations 30
//! cargo run --release -p forge-bench -- rpc --seconds 10 --connections 32
//! cargo run --release -p forge-bench -- rpc-floor --seconds 10 --connections 32
//! cargo run --release -p forge-bench -- rpc-stack --rounds 200 --batch 2000
//! cargo run --release -p forge-bench -- dashboard --jobs 100000
//! cargo run --release -p forge-bench -- workflows --runs 10000 --steps 3
//! cargo run --release -p forge-bench -- api --seconds 10 --clients 8 --connections 32
//! cargo run --release -p forge-bench -- realtime --clients 1000 --rate 20 --seconds 10
//! cargo run --release -p forge-bench -- workflows --runs 5000 --steps 3 --nodes 3 --kill-every-ms 2000
//! ```

mod api;
mod chaos;
mod dashboard;
mod failover;
mod floor;
mod jobs;
mod realtime;
mod rpc;
mod rpc_stack;
mod stats;
mod worker;
mod workflows;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Forge's benchmark driver.
#[derive(Debug, Parser)]
#[command(name = "forge-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Enqueue rate (batches), drain rate (one node, default concurrency) and pickup latency.
    Jobs {
        /// Jobs to enqueue and drain.
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Whether the node stores its logs, spans and metrics in Postgres (`on`, the default)
        /// or not (`off`), to measure what telemetry costs.
        #[arg(long, value_enum, default_value_t = jobs::Observability::On)]
        observability: jobs::Observability,
        /// Run `floor` and `jobs` alternately this many times (each in its own process), print
        /// every run, then a `jobs-vs-floor` summary with the median ratio.
        #[arg(long)]
        pairs: Option<usize>,
        /// Each job waits this many milliseconds before it ends (the drain of jobs that take
        /// some time instead of none; not with `--pairs`: the floor's jobs take none).
        #[arg(long, conflicts_with = "pairs")]
        work_ms: Option<u64>,
    },
    /// What storing telemetry costs: `jobs` runs with `--observability on` and `off` in
    /// alternating pairs, each in its own process; prints every run, then the median ratio.
    Observability {
        /// Pairs of runs.
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Jobs per run.
        #[arg(long, default_value_t = 40_000)]
        jobs: usize,
    },
    /// The same drain done by the leanest plain-SQL queue: the machine's physical limit.
    Floor {
        /// Jobs to insert and drain.
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
    },
    /// Worker processes drain jobs while faults hit them (workers killed with SIGKILL, the
    /// PostgreSQL server restarted or stopped); counts lost, doubly finalised, overlapping,
    /// succeeded-but-discarded and stuck jobs (all must be 0).
    Chaos(chaos::ChaosArgs),
    /// Time to hand a test a fresh, fully migrated database (template clone), and to drop it.
    Testdb {
        /// How many databases to create.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
    },
    /// Runs one worker node on `--database-url` until SIGTERM (used by `chaos` and the kill tests).
    Worker(worker::WorkerArgs),
    /// Requests per second and latency of a trivial query through Forge's gateway.
    Rpc {
        /// How long to load the server.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent keep-alive clients.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Run `rpc-floor` and `rpc` alternately this many times (each in its own process),
        /// print every run, then an `rpc-vs-floor` summary with the median ratio.
        #[arg(long)]
        pairs: Option<usize>,
    },
    /// The same query's SQL behind a bare axum handler: the floor `rpc` is compared with.
    RpcFloor {
        /// How long to load the server.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent keep-alive clients.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// The handler keeps its connections between requests (all of them opened first, each
        /// handed from one request to the next), instead of running its statement on the pool:
        /// no release round trip, what Forge's queries do.
        #[arg(long)]
        kept: bool,
    },
    /// The gateway's own CPU per request, without sockets or SQL: Forge's router and a bare
    /// axum router answering the same request in alternating slices on one thread.
    RpcStack {
        /// Slices per router.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Requests per slice.
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        /// OS threads sending requests at once, each its own slice (2 shows what the cores
        /// contend for: shared counters, locks, reference counts).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// The dashboard API's latency over HTTP with `--jobs` rows in `forge_jobs`.
    Dashboard {
        /// Jobs in the table.
        #[arg(long, default_value_t = 100_000)]
        jobs: i64,
        /// Requests per endpoint.
        #[arg(long, default_value_t = 20)]
        requests: usize,
    },
    /// The job API over HTTP: clients submitting with idempotency keys (a share repeated), SSE
    /// watchers and a loopback webhook receiver; counts duplicates, losses and deliveries.
    Api(api::ApiArgs),
    /// Live queries: WebSocket clients subscribed while a writer changes the table they read;
    /// push latency from commit to arrival, clients that missed the final value, the node's RSS.
    Realtime(realtime::RealtimeArgs),
    /// A gateway node for `realtime`, in its own process (internal).
    #[command(hide = true)]
    RealtimeNode(realtime::NodeArgs),
    /// Durable workflow runs with ledger-writing tx_steps, optionally with workers killed.
    Workflows(workflows::WorkflowsArgs),
    /// Three nodes scheduling a cron every second; the leader is killed with SIGKILL mid-run.
    /// Reports the takeover time and whether every tick fired exactly once.
    Failover {
        /// Nodes to start.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Seconds to run before and after the kill.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// The allocator `forge new`'s template also uses: glibc's malloc cost the job API's
/// submissions 2–18% (`api --submit-only`, alternating; see `website/src/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Jobs { jobs, observability, pairs: Some(pairs), .. } => {
            jobs::versus_floor(pairs.max(1), jobs.max(1), observability).await
        }
        Scenario::Jobs { jobs, observability, pairs: None, work_ms } => {
            jobs::run(jobs.max(1), observability, work_ms).await
        }
        Scenario::Observability { pairs, jobs } => jobs::overhead(pairs.max(1), jobs.max(1)).await,
        Scenario::Floor { jobs } => floor::run(jobs.max(1)).await,
        Scenario::Chaos(args) => chaos::run(args).await,
        Scenario::Testdb { iterations } => testdb(iterations.max(1)).await,
        Scenario::Worker(args) => worker::run(args).await.map(|()| serde_json::Value::Null),
        Scenario::Rpc { seconds, connections, pairs: Some(pairs) } => {
            rpc::versus_floor(pairs.max(1), seconds.max(1), connections.max(1)).await
        }
        Scenario::Rpc { seconds, connections, pairs: None } => rpc::run(seconds.max(1), connections.max(1)).await,
        Scenario::RpcFloor { seconds, connections, kept } => rpc::floor(seconds.max(1), connections.max(1), kept).await,
        Scenario::RpcStack { rounds, batch, threads } => {
            rpc_stack::run(rounds.max(1), batch.max(1), threads.max(1)).await
        }
        Scenario::Dashboard { jobs, requests } => dashboard::run(jobs.max(1), requests.max(1)).await,
        Scenario::Failover { nodes, seconds } => failover::run(nodes.max(2), seconds.max(3)).await,
        Scenario::Workflows(args) => workflows::run(args).await,
        Scenario::Api(args) => api::run(args).await,
        Scenario::Realtime(args) => realtime::run(args).await,
        Scenario::RealtimeNode(args) => realtime::node(args).await.map(|()| serde_json::Value::Null),
    };
    match result {
        Ok(serde_json::Value::Null) => ExitCode::SUCCESS,
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

async fn testdb(iterations: usize) -> stats::Report {
    use std::time::Instant;

    use forge::testing::TestDatabase;
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
        "bench": "testdb",
        "iterations": iterations,
        "first_ms": stats::ms(first),
        "create_ms": stats::summary(&mut create),
        "drop_ms": stats::summary(&mut drop_times),
    }))
}
