//! A worker process killed with SIGKILL in the middle of jobs: another node rescues them, each
//! job is finalised once, and a transactional job's writes appear exactly once.

mod common;

use std::time::Duration;

use common::{SCHEMA, scalar, wait_for};
use forge::testing::TestDatabase;

fn worker(url: &str) -> std::process::Child {
    common::worker(url, &["--lease", "1s", "--concurrency", "4"])
}

#[tokio::test]
async fn jobs_of_a_killed_worker_are_rescued_and_finalised_once() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.expect("schema");
    // 8 slow transactional jobs: each works 1.5 s, then writes its ledger row in its transaction.
    sqlx::query(
        "insert into forge_jobs (kind, args, max_attempts)
         select 'ledger_write', '{\"work_ms\": 1500}', 10 from generate_series(1, 8)",
    )
    .execute(db.pool())
    .await
    .expect("jobs");

    let mut doomed = worker(db.url());
    // Wait until it is in the middle of its jobs: 4 running (its concurrency), each started.
    wait_for(db.pool(), "select count(*) from bench_executions", 4, Duration::from_secs(30)).await;
    let doomed_node: String =
        sqlx::query_scalar("select node from bench_executions limit 1").fetch_one(db.pool()).await.expect("node");
    doomed.kill().expect("SIGKILL");
    doomed.wait().expect("reap");
    assert_eq!(scalar(db.pool(), "select count(*) from bench_ledger").await, 0, "killed before any write committed");

    let mut survivor = worker(db.url());
    wait_for(db.pool(), "select count(*) from forge_jobs where state = 'completed'", 8, Duration::from_secs(60)).await;
    survivor.kill().expect("stop survivor");
    survivor.wait().expect("reap");

    assert_eq!(scalar(db.pool(), "select count(*) from bench_ledger").await, 8, "one ledger row per job");
    assert_eq!(
        scalar(
            db.pool(),
            "select count(*) from (select job_id from bench_ledger group by job_id having count(*) > 1) t"
        )
        .await,
        0,
        "no job's writes committed twice"
    );
    let rescued: i64 = sqlx::query_scalar(
        "select count(*) from forge_jobs where errors::text like '%lease expired%' and errors::text like '%' || $1 || '%'",
    )
    .bind(&doomed_node)
    .fetch_one(db.pool())
    .await
    .expect("rescued");
    assert!(rescued >= 4, "the killed node's running jobs were rescued ({rescued})");
    let re_run: i64 = sqlx::query_scalar(
        "select count(distinct job_id) from bench_executions where node <> $1 and job_id in
           (select job_id from bench_executions where node = $1)",
    )
    .bind(&doomed_node)
    .fetch_one(db.pool())
    .await
    .expect("re-run");
    assert!(re_run >= 4, "another node completed the killed node's jobs ({re_run})");
}
