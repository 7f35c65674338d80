//! Helpers shared by the process tests: the bench's tables, worker processes, waiting on SQL.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bench's own tables (as `forge-bench` creates them).
pub const SCHEMA: &str = r#"
create table if not exists bench_executions (
    job_id bigint not null, attempt int not null, node text not null,
    pid int not null default 0, started_at timestamptz not null default now(), ended_at timestamptz
);
create table if not exists bench_kills (pid int not null, killed_at timestamptz not null);
create table if not exists bench_ledger (job_id bigint not null);
create table if not exists bench_cron_ticks (scheduled_at timestamptz not null, job_id bigint not null, catch_up boolean not null);
"#;

/// Starts `forge-bench worker --database-url URL` with extra arguments.
pub fn worker(url: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["worker", "--database-url", url])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

/// [`worker`], its log lines written to `log` instead of the test's stderr.
pub fn worker_logged(url: &str, args: &[&str], log: &std::path::Path) -> Child {
    let file = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["worker", "--database-url", url])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn worker")
}

/// A one-value query.
pub async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// Waits until `sql` returns at least `want`, failing after `limit`.
pub async fn wait_for(pool: &sqlx::PgPool, sql: &str, want: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = scalar(pool, sql).await;
        if got >= want {
            return;
        }
        assert!(Instant::now() < deadline, "`{sql}` reached {got}, not {want}, within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
