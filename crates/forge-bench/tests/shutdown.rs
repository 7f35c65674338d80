//! SIGTERM on a worker process running long jobs: it drains them (or releases what outlives the
//! shutdown timeout), records itself stopped, and exits 0. No job is lost, and no attempt is
//! counted as a failure.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{SCHEMA, scalar};
use forge::testing::TestDatabase;

fn worker(url: &str, shutdown_timeout: &str) -> Child {
    common::worker(url, &["--lease", "5s", "--shutdown-timeout", shutdown_timeout])
}

async fn wait_for(pool: &sqlx::PgPool, sql: &str, want: i64) {
    common::wait_for(pool, sql, want, Duration::from_secs(60)).await;
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill with a child's pid and a valid signal has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    child.wait().expect("wait")
}

async fn setup(work_ms: u64) -> TestDatabase {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.expect("schema");
    sqlx::query(
        "insert into forge_jobs (kind, args) select 'ledger_write', jsonb_build_object('work_ms', $1::bigint)
         from generate_series(1, 4)",
    )
    .bind(i64::try_from(work_ms).expect("fits"))
    .execute(db.pool())
    .await
    .expect("jobs");
    db
}

#[tokio::test]
async fn sigterm_drains_running_jobs_and_exits_0() {
    let db = setup(1500).await;
    let mut node = worker(db.url(), "30s");
    wait_for(db.pool(), "select count(*) from bench_executions", 4).await;
    let status = sigterm(&mut node);
    assert!(status.success(), "exit status {status}");
    assert_eq!(scalar(db.pool(), "select count(*) from forge_jobs where state = 'completed' and attempt = 1").await, 4);
    assert_eq!(scalar(db.pool(), "select count(*) from forge_jobs where errors <> '[]'").await, 0);
    assert_eq!(scalar(db.pool(), "select count(*) from bench_ledger").await, 4);
    assert_eq!(scalar(db.pool(), "select count(*) from forge_nodes where status = 'stopped'").await, 1);
}

#[tokio::test]
async fn jobs_outliving_the_shutdown_timeout_are_released_and_finish_elsewhere() {
    let db = setup(20_000).await;
    let mut node = worker(db.url(), "300ms");
    wait_for(db.pool(), "select count(*) from bench_executions", 4).await;
    let status = sigterm(&mut node);
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        scalar(
            db.pool(),
            "select count(*) from forge_jobs where state = 'available' and attempt = 0 and errors = '[]'"
        )
        .await,
        4,
        "released, the attempt not counted"
    );
    assert_eq!(scalar(db.pool(), "select count(*) from bench_ledger").await, 0, "their transactions rolled back");

    // Another node picks them up; shorten the work so the test does not wait 20 s.
    sqlx::query("update forge_jobs set args = '{\"work_ms\": 1}'").execute(db.pool()).await.expect("shorten");
    let mut other = worker(db.url(), "5s");
    wait_for(db.pool(), "select count(*) from forge_jobs where state = 'completed'", 4).await;
    assert_eq!(scalar(db.pool(), "select count(*) from bench_ledger").await, 4, "each job's writes once");
    assert!(sigterm(&mut other).success());
}

fn signal(child: &Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill with a child's pid and a valid signal has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

async fn wait_for_line(log: &std::path::Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "the node never logged {want:?}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ctrl-C says what the node waits for; a second Ctrl-C releases the running jobs at once (to
/// `available`, the attempt not counted) and the node exits cleanly, instead of leaving them to
/// the lease's expiry.
#[tokio::test]
async fn a_second_ctrl_c_releases_the_running_jobs_and_exits() {
    let db = setup(60_000).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("node.log");
    let mut node = common::worker_logged(db.url(), &["--lease", "30s", "--shutdown-timeout", "60s"], &log);
    wait_for(db.pool(), "select count(*) from bench_executions", 4).await;
    let started = Instant::now();
    signal(&node);
    let text = wait_for_line(&log, "waiting up to 60 s for 4 jobs; press Ctrl-C again to release them now").await;
    assert!(!text.contains('\u{1b}'), "escape codes in a log written to a file:\n{text}");
    signal(&node);
    let status = node.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(30), "it waited for the jobs");
    assert_eq!(
        scalar(
            db.pool(),
            "select count(*) from forge_jobs where state = 'available' and attempt = 0 and errors = '[]'"
        )
        .await,
        4,
        "released at once, the attempt not counted"
    );
    assert_eq!(scalar(db.pool(), "select count(*) from forge_nodes where status = 'stopped'").await, 1);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(" WARN sqlx") && !text.contains("ERROR"), "noise at shutdown:\n{text}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(" WARN sqlx") && !text.contains("ERROR"), "noise at shutdown:\n{text}");
}
