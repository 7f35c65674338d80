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

/// A job that kills its node (SIGABRT) the moment it starts, inside a claim window: the window's
/// transaction dies with the node, but its slot still names the attempt, so each death counts
/// and the job ends `discarded` after its 3 attempts instead of killing nodes forever.
#[tokio::test]
async fn a_job_that_kills_its_node_inside_a_claim_window_runs_out_of_attempts() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.expect("schema");
    let job: i64 = sqlx::query_scalar(
        "insert into forge_jobs (kind, args, max_attempts) values ('crash_node', 'null', 3) returning id",
    )
    .fetch_one(db.pool())
    .await
    .expect("job");
    let state = async || -> String {
        sqlx::query_scalar("select state from forge_jobs where id = $1")
            .bind(job)
            .fetch_one(db.pool())
            .await
            .expect("state")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut deaths = 0;
    while state().await != "discarded" {
        assert!(deaths <= 5, "the job killed {deaths} nodes and is still {}", state().await);
        assert!(std::time::Instant::now() < deadline, "not discarded within 90 s ({deaths} deaths)");
        let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_forge-bench"))
            .args(["worker", "--database-url", db.url()])
            .args(["--lease", "1s", "--heartbeat", "100ms", "--dead-after", "1s", "--concurrency", "1"])
            .env("FORGE_WORKER_HOLD_CLAIMS", "true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn worker");
        // It dies when it runs the job; between deaths it leads, finds the dead window's
        // attempt and records it lost (the job then waits out its back-off).
        loop {
            if node.try_wait().expect("wait").is_some() {
                deaths += 1;
                break;
            }
            if state().await == "discarded" {
                node.kill().expect("stop");
                node.wait().expect("reap");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (attempt, errors): (i32, serde_json::Value) =
        sqlx::query_as("select attempt, errors from forge_jobs where id = $1")
            .bind(job)
            .fetch_one(db.pool())
            .await
            .expect("job");
    assert_eq!(deaths, 3, "one node died per attempt");
    assert_eq!(attempt, 3);
    assert_eq!(scalar(db.pool(), "select count(*) from bench_executions").await, 3, "three attempts ran");
    let kinds: Vec<&str> = errors.as_array().expect("errors").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["lease", "lease", "lease"], "{errors}");
    assert_eq!(scalar(db.pool(), "select count(*) from forge_claim_slots where cardinality(job_ids) > 0").await, 0);
}

/// Every span of `trace`, depth first.
fn all_spans(nodes: &[forge::observability::SpanNode]) -> Vec<&forge::observability::SpanNode> {
    nodes.iter().flat_map(|n| std::iter::once(n).chain(all_spans(&n.children))).collect()
}

#[tokio::test]
async fn the_attempt_lost_with_a_dead_node_shows_in_the_jobs_trace() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.expect("schema");
    let job: i64 = sqlx::query_scalar(
        "insert into forge_jobs (kind, args, max_attempts) values ('ledger_write', '{\"work_ms\": 600000}', 5) returning id",
    )
    .fetch_one(db.pool())
    .await
    .expect("job");
    // A long lease: only the dead-node sweep (not lease expiry) can rescue the attempt in time.
    let mut doomed = common::worker(db.url(), &["--lease", "10m", "--heartbeat", "100ms", "--concurrency", "1"]);
    wait_for(db.pool(), "select count(*) from bench_executions", 1, Duration::from_secs(30)).await;
    let doomed_node: String =
        sqlx::query_scalar("select node from bench_executions limit 1").fetch_one(db.pool()).await.expect("node");
    doomed.kill().expect("SIGKILL");
    doomed.wait().expect("reap");

    // The survivor leads once the doomed node's lock is gone and, after its grace (its lease and
    // a heartbeat), declares it dead and rescues its attempt (whose own lease, set by the doomed
    // node, runs for minutes yet); its own attempt then runs (600 s of work: it stays running).
    let mut survivor = common::worker(
        db.url(),
        &["--lease", "2s", "--heartbeat", "100ms", "--dead-after", "1s", "--concurrency", "1"],
    );
    wait_for(db.pool(), "select count(*) from bench_executions", 2, Duration::from_secs(30)).await;
    let trace = forge::observability::job_trace(db.pool(), forge::jobs::JobId(job))
        .await
        .expect("trace")
        .expect("the job's trace");
    survivor.kill().expect("stop survivor");
    survivor.wait().expect("reap");

    let attempts: Vec<_> = all_spans(&trace.roots).into_iter().filter(|s| s.name == "forge.job").collect();
    assert_eq!(attempts.len(), 2, "both attempts are spans of the job's trace: {attempts:#?}");
    let lost = attempts.iter().find(|s| s.attributes["attempt"] == 1).expect("attempt 1");
    assert_eq!(lost.node_id, doomed_node, "the lost attempt ran on the killed node");
    assert_eq!(lost.status, "error");
    assert_eq!(lost.attributes["error_kind"], "lease");
    let message = lost.attributes["error"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("node {doomed_node} died")), "{message}");
    let current = attempts.iter().find(|s| s.attributes["attempt"] == 2).expect("attempt 2");
    assert_eq!(current.attributes["outcome"], "running");
}
