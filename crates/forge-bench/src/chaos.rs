//! `forge-bench chaos`: worker processes drain transactional ledger jobs while faults hit them,
//! and every job must complete exactly once. The faults:
//!
//! - `--kill-every-ms N`: one worker, at random, killed with SIGKILL (and restarted) every N ms;
//! - `--restart-db-every-ms N`: the PostgreSQL server restarted every N ms;
//! - `--db-outage-ms N`: the server stopped once, `--outage-after-ms` into the run, for N ms
//!   (longer than the lease, to prove an outage does not turn running jobs into rescued ones).
//!
//! The database faults never touch a shared server: they run on a private embedded cluster in a
//! temporary folder, or on a server the caller names with `--db-url` and controls with
//! `--db-stop-command`/`--db-start-command` (shell commands).
//!
//! The report counts, from the ledger: `lost` (a job whose work never committed),
//! `finalized_twice` (committed twice), `overlapping_attempts` (two executions of one job whose
//! time intervals overlap; an execution killed with its process ends at the kill),
//! `succeeded_but_discarded` (work committed, job discarded) and `stuck` (not final at the
//! end). Every figure must be 0.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forge::db::{EmbeddedPostgres, Migrator, ensure_database};
use forge::prelude::*;
use forge::testing::TestDatabase;
use sqlx::PgPool;

use crate::stats::Report;
use crate::worker::{LedgerArgs, LedgerWrite, Processes, SCHEMA};

/// `forge-bench chaos`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct ChaosArgs {
    /// Jobs to dispatch.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Kill (and restart) one node this often; 0 kills none.
    #[arg(long, default_value_t = 0)]
    kill_every_ms: u64,
    /// Restart the PostgreSQL server this often.
    #[arg(long)]
    restart_db_every_ms: Option<u64>,
    /// Stop the PostgreSQL server once for this long.
    #[arg(long)]
    db_outage_ms: Option<u64>,
    /// When the outage starts, after the workers start.
    #[arg(long, default_value_t = 2000)]
    outage_after_ms: u64,
    /// The workers' job lease.
    #[arg(long, default_value = "2s")]
    lease: String,
    /// How long each job works before writing, in milliseconds.
    #[arg(long, default_value_t = 1)]
    work_ms: u64,
    /// A server to use for the database faults instead of a private embedded cluster (its
    /// database is used as it is: give an empty one).
    #[arg(long, requires_all = ["db_stop_command", "db_start_command"])]
    db_url: Option<String>,
    /// Shell command that stops `--db-url`'s server.
    #[arg(long)]
    db_stop_command: Option<String>,
    /// Shell command that starts `--db-url`'s server again.
    #[arg(long)]
    db_start_command: Option<String>,
}

/// The server the run uses, and how to fault it.
enum Server {
    /// The shared test server (kills only: never restarted).
    Shared(Box<TestDatabase>),
    /// A private embedded cluster in a temporary folder.
    Private { cluster: EmbeddedPostgres, url: String, _dir: tempfile_dir::Dir },
    /// A server the caller controls with commands.
    Given { url: String, stop: String, start: String },
}

impl Server {
    fn url(&self) -> &str {
        match self {
            Server::Shared(db) => db.url(),
            Server::Private { url, .. } | Server::Given { url, .. } => url,
        }
    }

    async fn stop(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Server::Shared(_) => Err("the shared server is never stopped".into()),
            Server::Private { cluster, .. } => Ok(blocking(|| cluster.stop_server()).await?),
            Server::Given { stop, .. } => shell(stop),
        }
    }

    async fn start(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Server::Shared(_) => Ok(()),
            Server::Private { cluster, .. } => Ok(blocking(|| cluster.start_server()).await?),
            Server::Given { start, .. } => shell(start),
        }
    }

    async fn restart(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Server::Private { cluster, .. } => Ok(blocking(|| cluster.restart()).await?),
            _ => {
                self.stop().await?;
                self.start().await
            }
        }
    }
}

/// Runs `f` (a blocking `pg_ctl` call) without stalling the runtime's other tasks.
async fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn shell(command: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let status = Command::new("sh").args(["-c", command]).status()?;
    if status.success() { Ok(()) } else { Err(format!("`{command}` failed: {status}").into()) }
}

/// A temporary folder removed when dropped (the private cluster's home).
mod tempfile_dir {
    /// The folder.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn server(args: &ChaosArgs) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let faults_db = args.restart_db_every_ms.is_some() || args.db_outage_ms.is_some();
    if let Some(url) = &args.db_url {
        let (stop, start) = (args.db_stop_command.clone(), args.db_start_command.clone());
        return Ok(Server::Given {
            url: url.clone(),
            stop: stop.unwrap_or_default(),
            start: start.unwrap_or_default(),
        });
    }
    if !faults_db {
        return Ok(Server::Shared(Box::new(TestDatabase::new().await?)));
    }
    let dir = tempfile_dir::Dir(std::env::temp_dir().join(format!("forge-chaos-{}", uuid::Uuid::new_v4().simple())));
    let path = dir.0.clone();
    let cluster = blocking(move || EmbeddedPostgres::start(path)).await?;
    ensure_database(&cluster.connect_options("postgres"), "chaos").await?;
    let url = cluster.url("chaos");
    Ok(Server::Private { cluster, url, _dir: dir })
}

pub(crate) async fn run(args: ChaosArgs) -> Report {
    let server = server(&args).await.map_err(|e| e.to_string())?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(server.url())?;
    if !matches!(server, Server::Shared(_)) {
        Migrator::forge()?.run(&pool).await?;
    }
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    let jobs = args.jobs.max(1);
    let work: Vec<LedgerArgs> = (0..jobs).map(|_| LedgerArgs { work_ms: args.work_ms }).collect();
    for chunk in work.chunks(1000) {
        LedgerWrite::dispatch_many(&pool, chunk.to_vec(), DispatchOptions::new()).await?;
    }

    let spawn = || spawn_worker(server.url(), &args.lease);
    let mut children = Processes((0..args.nodes.max(1)).map(|_| spawn()).collect::<Result<_, _>>()?);
    let started = Instant::now();
    let (mut kills, mut restarts, mut outages) = (0u64, 0u64, 0u64);
    let mut next_kill = started + Duration::from_millis(args.kill_every_ms);
    let mut next_restart = args.restart_db_every_ms.map(|ms| started + Duration::from_millis(ms));
    let mut outage = args.db_outage_ms.map(|ms| (started + Duration::from_millis(args.outage_after_ms), ms));
    let deadline = started + Duration::from_secs(900);
    let mut seed = uuid::Uuid::new_v4().as_u128();
    // The last change of the count of live jobs: a run that makes no progress for a minute
    // prints what holds its live jobs (once), to stderr.
    let (mut last_live, mut progressed, mut told) = (None, Instant::now(), false);
    loop {
        // The server may be down: a failed count is not the end.
        let live = count(&pool, "select count(*) from forge_jobs where finalized_at is null").await;
        if live == Some(0) || Instant::now() > deadline {
            break;
        }
        if live.is_some() && live != last_live {
            (last_live, progressed) = (live, Instant::now());
        } else if !told && progressed.elapsed() > STALL {
            told = stalled(&pool).await;
        }
        let now = Instant::now();
        if args.kill_every_ms > 0 && now >= next_kill {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let victim = (seed >> 64) as usize % children.0.len();
            let pid = i32::try_from(children.0[victim].id()).unwrap_or(0);
            kill9(&mut children.0[victim]);
            record_kill(&pool, pid).await;
            children.0[victim] = spawn()?;
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(args.kill_every_ms);
        }
        if let (Some(at), Some(every)) = (next_restart, args.restart_db_every_ms)
            && now >= at
        {
            server.restart().await.map_err(|e| e.to_string())?;
            restarts += 1;
            next_restart = Some(Instant::now() + Duration::from_millis(every));
        }
        if let Some((at, ms)) = outage
            && now >= at
        {
            server.stop().await.map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            server.start().await.map_err(|e| e.to_string())?;
            outages += 1;
            outage = None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    for child in &mut children.0 {
        terminate(child);
    }
    // Late end records of the last executions.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let figure = async |sql: &str| -> Result<i64, sqlx::Error> { sqlx::query_scalar(sql).fetch_one(&pool).await };
    let completed = figure("select count(*) from forge_jobs where state = 'completed'").await?;
    let finalized_twice =
        figure("select count(*) from (select job_id from bench_ledger group by job_id having count(*) > 1) t").await?;
    let lost = figure(
        "select count(*) from forge_jobs j where j.kind = 'ledger_write'
           and not exists (select 1 from bench_ledger l where l.job_id = j.id)",
    )
    .await?;
    let overlapping = figure(
        "with e as (
           select x.job_id, x.attempt, x.node, x.started_at,
                  coalesce(x.ended_at, (select min(k.killed_at) from bench_kills k
                                        where k.pid = x.pid and k.killed_at >= x.started_at), 'infinity') as ended_at
           from bench_executions x)
         select count(distinct a.job_id) from e a join e b
           on a.job_id = b.job_id and (a.attempt, a.node) < (b.attempt, b.node)
          and a.started_at < b.ended_at and b.started_at < a.ended_at",
    )
    .await?;
    let succeeded_but_discarded = figure(
        "select count(*) from forge_jobs j where j.state = 'discarded'
           and exists (select 1 from bench_ledger l where l.job_id = j.id)",
    )
    .await?;
    let stuck = figure("select count(*) from forge_jobs where finalized_at is null").await?;
    let executions = figure("select count(*) from bench_executions").await?;
    let unended = figure(
        "select count(*) from bench_executions x where x.ended_at is null
           and not exists (select 1 from bench_kills k where k.pid = x.pid)",
    )
    .await?;
    pool.close().await;
    drop(server);
    Ok(serde_json::json!({
        "bench": "chaos",
        "dispatched": jobs,
        "completed": completed,
        "lost": lost,
        "finalized_twice": finalized_twice,
        "overlapping_attempts": overlapping,
        "succeeded_but_discarded": succeeded_but_discarded,
        "stuck": stuck,
        "executions": executions,
        "executions_without_end": unended,
        "kills": kills,
        "db_restarts": restarts,
        "db_outages": outages,
        "db_outage_ms": args.db_outage_ms,
        "lease": args.lease,
        "seconds": elapsed.as_secs_f64(),
    }))
}

/// How long a run may make no progress before [`stalled`] reports it.
const STALL: Duration = Duration::from_secs(60);

/// Prints to stderr (as one JSON line) the live jobs with what may hold them: the window slots
/// naming them, the nodes, the leaders. Returns whether it could read them (the server may be
/// down).
async fn stalled(pool: &PgPool) -> bool {
    let report: Result<serde_json::Value, sqlx::Error> = sqlx::query_scalar(
        "select jsonb_build_object(
           'stalled', true,
           'live', (select coalesce(jsonb_agg(jsonb_build_object(
                'id', j.id, 'state', j.state, 'attempt', j.attempt, 'attempted_by', j.attempted_by,
                'run_at_in_s', extract(epoch from j.run_at - now()),
                'lease_left_s', extract(epoch from j.lease_until - now()),
                'slots', (select coalesce(jsonb_agg(jsonb_build_object('node', s.node_id, 'slot', s.slot,
                            'attempts', s.attempts, 'opened_s_ago', extract(epoch from now() - s.opened_at))), '[]')
                          from forge_claim_slots s where j.id = any(s.job_ids)))), '[]')
              from (select * from forge_jobs where finalized_at is null order by id limit 20) j),
           'nodes', (select coalesce(jsonb_agg(jsonb_build_object('id', id, 'status', status,
                'heartbeat_s_ago', extract(epoch from now() - last_heartbeat))), '[]') from forge_nodes),
           'leaders', (select coalesce(jsonb_agg(jsonb_build_object('role', role, 'node', node_id)), '[]')
                       from forge_leaders))",
    )
    .fetch_one(pool)
    .await;
    match report {
        Ok(report) => {
            eprintln!("{report}");
            true
        }
        Err(_) => false,
    }
}

async fn count(pool: &PgPool, sql: &str) -> Option<i64> {
    sqlx::query_scalar(sql).fetch_one(pool).await.ok()
}

/// Notes when process `pid` was killed: its executions end there.
async fn record_kill(pool: &PgPool, pid: i32) {
    for _ in 0..100 {
        let recorded = sqlx::query("insert into bench_kills (pid, killed_at) values ($1, $2)")
            .bind(pid)
            .bind(chrono::Utc::now())
            .execute(pool)
            .await;
        if recorded.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_worker(url: &str, lease: &str) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["worker", "--database-url", url, "--lease", lease])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill with a child's pid and a valid signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let _ = child.wait();
}
