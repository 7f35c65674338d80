//! The job engine end to end, against real PostgreSQL: dispatch, uniqueness, execution,
//! retries and backoff, timeouts, panics, cancellation, transactional jobs, rescue, shutdown.

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::jobs::{CancelOutcome, JobsError};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct GreetArgs {
    name: String,
}

#[forge::job(queue = "default")]
async fn greet(_ctx: &JobContext, args: GreetArgs) -> Result<String, JobError> {
    Ok(format!("hello {}", args.name))
}

#[forge::job(unique, max_attempts = 3)]
async fn unique_by_args(_ctx: &JobContext, _args: serde_json::Value) -> Result<(), JobError> {
    Ok(())
}

#[forge::job(unique(key))]
async fn unique_by_key(_ctx: &JobContext, _args: serde_json::Value) -> Result<(), JobError> {
    Ok(())
}

/// Fails until its third attempt.
#[forge::job(max_attempts = 5, backoff(fixed, base = "50ms", jitter = 0.0))]
async fn flaky(ctx: &JobContext, _args: ()) -> Result<u32, JobError> {
    if ctx.attempt() < 3 {
        return Err(JobError::retry(format!("attempt {} failed", ctx.attempt())));
    }
    assert!(ctx.is_retry());
    Ok(ctx.attempt())
}

#[forge::job(max_attempts = 3, backoff(linear, base = "1s", max = "10s", jitter = 0.0))]
async fn always_fails(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Err(JobError::retry("nope"))
}

#[forge::job(max_attempts = 5)]
async fn hopeless(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Err(JobError::permanent("this input can never work"))
}

#[forge::job(timeout = "200ms", max_attempts = 1)]
async fn sleepy(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[forge::job(max_attempts = 1)]
async fn panicky(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    panic!("boom");
}

#[forge::job]
async fn waits_for_cancel(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    ctx.progress(10, "waiting").await?;
    ctx.cancellation().cancelled().await;
    Ok(())
}

#[forge::job]
async fn snoozes(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    if ctx.attempt() == 1 && !ctx.is_retry() {
        let snoozed: bool = sqlx::query_scalar("select jsonb_array_length(errors) = 0 from forge_jobs where id = $1")
            .bind(ctx.id().0)
            .fetch_one(ctx.db())
            .await?;
        let already: bool =
            sqlx::query_scalar("select to_regclass('snoozed_once') is not null").fetch_one(ctx.db()).await?;
        if snoozed && !already {
            sqlx::query("create table snoozed_once ()").execute(ctx.db()).await?;
            return Err(JobError::snooze(Duration::from_millis(100)));
        }
    }
    Ok(())
}

#[forge::job(worker_capability = "gpu")]
async fn needs_gpu(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Transfer {
    amount: i64,
    fail: bool,
}

#[forge::job(transactional, max_attempts = 1)]
async fn record_transfer(ctx: &JobContext, args: Transfer) -> Result<(), JobError> {
    let mut tx = ctx.tx().await?;
    sqlx::query("insert into transfers (amount) values ($1)").bind(args.amount).execute(&mut tx).await?;
    if args.fail {
        return Err(JobError::permanent("failed after writing"));
    }
    Ok(())
}

#[forge::job(timeout = "60s")]
async fn long_running(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

/// A node with the worker and scheduler roles and test-sized intervals.
async fn node(db: &TestDatabase, tweak: impl FnOnce(&mut ForgeConfig)) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.worker.lease = "2s".parse().expect("duration");
    config.worker.shutdown_timeout = "5s".parse().expect("duration");
    tweak(&mut config);
    Forge::builder().config(config).build().expect("build").start().await.expect("start")
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    state: String,
    attempt: i32,
    output: Option<serde_json::Value>,
    errors: serde_json::Value,
    progress: Option<serde_json::Value>,
    run_at: chrono::DateTime<chrono::Utc>,
}

async fn row(pool: &sqlx::PgPool, id: JobId) -> Row {
    sqlx::query_as("select state, attempt, output, errors, progress, run_at from forge_jobs where id = $1")
        .bind(id.0)
        .fetch_one(pool)
        .await
        .expect("job row")
}

/// Waits until job `id` is in `state`, failing after 20 s.
async fn wait_state(pool: &sqlx::PgPool, id: JobId, state: &str) -> Row {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = row(pool, id).await;
        if r.state == state {
            return r;
        }
        assert!(Instant::now() < deadline, "job {id} never reached {state}; it is {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect("count")
}

#[tokio::test]
async fn a_dispatched_job_runs_and_stores_its_output() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let id = Greet::dispatch(&node, GreetArgs { name: "ada".into() }).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "completed").await;
    assert_eq!(r.output, Some(json!("hello ada")));
    assert_eq!(r.attempt, 1);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn dispatch_in_a_rolled_back_transaction_leaves_no_job() {
    let db = TestDatabase::new().await.expect("db");
    let mut tx = db.pool().begin().await.expect("begin");
    Greet::dispatch_in(&mut tx, GreetArgs { name: "ghost".into() }, DispatchOptions::new()).await.expect("dispatch");
    tx.rollback().await.expect("rollback");
    assert_eq!(count(db.pool(), "select count(*) from forge_jobs").await, 0);

    let mut tx = db.pool().begin().await.expect("begin");
    let id =
        Greet::dispatch_in(&mut tx, GreetArgs { name: "real".into() }, DispatchOptions::new()).await.expect("dispatch");
    tx.commit().await.expect("commit");
    let node = node(&db, |_| {}).await;
    wait_state(db.pool(), id, "completed").await;
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn dispatch_many_inserts_a_batch_and_returns_ids_in_order() {
    let db = TestDatabase::new().await.expect("db");
    let names: Vec<GreetArgs> = (0..50).map(|i| GreetArgs { name: format!("n{i}") }).collect();
    let ids = Greet::dispatch_many(db.pool(), names, DispatchOptions::new().tags(["batch"])).await.expect("batch");
    assert_eq!(ids.len(), 50);
    for (i, id) in ids.iter().enumerate() {
        let name: String =
            sqlx::query_scalar("select args->>'name' from forge_jobs where id = $1 and 'batch' = any(tags)")
                .bind(id.0)
                .fetch_one(db.pool())
                .await
                .expect("row");
        assert_eq!(name, format!("n{i}"));
    }
}

#[tokio::test]
async fn a_unique_conflict_returns_the_first_job() {
    let db = TestDatabase::new().await.expect("db");
    let first = UniqueByArgs::dispatch(db.pool(), json!({"a": 1, "b": 2})).await.expect("first");
    let same = UniqueByArgs::dispatch(db.pool(), json!({"b": 2, "a": 1})).await.expect("second");
    let other = UniqueByArgs::dispatch(db.pool(), json!({"a": 2})).await.expect("other");
    assert_eq!(first, same, "same args (any key order): the first job's id");
    assert_ne!(first, other);

    let batch =
        UniqueByArgs::dispatch_many(db.pool(), vec![json!({"a": 1, "b": 2}), json!({"c": 3})], DispatchOptions::new())
            .await
            .expect("batch");
    assert_eq!(batch[0], first, "a batch also returns the holder's id");

    let k1 =
        UniqueByKey::dispatch_with(db.pool(), json!(1), DispatchOptions::new().unique_key("user-7")).await.expect("k1");
    let k2 =
        UniqueByKey::dispatch_with(db.pool(), json!(2), DispatchOptions::new().unique_key("user-7")).await.expect("k2");
    assert_eq!(k1, k2);
    let err = UniqueByKey::dispatch(db.pool(), json!(3)).await.expect_err("a key is required");
    assert!(matches!(err, JobsError::MissingUniqueKey { .. }), "{err}");
    assert_eq!(count(db.pool(), "select count(*) from forge_jobs").await, 4);

    // Uniqueness holds while the job is live: once it completed, the same args make a new job.
    let node = node(&db, |_| {}).await;
    wait_state(db.pool(), first, "completed").await;
    let again = UniqueByArgs::dispatch(db.pool(), json!({"a": 1, "b": 2})).await.expect("again");
    assert_ne!(again, first);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn failed_attempts_retry_with_backoff_and_keep_their_errors() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let id = Flaky::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "completed").await;
    assert_eq!(r.attempt, 3);
    assert_eq!(r.output, Some(json!(3)));
    let errors = r.errors.as_array().expect("errors array");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["attempt"], 1);
    assert_eq!(errors[0]["message"], "attempt 1 failed");
    assert_eq!(errors[1]["attempt"], 2);
    assert!(errors[0]["at"].is_string());
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn the_backoff_schedule_sets_the_next_run() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let id = AlwaysFails::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "retryable").await;
    let failed_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(r.errors[0]["at"].clone()).expect("error time");
    let delay = (r.run_at - failed_at).num_milliseconds();
    assert!((950..=1100).contains(&delay), "linear backoff, attempt 1: 1 s; got {delay} ms");
    // Attempt 2 waits 2 s, then attempt 3 is the last: discarded with three errors.
    let r = wait_state(db.pool(), id, "discarded").await;
    assert_eq!(r.attempt, 3);
    assert_eq!(r.errors.as_array().map(Vec::len), Some(3));
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_permanent_error_discards_without_retry() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let id = Hopeless::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "discarded").await;
    assert_eq!(r.attempt, 1);
    assert_eq!(r.errors[0]["message"], "this input can never work");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_timeout_aborts_the_attempt() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let started = Instant::now();
    let id = Sleepy::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "discarded").await;
    assert!(started.elapsed() < Duration::from_secs(10), "aborted long before the handler's 30 s sleep");
    assert_eq!(r.errors[0]["kind"], "timeout");
    assert!(r.errors[0]["message"].as_str().unwrap_or_default().contains("timed out"), "{:?}", r.errors);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_panic_is_a_failed_attempt() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let id = Panicky::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "discarded").await;
    assert_eq!(r.errors[0]["kind"], "panic");
    assert_eq!(r.errors[0]["message"], "panicked: boom");
    // The worker survived: it still runs jobs.
    let next = Greet::dispatch(&node, GreetArgs { name: "after".into() }).await.expect("dispatch");
    wait_state(db.pool(), next, "completed").await;
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn cancelling_a_running_job_fires_its_token() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let id = WaitsForCancel::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "running").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut r = r;
    while r.progress.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = row(db.pool(), id).await;
    }
    assert_eq!(r.progress, Some(json!({"percent": 10, "message": "waiting"})));
    assert_eq!(node.cancel_job(id).await.expect("cancel"), CancelOutcome::Requested);
    wait_state(db.pool(), id, "cancelled").await;
    assert_eq!(node.cancel_job(id).await.expect("cancel again"), CancelOutcome::AlreadyFinished);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn cancelling_a_scheduled_job_is_immediate() {
    let db = TestDatabase::new().await.expect("db");
    let id = Greet::dispatch_with(
        db.pool(),
        GreetArgs { name: "later".into() },
        DispatchOptions::new().delay(Duration::from_secs(3600)),
    )
    .await
    .expect("dispatch");
    assert_eq!(row(db.pool(), id).await.state, "scheduled");
    let node = node(&db, |_| {}).await;
    assert_eq!(node.cancel_job(id).await.expect("cancel"), CancelOutcome::Cancelled);
    assert_eq!(row(db.pool(), id).await.state, "cancelled");
    // An operator's retry brings it back, and it runs.
    assert!(node.retry_job(id).await.expect("retry"));
    wait_state(db.pool(), id, "completed").await;
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_snoozed_job_runs_again_without_counting_the_attempt() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let id = Snoozes::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "completed").await;
    assert_eq!(r.attempt, 1, "the snoozed attempt did not count");
    assert_eq!(r.errors, json!([]));
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn jobs_needing_a_capability_run_only_where_it_is_offered() {
    let db = TestDatabase::new().await.expect("db");
    let plain = node(&db, |_| {}).await;
    let id = NeedsGpu::dispatch(&plain, ()).await.expect("dispatch");
    let control = Greet::dispatch(&plain, GreetArgs { name: "x".into() }).await.expect("dispatch");
    wait_state(db.pool(), control, "completed").await;
    assert_eq!(row(db.pool(), id).await.state, "available", "a node without the capability left it");
    plain.stop().await.expect("stop");

    let gpu = node(&db, |c| c.node.capabilities = vec!["gpu".into()]).await;
    wait_state(db.pool(), id, "completed").await;
    gpu.stop().await.expect("stop");
}

#[tokio::test]
async fn a_transactional_job_commits_its_writes_with_its_completion() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::query("create table transfers (amount bigint not null)").execute(db.pool()).await.expect("table");
    let node = node(&db, |_| {}).await;
    let ok = RecordTransfer::dispatch(&node, Transfer { amount: 10, fail: false }).await.expect("dispatch");
    let bad = RecordTransfer::dispatch(&node, Transfer { amount: 99, fail: true }).await.expect("dispatch");
    wait_state(db.pool(), ok, "completed").await;
    wait_state(db.pool(), bad, "discarded").await;
    assert_eq!(count(db.pool(), "select count(*) from transfers where amount = 10").await, 1);
    assert_eq!(count(db.pool(), "select count(*) from transfers where amount = 99").await, 0, "rolled back");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_job_whose_node_died_is_rescued_and_its_late_result_ignored() {
    let db = TestDatabase::new().await.expect("db");
    // A job claimed by a node that then died: running, lease long expired.
    let id: i64 = sqlx::query_scalar(
        "insert into forge_jobs (kind, args, state, attempt, attempted_by, heartbeat_at, attempted_at)
         values ('greet', '{\"name\": \"lazarus\"}', 'running', 1, 'dead-node', now() - interval '1 hour', now() - interval '1 hour')
         returning id",
    )
    .fetch_one(db.pool())
    .await
    .expect("insert");
    let id = JobId(id);
    let node = node(&db, |_| {}).await;
    let r = wait_state(db.pool(), id, "completed").await;
    assert_eq!(r.attempt, 2, "the lost attempt counted, the rescue ran attempt 2");
    assert!(r.errors[0]["message"].as_str().unwrap_or_default().contains("dead-node"), "{:?}", r.errors);

    // The dead node's attempt 1 reports late: the fenced write changes nothing.
    let changed =
        sqlx::query("update forge_jobs set state = 'discarded' where id = $1 and attempt = 1 and state = 'running'")
            .bind(id.0)
            .execute(db.pool())
            .await
            .expect("late write")
            .rows_affected();
    assert_eq!(changed, 0);
    assert_eq!(row(db.pool(), id).await.state, "completed");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn shutdown_releases_unfinished_jobs_without_counting_the_attempt() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |c| c.worker.shutdown_timeout = "200ms".parse().expect("duration")).await;
    let id = LongRunning::dispatch(&node, ()).await.expect("dispatch");
    wait_state(db.pool(), id, "running").await;
    node.stop().await.expect("stop");
    let r = row(db.pool(), id).await;
    assert_eq!(r.state, "available");
    assert_eq!(r.attempt, 0, "a released attempt is not a failure");
    assert_eq!(r.errors, json!([]));
}

/// A node working several queues, one of which drains while another's job outlives the
/// shutdown timeout, stops cleanly (an already finished producer is not awaited twice).
#[tokio::test]
async fn shutdown_with_one_queue_drained_and_another_busy_releases_and_returns() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |c| {
        c.worker.shutdown_timeout = "200ms".parse().expect("duration");
        // "aaa" sorts first: its producer ends at once, the default queue's waits.
        c.worker.queues.insert("aaa".to_owned(), Default::default());
    })
    .await;
    let id = LongRunning::dispatch(&node, ()).await.expect("dispatch");
    wait_state(db.pool(), id, "running").await;
    node.stop().await.expect("stop");
    let r = row(db.pool(), id).await;
    assert_eq!((r.state.as_str(), r.attempt), ("available", 0), "released, not counted");
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_their_retention() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |c| c.worker.prune_after = "1s".parse().expect("duration")).await;
    let done = Greet::dispatch(&node, GreetArgs { name: "old".into() }).await.expect("dispatch");
    wait_state(db.pool(), done, "completed").await;
    let waiting = Greet::dispatch_with(
        &node,
        GreetArgs { name: "later".into() },
        DispatchOptions::new().delay(Duration::from_secs(3600)),
    )
    .await
    .expect("dispatch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(db.pool(), &format!("select count(*) from forge_jobs where id = {}", done.0)).await > 0 {
        assert!(Instant::now() < deadline, "the completed job was never pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(row(db.pool(), waiting).await.state, "scheduled", "live jobs are never pruned");
    node.stop().await.expect("stop");
}

/// Every state change the engine's SQL makes, recorded by a test-only trigger while jobs go
/// through success, retries, discards, timeouts, panics, snoozes, cancellation, rescue, release
/// and an operator's retry, is one the transition table allows.
#[tokio::test]
async fn the_sql_makes_only_transitions_the_table_allows() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(
        "create table seen_transitions (from_state text, to_state text);
         create function record_transition() returns trigger language plpgsql as $$
         begin
           if old.state is distinct from new.state then
             insert into seen_transitions values (old.state, new.state);
           end if;
           return new;
         end $$;
         create trigger record_transition after update on forge_jobs
           for each row execute function record_transition();",
    )
    .execute(db.pool())
    .await
    .expect("trigger");
    sqlx::query("create table transfers (amount bigint not null)").execute(db.pool()).await.expect("table");

    // A job of a dead node, for the rescue path.
    let rescued: i64 = sqlx::query_scalar(
        "insert into forge_jobs (kind, args, state, attempt, attempted_by, heartbeat_at)
         values ('greet', '{\"name\": \"r\"}', 'running', 1, 'gone', now() - interval '1 hour') returning id",
    )
    .fetch_one(db.pool())
    .await
    .expect("insert");
    let n = node(&db, |c| c.worker.shutdown_timeout = "300ms".parse().expect("duration")).await;
    let ids = vec![
        (Greet::dispatch(&n, GreetArgs { name: "a".into() }).await.expect("d"), "completed"),
        (Flaky::dispatch(&n, ()).await.expect("d"), "completed"),
        (Hopeless::dispatch(&n, ()).await.expect("d"), "discarded"),
        (Sleepy::dispatch(&n, ()).await.expect("d"), "discarded"),
        (Panicky::dispatch(&n, ()).await.expect("d"), "discarded"),
        (Snoozes::dispatch(&n, ()).await.expect("d"), "completed"),
        (RecordTransfer::dispatch(&n, Transfer { amount: 1, fail: false }).await.expect("d"), "completed"),
        (JobId(rescued), "completed"),
    ];
    for (id, state) in &ids {
        wait_state(db.pool(), *id, state).await;
    }
    let running = WaitsForCancel::dispatch(&n, ()).await.expect("d");
    wait_state(db.pool(), running, "running").await;
    n.cancel_job(running).await.expect("cancel");
    wait_state(db.pool(), running, "cancelled").await;
    let later = Greet::dispatch_with(
        &n,
        GreetArgs { name: "l".into() },
        DispatchOptions::new().delay(Duration::from_secs(3600)),
    )
    .await
    .expect("d");
    n.cancel_job(later).await.expect("cancel");
    assert!(n.retry_job(later).await.expect("retry"));
    wait_state(db.pool(), later, "completed").await;
    let long = LongRunning::dispatch(&n, ()).await.expect("d");
    wait_state(db.pool(), long, "running").await;
    n.stop().await.expect("stop"); // releases `long`

    let seen: Vec<(String, String)> = sqlx::query_as("select distinct from_state, to_state from seen_transitions")
        .fetch_all(db.pool())
        .await
        .expect("seen");
    assert!(seen.len() >= 10, "the scenario covered most transitions: {seen:?}");
    for (from, to) in &seen {
        let (from, to): (JobState, JobState) = (from.parse().expect("state"), to.parse().expect("state"));
        assert!(from.can_transition(to), "the SQL made the forbidden transition {from} -> {to}");
    }
}

#[tokio::test]
async fn poll_only_mode_runs_and_cancels_jobs_without_listen() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |c| c.worker.listen = false).await;
    let id = Greet::dispatch(&node, GreetArgs { name: "polled".into() }).await.expect("dispatch");
    wait_state(db.pool(), id, "completed").await;
    let listening = count(
        db.pool(),
        "select count(*) from pg_stat_activity where datname = current_database() and query ilike 'listen%'",
    )
    .await;
    assert_eq!(listening, 0, "no LISTEN session");
    // Cancellation reaches the running job through the lease renewal.
    let running = WaitsForCancel::dispatch(&node, ()).await.expect("dispatch");
    wait_state(db.pool(), running, "running").await;
    assert_eq!(node.cancel_job(running).await.expect("cancel"), CancelOutcome::Requested);
    wait_state(db.pool(), running, "cancelled").await;
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_paused_queue_is_not_claimed_until_it_is_resumed() {
    let db = TestDatabase::new().await.expect("db");
    forge::jobs::pause_queue(db.pool(), "default", "test").await.expect("pause");
    let node = node(&db, |c| {
        c.worker.queues.insert("other".to_owned(), Default::default());
    })
    .await;
    let held = Greet::dispatch(&node, GreetArgs { name: "held".into() }).await.expect("dispatch");
    let other = Greet::dispatch_with(&node, GreetArgs { name: "other".into() }, DispatchOptions::new().queue("other"))
        .await
        .expect("dispatch");
    // The node works: the other queue's job, dispatched after, completes; and the paused
    // queue's producer has run several claims since.
    wait_state(db.pool(), other, "completed").await;
    let claims = || node.telemetry().metrics().counter("forge_worker_claims_total", &[("queue", "default")]);
    let before = claims();
    let deadline = Instant::now() + Duration::from_secs(20);
    while claims() < before + 3 {
        assert!(Instant::now() < deadline, "the paused queue's producer stopped polling");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(row(db.pool(), held).await.state, "available", "a paused queue's job is not claimed");
    let paused = forge::jobs::paused_queues(db.pool()).await.expect("paused");
    assert_eq!(paused.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), ["default"]);

    assert!(forge::jobs::resume_queue(db.pool(), "default").await.expect("resume"));
    assert!(!forge::jobs::resume_queue(db.pool(), "default").await.expect("resume again"), "not paused any more");
    wait_state(db.pool(), held, "completed").await;
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn operators_run_now_delete_and_retry_or_cancel_in_bulk() {
    let db = TestDatabase::new().await.expect("db");
    let pool = db.pool();
    let later = Greet::dispatch_with(
        pool,
        GreetArgs { name: "later".into() },
        DispatchOptions::new().delay(Duration::from_secs(3600)),
    )
    .await
    .expect("dispatch");
    assert_eq!(row(pool, later).await.state, "scheduled");
    assert!(forge::jobs::run_now(pool, later).await.expect("run now"));
    assert_eq!(row(pool, later).await.state, "available");
    assert!(!forge::jobs::run_now(pool, later).await.expect("run now again"), "an available job is not waiting");
    assert!(matches!(forge::jobs::run_now(pool, JobId(999_999)).await, Err(forge::jobs::JobsError::NotFound(_))));

    assert!(forge::jobs::delete(pool, later).await.expect("delete"));
    assert!(matches!(forge::jobs::delete(pool, later).await, Err(forge::jobs::JobsError::NotFound(_))));
    sqlx::query("insert into forge_jobs (kind, queue, state, attempt) values ('greet', 'default', 'running', 1)")
        .execute(pool)
        .await
        .expect("running row");
    let running: i64 = sqlx::query_scalar("select max(id) from forge_jobs").fetch_one(pool).await.expect("id");
    assert!(!forge::jobs::delete(pool, JobId(running)).await.expect("delete running"), "a running job stays");

    // Bulk: five discarded jobs of two kinds, two available ones.
    sqlx::query(
        "insert into forge_jobs (kind, queue, state, attempt, max_attempts, tags)
         select case when i % 2 = 0 then 'a' else 'b' end, 'bulk',
                case when i <= 5 then 'discarded' else 'available' end, 1, 1,
                case when i = 1 then array['vip'] else '{}' end
         from generate_series(1, 7) i",
    )
    .execute(pool)
    .await
    .expect("seed");
    let filter = |kind: Option<&str>, tag: Option<&str>| forge::jobs::JobFilter {
        queue: Some("bulk".into()),
        kind: kind.map(str::to_owned),
        tag: tag.map(str::to_owned),
        ..Default::default()
    };
    assert_eq!(forge::jobs::retry_all(pool, &filter(Some("a"), None)).await.expect("retry a"), 2);
    assert_eq!(forge::jobs::retry_all(pool, &filter(None, Some("vip"))).await.expect("retry vip"), 1);
    assert_eq!(
        count(
            pool,
            "select count(*) from forge_jobs where queue = 'bulk' and state = 'available' and max_attempts = 2"
        )
        .await,
        3,
        "retried jobs are available with one more attempt"
    );
    assert_eq!(count(pool, "select count(*) from forge_jobs where queue = 'bulk' and state = 'discarded'").await, 2);
    // Cancel every unfinished job of the queue: the 3 retried and the 2 available.
    assert_eq!(forge::jobs::cancel_all(pool, &filter(None, None)).await.expect("cancel"), 5);
    assert_eq!(count(pool, "select count(*) from forge_jobs where queue = 'bulk' and state = 'cancelled'").await, 5);
    assert_eq!(forge::jobs::cancel_all(pool, &filter(None, None)).await.expect("cancel again"), 0);
}

#[tokio::test]
async fn a_bulk_cancel_stops_running_jobs_through_their_worker() {
    let db = TestDatabase::new().await.expect("db");
    let node = node(&db, |_| {}).await;
    let ids = WaitsForCancel::dispatch_many(&node, vec![(), ()], DispatchOptions::new()).await.expect("dispatch");
    for id in &ids {
        wait_state(db.pool(), *id, "running").await;
    }
    let filter = forge::jobs::JobFilter { kind: Some("waits_for_cancel".into()), ..Default::default() };
    let first = forge::jobs::cancel_all(db.pool(), &filter).await.expect("cancel");
    assert!((1..=2).contains(&first), "{first}");
    // The bulk cancel skips rows locked at that instant (a progress write or a lease renewal in
    // flight): a row it skipped is taken by the next call.
    let flagged = "select count(*) from forge_jobs where kind = 'waits_for_cancel' and cancel_requested_at is not null";
    for _ in 0..50 {
        if count(db.pool(), flagged).await == 2 {
            break;
        }
        forge::jobs::cancel_all(db.pool(), &filter).await.expect("cancel again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(db.pool(), flagged).await, 2, "both running jobs were asked to stop");
    for id in ids {
        wait_state(db.pool(), id, "cancelled").await;
    }
    node.stop().await.expect("stop");
}

// Claim windows (`[worker] hold_claims`): the jobs a claim locks are written once, at the
// window's end, with their outcome or as `running`.

/// A node claiming through claim windows open for `window`.
async fn windowed(db: &TestDatabase, window: &str) -> RunningForge {
    let window = window.parse().expect("duration");
    node(db, |c| {
        c.worker.hold_claims = true;
        c.worker.claim_window = window;
    })
    .await
}

/// Records every row version `forge_jobs` gets, by job and state.
async fn record_job_writes(pool: &sqlx::PgPool) {
    for statement in [
        "create table job_writes (seq bigserial, job_id bigint not null, state text not null)",
        "create function record_job_write() returns trigger language plpgsql as $$
         begin insert into job_writes (job_id, state) values (new.id, new.state); return new; end $$",
        "create trigger record_job_write after update on forge_jobs
         for each row execute function record_job_write()",
    ] {
        sqlx::query(statement).execute(pool).await.expect("job_writes");
    }
}

async fn job_writes(pool: &sqlx::PgPool, id: JobId) -> Vec<String> {
    sqlx::query_scalar("select state from job_writes where job_id = $1 order by seq")
        .bind(id.0)
        .fetch_all(pool)
        .await
        .expect("job_writes")
}

#[tokio::test]
async fn a_claim_window_writes_a_short_job_once_with_its_outcome() {
    let db = TestDatabase::new().await.expect("db");
    record_job_writes(db.pool()).await;
    // The classic claim: written `running`, then written with its outcome.
    let classic = node(&db, |c| c.worker.hold_claims = false).await;
    let first = Greet::dispatch(&classic, GreetArgs { name: "classic".into() }).await.expect("dispatch");
    wait_state(db.pool(), first, "completed").await;
    classic.stop().await.expect("stop");
    assert_eq!(job_writes(db.pool(), first).await, ["running", "completed"]);

    let node = windowed(&db, "500ms").await;
    let id = Greet::dispatch(&node, GreetArgs { name: "window".into() }).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "completed").await;
    assert_eq!(job_writes(db.pool(), id).await, ["completed"], "one write");
    assert_eq!((r.attempt, r.output), (1, Some(json!("hello window"))));
    let (attempted_by, attempted, finalized): (Option<String>, bool, bool) = sqlx::query_as(
        "select attempted_by, attempted_at is not null, finalized_at >= attempted_at from forge_jobs where id = $1",
    )
    .bind(id.0)
    .fetch_one(db.pool())
    .await
    .expect("row");
    assert_eq!(attempted_by.as_deref(), Some(node.node_id()));
    assert!(attempted && finalized);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn retries_through_claim_windows_count_their_attempts_and_keep_their_errors() {
    let db = TestDatabase::new().await.expect("db");
    let node = windowed(&db, "500ms").await;
    let id = Flaky::dispatch(&node, ()).await.expect("dispatch");
    let r = wait_state(db.pool(), id, "completed").await;
    assert_eq!((r.attempt, r.output), (3, Some(json!(3))));
    let errors = r.errors.as_array().expect("errors array");
    assert_eq!(errors.len(), 2);
    assert_eq!((errors[0]["attempt"].clone(), errors[1]["attempt"].clone()), (json!(1), json!(2)));
    let hopeless = Hopeless::dispatch(&node, ()).await.expect("dispatch");
    assert_eq!(wait_state(db.pool(), hopeless, "discarded").await.attempt, 1);
    node.stop().await.expect("stop");
}

/// Sleeps past its claim window, reporting progress on the way.
#[forge::job(timeout = "30s")]
async fn outlives_its_window(ctx: &JobContext, millis: u64) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    ctx.progress(50, "halfway").await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Ok(())
}

#[tokio::test]
async fn a_job_that_outlives_its_claim_window_is_written_running_with_a_lease() {
    let db = TestDatabase::new().await.expect("db");
    record_job_writes(db.pool()).await;
    let node = windowed(&db, "50ms").await;
    let id = OutlivesItsWindow::dispatch(&node, 400).await.expect("dispatch");
    wait_state(db.pool(), id, "running").await;
    let leased: bool = sqlx::query_scalar("select lease_until > now() from forge_jobs where id = $1")
        .bind(id.0)
        .fetch_one(db.pool())
        .await
        .expect("lease");
    assert!(leased, "written running with a lease when its window ended");
    let r = wait_state(db.pool(), id, "completed").await;
    assert_eq!(r.attempt, 1);
    assert_eq!(r.progress, Some(json!({"percent": 50, "message": "halfway"})));
    // Claimed when its window ended, then progress and lease renewals, then its outcome.
    let writes = job_writes(db.pool(), id).await;
    assert_eq!(writes.first().map(String::as_str), Some("running"), "{writes:?}");
    assert_eq!(writes.last().map(String::as_str), Some("completed"), "{writes:?}");
    assert!(writes[..writes.len() - 1].iter().all(|s| s == "running"), "{writes:?}");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn progress_inside_a_claim_window_ends_the_window_first() {
    let db = TestDatabase::new().await.expect("db");
    // A window far longer than the job: progress must not wait for it.
    let node = windowed(&db, "900ms").await;
    let id = WaitsForCancel::dispatch(&node, ()).await.expect("dispatch");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut r = row(db.pool(), id).await;
    while r.progress.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = row(db.pool(), id).await;
    }
    assert_eq!(r.state, "running");
    assert_eq!(r.progress, Some(json!({"percent": 10, "message": "waiting"})));
    assert_eq!(node.cancel_job(id).await.expect("cancel"), CancelOutcome::Requested);
    assert_eq!(wait_state(db.pool(), id, "cancelled").await.attempt, 1);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_transactional_job_in_a_claim_window_commits_its_writes_with_its_outcome() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::query("create table transfers (amount bigint not null)").execute(db.pool()).await.expect("table");
    let node = windowed(&db, "500ms").await;
    let ok = RecordTransfer::dispatch(&node, Transfer { amount: 10, fail: false }).await.expect("dispatch");
    let failed = RecordTransfer::dispatch(&node, Transfer { amount: 99, fail: true }).await.expect("dispatch");
    assert_eq!(wait_state(db.pool(), ok, "completed").await.attempt, 1);
    assert_eq!(wait_state(db.pool(), failed, "discarded").await.attempt, 1);
    assert_eq!(count(db.pool(), "select count(*) from transfers where amount = 10").await, 1);
    assert_eq!(count(db.pool(), "select count(*) from transfers where amount = 99").await, 0, "rolled back");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn many_jobs_drain_through_claim_windows_each_once() {
    let db = TestDatabase::new().await.expect("db");
    let node = windowed(&db, "20ms").await;
    let args: Vec<GreetArgs> = (0..500).map(|i| GreetArgs { name: format!("n{i}") }).collect();
    Greet::dispatch_many(&node, args, DispatchOptions::new()).await.expect("dispatch");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(db.pool(), "select count(*) from forge_jobs where state = 'completed'").await < 500 {
        assert!(Instant::now() < deadline, "jobs left undone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(db.pool(), "select count(*) from forge_jobs where attempt <> 1").await, 0);
    node.stop().await.expect("stop");
}

/// Set once `waits_out_shutdown` has started.
static WAITING_OUT_SHUTDOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs on past its node's shutdown timeout (until the node drops it).
#[forge::job(timeout = "30s")]
async fn waits_out_shutdown(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    WAITING_OUT_SHUTDOWN.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await;
    Ok(())
}

#[tokio::test]
async fn a_job_released_at_shutdown_inside_its_claim_window_is_available_again_uncounted() {
    let db = TestDatabase::new().await.expect("db");
    record_job_writes(db.pool()).await;
    let node = node(&db, |c| {
        c.worker.hold_claims = true;
        c.worker.claim_window = "900ms".parse().expect("duration");
        c.worker.shutdown_timeout = "10ms".parse().expect("duration");
    })
    .await;
    let id = WaitsOutShutdown::dispatch(&node, ()).await.expect("dispatch");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !WAITING_OUT_SHUTDOWN.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.stop().await.expect("stop");
    let r = row(db.pool(), id).await;
    assert_eq!((r.state.as_str(), r.attempt), ("available", 0), "released, not counted");
    // The stop ended the window (the attempt still ran: written `running`), then released it.
    assert_eq!(job_writes(db.pool(), id).await, ["running", "available"]);
    assert_eq!(r.errors, json!([]));
}

// Claiming ahead: a producer whose jobs are short claims its next batch while the current one
// runs; its jobs wait in line for a slot.

static COUNTED_NOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static COUNTED_MAX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[forge::job(queue = "counted")]
async fn counted(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    use std::sync::atomic::Ordering::SeqCst;
    let now = COUNTED_NOW.fetch_add(1, SeqCst) + 1;
    COUNTED_MAX.fetch_max(now, SeqCst);
    tokio::time::sleep(Duration::from_millis(2)).await;
    COUNTED_NOW.fetch_sub(1, SeqCst);
    Ok(())
}

/// Waits (up to a minute) until `n` jobs are completed.
async fn wait_completed(pool: &sqlx::PgPool, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(pool, "select count(*) from forge_jobs where state = 'completed'").await < n {
        assert!(Instant::now() < deadline, "jobs not done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Adds queue `name` with `concurrency` to the node's configuration.
fn with_queue(c: &mut ForgeConfig, name: &str, concurrency: usize) {
    let mut queue = forge::config::QueueConfig::default();
    queue.concurrency = std::num::NonZeroUsize::new(concurrency).expect("not zero");
    c.worker.queues.insert(name.to_owned(), queue);
}

#[tokio::test]
async fn jobs_claimed_ahead_never_run_more_at_once_than_the_queue_allows() {
    let db = TestDatabase::new().await.expect("db");
    Counted::dispatch_many(db.pool(), vec![(); 300], DispatchOptions::new()).await.expect("dispatch");
    let node = node(&db, |c| {
        c.worker.hold_claims = true;
        with_queue(c, "counted", 3);
    })
    .await;
    wait_completed(db.pool(), 300).await;
    node.stop().await.expect("stop");
    assert_eq!(COUNTED_MAX.load(std::sync::atomic::Ordering::SeqCst), 3, "at most (and, busy, exactly) 3 at once");
}

#[forge::job(queue = "quick")]
async fn quick(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

/// A window's jobs are written with its transaction's start as `attempted_at`: how many jobs
/// each window (of queue `queue`) held, largest first.
async fn window_sizes(pool: &sqlx::PgPool, queue: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "select count(*) from forge_jobs where queue = $1 group by attempted_at, attempted_by order by 1 desc",
    )
    .bind(queue)
    .fetch_all(pool)
    .await
    .expect("windows")
}

/// While its jobs are short, a producer holds up to four jobs per slot in line: one claim takes
/// up to five times its concurrency (so each round trip serves that many jobs), never more.
#[tokio::test]
async fn a_producer_whose_jobs_are_short_claims_up_to_four_jobs_per_slot_ahead() {
    let db = TestDatabase::new().await.expect("db");
    Quick::dispatch_many(db.pool(), vec![(); 400], DispatchOptions::new()).await.expect("dispatch");
    let node = node(&db, |c| {
        c.worker.hold_claims = true;
        with_queue(c, "quick", 2);
    })
    .await;
    wait_completed(db.pool(), 400).await;
    node.stop().await.expect("stop");
    let sizes = window_sizes(db.pool(), "quick").await;
    assert!(sizes[0] <= 10, "a claim took more than 5 x 2 jobs: {sizes:?}");
    // One job per slot ahead (as before) would claim at most 4 at once.
    assert!(sizes[0] > 4, "no claim went past one job per slot ahead: {sizes:?}");
}

/// A job of a few milliseconds.
#[forge::job(queue = "midlength")]
async fn midlength(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(6)).await;
    Ok(())
}

/// With the default `claim_window` (50 ms), a window sees its whole line through when the jobs
/// take a few milliseconds: at concurrency 2, the ten jobs of a deep window end about 30 ms after
/// it opens, so each job is written once, with its outcome. With 20 ms (the default until
/// 2026-12-06) those windows ended with jobs still in line, which were written `running` and
/// then again: 34 to 38 of the 60 jobs. (A pool of 40 lets 20 windows be open at once, so that
/// no claim here is made the classic way for want of a window.)
#[tokio::test]
async fn jobs_of_a_few_milliseconds_are_written_once_under_the_default_claim_window() {
    let db = TestDatabase::new().await.expect("db");
    record_job_writes(db.pool()).await;
    Midlength::dispatch_many(db.pool(), vec![(); 60], DispatchOptions::new()).await.expect("dispatch");
    let node = node(&db, |c| {
        c.database.pool_size = std::num::NonZeroU32::new(40).expect("not zero");
        with_queue(c, "midlength", 2);
    })
    .await;
    wait_completed(db.pool(), 60).await;
    node.stop().await.expect("stop");
    let twice = count(db.pool(), "select count(distinct job_id) from job_writes where state = 'running'").await;
    // A window stretched past its time by a loaded machine may still write a few twice.
    assert!(twice <= 6, "{twice} of 60 jobs of 6 ms were written running before their outcome");
}

/// Returns when it started: a job claimed ahead of others starts well after it was claimed.
#[forge::job(queue = "slow")]
async fn slow(_ctx: &JobContext, _args: ()) -> Result<chrono::DateTime<chrono::Utc>, JobError> {
    let started = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(started)
}

#[tokio::test]
async fn a_producer_whose_jobs_outlive_their_windows_claims_nothing_ahead() {
    let db = TestDatabase::new().await.expect("db");
    Slow::dispatch_many(db.pool(), vec![(); 6], DispatchOptions::new()).await.expect("dispatch");
    let node = node(&db, |c| {
        c.worker.hold_claims = true;
        c.worker.claim_window = "20ms".parse().expect("duration");
        with_queue(c, "slow", 2);
    })
    .await;
    wait_completed(db.pool(), 6).await;
    node.stop().await.expect("stop");
    // Claimed ahead, a job would wait about 2 s (a running job's length) for a slot.
    let waits: Vec<f64> = sqlx::query_scalar(
        "select extract(epoch from (output #>> '{}')::timestamptz - attempted_at)::float8
         from forge_jobs order by id",
    )
    .fetch_all(db.pool())
    .await
    .expect("waits");
    assert!(waits.iter().all(|w| *w < 1.0), "claimed ahead of long jobs: waited {waits:?} s");
}

/// A job of the backlog below: a few milliseconds of work.
#[forge::job(queue = "backlog")]
async fn backlog_item(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

/// While a queue's backlog is deep, a producer claims past where its last claim ended instead
/// of from the head of the claim order; every 100 ms it claims from the head all the same. So a
/// job of higher priority dispatched into a deep backlog runs soon, not after the whole backlog.
#[tokio::test]
async fn a_job_of_higher_priority_dispatched_into_a_deep_backlog_runs_long_before_the_backlog_ends() {
    let db = TestDatabase::new().await.expect("db");
    // Ten at a time, 5 ms each: at most 2,000 jobs a second, so 4,000 take two seconds or more.
    let backlog = 4000;
    BacklogItem::dispatch_many(db.pool(), vec![(); backlog], DispatchOptions::new()).await.expect("backlog");
    let node = node(&db, |config| {
        let mut queue = forge::config::QueueConfig::default();
        queue.concurrency = std::num::NonZeroUsize::new(10).expect("ten");
        config.worker.queues.insert("backlog".to_owned(), queue);
    })
    .await;
    let started = "select count(*) from forge_jobs where kind = 'backlog_item' and state = 'completed'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>(started).fetch_one(db.pool()).await.expect("count") < 100 {
        assert!(Instant::now() < deadline, "the backlog did not start draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let urgent =
        BacklogItem::dispatch_with(&node, (), DispatchOptions::new().priority(Priority::High)).await.expect("urgent");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state: String = sqlx::query_scalar("select state from forge_jobs where id = $1")
            .bind(urgent)
            .fetch_one(db.pool())
            .await
            .expect("state");
        if state == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "the urgent job did not complete");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after: i64 = sqlx::query_scalar(
        "select count(*) from forge_jobs where kind = 'backlog_item' and id <> $1
           and (state = 'available' or attempted_at > (select attempted_at from forge_jobs where id = $1))",
    )
    .bind(urgent)
    .fetch_one(db.pool())
    .await
    .expect("count");
    node.stop().await.expect("stop");
    assert!(after >= 1000, "only {after} of the {backlog} backlog jobs started after the urgent one");
}

/// `forge_jobs_use_domains()` on a database in use, under a running node: the columns' new
/// types make Postgres refuse the statements the node prepared before ("cached plan must not
/// change result type"); the node's heartbeat sees the schema epoch move and its pools replace
/// the connections opened before, so within a few heartbeats its dispatches and claims work
/// again, every one.
#[tokio::test]
async fn a_node_keeps_working_after_the_job_table_moves_to_domains_under_it() {
    let db = TestDatabase::empty().await.expect("db");
    let migrator = forge::db::Migrator::forge().expect("migrator");
    migrator.run(db.pool()).await.expect("up");
    migrator.down(db.pool(), 1).await.expect("down 0019");
    sqlx::query("insert into forge_jobs (kind, state) values ('earlier', 'completed')")
        .execute(db.pool())
        .await
        .expect("a database in use");
    migrator.run(db.pool()).await.expect("0019, keeping the table's checks");
    let state_type = || {
        sqlx::query_scalar::<_, String>(
            "select format_type(atttypid, null) from pg_attribute where attrelid = 'forge_jobs'::regclass and attname = 'state'",
        )
        .fetch_one(db.pool())
    };
    assert_eq!(state_type().await.expect("type"), "text");

    let node = node(&db, |c| {
        c.node.heartbeat_interval = "100ms".parse().expect("duration");
        c.database.pool_size = std::num::NonZeroU32::new(POOL).expect("size");
    })
    .await;
    // The node's statements are prepared on its connections: dispatches, claims, outcomes.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(Greet::dispatch(&node, GreetArgs { name: format!("before {i}") }).await.expect("dispatch"));
    }
    for id in &ids {
        wait_state(db.pool(), *id, "completed").await;
    }

    // And one more, returning a moved column, on every connection of the node's pool.
    for result in on_every_connection(node.pool()).await {
        result.expect("before the move");
    }

    let moved: bool = sqlx::query_scalar("select forge_jobs_use_domains()").fetch_one(db.pool()).await.expect("move");
    assert!(moved);
    assert_eq!(state_type().await.expect("type"), "forge_job_state");

    // A few heartbeats later, every dispatch works and every job runs. (The test's own pool is
    // not a node's: it is read through a new one, its statements prepared before the move being
    // refused as the node's were.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reader = sqlx::PgPool::connect(db.url()).await.expect("a pool opened after the move");
    for result in on_every_connection(node.pool()).await {
        result.expect("a connection prepared before the move was replaced");
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(Greet::dispatch(&node, GreetArgs { name: format!("after {i}") }).await.expect("dispatch after"));
    }
    let concurrent = futures_util::future::join_all(
        (0..20).map(|i| Greet::dispatch(&node, GreetArgs { name: format!("together {i}") })),
    )
    .await;
    ids.extend(concurrent.into_iter().map(|r| r.expect("concurrent dispatch after")));
    for id in &ids {
        let r = wait_state(&reader, *id, "completed").await;
        assert_eq!(r.attempt, 1, "no attempt failed");
    }
    node.stop().await.expect("stop");
}

/// The node's pool size in the test above.
const POOL: u32 = 4;

/// Holds every connection of `pool` it can get at once (the node keeps one for its LISTEN) and
/// runs, on each, a statement that returns the job table's `state`.
async fn on_every_connection(pool: &sqlx::PgPool) -> Vec<Result<Option<String>, sqlx::Error>> {
    let mut held = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_millis(300), pool.acquire()).await {
        held.push(conn);
    }
    assert!(held.len() >= 2, "{} connections of {POOL}", held.len());
    let mut results = Vec::new();
    for conn in &mut held {
        results.push(sqlx::query_scalar("select state from forge_jobs limit 1").fetch_optional(&mut **conn).await);
    }
    results
}
