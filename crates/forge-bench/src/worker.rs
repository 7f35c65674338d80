//! The bench's jobs, and a worker node process that runs them.

use std::time::Duration;

use forge::config::{Role, Roles};
use forge::prelude::*;
use serde::{Deserialize, Serialize};

/// Does nothing (what `jobs` and `floor` measure is the queue itself), or, given a number of
/// milliseconds (`jobs --work-ms`), waits that long first.
#[forge::job]
pub(crate) async fn noop(_ctx: &JobContext, work_ms: Option<u64>) -> Result<(), JobError> {
    if let Some(ms) = work_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(())
}

/// Records its execution, then kills its own node (SIGABRT): a job no node survives. Its
/// attempts must still count, so that `max_attempts` ends it (`kill.rs` tests it).
#[forge::job(max_attempts = 3)]
pub(crate) async fn crash_node(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    let attempt = i32::try_from(ctx.attempt()).unwrap_or(i32::MAX);
    let pid = i32::try_from(std::process::id()).unwrap_or(0);
    sqlx::query("insert into bench_executions (job_id, attempt, node, pid) values ($1, $2, $3, $4)")
        .bind(ctx.id().0)
        .bind(attempt)
        .bind(ctx.node_id())
        .bind(pid)
        .execute(ctx.db())
        .await?;
    std::process::abort();
}

/// Arguments of [`ledger_write`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LedgerArgs {
    /// How long the job works before writing, in milliseconds.
    pub(crate) work_ms: u64,
}

/// Records each execution (outside the job's transaction, so a killed attempt leaves its mark)
/// with this process's id and the worker's clock, and writes one ledger row inside the job's
/// transaction, which commits with its completion. When the handler ends, the end of the
/// execution is recorded too, retried in the background until the database answers (`chaos`
/// reads the intervals to find attempts of one job that overlapped).
#[forge::job(transactional, max_attempts = 100, backoff(fixed, base = "100ms"))]
pub(crate) async fn ledger_write(ctx: &JobContext, args: LedgerArgs) -> Result<(), JobError> {
    let attempt = i32::try_from(ctx.attempt()).unwrap_or(i32::MAX);
    let pid = i32::try_from(std::process::id()).unwrap_or(0);
    sqlx::query("insert into bench_executions (job_id, attempt, node, pid, started_at) values ($1, $2, $3, $4, $5)")
        .bind(ctx.id().0)
        .bind(attempt)
        .bind(ctx.node_id())
        .bind(pid)
        .bind(chrono::Utc::now())
        .execute(ctx.db())
        .await?;
    let end = ExecutionEnd { pool: ctx.db().clone(), job_id: ctx.id().0, attempt, node: ctx.node_id().to_owned() };
    if args.work_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.work_ms)).await;
    }
    let mut tx = ctx.tx().await?;
    sqlx::query("insert into bench_ledger (job_id) values ($1)").bind(ctx.id().0).execute(&mut tx).await?;
    drop(tx);
    drop(end);
    Ok(())
}

/// Records, when dropped (the handler returned, failed, or was stopped), that an execution
/// ended now; retried every 100 ms for up to 10 minutes while the database does not answer.
struct ExecutionEnd {
    pool: sqlx::PgPool,
    job_id: i64,
    attempt: i32,
    node: String,
}

impl Drop for ExecutionEnd {
    fn drop(&mut self) {
        let ended_at = chrono::Utc::now();
        let (pool, job_id, attempt, node) =
            (self.pool.clone(), self.job_id, self.attempt, std::mem::take(&mut self.node));
        tokio::spawn(async move {
            for _ in 0..6000 {
                let written = sqlx::query(
                    "update bench_executions set ended_at = $4 where job_id = $1 and attempt = $2 and node = $3",
                )
                .bind(job_id)
                .bind(attempt)
                .bind(&node)
                .bind(ended_at)
                .execute(&pool)
                .await;
                if written.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// Every second, with catch-up: records which job ran which tick (`failover` and the failover
/// tests count them). Scheduled only by workers started with `--crons`. Overlap is allowed: the
/// failover bench asks that every tick fire, and with the default (`skip`) a tick whose previous
/// run is still live (its job slow to run on a loaded machine, or held by the killed node until
/// the sweep) is recorded as skipped instead.
#[forge::cron("* * * * * *", catch_up, catch_up_limit = 60, overlap = "allow")]
pub(crate) async fn bench_tick(ctx: &CronContext) -> Result<(), JobError> {
    sqlx::query("insert into bench_cron_ticks (scheduled_at, job_id, catch_up) values ($1, $2, $3)")
        .bind(ctx.scheduled_time())
        .bind(ctx.job().id().0)
        .bind(ctx.is_catch_up())
        .execute(ctx.db())
        .await?;
    Ok(())
}

/// The bench's own tables.
pub(crate) const SCHEMA: &str = r#"
create table if not exists bench_executions (
    job_id bigint not null, attempt int not null, node text not null,
    pid int not null default 0, started_at timestamptz not null default now(), ended_at timestamptz
);
create table if not exists bench_kills (pid int not null, killed_at timestamptz not null);
create table if not exists bench_ledger (job_id bigint not null);
create table if not exists bench_cron_ticks (scheduled_at timestamptz not null, job_id bigint not null, catch_up boolean not null);
"#;

/// How `forge-bench worker` runs its node.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// The database.
    #[arg(long)]
    database_url: String,
    /// The job lease.
    #[arg(long, default_value = "2s")]
    lease: String,
    /// Jobs of the default queue run at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// The node heartbeat (and leader campaign) interval.
    #[arg(long, default_value = "1s")]
    heartbeat: String,
    /// How long a silent node lives before the leader declares it dead (default: the lease, but
    /// at least three heartbeats).
    #[arg(long)]
    dead_after: Option<String>,
    /// Schedule the bench's cron (`bench_tick`, every second) when leading.
    #[arg(long)]
    crons: bool,
    /// How long running jobs may finish after SIGTERM before they are released.
    #[arg(long, default_value = "5s")]
    shutdown_timeout: String,
}

/// Runs a worker + scheduler node until SIGTERM/SIGINT.
pub(crate) async fn run(args: WorkerArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ForgeConfig::default();
    config.database.url = Some(args.database_url);
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).ok_or("no roles")?;
    config.worker.lease = args.lease.parse()?;
    config.node.heartbeat_interval = args.heartbeat.parse()?;
    config.node.dead_after = match args.dead_after {
        Some(dead_after) => dead_after.parse()?,
        None => {
            let dead_after = config.worker.lease.as_std().max(config.node.heartbeat_interval.as_std() * 3);
            format!("{}ms", dead_after.as_millis()).parse()?
        }
    };
    config.worker.poll_interval = "100ms".parse()?;
    config.worker.shutdown_timeout = args.shutdown_timeout.parse()?;
    let crons = args.crons;
    if let Some(queue) = config.worker.queues.get_mut("default") {
        queue.concurrency = std::num::NonZeroUsize::new(args.concurrency).ok_or("concurrency must be at least 1")?;
    }
    config.observability.log_level = "warn".to_owned();
    // As in `jobs`: `FORGE_WORKER_HOLD_CLAIMS=true forge-bench chaos` runs the faults against
    // claim windows.
    if let Ok(value) = std::env::var("FORGE_WORKER_HOLD_CLAIMS") {
        config.worker.hold_claims = value.trim() == "true";
    }
    // An empty project folder: the bench has no migrations of its own.
    let dir = std::env::temp_dir().join(format!("forge-bench-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = Forge::builder().config(config).project_dir(&dir).crons(crons).build()?.run().await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(())
}

/// Worker processes started by a scenario; any still running are killed when this is dropped,
/// so an early error leaves no process behind.
#[derive(Debug, Default)]
pub(crate) struct Processes(pub(crate) Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
