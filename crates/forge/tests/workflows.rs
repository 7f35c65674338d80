//! Durable workflows end to end, against real PostgreSQL: memoised steps, tx_steps, durable
//! sleeps, events (before the wait, waking it, timing out), waits that hold no slot, divergence
//! parked as blocked and resumed, compensations, cancel, patches, run keys, recorded time.
//! (Runs killed with SIGKILL: forge-bench/tests/workflows_kill.rs.)

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;
use forge::workflows::{self, EventSent, RunStatus, WorkflowsError};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A node with the worker and scheduler roles and test-sized intervals (the scheduler's
/// maintenance wakes sleeping runs every half lease).
async fn node(db: &TestDatabase, concurrency: usize) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.worker.lease = "400ms".parse().expect("duration");
    config.worker.shutdown_timeout = "5s".parse().expect("duration");
    if let Some(queue) = config.worker.queues.get_mut("default") {
        queue.concurrency = std::num::NonZeroUsize::new(concurrency).expect("concurrency");
    }
    Forge::builder().config(config).build().expect("build").start().await.expect("start")
}

/// Records that a step's closure ran (outside any step transaction).
async fn ran(pool: &sqlx::PgPool, run: JobId, what: &str) -> Result<(), JobError> {
    sqlx::query("insert into effects (run_id, what) values ($1, $2)").bind(run.0).bind(what).execute(pool).await?;
    Ok(())
}

async fn effects(pool: &sqlx::PgPool, run: JobId) -> Vec<String> {
    sqlx::query_scalar("select what from effects where run_id = $1 order by n")
        .bind(run.0)
        .fetch_all(pool)
        .await
        .expect("effects")
}

async fn setup(db: &TestDatabase) {
    sqlx::raw_sql(
        "create table effects (n bigserial primary key, run_id bigint not null, what text not null);
         create table ledger (run_id bigint not null, amount bigint not null);
         create table switches (name text primary key, on_ boolean not null)",
    )
    .execute(db.pool())
    .await
    .expect("tables");
}

async fn switch(pool: &sqlx::PgPool, name: &str) -> bool {
    sqlx::query_scalar("select coalesce((select on_ from switches where name = $1), false)")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("switch")
}

async fn set_switch(pool: &sqlx::PgPool, name: &str, on: bool) {
    sqlx::query("insert into switches values ($1, $2) on conflict (name) do update set on_ = $2")
        .bind(name)
        .bind(on)
        .execute(pool)
        .await
        .expect("set switch");
}

async fn job_state(pool: &sqlx::PgPool, id: JobId) -> String {
    sqlx::query_scalar("select state from forge_jobs where id = $1").bind(id.0).fetch_one(pool).await.expect("state")
}

/// Waits until `check` gives a value, failing after `within`.
async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_state(pool: &sqlx::PgPool, id: JobId, state: &str) {
    eventually(&format!("run {id} to be {state}"), Duration::from_secs(20), async || {
        (job_state(pool, id).await == state).then_some(())
    })
    .await;
}

async fn output(pool: &sqlx::PgPool, id: JobId) -> serde_json::Value {
    sqlx::query_scalar("select coalesce(output, 'null') from forge_jobs where id = $1")
        .bind(id.0)
        .fetch_one(pool)
        .await
        .expect("output")
}

// ---- memoised steps -------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    amount: i64,
}

/// Three steps; the first execution panics after the second step, so the second execution
/// replays the first two and runs only the third.
#[forge::workflow(max_attempts = 5)]
async fn three_steps(ctx: &WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    let (db, run) = (ctx.db().clone(), ctx.run_id());
    let reserved: i64 = ctx
        .step("reserve", || async {
            ran(&db, run, "reserve").await?;
            Ok(order.amount * 2)
        })
        .await?;
    let charge: String = ctx
        .step("charge", || async {
            ran(&db, run, "charge").await?;
            Ok(format!("ch_{reserved}"))
        })
        .await?;
    if ctx.job().attempt() == 1 {
        panic!("crash after charge");
    }
    ctx.step("ship", || async { ran(&db, run, "ship").await }).await?;
    Ok(charge)
}

#[tokio::test]
async fn recorded_steps_are_not_run_again_when_an_execution_is_retried() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = ThreeSteps::start(&node, Order { amount: 21 }).await.expect("start");
    wait_state(db.pool(), run, "completed").await;
    assert_eq!(output(db.pool(), run).await, json!("ch_42"));
    assert_eq!(effects(db.pool(), run).await, ["reserve", "charge", "ship"], "each step's closure ran once");
    let steps = workflows::run_steps(db.pool(), run).await.expect("steps");
    let names: Vec<_> = steps.iter().map(|s| (s.name.as_str(), s.status.as_str(), s.seq)).collect();
    assert_eq!(names, [("reserve", "completed", 0), ("charge", "completed", 1), ("ship", "completed", 2)]);
    assert_eq!(steps[1].output, Some(json!("ch_42")));
    let attempt: i32 = sqlx::query_scalar("select attempt from forge_jobs where id = $1")
        .bind(run.0)
        .fetch_one(db.pool())
        .await
        .expect("attempt");
    assert_eq!(attempt, 2, "the panic cost one execution");
    node.stop().await.expect("stop");
}

/// A loop's steps are told apart by occurrence; a step that fails twice is retried in place.
#[forge::workflow]
async fn loops_and_retries(ctx: &WorkflowContext, _args: ()) -> Result<Vec<i32>, WorkflowError> {
    let (db, run) = (ctx.db().clone(), ctx.run_id());
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(ctx.step("item", || async move { Ok(i * 10) }).await?);
    }
    let flaky = ctx
        .step("flaky", || {
            let db = db.clone();
            async move {
                ran(&db, run, "flaky").await?;
                let tries: i64 =
                    sqlx::query_scalar("select count(*) from effects where run_id = $1 and what = 'flaky'")
                        .bind(run.0)
                        .fetch_one(&db)
                        .await?;
                if tries < 3 { Err(JobError::retry(format!("try {tries} failed"))) } else { Ok(tries as i32) }
            }
        })
        .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
        .await?;
    out.push(flaky);
    Ok(out)
}

#[tokio::test]
async fn loop_steps_are_numbered_by_occurrence_and_failed_attempts_are_retried() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = LoopsAndRetries::start(&node, ()).await.expect("start");
    wait_state(db.pool(), run, "completed").await;
    assert_eq!(output(db.pool(), run).await, json!([0, 10, 20, 3]));
    let steps = workflows::run_steps(db.pool(), run).await.expect("steps");
    let names: Vec<_> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["item", "item#2", "item#3", "flaky"]);
    assert_eq!(steps[3].attempts, 3);
    node.stop().await.expect("stop");
}

// ---- tx_step ---------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct PayArgs {
    amount: i64,
    fail_first: bool,
}

/// Writes the ledger in a tx_step; the first execution then crashes. The second must not
/// write it again. With `fail_first`, the tx_step's first try fails after writing: rolled back.
#[forge::workflow(max_attempts = 5)]
async fn pay(ctx: &WorkflowContext, args: PayArgs) -> Result<i64, WorkflowError> {
    let run = ctx.run_id();
    let db = ctx.db().clone();
    let total = ctx
        .tx_step("debit", |mut tx| {
            let db = db.clone();
            async move {
                sqlx::query("insert into ledger (run_id, amount) values ($1, $2)")
                    .bind(run.0)
                    .bind(args.amount)
                    .execute(&mut tx)
                    .await?;
                if args.fail_first && !switch(&db, &format!("paid-{}", run.0)).await {
                    set_switch(&db, &format!("paid-{}", run.0), true).await;
                    return Err(JobError::retry("failed after writing the ledger"));
                }
                let total: i64 = sqlx::query_scalar("select sum(amount)::bigint from ledger where run_id = $1")
                    .bind(run.0)
                    .fetch_one(&mut tx)
                    .await?;
                Ok(total)
            }
        })
        .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
        .await?;
    if ctx.job().attempt() == 1 {
        panic!("crash after the tx_step");
    }
    Ok(total)
}

#[tokio::test]
async fn a_tx_step_takes_effect_once_across_a_crash_and_a_failed_try() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let plain = Pay::start(&node, PayArgs { amount: 7, fail_first: false }).await.expect("start");
    let failing = Pay::start(&node, PayArgs { amount: 9, fail_first: true }).await.expect("start");
    wait_state(db.pool(), plain, "completed").await;
    wait_state(db.pool(), failing, "completed").await;
    for (run, amount) in [(plain, 7), (failing, 9)] {
        let rows: Vec<i64> = sqlx::query_scalar("select amount from ledger where run_id = $1")
            .bind(run.0)
            .fetch_all(db.pool())
            .await
            .expect("ledger");
        assert_eq!(rows, [amount], "run {run}: one ledger row");
        assert_eq!(output(db.pool(), run).await, json!(amount));
    }
    node.stop().await.expect("stop");
}

// ---- durable sleep and events ----------------------------------------------------------------

#[forge::workflow]
async fn naps(ctx: &WorkflowContext, ms: u64) -> Result<i64, WorkflowError> {
    let started = ctx.workflow_time().await?;
    ctx.sleep(Duration::from_millis(ms)).await?;
    let again = ctx.workflow_time().await?;
    let started_replayed = {
        // The first time call replays to the same instant on every execution.
        started
    };
    Ok((again - started_replayed).num_milliseconds())
}

#[tokio::test]
async fn a_sleep_suspends_the_run_as_a_scheduled_job_and_wakes_it() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = Naps::start(&node, 700).await.expect("start");
    // While it sleeps, the run's job is scheduled (no worker holds it) and its attempt uncounted.
    eventually("the run to sleep", Duration::from_secs(30), async || {
        (job_state(db.pool(), run).await == "scheduled").then_some(())
    })
    .await;
    let info = workflows::find_run(db.pool(), run).await.expect("find").expect("run");
    assert_eq!(info.status(), RunStatus::Waiting);
    wait_state(db.pool(), run, "completed").await;
    let slept = output(db.pool(), run).await.as_i64().expect("ms");
    assert!(slept >= 700, "the recorded times are {slept} ms apart");
    let (attempt, errors): (i32, serde_json::Value) =
        sqlx::query_as("select attempt, errors from forge_jobs where id = $1")
            .bind(run.0)
            .fetch_one(db.pool())
            .await
            .expect("row");
    assert_eq!((attempt, errors), (1, json!([])), "a sleep is not a failed attempt");
    let steps = workflows::run_steps(db.pool(), run).await.expect("steps");
    let kinds: Vec<_> = steps.iter().map(|s| (s.kind.as_str(), s.status.as_str())).collect();
    assert_eq!(kinds, [("time", "completed"), ("sleep", "completed"), ("time", "completed")]);
    node.stop().await.expect("stop");
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Confirmation {
    by: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AwaitArgs {
    timeout_ms: u64,
}

#[forge::workflow]
async fn awaits_confirmation(ctx: &WorkflowContext, args: AwaitArgs) -> Result<String, WorkflowError> {
    let confirmed: Option<Confirmation> =
        ctx.wait_for_event("email_confirmed", Duration::from_millis(args.timeout_ms)).await?;
    Ok(match confirmed {
        Some(c) => format!("confirmed by {}", c.by),
        None => "timed out".to_owned(),
    })
}

#[tokio::test]
async fn an_event_sent_while_the_run_waits_wakes_it_and_the_first_event_wins() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = AwaitsConfirmation::start(&node, AwaitArgs { timeout_ms: 3_600_000 }).await.expect("start");
    eventually("the run to wait", Duration::from_secs(30), async || {
        let info = workflows::find_run(db.pool(), run).await.expect("find")?;
        (info.state == "scheduled" && info.waiting_for.as_deref() == Some("email_confirmed")).then_some(())
    })
    .await;
    let sent = workflows::send_event(db.pool(), run, "email_confirmed", Confirmation { by: "ada".into() })
        .await
        .expect("send");
    assert_eq!(sent, EventSent::Delivered { run, woke: true });
    let again = workflows::send_event(db.pool(), run, "email_confirmed", Confirmation { by: "bob".into() })
        .await
        .expect("send again");
    assert_eq!(again, EventSent::AlreadySent { run });
    wait_state(db.pool(), run, "completed").await;
    assert_eq!(output(db.pool(), run).await, json!("confirmed by ada"));
    let info = workflows::find_run(db.pool(), run).await.expect("find").expect("run");
    assert_eq!(info.waiting_for, None, "a run that got its event no longer waits for it");
    // A finished run takes no events.
    let late = workflows::send_event(db.pool(), run, "other", json!(1)).await;
    assert!(matches!(late, Err(WorkflowsError::Finished { .. })), "{late:?}");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn an_event_sent_before_the_wait_is_not_lost_and_a_wait_times_out() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    // Started and sent to before any worker runs it, by key.
    let early = AwaitsConfirmation::start_with(
        db.pool(),
        AwaitArgs { timeout_ms: 3_600_000 },
        StartOptions::new().key("signup-ada"),
    )
    .await
    .expect("start");
    let sent = workflows::send_event(db.pool(), "signup-ada", "email_confirmed", Confirmation { by: "early".into() })
        .await
        .expect("send");
    assert_eq!(sent, EventSent::Delivered { run: early, woke: false });
    let late = AwaitsConfirmation::start(db.pool(), AwaitArgs { timeout_ms: 300 }).await.expect("start");
    let node = node(&db, 4).await;
    wait_state(db.pool(), early, "completed").await;
    assert_eq!(output(db.pool(), early).await, json!("confirmed by early"));
    wait_state(db.pool(), late, "completed").await;
    assert_eq!(output(db.pool(), late).await, json!("timed out"));
    // Unknown runs and bad names are refused precisely.
    let missing = workflows::send_event(db.pool(), "no-such-key", "x", json!(null)).await;
    assert!(matches!(missing, Err(WorkflowsError::NotFound(_))), "{missing:?}");
    let bad = workflows::send_event(db.pool(), early, "", json!(null)).await;
    assert!(matches!(bad, Err(WorkflowsError::InvalidName(_))), "{bad:?}");
    let nul = workflows::send_event(db.pool(), late, "x", json!("a\u{0}b")).await;
    assert!(matches!(nul, Err(WorkflowsError::Payload(_)) | Err(WorkflowsError::Finished { .. })), "{nul:?}");
    node.stop().await.expect("stop");
}

#[forge::job]
async fn plain(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

#[tokio::test]
async fn a_thousand_waiting_runs_hold_no_worker_slot() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 8).await;
    let mut runs = Vec::new();
    for _ in 0..1000 {
        runs.push(AwaitsConfirmation::start(&node, AwaitArgs { timeout_ms: 3_600_000 }).await.expect("start"));
    }
    eventually("1,000 runs to wait", Duration::from_secs(120), async || {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from forge_workflow_runs r join forge_jobs j on j.id = r.id
             where j.state = 'scheduled' and r.waiting_for = 'email_confirmed'",
        )
        .fetch_one(db.pool())
        .await
        .expect("count");
        (waiting == 1000).then_some(())
    })
    .await;
    let running: i64 = sqlx::query_scalar("select count(*) from forge_jobs where state = 'running'")
        .fetch_one(db.pool())
        .await
        .expect("running");
    assert_eq!(running, 0, "no waiting run holds a slot");
    // With 8 slots and 1,000 waiting runs, an ordinary job still runs.
    let job = Plain::dispatch(&node, ()).await.expect("dispatch");
    wait_state(db.pool(), job, "completed").await;
    // And an event still reaches one of them.
    workflows::send_event(db.pool(), runs[500], "email_confirmed", Confirmation { by: "x".into() })
        .await
        .expect("send");
    wait_state(db.pool(), runs[500], "completed").await;
    node.stop().await.expect("stop");
}

// ---- divergence, compensation, cancel -------------------------------------------------------

/// Before the switch `changed-code` is on, its first step is `a`; after, `b`: a deploy that
/// changed the code under running runs.
#[forge::workflow]
async fn changing(ctx: &WorkflowContext, _args: ()) -> Result<String, WorkflowError> {
    let changed = switch(ctx.db(), "changed-code").await;
    let first = if changed { "b" } else { "a" };
    ctx.step(first, || async { Ok(()) }).await?;
    let _: Option<()> = ctx.wait_for_event("go", Duration::from_secs(3600)).await?;
    Ok(first.to_owned())
}

#[tokio::test]
async fn a_run_whose_code_changed_is_parked_as_blocked_and_can_be_resumed() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = Changing::start(&node, ()).await.expect("start");
    eventually("the run to wait", Duration::from_secs(30), async || {
        let info = workflows::find_run(db.pool(), run).await.expect("find")?;
        (info.waiting_for.is_some() && info.state == "scheduled").then_some(())
    })
    .await;
    set_switch(db.pool(), "changed-code", true).await;
    workflows::send_event(db.pool(), run, "go", ()).await.expect("send");
    let info = eventually("the run to block", Duration::from_secs(30), async || {
        let info = workflows::find_run(db.pool(), run).await.expect("find")?;
        (info.status() == RunStatus::Blocked).then_some(info)
    })
    .await;
    let reason = info.blocked_reason.expect("reason");
    assert!(reason.contains("\"a\"") && reason.contains("\"b\""), "{reason}");
    assert_eq!(info.blocked_seq, Some(0));
    assert_eq!(info.state, "scheduled", "parked, not failed");
    // Nothing runs it meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(job_state(db.pool(), run).await, "scheduled");
    // Resuming from position 0 forgets the old steps and runs the new code.
    workflows::resume(db.pool(), run, Some(0)).await.expect("resume");
    wait_state(db.pool(), run, "completed").await;
    assert_eq!(output(db.pool(), run).await, json!("b"));
    let again = workflows::resume(db.pool(), run, None).await;
    assert!(matches!(again, Err(WorkflowsError::NotBlocked(_))), "{again:?}");
    node.stop().await.expect("stop");
}

#[derive(Debug, Serialize, Deserialize)]
struct SagaArgs {
    fail_at_end: bool,
    wait: bool,
}

/// Three steps with compensations, then a failure (or a wait to be cancelled in).
#[forge::workflow(max_attempts = 5)]
async fn saga(ctx: &WorkflowContext, args: SagaArgs) -> Result<(), WorkflowError> {
    let run = ctx.run_id();
    for name in ["flight", "hotel", "car"] {
        let db = ctx.db().clone();
        let undo_db = ctx.db().clone();
        ctx.step(name, || {
            let db = db.clone();
            async move {
                ran(&db, run, &format!("book {name}")).await?;
                Ok(format!("{name}-1"))
            }
        })
        .compensate(move |booking: String| async move { ran(&undo_db, run, &format!("cancel {booking}")).await })
        .await?;
    }
    if args.wait {
        let _: Option<()> = ctx.wait_for_event("never", Duration::from_secs(3600)).await?;
    }
    if args.fail_at_end {
        ctx.step("pay", || async { Err::<(), _>(JobError::permanent("card declined")) }).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_failed_run_compensates_its_completed_steps_newest_first_once_each() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = Saga::start(&node, SagaArgs { fail_at_end: true, wait: false }).await.expect("start");
    wait_state(db.pool(), run, "discarded").await;
    assert_eq!(
        effects(db.pool(), run).await,
        ["book flight", "book hotel", "book car", "cancel car-1", "cancel hotel-1", "cancel flight-1"]
    );
    let steps = workflows::run_steps(db.pool(), run).await.expect("steps");
    assert!(steps.iter().filter(|s| s.name != "pay").all(|s| s.compensated_at.is_some()));
    let pay = steps.iter().find(|s| s.name == "pay").expect("pay");
    assert_eq!((pay.status.as_str(), pay.error.as_deref()), ("failed", Some("card declined")));
    let errors: serde_json::Value = sqlx::query_scalar("select errors from forge_jobs where id = $1")
        .bind(run.0)
        .fetch_one(db.pool())
        .await
        .expect("errors");
    assert!(errors.to_string().contains("step pay failed: card declined"), "{errors}");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_cancelled_waiting_run_compensates_and_ends_cancelled() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = Saga::start(&node, SagaArgs { fail_at_end: false, wait: true }).await.expect("start");
    eventually("the run to wait", Duration::from_secs(30), async || {
        let info = workflows::find_run(db.pool(), run).await.expect("find")?;
        (info.waiting_for.is_some() && info.state == "scheduled").then_some(())
    })
    .await;
    workflows::cancel(db.pool(), run).await.expect("cancel");
    wait_state(db.pool(), run, "cancelled").await;
    assert_eq!(
        effects(db.pool(), run).await,
        ["book flight", "book hotel", "book car", "cancel car-1", "cancel hotel-1", "cancel flight-1"]
    );
    let again = workflows::cancel(db.pool(), run).await;
    assert!(matches!(again, Err(WorkflowsError::Finished { .. })), "{again:?}");
    node.stop().await.expect("stop");
}

// ---- versions, keys, transactions -----------------------------------------------------------

/// Before `patch-v2` is deployed the run e-mails; after, new runs text, while runs that passed
/// the point on the old code keep e-mailing.
#[forge::workflow(version = 2)]
async fn notify_user(ctx: &WorkflowContext, _args: ()) -> Result<String, WorkflowError> {
    let deployed = switch(ctx.db(), "patch-v2").await;
    let channel = if deployed && ctx.patched("sms").await? { "sms" } else { "email" };
    ctx.step(channel, || async { Ok(()) }).await?;
    let _: Option<()> = ctx.wait_for_event("done", Duration::from_secs(3600)).await?;
    ctx.step("after", || async { Ok(()) }).await?;
    Ok(channel.to_owned())
}

#[tokio::test]
async fn patched_keeps_old_runs_on_the_old_path_and_sends_new_ones_down_the_new() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let old = NotifyUser::start(&node, ()).await.expect("start");
    eventually("the old run to wait", Duration::from_secs(30), async || {
        let info = workflows::find_run(db.pool(), old).await.expect("find")?;
        (info.waiting_for.is_some() && info.state == "scheduled").then_some(())
    })
    .await;
    set_switch(db.pool(), "patch-v2", true).await;
    let new = NotifyUser::start(&node, ()).await.expect("start");
    eventually("the new run to wait", Duration::from_secs(30), async || {
        let info = workflows::find_run(db.pool(), new).await.expect("find")?;
        (info.waiting_for.is_some() && info.state == "scheduled").then_some(())
    })
    .await;
    for run in [old, new] {
        workflows::send_event(db.pool(), run, "done", ()).await.expect("send");
    }
    wait_state(db.pool(), old, "completed").await;
    wait_state(db.pool(), new, "completed").await;
    assert_eq!(output(db.pool(), old).await, json!("email"));
    assert_eq!(output(db.pool(), new).await, json!("sms"));
    let kinds: Vec<String> =
        workflows::run_steps(db.pool(), new).await.expect("steps").into_iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["patch", "step", "event", "step"]);
    let info = workflows::find_run(db.pool(), new).await.expect("find").expect("run");
    assert_eq!(info.version, 2);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_run_key_starts_one_run_and_start_in_follows_the_transaction() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let first = Naps::start_with(db.pool(), 1, StartOptions::new().key("nap-1")).await.expect("start");
    let second = Naps::start_with(db.pool(), 1, StartOptions::new().key("nap-1")).await.expect("start");
    assert_eq!(first, second);
    // Concurrent starts with one key: one run.
    let starts = (0..8).map(|_| Naps::start_with(db.pool(), 1, StartOptions::new().key("nap-2")));
    let ids: Vec<JobId> =
        futures_util::future::join_all(starts).await.into_iter().collect::<Result<_, _>>().expect("starts");
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let mut tx = db.pool().begin().await.expect("begin");
    Naps::start_in(&mut tx, 1, StartOptions::new()).await.expect("start in");
    tx.rollback().await.expect("rollback");
    let runs: i64 =
        sqlx::query_scalar("select count(*) from forge_workflow_runs").fetch_one(db.pool()).await.expect("count");
    assert_eq!(runs, 2, "the rolled-back start left nothing");
    let mut tx = db.pool().begin().await.expect("begin");
    let in_tx = Naps::start_in(&mut tx, 1, StartOptions::new().key("nap-1")).await.expect("start in");
    tx.commit().await.expect("commit");
    assert_eq!(in_tx, first, "the key is seen inside a transaction too");
}

// ---- parallel steps and children ------------------------------------------------------------

/// A child: squares its input after a short durable sleep (so the parent really waits);
/// a negative input fails it.
#[forge::workflow]
async fn square(ctx: &WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    ctx.sleep(Duration::from_millis(100)).await?;
    ctx.step("square", || async move {
        if n < 0 { Err(JobError::permanent(format!("{n} is negative"))) } else { Ok(n * n) }
    })
    .retry(RetryPolicy::none())
    .await
}

/// Fans out to a child per input and sums their results; parallel steps first.
#[forge::workflow]
async fn sum_of_squares(ctx: &WorkflowContext, inputs: Vec<i64>) -> Result<i64, WorkflowError> {
    let parallel =
        ctx.join(["a", "b", "c"].map(|name| ctx.step(name, move || async move { Ok(name.len() as i64) }))).await;
    let offset: i64 = parallel.into_iter().sum::<Result<i64, _>>()?;
    let mut children = Vec::new();
    for n in inputs {
        children.push(ctx.start_child::<Square>(n).await?);
    }
    let results = ctx.join(children.iter().map(|c| c.result())).await;
    let mut total = offset;
    for r in results {
        total += r?;
    }
    Ok(total)
}

#[tokio::test]
async fn parallel_steps_are_recorded_in_order_and_children_wake_their_parent() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 8).await;
    let run = SumOfSquares::start(&node, vec![1, 2, 3]).await.expect("start");
    wait_state(db.pool(), run, "completed").await;
    assert_eq!(output(db.pool(), run).await, json!(3 + 1 + 4 + 9));
    let steps = workflows::run_steps(db.pool(), run).await.expect("steps");
    let names: Vec<_> = steps.iter().map(|s| (s.seq, s.name.as_str(), s.kind.as_str())).collect();
    assert_eq!(
        &names[..6],
        [
            (0, "a", "step"),
            (1, "b", "step"),
            (2, "c", "step"),
            (3, "square", "child"),
            (4, "square#2", "child"),
            (5, "square#3", "child")
        ]
    );
    let info = workflows::find_run(db.pool(), run).await.expect("find").expect("run");
    assert_eq!(info.open_children, 0, "each child counted itself out when it finished");
    let children: i64 = sqlx::query_scalar("select count(*) from forge_workflow_runs where parent_id = $1")
        .bind(run.0)
        .fetch_one(db.pool())
        .await
        .expect("children");
    assert_eq!(children, 3, "one child per input, none started twice");
    // A failing child fails its parent with the child named.
    let failing = SumOfSquares::start(&node, vec![2, -1]).await.expect("start");
    wait_state(db.pool(), failing, "discarded").await;
    let errors: serde_json::Value = sqlx::query_scalar("select errors from forge_jobs where id = $1")
        .bind(failing.0)
        .fetch_one(db.pool())
        .await
        .expect("errors");
    assert!(errors.to_string().contains("-1 is negative") && errors.to_string().contains("square"), "{errors}");
    node.stop().await.expect("stop");
}

// ---- operating them: the CLI ----------------------------------------------------------------

async fn cli(db: &TestDatabase, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("--project")
        .arg(forge::testing::project_root())
        .args(args)
        .env("DATABASE_URL", db.url())
        .output()
        .await
        .expect("run forge")
}

fn cli_json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn the_cli_lists_shows_signals_cancels_and_resumes_runs() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let waiting =
        AwaitsConfirmation::start_with(&node, AwaitArgs { timeout_ms: 3_600_000 }, StartOptions::new().key("cli-run"))
            .await
            .expect("start");
    let saga = Saga::start(&node, SagaArgs { fail_at_end: false, wait: true }).await.expect("start");
    for run in [waiting, saga] {
        eventually("the runs to wait", Duration::from_secs(30), async || {
            let info = workflows::find_run(db.pool(), run).await.expect("find")?;
            (info.waiting_for.is_some() && info.state == "scheduled").then_some(())
        })
        .await;
    }
    let listed = cli_json(&cli(&db, &["--json", "workflows", "list", "--status", "waiting"]).await);
    let ids: Vec<i64> = listed.as_array().expect("list").iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, [saga.0, waiting.0], "newest first");
    let shown = cli_json(&cli(&db, &["--json", "workflows", "show", "cli-run"]).await);
    assert_eq!(shown["run"]["status"], "waiting");
    assert_eq!(shown["run"]["waiting_for"], "email_confirmed");
    assert_eq!(shown["steps"][0]["kind"], "event");
    let sent = cli_json(
        &cli(&db, &["--json", "workflows", "send-event", "cli-run", "email_confirmed", "--payload", r#"{"by":"cli"}"#])
            .await,
    );
    assert_eq!((sent["delivered"].clone(), sent["woke"].clone()), (json!(true), json!(true)));
    wait_state(db.pool(), waiting, "completed").await;
    assert_eq!(output(db.pool(), waiting).await, json!("confirmed by cli"));
    let shown = cli_json(&cli(&db, &["--json", "workflows", "show", &waiting.0.to_string()]).await);
    assert_eq!(shown["events"][0]["payload"], json!({ "by": "cli" }));

    cli_json(&cli(&db, &["--json", "workflows", "cancel", &saga.0.to_string()]).await);
    wait_state(db.pool(), saga, "cancelled").await;
    let refused = cli(&db, &["workflows", "resume", &saga.0.to_string()]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not blocked"), "{stderr}");
    let bad = cli(&db, &["workflows", "send-event", "cli-run", "x", "--payload", "{oops"]).await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--payload is not valid JSON"));
    let unknown = cli(&db, &["workflows", "show", "nope"]).await;
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no workflow run nope"));
    node.stop().await.expect("stop");
}

// ---- operating them: the dashboard in a real browser ----------------------------------------

#[tokio::test]
async fn the_dashboard_sends_an_event_and_resumes_a_blocked_run_in_a_real_browser() {
    let root = forge::testing::project_root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists() && root.join("tests/browser/node_modules/playwright-core").exists(),
        "the browser test needs {chromium} and tests/browser/node_modules: run ./dev.sh setup"
    );
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Gateway, Role::Worker, Role::Scheduler]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.worker.lease = "400ms".parse().expect("duration");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    let base = format!("http://{}", node.local_addr().expect("gateway address"));

    let waiting = AwaitsConfirmation::start(&node, AwaitArgs { timeout_ms: 3_600_000 }).await.expect("start");
    let blocked = Changing::start(&node, ()).await.expect("start");
    for run in [waiting, blocked] {
        eventually("the runs to wait", Duration::from_secs(30), async || {
            let info = workflows::find_run(db.pool(), run).await.expect("find")?;
            (info.waiting_for.is_some() && info.state == "scheduled").then_some(())
        })
        .await;
    }
    set_switch(db.pool(), "changed-code", true).await;
    workflows::send_event(db.pool(), blocked, "go", ()).await.expect("send");
    eventually("the run to block", Duration::from_secs(30), async || {
        let info = workflows::find_run(db.pool(), blocked).await.expect("find")?;
        (info.status() == RunStatus::Blocked).then_some(())
    })
    .await;

    let shots = root.join("target/dashboard-screenshots");
    let output = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/workflows.mjs"))
        .arg(&base)
        .arg(&shots)
        .arg(waiting.0.to_string())
        .arg(blocked.0.to_string())
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), output).await.expect("the browser run timed out");
    let output = output.expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the browser run failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output_of(db.pool(), waiting).await, json!("confirmed by browser"));
    assert_eq!(output_of(db.pool(), blocked).await, json!("b"), "resumed from step 0 on the new code");
    node.stop().await.expect("stop");
}

async fn output_of(pool: &sqlx::PgPool, run: JobId) -> serde_json::Value {
    wait_state(pool, run, "completed").await;
    output(pool, run).await
}

/// Books, then pays; paying works once the switch `card-fixed` is on.
#[forge::workflow]
async fn trip(ctx: &WorkflowContext, _args: ()) -> Result<String, WorkflowError> {
    let run = ctx.run_id();
    let (db, undo_db) = (ctx.db().clone(), ctx.db().clone());
    let booking: String = ctx
        .step("book", || async {
            ran(&db, run, "book").await?;
            Ok("room-7".to_owned())
        })
        .compensate(move |b: String| async move { ran(&undo_db, run, &format!("cancel {b}")).await })
        .await?;
    ctx.step("pay", || async {
        if switch(ctx.db(), "card-fixed").await { Ok(()) } else { Err(JobError::permanent("card declined")) }
    })
    .await?;
    Ok(booking)
}

#[tokio::test]
async fn a_failed_run_is_retried_from_its_first_compensated_or_failed_step() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = Trip::start(&node, ()).await.expect("start");
    wait_state(db.pool(), run, "discarded").await;
    assert_eq!(effects(db.pool(), run).await, ["book", "cancel room-7"]);
    let early = workflows::retry(db.pool(), Trip::start(&node, ()).await.expect("start")).await;
    assert!(matches!(early, Err(WorkflowsError::NotFailed { .. })), "{early:?}");
    set_switch(db.pool(), "card-fixed", true).await;
    // The booking was compensated (undone): the retry starts there, not at the failed payment.
    let from = cli_json(&cli(&db, &["--json", "workflows", "retry", &run.0.to_string()]).await);
    assert_eq!(from["from_step"], 0);
    wait_state(db.pool(), run, "completed").await;
    assert_eq!(effects(db.pool(), run).await, ["book", "cancel room-7", "book"]);
    assert_eq!(output(db.pool(), run).await, json!("room-7"));
    node.stop().await.expect("stop");
}

// ---- forge::testing: a run in-process, its clock, crashes, MockHttp --------------------------

use forge::testing::{MockHttp, RunOutcome};

/// Waits up to three days for a confirmation, then reminds.
#[forge::workflow]
async fn confirm_or_remind(ctx: &WorkflowContext, _args: ()) -> Result<String, WorkflowError> {
    let confirmed: Option<Confirmation> =
        ctx.wait_for_event("email_confirmed", Duration::from_secs(3 * 86_400)).await?;
    match confirmed {
        Some(c) => Ok(format!("welcome {}", c.by)),
        None => {
            ctx.step("remind", || async { Ok(()) }).await?;
            Ok("reminded".to_owned())
        }
    }
}

#[tokio::test]
async fn a_test_moves_a_runs_clock_and_injects_events() {
    let db = TestDatabase::new().await.expect("db");
    let mut late = db.start_workflow::<ConfirmOrRemind>(()).await;
    assert!(
        matches!(late.run().await, RunOutcome::Waiting { event: Some(ref e), .. } if e == "email_confirmed"),
        "it waits for the confirmation"
    );
    late.advance(Duration::from_secs(3 * 86_400)).await;
    assert_eq!(late.run().await, RunOutcome::Completed("reminded".to_owned()));
    assert_eq!(late.step_names().await, ["email_confirmed", "remind"]);

    let mut prompt = db.start_workflow::<ConfirmOrRemind>(()).await;
    prompt.run().await;
    prompt.send_event("email_confirmed", Confirmation { by: "ada".into() }).await.expect("send");
    assert_eq!(prompt.run().await, RunOutcome::Completed("welcome ada".to_owned()));
}

/// Three steps, each recording that its closure ran.
#[forge::workflow(max_attempts = 5)]
async fn counted(ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    for name in ["a", "b", "c"] {
        ctx.step(name, || async { ran(ctx.db(), ctx.run_id(), name).await }).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_test_simulates_a_crash_after_a_step_and_each_closure_runs_once() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let mut run = db.start_workflow::<Counted>(()).await;
    assert!(run.crash_after(2).await, "an execution ran");
    assert_eq!(run.step_names().await, ["a", "b"], "it crashed after two steps");
    assert_eq!(job_state(db.pool(), run.id()).await, "retryable", "the crash counts as a failed execution");
    assert_eq!(run.run().await, RunOutcome::Completed(()));
    assert_eq!(effects(db.pool(), run.id()).await, ["a", "b", "c"], "each closure ran once");
}

/// Charges over HTTP (retrying a 5xx), then records the charge id.
#[forge::workflow]
async fn charge_card(ctx: &WorkflowContext, amount: i64) -> Result<String, WorkflowError> {
    ctx.step("charge", || async {
        let reply =
            ctx.http().post("http://payments.test/v1/charges").json(&json!({ "amount": amount })).send().await?;
        if !reply.status().is_success() {
            return Err(JobError::retry(format!("the payment service answered {}", reply.status())));
        }
        let body: serde_json::Value = reply.json().await?;
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    })
    .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
    .await
}

#[tokio::test]
async fn mock_http_answers_a_steps_requests_and_records_them() {
    let db = TestDatabase::new().await.expect("db");
    let http = MockHttp::start().await;
    http.on("POST", "/v1/charges").respond_once(503, json!({"error": "busy"})).respond(200, json!({"id": "ch_9"}));
    let mut run = db.start_workflow::<ChargeCard>(42).await.with_http(http.client());
    assert_eq!(run.run().await, RunOutcome::Completed("ch_9".to_owned()));
    http.assert_called("POST", "/v1/charges");
    http.assert_called_times("POST", "/v1/charges", 2);
    http.assert_not_called("POST", "/v1/charges/{id}/refund");
    let calls = http.calls();
    assert_eq!(calls[0].host, "payments.test");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&calls[1].body).expect("json"), json!({ "amount": 42 }));
    assert_eq!(run.steps().await[0].attempts, 2);
}

// ---- cancel while executing, whole-run timeout ----------------------------------------------

/// Books (with an undo), then a step that holds until the switch `release-hold` is on, then
/// another step that must never run once the run is cancelled.
#[forge::workflow]
async fn holds(ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    let run = ctx.run_id();
    let undo_db = ctx.db().clone();
    ctx.step("book", || async { ran(ctx.db(), run, "book").await })
        .compensate(move |()| async move { ran(&undo_db, run, "unbook").await })
        .await?;
    ctx.step("hold", || async {
        ran(ctx.db(), run, "holding").await?;
        while !switch(ctx.db(), "release-hold").await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
    .await?;
    ctx.step("after", || async { ran(ctx.db(), run, "after").await }).await
}

#[tokio::test]
async fn a_run_cancelled_while_it_executes_stops_at_its_next_step_and_compensates() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let node = node(&db, 4).await;
    let run = Holds::start(&node, ()).await.expect("start");
    eventually("the hold", Duration::from_secs(30), async || {
        effects(db.pool(), run).await.contains(&"holding".to_owned()).then_some(())
    })
    .await;
    workflows::cancel(db.pool(), run).await.expect("cancel");
    set_switch(db.pool(), "release-hold", true).await;
    wait_state(db.pool(), run, "cancelled").await;
    assert_eq!(effects(db.pool(), run).await, ["book", "holding", "unbook"], "the step after the cancel never ran");
    node.stop().await.expect("stop");
}

/// Sleeps an hour, but the whole run may take a second.
#[forge::workflow(timeout = "1s")]
async fn too_slow(ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    let run = ctx.run_id();
    let undo_db = ctx.db().clone();
    ctx.step("start", || async { ran(ctx.db(), run, "start").await })
        .compensate(move |()| async move { ran(&undo_db, run, "undo start").await })
        .await?;
    ctx.sleep(Duration::from_secs(3600)).await?;
    ctx.step("late", || async { ran(ctx.db(), run, "late").await }).await
}

#[tokio::test]
async fn a_run_past_its_timeout_fails_and_compensates() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let mut run = db.start_workflow::<TooSlow>(()).await;
    let RunOutcome::Waiting { until, .. } = run.run().await else { panic!("it sleeps") };
    assert!(
        until < chrono::Utc::now() + chrono::Duration::seconds(2),
        "it wakes at its deadline, not in an hour: {until}"
    );
    run.advance(Duration::from_secs(2)).await;
    let RunOutcome::Failed(reason) = run.run().await else { panic!("it fails") };
    assert!(reason.contains("timeout"), "{reason}");
    assert_eq!(effects(db.pool(), run.id()).await, ["start", "undo start"]);
}

#[tokio::test]
async fn start_many_starts_runs_in_order_and_refuses_a_key() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let ids = Naps::start_many(db.pool(), vec![1, 2, 3], StartOptions::new()).await.expect("start many");
    assert_eq!(ids.len(), 3);
    let args: Vec<i64> = sqlx::query_scalar(
        "select j.args::text::bigint from forge_jobs j join forge_workflow_runs r on r.id = j.id
         where j.id = any($1) order by array_position($1, j.id)",
    )
    .bind(ids.iter().map(|i| i.0).collect::<Vec<_>>())
    .fetch_all(db.pool())
    .await
    .expect("runs");
    assert_eq!(args, [1, 2, 3], "one run row per job, in order");
    let keyed = Naps::start_many(db.pool(), vec![1], StartOptions::new().key("k")).await;
    assert!(matches!(keyed, Err(WorkflowsError::InvalidName(_))), "{keyed:?}");
    let node = node(&db, 4).await;
    for id in ids {
        wait_state(db.pool(), id, "completed").await;
    }
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn runs_claimed_through_claim_windows_replay_sleep_and_count_as_with_classic_claims() {
    let db = TestDatabase::new().await.expect("db");
    setup(&db).await;
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.worker.hold_claims = true;
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let steps = ThreeSteps::start(&node, Order { amount: 21 }).await.expect("start");
    let nap = Naps::start(&node, 300).await.expect("start");
    wait_state(db.pool(), steps, "completed").await;
    wait_state(db.pool(), nap, "completed").await;
    assert_eq!(output(db.pool(), steps).await, json!("ch_42"));
    assert_eq!(effects(db.pool(), steps).await, ["reserve", "charge", "ship"], "each step's closure ran once");
    let attempts: Vec<(i32, serde_json::Value)> =
        sqlx::query_as("select attempt, errors from forge_jobs where id = any($1) order by id")
            .bind(vec![steps.0, nap.0])
            .fetch_all(db.pool())
            .await
            .expect("rows");
    assert_eq!(attempts[0].0, 2, "the panic cost one execution");
    assert_eq!(attempts[1], (1, json!([])), "a sleep is not a failed attempt");
    node.stop().await.expect("stop");
}
