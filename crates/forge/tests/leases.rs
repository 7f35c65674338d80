//! At most one live attempt per job: a node never runs a second attempt of a job beside one
//! whose lease it lost, and a node that cannot renew its leases stops those attempts itself
//! before anyone may rescue them (self-fencing).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// One execution of a job: (job, attempt, started, ended).
type Execution = (i64, u32, Instant, Option<Instant>);

static EXECUTIONS: Mutex<Vec<Execution>> = Mutex::new(Vec::new());

/// Records when the execution it stands for ended (its handler returned or was dropped).
struct Ends(usize);

impl Drop for Ends {
    fn drop(&mut self) {
        if let Ok(mut log) = EXECUTIONS.lock() {
            log[self.0].3 = Some(Instant::now());
        }
    }
}

fn executions(job: JobId) -> Vec<Execution> {
    EXECUTIONS.lock().expect("log").iter().filter(|e| e.0 == job.0).copied().collect()
}

/// Its first attempt lingers (up to 5 s, or until stopped); later ones finish at once.
#[forge::job(max_attempts = 5)]
async fn lingering(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    let index = {
        let mut log = EXECUTIONS.lock().expect("log");
        log.push((ctx.id().0, ctx.attempt(), Instant::now(), None));
        log.len() - 1
    };
    let _ends = Ends(index);
    if ctx.attempt() == 1 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = ctx.cancellation().cancelled() => {}
        }
    }
    Ok(())
}

/// When a `fenced` job's attempt stopped (its handler was dropped), by job id.
static FENCED: Mutex<Vec<(i64, DateTime<Utc>)>> = Mutex::new(Vec::new());

/// Records when the attempt it lives in stopped.
struct StopsAt(i64);

impl Drop for StopsAt {
    fn drop(&mut self) {
        if let Ok(mut log) = FENCED.lock() {
            log.push((self.0, Utc::now()));
        }
    }
}

/// Runs for 30 s unless it is stopped, and says when it stopped.
#[forge::job]
async fn fenced(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    let _stops = StopsAt(ctx.id().0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

async fn eventually<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state(pool: &sqlx::PgPool, id: JobId) -> (String, i32) {
    sqlx::query_as("select state, attempt from forge_jobs where id = $1").bind(id).fetch_one(pool).await.expect("job")
}

#[tokio::test]
async fn a_job_rescued_while_its_attempt_still_runs_is_not_run_beside_it() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker]).expect("roles");
    config.worker.lease = "6s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let job = Lingering::dispatch(&node, ()).await.expect("dispatch");
    eventually("the first attempt starting", Duration::from_secs(20), async || {
        (!executions(job).is_empty()).then_some(())
    })
    .await;

    // The lease is lost while the attempt still runs here: rescued and made available again (as
    // the leader would after an outage), with its workers woken.
    sqlx::query("update forge_jobs set state = 'available', heartbeat_at = null, run_at = now() where id = $1")
        .bind(job)
        .execute(db.pool())
        .await
        .expect("rescue");
    sqlx::query("select pg_notify('forge_jobs', 'default')").execute(db.pool()).await.expect("notify");

    eventually("the job completing", Duration::from_secs(30), async || {
        (state(db.pool(), job).await.0 == "completed").then_some(())
    })
    .await;
    let runs = executions(job);
    assert_eq!(runs.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2], "{runs:?}");
    let (first, second) = (runs[0], runs[1]);
    let first_end = first.3.expect("the first attempt ended");
    assert!(first_end <= second.2, "attempt 2 started while attempt 1 ran: {runs:?}");
    assert!(first_end < first.2 + Duration::from_secs(5), "attempt 1 was stopped, not waited out");
    assert_eq!(state(db.pool(), job).await, ("completed".to_owned(), 2));
    node.stop().await.expect("stop");
}

/// A TCP proxy to the database that can be made to stop passing bytes (a network partition),
/// or to drop every connection and refuse new ones (the server down).
struct Proxy {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
}

#[derive(Clone)]
enum Upstream {
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl Proxy {
    /// A proxy to `db`'s server (over TCP or its Unix socket).
    async fn to(db: &TestDatabase) -> Self {
        let options = PgConnectOptions::from_str(db.url()).expect("url");
        let upstream = match options.get_socket() {
            Some(dir) => Upstream::Unix(dir.join(format!(".s.PGSQL.{}", options.get_port()))),
            None => Upstream::Tcp(format!("{}:{}", options.get_host(), options.get_port())),
        };
        Self::start(upstream).await
    }

    /// `db`'s configuration, connecting through this proxy.
    fn config(&self, db: &TestDatabase) -> forge::ForgeConfig {
        let options = PgConnectOptions::from_str(db.url()).expect("url");
        let mut config = db.config();
        config.database.url = Some(format!(
            "postgres://{}@{}/{}",
            options.get_username(),
            self.addr,
            options.get_database().expect("database")
        ));
        config
    }

    /// [`Proxy::config`] for a worker alone (no leader, so no lease sweep), through this proxy:
    /// lease 2 s, polling every 50 ms, a second to get a connection, telemetry not stored.
    fn lone_worker(&self, db: &TestDatabase) -> forge::ForgeConfig {
        let mut config = self.config(db);
        config.node.roles = Roles::new([Role::Worker]).expect("roles");
        config.worker.lease = "2s".parse().expect("duration");
        config.worker.poll_interval = "50ms".parse().expect("duration");
        config.database.acquire_timeout = "1s".parse().expect("duration");
        config.observability.enabled = false;
        config
    }

    async fn start(upstream: Upstream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let blocked = Arc::new(AtomicBool::new(false));
        let refusing = Arc::new(AtomicBool::new(false));
        let flags = (blocked.clone(), refusing.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if flags.1.load(Ordering::SeqCst) {
                    continue;
                }
                let (upstream, flags) = (upstream.clone(), flags.clone());
                tokio::spawn(async move {
                    let (client_read, client_write) = client.into_split();
                    match upstream {
                        Upstream::Tcp(addr) => {
                            let Ok(server) = TcpStream::connect(addr).await else { return };
                            let (server_read, server_write) = server.into_split();
                            tokio::spawn(forward(client_read, server_write, flags.clone()));
                            forward(server_read, client_write, flags).await;
                        }
                        Upstream::Unix(path) => {
                            let Ok(server) = UnixStream::connect(path).await else { return };
                            let (server_read, server_write) = server.into_split();
                            tokio::spawn(forward(client_read, server_write, flags.clone()));
                            forward(server_read, client_write, flags).await;
                        }
                    }
                });
            }
        });
        Self { addr, blocked, refusing }
    }
}

/// Copies `from` to `to`, holding every chunk while the proxy is blocked, and closing both when
/// it starts refusing.
async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    (blocked, refusing): (Arc<AtomicBool>, Arc<AtomicBool>),
) {
    let mut buf = vec![0u8; 16 * 1024];
    let refused = async || {
        while !refusing.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = refused() => return,
        };
        while blocked.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_worker_that_cannot_renew_its_leases_stops_their_attempts_before_the_lease_ends() {
    let db = TestDatabase::new().await.expect("db");
    let proxy = Proxy::to(&db).await;
    let lease = Duration::from_secs(4);
    let mut config = proxy.config(&db);
    // A worker alone: no leader rescues anything, so only the node itself can stop the attempt.
    config.node.roles = Roles::new([Role::Worker]).expect("roles");
    config.worker.lease = "4s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.observability.enabled = false;
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let job = Fenced::dispatch(&node, ()).await.expect("dispatch");
    eventually("the attempt running", Duration::from_secs(20), async || {
        (state(db.pool(), job).await.0 == "running").then_some(())
    })
    .await;

    proxy.blocked.store(true, Ordering::SeqCst);
    // The last renewal that reached the database (read directly, not through the proxy).
    let renewed: DateTime<Utc> = sqlx::query_scalar("select heartbeat_at from forge_jobs where id = $1")
        .bind(job)
        .fetch_one(db.pool())
        .await
        .expect("lease");
    let stopped_at = eventually("the attempt stopping itself", Duration::from_secs(20), async || {
        FENCED.lock().expect("log").iter().find(|(id, _)| *id == job.0).map(|(_, at)| *at)
    })
    .await;
    let lease = chrono::Duration::from_std(lease).expect("lease");
    assert!(stopped_at < renewed + lease, "stopped at {stopped_at}, not before its lease (renewed at {renewed}) ended");
    proxy.blocked.store(false, Ordering::SeqCst);
    node.stop().await.expect("stop");
}

/// The jobs `never_run` ran (it must not).
static RAN: Mutex<Vec<i64>> = Mutex::new(Vec::new());

#[forge::job(max_attempts = 5)]
async fn never_run(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    RAN.lock().expect("log").push(ctx.id().0);
    Ok(())
}

#[tokio::test]
async fn a_rescued_job_whose_cancel_was_requested_ends_cancelled_instead_of_running_again() {
    let db = TestDatabase::new().await.expect("db");
    // A running attempt on a node gone silent, cancelled by an operator meanwhile.
    let job: i64 = sqlx::query_scalar(
        "insert into forge_jobs (kind, args, state, attempt, max_attempts, attempted_by, attempted_at, heartbeat_at,
                                 cancel_requested_at)
         values ('never_run', 'null', 'running', 1, 5, 'ghost', now() - interval '1 hour', now() - interval '1 hour', now())
         returning id",
    )
    .fetch_one(db.pool())
    .await
    .expect("job");
    let mut config = db.config();
    config.node.heartbeat_interval = "100ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.lease = "1s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let (state, kind): (String, String) = eventually("the rescue", Duration::from_secs(20), async || {
        let row: (String, Option<String>) = sqlx::query_as(
            "select state, errors -> -1 ->> 'kind' from forge_jobs where id = $1 and state <> 'running'",
        )
        .bind(job)
        .fetch_optional(db.pool())
        .await
        .expect("row")?;
        Some((row.0, row.1.unwrap_or_default()))
    })
    .await;
    node.stop().await.expect("stop");
    assert_eq!((state.as_str(), kind.as_str()), ("cancelled", "lease"));
    assert!(!RAN.lock().expect("log").contains(&job), "the cancelled job ran again");
}

/// Requests its own cancellation (as an operator would while it runs), then fails or succeeds.
#[forge::job(max_attempts = 5)]
async fn cancelled_meanwhile(ctx: &JobContext, succeed: bool) -> Result<(), JobError> {
    sqlx::query("update forge_jobs set cancel_requested_at = now() where id = $1")
        .bind(ctx.id())
        .execute(ctx.db())
        .await?;
    if succeed { Ok(()) } else { Err(JobError::retry("failed after the cancel request")) }
}

#[tokio::test]
async fn a_failure_after_a_cancel_request_ends_cancelled_and_a_success_stays_a_success() {
    let db = TestDatabase::new().await.expect("db");
    let last = async || -> String {
        sqlx::query_scalar("select state from forge_jobs order by id desc limit 1")
            .fetch_one(db.pool())
            .await
            .expect("state")
    };
    db.perform_job::<CancelledMeanwhile>(false).await.expect_err("fails");
    assert_eq!(last().await, "cancelled", "not retried: the cancel wins");
    db.perform_job::<CancelledMeanwhile>(true).await.expect("succeeds");
    assert_eq!(last().await, "completed", "a success that came first keeps its success");
}

#[tokio::test]
async fn a_new_leader_waits_a_lease_and_a_heartbeat_before_rescuing() {
    let db = TestDatabase::new().await.expect("db");
    // A job whose lease ended long ago on a node silent for as long: rescuable at once, were it
    // not for the grace.
    sqlx::query(
        "insert into forge_nodes (id, hostname, pid, roles, version, last_heartbeat)
         values ('ghost', 'gone', 1, '{worker}', 'x', now() - interval '1 hour')",
    )
    .execute(db.pool())
    .await
    .expect("ghost");
    let job: i64 = sqlx::query_scalar(
        "insert into forge_jobs (kind, args, state, attempt, max_attempts, attempted_by, attempted_at, heartbeat_at,
                                 lease_until)
         values ('never_run', 'null', 'running', 1, 5, 'ghost', now() - interval '1 hour', now() - interval '1 hour',
                 now() - interval '1 hour')
         returning id",
    )
    .fetch_one(db.pool())
    .await
    .expect("job");
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Scheduler]).expect("roles");
    config.node.heartbeat_interval = "100ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.lease = "2s".parse().expect("duration");
    let grace = Duration::from_millis(2100);
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    eventually("leadership", Duration::from_secs(20), async || node.is_leader().then_some(())).await;
    let led = Instant::now();
    eventually("the rescue", Duration::from_secs(20), async || {
        (state(db.pool(), JobId(job)).await.0 != "running").then_some(())
    })
    .await;
    let waited = led.elapsed();
    node.stop().await.expect("stop");
    // The leadership flag is seen at most a poll late: allow that much.
    assert!(waited + Duration::from_millis(100) >= grace, "rescued {waited:?} into the term, before its grace");
}

#[tokio::test]
async fn a_job_whose_attempts_keep_being_lost_backs_off_and_is_discarded_at_its_last_attempt() {
    let db = TestDatabase::new().await.expect("db");
    // Attempt 3 of 4 and attempt 4 of 4, both lost with their nodes, as every attempt before
    // them was (a job that kills its node).
    let insert = async |attempt: i32| -> i64 {
        sqlx::query_scalar(
            "insert into forge_jobs (kind, args, state, attempt, max_attempts, attempted_by, attempted_at, heartbeat_at,
                                     lease_until, errors)
             values ('never_run', 'null', 'running', $1, 4, 'ghost', now(), now(), now() - interval '1 second',
                     (select coalesce(jsonb_agg(jsonb_build_object('attempt', a, 'at', now(), 'message', 'lease expired',
                                                                   'kind', 'lease')), '[]')
                      from generate_series(1, $1 - 1) a))
             returning id",
        )
        .bind(attempt)
        .fetch_one(db.pool())
        .await
        .expect("job")
    };
    let (third, last) = (insert(3).await, insert(4).await);
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Scheduler]).expect("roles");
    config.node.heartbeat_interval = "100ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.lease = "1s".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let (third_state, wait_s): (String, f64) = eventually("the rescue", Duration::from_secs(20), async || {
        sqlx::query_as(
            "select state, extract(epoch from run_at - now())::float8 from forge_jobs where id = $1 and state <> 'running'",
        )
        .bind(third)
        .fetch_optional(db.pool())
        .await
        .expect("row")
    })
    .await;
    assert_eq!(third_state, "retryable");
    assert!(wait_s > 6.0, "a lost attempt 3 waits 2^3 s before it runs again, not {wait_s:.1} s");
    let last_state = eventually("the last attempt's rescue", Duration::from_secs(20), async || {
        let (now, _) = state(db.pool(), JobId(last)).await;
        (now != "running").then_some(now)
    })
    .await;
    node.stop().await.expect("stop");
    assert_eq!(last_state, "discarded", "out of attempts: discarded, with a lease error");
}

#[tokio::test]
async fn a_node_claims_only_the_kinds_it_can_run() {
    let db = TestDatabase::new().await.expect("db");
    // A kind of a newer deploy, dispatched first; then one this binary runs.
    let newer: i64 =
        sqlx::query_scalar("insert into forge_jobs (kind, args) values ('from_a_newer_deploy', 'null') returning id")
            .fetch_one(db.pool())
            .await
            .expect("job");
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let known = Lingering::dispatch(&node, ()).await.expect("dispatch");
    // `lingering`'s first attempt waits up to 5 s: stop it, then wait for its second.
    eventually("the known kind running", Duration::from_secs(20), async || {
        (state(db.pool(), known).await.0 == "running").then_some(())
    })
    .await;
    forge::jobs::cancel(db.pool(), known).await.expect("cancel");
    eventually("the known kind finishing", Duration::from_secs(20), async || {
        (state(db.pool(), known).await.0 == "cancelled").then_some(())
    })
    .await;
    node.stop().await.expect("stop");
    assert_eq!(
        state(db.pool(), JobId(newer)).await,
        ("available".to_owned(), 0),
        "a kind the node does not run is left for a node that does, no attempt spent"
    );
}

/// Whether a `stubborn` handler has returned, by job id.
static STUBBORN_DONE: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// Blocks its thread (never yields) for `seconds`, past its 200 ms timeout.
#[forge::job(timeout = "200ms", max_attempts = 3)]
async fn stubborn(ctx: &JobContext, seconds: u64) -> Result<(), JobError> {
    std::thread::sleep(Duration::from_secs(seconds));
    STUBBORN_DONE.lock().expect("log").push(ctx.id().0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_that_ignores_its_timeout_is_abandoned_and_rescued_while_it_still_blocks() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.node.heartbeat_interval = "100ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.lease = "1s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let job = Stubborn::dispatch(&node, 8).await.expect("dispatch");
    eventually("the attempt running", Duration::from_secs(20), async || {
        (state(db.pool(), job).await.0 == "running").then_some(())
    })
    .await;
    eventually("the abandoned attempt's rescue", Duration::from_secs(20), async || {
        (state(db.pool(), job).await.0 != "running").then_some(())
    })
    .await;
    assert!(
        !STUBBORN_DONE.lock().expect("log").contains(&job.0),
        "rescued only once the handler had returned: its lease was renewed past its timeout"
    );
    node.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_does_not_wait_forever_for_a_handler_that_never_yields() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker]).expect("roles");
    config.worker.shutdown_timeout = "200ms".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let job = Stubborn::dispatch(&node, 25).await.expect("dispatch");
    eventually("the attempt running", Duration::from_secs(20), async || {
        (state(db.pool(), job).await.0 == "running").then_some(())
    })
    .await;
    // Released after 200 ms, abandoned 10 s later: the node stops long before the handler ends.
    let stopped = tokio::time::timeout(Duration::from_secs(18), node.stop()).await;
    assert!(stopped.is_ok(), "the node waited for a handler that never yields");
}

/// The proxy a `finishes_into_an_outage` job takes the database away with.
static OUTAGE: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
/// How many times `finishes_into_an_outage` ran.
static OUTAGE_RUNS: Mutex<u32> = Mutex::new(0);

/// Succeeds, and the database goes away as it does: its outcome meets the outage.
#[forge::job(max_attempts = 5)]
async fn finishes_into_an_outage(ctx: &JobContext, _args: ()) -> Result<u32, JobError> {
    *OUTAGE_RUNS.lock().expect("runs") += 1;
    if let Some(refusing) = OUTAGE.get() {
        refusing.store(true, Ordering::SeqCst);
    }
    Ok(ctx.attempt())
}

/// Runs a `J` job, which takes the database away as it succeeds (through `outage`), on a node
/// tweaked by `tweak`; brings the database back after two leases and returns the job's final
/// state and attempt.
async fn outcome_meets_an_outage<J: Job<Args = ()>>(
    outage: &std::sync::OnceLock<Arc<AtomicBool>>,
    tweak: impl FnOnce(&mut forge::ForgeConfig),
) -> (String, i32) {
    let db = TestDatabase::new().await.expect("db");
    let proxy = Proxy::to(&db).await;
    let _ = outage.set(proxy.refusing.clone());
    let mut config = proxy.config(&db);
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.node.heartbeat_interval = "200ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.lease = "2s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.observability.enabled = false;
    tweak(&mut config);
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    eventually("leadership", Duration::from_secs(20), async || node.is_leader().then_some(())).await;
    let job = J::dispatch(&node, ()).await.expect("dispatch");
    eventually("the outage", Duration::from_secs(20), async || proxy.refusing.load(Ordering::SeqCst).then_some(()))
        .await;
    // The database stays away for more than two leases (the fault being tested), then returns.
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.refusing.store(false, Ordering::SeqCst);
    let finished = eventually("the job finishing", Duration::from_secs(30), async || {
        let (now, attempt) = state(db.pool(), job).await;
        (now != "running" && now != "retryable" && now != "available").then_some((now, attempt))
    })
    .await;
    node.stop().await.expect("stop");
    finished
}

#[tokio::test]
async fn an_outcome_that_meets_a_database_outage_is_written_when_it_ends_and_the_job_runs_once() {
    let (final_state, attempt) = outcome_meets_an_outage::<FinishesIntoAnOutage>(&OUTAGE, |_| {}).await;
    assert_eq!((final_state.as_str(), attempt), ("completed", 1), "the first attempt's success was written");
    assert_eq!(*OUTAGE_RUNS.lock().expect("runs"), 1, "the job ran once");
}

/// The proxy a `last_success_lost` job takes the database away with.
static LAST_OUTAGE: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
/// How many times `last_success_lost` ran.
static LAST_RUNS: Mutex<u32> = Mutex::new(0);

/// Succeeds on its only attempt as the database goes away; later attempts just succeed.
#[forge::job(max_attempts = 1)]
async fn last_success_lost(ctx: &JobContext, _args: ()) -> Result<u32, JobError> {
    *LAST_RUNS.lock().expect("runs") += 1;
    if ctx.attempt() == 1
        && let Some(refusing) = LAST_OUTAGE.get()
    {
        refusing.store(true, Ordering::SeqCst);
    }
    Ok(ctx.attempt())
}

#[tokio::test]
async fn a_last_attempt_whose_success_was_never_written_is_run_again_not_discarded() {
    let db = TestDatabase::new().await.expect("db");
    let proxy = Proxy::to(&db).await;
    let _ = LAST_OUTAGE.set(proxy.refusing.clone());
    let mut config = proxy.lone_worker(&db);
    config.worker.shutdown_timeout = "1s".parse().expect("duration");
    // Classic claims: the attempt is written `running` (a claim window's attempt, written only
    // in its slot until the window ends, is recovered by the lease sweep: `kill.rs`).
    config.worker.hold_claims = false;
    let doomed = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let job = LastSuccessLost::dispatch(&doomed, ()).await.expect("dispatch");
    eventually("the outage", Duration::from_secs(20), async || proxy.refusing.load(Ordering::SeqCst).then_some(()))
        .await;
    // The node stops while its success cannot be written: the outcome is left to rescue.
    let _ = doomed.stop().await;
    proxy.refusing.store(false, Ordering::SeqCst);
    assert_eq!(state(db.pool(), job).await, ("running".to_owned(), 1), "the success was never written");

    // Another node leads, rescues the lost last attempt, and runs it again.
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.node.heartbeat_interval = "200ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.lease = "2s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.observability.enabled = false;
    let rescuer = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let (final_state, attempt) = eventually("the job finishing", Duration::from_secs(30), async || {
        let (now, attempt) = state(db.pool(), job).await;
        (now != "running" && now != "retryable" && now != "available").then_some((now, attempt))
    })
    .await;
    rescuer.stop().await.expect("stop");
    assert_eq!((final_state.as_str(), attempt), ("completed", 2), "run again, not discarded");
    assert_eq!(*LAST_RUNS.lock().expect("runs"), 2);
    let errors: serde_json::Value = sqlx::query_scalar("select errors from forge_jobs where id = $1")
        .bind(job)
        .fetch_one(db.pool())
        .await
        .expect("row");
    assert_eq!(errors[0]["kind"], "lease", "{errors}");
}

/// The proxy a `finishes_into_an_outage_in_a_window` job takes the database away with.
static WINDOW_OUTAGE: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
/// How many times `finishes_into_an_outage_in_a_window` ran.
static WINDOW_OUTAGE_RUNS: Mutex<u32> = Mutex::new(0);

/// As `finishes_into_an_outage`, for a node claiming through claim windows.
#[forge::job(max_attempts = 5)]
async fn finishes_into_an_outage_in_a_window(ctx: &JobContext, _args: ()) -> Result<u32, JobError> {
    *WINDOW_OUTAGE_RUNS.lock().expect("runs") += 1;
    if let Some(refusing) = WINDOW_OUTAGE.get() {
        refusing.store(true, Ordering::SeqCst);
    }
    Ok(ctx.attempt())
}

#[tokio::test]
async fn an_outcome_held_by_a_claim_window_that_meets_an_outage_is_written_when_it_ends() {
    // The window's transaction dies with its connection: the job is back in the queue while
    // the node holds its outcome through the outage.
    let (final_state, attempt) = outcome_meets_an_outage::<FinishesIntoAnOutageInAWindow>(&WINDOW_OUTAGE, |config| {
        config.worker.hold_claims = true;
        // Long enough that the outcome always reaches the window before it ends.
        config.worker.claim_window = "500ms".parse().expect("duration");
    })
    .await;
    assert_eq!((final_state.as_str(), attempt), ("completed", 1), "the window's outcome was written");
    assert_eq!(*WINDOW_OUTAGE_RUNS.lock().expect("runs"), 1, "the job ran once");
}

/// A claim window whose jobs are still locked (its node paused inside the window) is left alone
/// by the lease sweep, which goes on with the rest of its work; once the lock is gone (the
/// paused session ended by the server), the sweep records the window's attempt as lost.
#[tokio::test]
async fn the_lease_sweep_passes_over_a_paused_window_and_records_its_attempt_once_it_is_gone() {
    let db = TestDatabase::new().await.expect("db");
    let insert = "insert into forge_jobs (kind, args, max_attempts) values ('not_run_here', 'null', 5) returning id";
    let paused: i64 = sqlx::query_scalar(insert).fetch_one(db.pool()).await.expect("job");
    let dead: i64 = sqlx::query_scalar(insert).fetch_one(db.pool()).await.expect("job");
    // The paused window's transaction holds its job's row; the dead window's is gone. Both
    // slots name attempt 1 and are an hour old; the paused one is looked at first.
    let mut window = db.pool().begin().await.expect("begin");
    sqlx::query("select 1 from forge_jobs where id = $1 for no key update")
        .bind(paused)
        .execute(&mut *window)
        .await
        .expect("lock");
    for (node, job, age) in [("paused-node", paused, "2 hours"), ("dead-node", dead, "1 hour")] {
        sqlx::query(
            "insert into forge_claim_slots (node_id, slot, job_ids, attempts, opened_at)
             values ($1, 1, array[$2::bigint], array[1], now() - $3::interval)",
        )
        .bind(node)
        .bind(job)
        .bind(age)
        .execute(db.pool())
        .await
        .expect("slot");
    }
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Scheduler]).expect("roles");
    config.node.heartbeat_interval = "100ms".parse().expect("duration");
    config.worker.lease = "1s".parse().expect("duration");
    config.observability.enabled = false;
    let leader = Forge::builder().config(config).build().expect("build").start().await.expect("start");

    // The sweep records the dead window's attempt (in the transaction that passed the paused
    // one: a sweep waiting on the paused row would never commit it).
    eventually("the dead window's attempt recorded", Duration::from_secs(20), async || {
        (state(db.pool(), JobId(dead)).await == ("retryable".to_owned(), 1)).then_some(())
    })
    .await;
    assert_eq!(state(db.pool(), JobId(paused)).await, ("available".to_owned(), 0), "the paused window's job");
    let slots: Vec<String> =
        sqlx::query_scalar("select node_id from forge_claim_slots").fetch_all(db.pool()).await.expect("slots");
    assert_eq!(slots, ["paused-node"]);

    // The paused session ends: its attempt is recorded lost too, once.
    window.rollback().await.expect("rollback");
    eventually("the paused window's attempt recorded", Duration::from_secs(20), async || {
        (state(db.pool(), JobId(paused)).await == ("retryable".to_owned(), 1)).then_some(())
    })
    .await;
    let errors: serde_json::Value = sqlx::query_scalar("select errors from forge_jobs where id = $1")
        .bind(paused)
        .fetch_one(db.pool())
        .await
        .expect("errors");
    assert_eq!(errors.as_array().map(Vec::len), Some(1), "{errors}");
    assert_eq!(errors[0]["kind"], "lease");
    assert_eq!(errors[0]["node"], "paused-node");
    let left: i64 = sqlx::query_scalar("select count(*) from forge_claim_slots").fetch_one(db.pool()).await.expect("n");
    assert_eq!(left, 0);
    leader.stop().await.expect("stop");
}

/// The proxy a `held_into_an_outage` job takes the database away with.
static HELD_OUTAGE: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
/// How many times `held_into_an_outage` ran.
static HELD_RUNS: Mutex<u32> = Mutex::new(0);

/// Its first run takes the database away and works on until it is stopped; later runs succeed.
#[forge::job(max_attempts = 5)]
async fn held_into_an_outage(ctx: &JobContext, _args: ()) -> Result<u32, JobError> {
    let run = {
        let mut runs = HELD_RUNS.lock().expect("runs");
        *runs += 1;
        *runs
    };
    if run == 1 {
        if let Some(refusing) = HELD_OUTAGE.get() {
            refusing.store(true, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    Ok(ctx.attempt())
}

/// A claim window whose transaction dies in an outage, and that has no outcome to write (its
/// attempt still running, then stopped), leaves its slot naming the job. The node must empty
/// the slot itself when the database answers: the leader's sweep may never run (here there is
/// no leader; in a database restarting more often than the sweep's grace, it keeps waiting), and
/// a slot naming a job keeps every claim away from it.
#[tokio::test]
async fn a_claim_window_lost_in_an_outage_gives_its_job_back_without_the_leaders_sweep() {
    let db = TestDatabase::new().await.expect("db");
    let proxy = Proxy::to(&db).await;
    let _ = HELD_OUTAGE.set(proxy.refusing.clone());
    // A worker alone: no leader, so no sweep.
    let mut config = proxy.lone_worker(&db);
    config.worker.hold_claims = true;
    config.worker.claim_window = "100ms".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let job = HeldIntoAnOutage::dispatch(&node, ()).await.expect("dispatch");
    eventually("the outage", Duration::from_secs(20), async || proxy.refusing.load(Ordering::SeqCst).then_some(()))
        .await;
    // The window ends (its timer) while the database is away: it cannot be written, the attempt
    // is stopped. The database comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.refusing.store(false, Ordering::SeqCst);
    let finished = eventually("the job running again and finishing", Duration::from_secs(20), async || {
        let (now, attempt) = state(db.pool(), job).await;
        (now == "completed").then_some(attempt)
    })
    .await;
    node.stop().await.expect("stop");
    assert_eq!(*HELD_RUNS.lock().expect("runs"), 2, "the stopped attempt, then the one that finished");
    // The stopped attempt was never written (the window rolled back): the job ran again as
    // the first attempt.
    assert_eq!(finished, 1);
    let left: i64 = sqlx::query_scalar("select count(*) from forge_claim_slots where cardinality(job_ids) > 0")
        .fetch_one(db.pool())
        .await
        .expect("slots");
    assert_eq!(left, 0);
}
