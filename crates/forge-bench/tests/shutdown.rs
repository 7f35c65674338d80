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

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let db = setup(60_000).await;
    let mut node = worker(db.url(), "60s");
    wait_for(db.pool(), "select count(*) from bench_executions", 4).await;
    let pid = i32::try_from(node.id()).expect("pid");
    let started = Instant::now();
    // SAFETY: kill with a child's pid and a valid signal has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // The node is draining (its jobs would take a minute); wait until it says so.
    wait_for(db.pool(), "select count(*) from forge_nodes where status = 'draining'", 1).await;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = node.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(started.elapsed() < Duration::from_secs(30), "did not wait for the jobs");
    // Nothing is lost: the abandoned jobs are still running rows, rescued when their lease expires.
    assert_eq!(scalar(db.pool(), "select count(*) from forge_jobs where state = 'running'").await, 4);
}
