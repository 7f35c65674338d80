//! `forge-bench jobs`: enqueue rate, drain rate and pickup latency of the real engine.

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::jobs::{BatchedDispatcher, JobsError};
use forge::prelude::*;
use forge::testing::TestDatabase;

use crate::stats::Report;
use crate::stats::{CpuTime, alternate, median, ms, per_second, quantile, round};
use crate::worker::Noop;

/// Jobs per `dispatch_many` call.
const BATCH: usize = 10_000;
/// Jobs enqueued by single `dispatch` calls one after another, at most: as many through the
/// test database's pool, then through a `BatchedDispatcher` over one connection.
const SINGLES: usize = 2_000;
/// Jobs enqueued by concurrent single `dispatch` calls (through a `BatchedDispatcher` over one
/// connection), at most.
const CONCURRENT: usize = 10_000;
/// The tasks making those calls, each one call at a time.
const CALLERS: usize = 64;
/// The drain rate is also measured over the last this many jobs (runs of twice as many or more).
const LAST: usize = 100_000;
/// Pickup samples, and the pause between them.
const PICKUPS: usize = 200;
const PICKUP_GAP: Duration = Duration::from_millis(20);

/// Whether the node stores telemetry while it drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Observability {
    /// Logs, spans and metrics go to Postgres.
    On,
    /// Nothing is stored (metrics are still kept in memory).
    Off,
}

pub(crate) async fn run(jobs: usize, observability: Observability, work_ms: Option<u64>) -> Report {
    let db = TestDatabase::new().await?;

    // Enqueue: most in batches, one statement each; then some one at a time (through the pool,
    // then as many through a dispatcher), then some by concurrent callers. `jobs` in all.
    let singles = SINGLES.min(jobs / 10);
    let concurrent = CONCURRENT.min(jobs / 10);
    let batched = jobs - 2 * singles - concurrent;
    let started = Instant::now();
    let mut left = batched;
    while left > 0 {
        let n = left.min(BATCH);
        Noop::dispatch_many(db.pool(), vec![work_ms; n], DispatchOptions::new()).await?;
        left -= n;
    }
    let enqueue = started.elapsed();
    let started = Instant::now();
    for _ in 0..singles {
        Noop::dispatch(db.pool(), work_ms).await?;
    }
    let enqueue_single = started.elapsed();
    let enqueue_single_batched = enqueue_through_dispatcher(&db, singles, 1, work_ms).await?;
    let enqueue_concurrent = enqueue_through_dispatcher(&db, concurrent, CALLERS, work_ms).await?;
    let enqueued: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await?;

    // Drain: one node, default concurrency, until every job is completed.
    let started = Instant::now();
    let cpu = CpuTime::now();
    let rss = RssSampler::start();
    let node = start_node(&db, observability).await?;
    // Counted in the drain (a node that starts late drains late), and shown on its own.
    let node_start = started.elapsed();
    wait_until_drained(&node, db.pool(), jobs).await?;
    let drain = started.elapsed();
    let rss_peak_mb = rss.stop().await;
    let drain_last = if jobs >= 2 * LAST { Some(drain_of_last(db.pool(), LAST).await?) } else { None };
    // What telemetry wrote while draining (flushed first, so the count and the CPU time it
    // took are complete).
    node.flush_telemetry().await?;
    let drain_cpu = CpuTime::per_job_since(cpu, jobs);
    let (logs, spans, metrics): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from forge_logs), (select count(*) from forge_traces),
                (select count(*) from forge_metrics)",
    )
    .fetch_one(db.pool())
    .await?;

    // Pickup: the node is idle; dispatch one job at a time and measure dispatch → start.
    sqlx::query("truncate forge_jobs cascade").execute(db.pool()).await?;
    let mut ids = Vec::with_capacity(PICKUPS);
    for _ in 0..PICKUPS {
        ids.push(Noop::dispatch(&node, None).await?.0);
        tokio::time::sleep(PICKUP_GAP).await;
    }
    wait_until_done(db.pool(), PICKUPS).await?;
    let mut pickups: Vec<Duration> = sqlx::query_scalar::<_, f64>(
        "select extract(epoch from attempted_at - created_at)::float8 from forge_jobs where id = any($1)",
    )
    .bind(&ids)
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(|s| Duration::from_secs_f64(s.max(0.0)))
    .collect();
    pickups.sort();
    let node_dropped = node.telemetry().dropped_logs() + node.telemetry().dropped_spans();
    node.stop().await?;

    Ok(serde_json::json!({
        "bench": "jobs",
        "jobs": jobs,
        "observability": if observability == Observability::On { "on" } else { "off" },
        "work_ms": work_ms,
        // Rows telemetry wrote while draining (an attempt's span is its job's row, not a row here).
        "stored": { "logs": logs, "spans": spans, "metrics": metrics },
        "dropped": node_dropped,
        "enqueue_batch": BATCH.min(jobs),
        "enqueued": enqueued,
        "enqueue_per_s": per_second(batched, enqueue),
        "enqueue_single_per_s": per_second(singles, enqueue_single),
        "enqueue_single_batched_per_s": per_second(singles, enqueue_single_batched),
        "enqueue_concurrent_per_s": per_second(concurrent, enqueue_concurrent),
        "drain_per_s": per_second(jobs, drain),
        "node_start_ms": ms(node_start),
        "drain_cpu": drain_cpu,
        "drain_last_100k_per_s": drain_last.map(|d| per_second(LAST, d)),
        "rss_peak_mb": rss_peak_mb,
        "rss_final_mb": rss_mb(),
        "pickup_p50_ms": ms(quantile(&pickups, 0.5)),
        "pickup_p99_ms": ms(quantile(&pickups, 0.99)),
    }))
}

/// `n` single dispatches made by `tasks` tasks at once, each waiting for its own before the
/// next, through a [`BatchedDispatcher`] (as a node dispatches) over a pool of one connection:
/// how long they took.
async fn enqueue_through_dispatcher(
    db: &TestDatabase,
    n: usize,
    tasks: usize,
    work_ms: Option<u64>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let pool = forge::sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(db.url()).await?;
    let dispatcher = BatchedDispatcher::new(pool.clone());
    let started = Instant::now();
    let callers: Vec<_> = (0..tasks)
        .map(|i| {
            let dispatcher = dispatcher.clone();
            let calls = n / tasks + usize::from(i < n % tasks);
            tokio::spawn(async move {
                for _ in 0..calls {
                    Noop::dispatch(&dispatcher, work_ms).await?;
                }
                Ok::<(), JobsError>(())
            })
        })
        .collect();
    for caller in callers {
        caller.await??;
    }
    let took = started.elapsed();
    drop(dispatcher);
    pool.close().await;
    Ok(took)
}

/// This process's resident memory now, in MiB (from `/proc/self/status`; 0 where unreadable).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (kb / 1024.0 * 10.0).round() / 10.0
}

/// Samples [`rss_mb`] every 100 ms until stopped, keeping the peak.
struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssSampler {
    fn start() -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = rss_mb();
            loop {
                tokio::select! {
                    _ = &mut stopped => return peak.max(rss_mb()),
                    () = tokio::time::sleep(Duration::from_millis(100)) => peak = peak.max(rss_mb()),
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> f64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0.0)
    }
}

/// How long the last `n` jobs to complete took, from their completion times (`finalized_at`).
async fn drain_of_last(pool: &sqlx::PgPool, n: usize) -> Result<Duration, sqlx::Error> {
    let seconds: f64 = sqlx::query_scalar(
        "select coalesce(extract(epoch from max(finalized_at) - min(finalized_at))::float8, 0)
         from (select finalized_at from forge_jobs where finalized_at is not null
               order by finalized_at desc limit $1) last",
    )
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_one(pool)
    .await?;
    Ok(Duration::from_secs_f64(seconds.max(1e-6)))
}

async fn start_node(db: &TestDatabase, observability: Observability) -> Result<RunningForge, forge::Error> {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("two roles");
    config.observability.log_level = "warn".to_owned();
    config.observability.enabled = observability == Observability::On;
    // The variable a deployment would set to turn claim windows on, read here too so that
    // one binary measures both ways (`FORGE_WORKER_HOLD_CLAIMS=true forge-bench jobs`).
    if let Ok(value) = std::env::var("FORGE_WORKER_HOLD_CLAIMS") {
        config.worker.hold_claims = value.trim() == "true";
    }
    Forge::builder().config(config).crons(false).build()?.start().await
}

/// How often [`wait_until_drained`] looks at the node's count, and how often it asks the
/// database all the same (in case a job did not complete and the count never gets there).
const COUNT_EVERY: Duration = Duration::from_millis(1);
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Waits until `node` has completed `expected` jobs by its own count, then until the database
/// agrees ([`wait_until_done`]).
///
/// The count is in the node's memory: asking the database every few milliseconds while it
/// drains would load what is being measured. `wait_until_done`'s probes of the claim index
/// step over the entries of every job finished since the last vacuum: polled every 5 ms
/// through a drain of 600,000 jobs, they took about 15% of the machine's CPU (`perf record
/// -a`, the node's Postgres backends in `ExecSetParamPlan` → `_bt_first`). `forge-bench
/// floor`, which this drain is compared with, does not poll at all.
async fn wait_until_drained(
    node: &RunningForge,
    pool: &sqlx::PgPool,
    expected: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let labels = [("kind", <Noop as Job>::NAME), ("queue", "default")];
    let expected_count = u64::try_from(expected).unwrap_or(u64::MAX);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut probed = Instant::now();
    while node.telemetry().metrics().counter("forge_jobs_completed_total", &labels) < expected_count {
        if probed.elapsed() >= PROBE_EVERY {
            probed = Instant::now();
            if !busy(pool).await? {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err("jobs still running after 10 minutes".into());
        }
        tokio::time::sleep(COUNT_EVERY).await;
    }
    wait_until_done(pool, expected).await
}

/// Whether any job is available or running (two index probes).
async fn busy(pool: &sqlx::PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from forge_jobs where state = 'available')
             or exists (select 1 from forge_jobs where state = 'running')",
    )
    .fetch_one(pool)
    .await
}

/// Waits until no job is available or running, probing every 5 ms, then checks that `expected`
/// jobs completed. Each probe steps over the claim index's entries of finished jobs not yet
/// vacuumed: cheap on an idle or small queue, not through a long drain (see
/// [`wait_until_drained`]).
async fn wait_until_done(pool: &sqlx::PgPool, expected: usize) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if !busy(pool).await? {
            break;
        }
        if Instant::now() > deadline {
            return Err("jobs still running after 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done: i64 =
        sqlx::query_scalar("select count(*) from forge_jobs where state = 'completed'").fetch_one(pool).await?;
    if usize::try_from(done).unwrap_or(0) < expected {
        return Err(format!("only {done} of {expected} jobs completed").into());
    }
    Ok(())
}

/// `forge-bench observability`: what storing telemetry costs the drain, as the median over
/// `pairs` alternating pairs of `jobs` runs (`on` then `off`, then `off` then `on`, …), each run
/// its own process, so neither mode inherits the other's `tracing` subscriber. Single runs on a
/// shared VM swing by ±20%; the per-pair ratio's median does not.
pub(crate) async fn overhead(pairs: usize, jobs: usize) -> Report {
    let exe = std::env::current_exe()?;
    let mut ratios = Vec::with_capacity(pairs);
    let (mut on_runs, mut off_runs) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        let order = if pair % 2 == 0 { ["on", "off"] } else { ["off", "on"] };
        let mut drains = [0.0, 0.0];
        for mode in order {
            let out = tokio::process::Command::new(&exe)
                .args(["jobs", "--jobs", &jobs.to_string(), "--observability", mode])
                .stderr(std::process::Stdio::inherit())
                .output()
                .await?;
            if !out.status.success() {
                return Err(format!("the {mode} run failed ({})", out.status).into());
            }
            let run: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            println!("{run}");
            let drain = run["drain_per_s"].as_f64().ok_or("a run without drain_per_s")?;
            drains[usize::from(mode == "off")] = drain;
            if mode == "on" { on_runs.push(run) } else { off_runs.push(run) }
        }
        ratios.push(drains[0] / drains[1].max(1.0));
    }
    let field = |runs: &[serde_json::Value], f: &dyn Fn(&serde_json::Value) -> Option<f64>| {
        median(runs.iter().filter_map(f).collect())
    };
    let drain = |r: &serde_json::Value| r["drain_per_s"].as_f64();
    let cpu = |r: &serde_json::Value| r["drain_cpu"]["machine_us_per_job"].as_f64();
    let ratio = median(ratios.clone());
    let loss = ((1.0 - ratio) * 1000.0).round() / 10.0;
    Ok(serde_json::json!({
        "bench": "observability",
        "pairs": pairs,
        "jobs": jobs,
        "on_drain_per_s_median": field(&on_runs, &drain),
        "off_drain_per_s_median": field(&off_runs, &drain),
        "on_machine_us_per_job_median": field(&on_runs, &cpu),
        "off_machine_us_per_job_median": field(&off_runs, &cpu),
        "pair_ratios": ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        "ratio_median": (ratio * 1000.0).round() / 1000.0,
        "drain_loss_percent": loss,
        "target_loss_percent": 10,
        "target_met": loss <= 10.0,
    }))
}

/// `jobs --pairs N`: `floor` and `jobs` alternately (the order flips every pair, so neither
/// always runs on a warmer machine), each in its own process; prints every run, then
/// `{"bench":"jobs-vs-floor", "ratio_median", "ratios", "drain_median", "floor_median",
/// "cpu_us_per_job_median"}`.
pub(crate) async fn versus_floor(pairs: usize, jobs: usize, observability: Observability) -> Report {
    let n = jobs.to_string();
    let mode = match observability {
        Observability::On => "on",
        Observability::Off => "off",
    };
    let forge_args: Vec<String> = ["jobs", "--jobs", &n, "--observability", mode].map(String::from).to_vec();
    let floor_args: Vec<String> = ["floor", "--jobs", &n].map(String::from).to_vec();
    let (mut drains, mut floors, mut cpus, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (floor_run, forge_run) in alternate(pairs, &floor_args, &forge_args).await? {
        let per_s = |run: &serde_json::Value| run["drain_per_s"].as_f64().ok_or("a run without drain_per_s");
        let (floor, drain) = (per_s(&floor_run)?, per_s(&forge_run)?);
        if let Some(cpu) = forge_run["drain_cpu"]["machine_us_per_job"].as_f64() {
            cpus.push(cpu);
        }
        drains.push(drain);
        floors.push(floor);
        ratios.push(drain / floor.max(1.0));
    }
    Ok(serde_json::json!({
        "bench": "jobs-vs-floor",
        "pairs": pairs,
        "jobs": jobs,
        "observability": mode,
        "ratio_median": round(median(ratios.clone()), 3),
        "ratios": ratios.iter().map(|r| round(*r, 3)).collect::<Vec<_>>(),
        "drain_median": round(median(drains), 0),
        "floor_median": round(median(floors), 0),
        "cpu_us_per_job_median": round(median(cpus), 1),
    }))
}
