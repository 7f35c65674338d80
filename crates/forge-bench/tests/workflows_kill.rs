//! Workflow runs whose worker process is killed with SIGKILL: inside a step, between its effect
//! and its checkpoint (the step runs again: at least once), and inside a tx_step (its write rolls
//! back and is applied once: exactly once); and `forge-bench workflows` with kills throughout,
//! small enough for `cargo test` (README's table has the full-size run).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{SCHEMA, scalar, wait_for};
use forge::testing::TestDatabase;

const WORKFLOW_SCHEMA: &str = r#"
create table if not exists bench_wf_ledger (run_id bigint not null, step int not null);
create table if not exists bench_wf_effects (
    n bigserial primary key, run_id bigint not null, what text not null, attempt int not null, pid int not null
);
"#;

fn worker(url: &str) -> std::process::Child {
    common::worker(url, &["--lease", "1s", "--concurrency", "4", "--heartbeat", "200ms"])
}

/// Starts one run of `workflow` (as a plain job row: the run's own row is made on its first
/// execution), lets a worker reach the stall inside its first step, kills the worker, and lets
/// a second worker finish the run. Returns the run's id.
async fn killed_mid_step(db: &TestDatabase, workflow: &str, stalled_sql: &str) -> i64 {
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.expect("schema");
    sqlx::raw_sql(WORKFLOW_SCHEMA).execute(db.pool()).await.expect("workflow schema");
    let run: i64 =
        sqlx::query_scalar("insert into forge_jobs (kind, args, max_attempts) values ($1, 'null', 10) returning id")
            .bind(workflow)
            .fetch_one(db.pool())
            .await
            .expect("run");
    let mut doomed = worker(db.url());
    wait_for(db.pool(), stalled_sql, 1, Duration::from_secs(30)).await;
    doomed.kill().expect("SIGKILL");
    doomed.wait().expect("reap");
    let mut survivor = worker(db.url());
    let done = format!("select count(*) from forge_jobs where id = {run} and state = 'completed'");
    wait_for(db.pool(), &done, 1, Duration::from_secs(60)).await;
    survivor.kill().expect("stop survivor");
    survivor.wait().expect("reap");
    run
}

#[tokio::test]
async fn a_step_killed_between_its_effect_and_its_checkpoint_runs_again() {
    let db = TestDatabase::new().await.expect("db");
    let run =
        killed_mid_step(&db, "kill_probe_step", "select count(*) from bench_wf_effects where what = 'step'").await;
    let effects: Vec<(String, i32)> =
        sqlx::query_as("select what, attempt from bench_wf_effects where run_id = $1 order by n")
            .bind(run)
            .fetch_all(db.pool())
            .await
            .expect("effects");
    assert_eq!(
        effects,
        [("step".to_owned(), 1), ("step".to_owned(), 2), ("after".to_owned(), 2)],
        "the killed step ran again (at least once), the next one once"
    );
    let steps = scalar(db.pool(), &format!("select count(*) from forge_workflow_steps where run_id = {run}")).await;
    assert_eq!(steps, 2, "each step recorded once");
}

#[tokio::test]
async fn a_tx_step_killed_inside_its_transaction_is_applied_exactly_once() {
    let db = TestDatabase::new().await.expect("db");
    let run =
        killed_mid_step(&db, "kill_probe_tx", "select count(*) from bench_wf_effects where what = 'tx_step'").await;
    let executions =
        scalar(db.pool(), &format!("select count(*) from bench_wf_effects where run_id = {run} and what = 'tx_step'"))
            .await;
    assert_eq!(executions, 2, "the tx_step's closure ran in both executions");
    let ledger = scalar(db.pool(), &format!("select count(*) from bench_wf_ledger where run_id = {run}")).await;
    assert_eq!(ledger, 1, "its write committed once");
}

#[test]
fn workflow_runs_survive_workers_killed_throughout() {
    let out = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args([
            "workflows",
            "--runs",
            "400",
            "--steps",
            "3",
            "--nodes",
            "3",
            "--kill-every-ms",
            "500",
            "--concurrency",
            "4",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run forge-bench workflows");
    assert!(out.status.success(), "forge-bench workflows failed");
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).expect("utf-8").trim()).expect("one JSON line");
    assert_eq!(report["completed"], 400, "{report}");
    for figure in ["completed_twice", "tx_steps_applied_twice", "completed_with_missing_steps", "stuck"] {
        assert_eq!(report[figure], 0, "{figure}: {report}");
    }
    assert!(report["kills"].as_u64().expect("kills") >= 1, "{report}");
}
