//! `forge::testing`'s job helpers, used as an application would.

use forge::prelude::*;
use forge::testing::{DrainOptions, Drained, TestDatabase};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    user_id: i64,
    locale: String,
}

#[forge::job(queue = "mail")]
async fn send_welcome(ctx: &JobContext, args: Welcome) -> Result<String, JobError> {
    sqlx::query("insert into outbox (user_id) values ($1)").bind(args.user_id).execute(ctx.db()).await?;
    Ok(format!("welcome-{}-{}", args.user_id, args.locale))
}

#[forge::job(queue = "mail", max_attempts = 2, backoff(fixed, base = "1h", jitter = 0.0))]
async fn bounce(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Err(JobError::retry("mailbox full"))
}

#[forge::job(max_attempts = 3, backoff(fixed, base = "1h", jitter = 0.0))]
async fn later(ctx: &JobContext, snooze: bool) -> Result<u32, JobError> {
    if snooze {
        return Err(JobError::snooze(std::time::Duration::from_secs(600)));
    }
    if ctx.is_last_attempt() {
        return Err(JobError::retry("gave up"));
    }
    Err(JobError::retry(format!("attempt {} failed", ctx.attempt())))
}

#[forge::job(transactional)]
async fn charge(ctx: &JobContext, amount: i64) -> Result<i64, JobError> {
    let mut tx = ctx.tx().await?;
    sqlx::query("insert into charges (amount) values ($1)").bind(amount).execute(&mut tx).await?;
    if amount < 0 {
        return Err(JobError::permanent("negative amount"));
    }
    Ok(amount)
}

async fn setup() -> TestDatabase {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql("create table outbox (user_id bigint); create table charges (amount bigint);")
        .execute(db.pool())
        .await
        .expect("tables");
    db
}

#[tokio::test]
async fn assert_and_refute_enqueued_match_kind_and_a_subset_of_args() {
    let db = setup().await;
    db.refute_enqueued::<SendWelcome>(json!({})).await;
    let mut tx = db.pool().begin().await.expect("begin");
    SendWelcome::dispatch_in(&mut tx, Welcome { user_id: 7, locale: "fr".into() }, DispatchOptions::new())
        .await
        .expect("dispatch");
    tx.commit().await.expect("commit");
    db.assert_enqueued::<SendWelcome>(json!({})).await;
    db.assert_enqueued::<SendWelcome>(json!({"user_id": 7})).await;
    db.refute_enqueued::<SendWelcome>(json!({"user_id": 8})).await;
    db.refute_enqueued::<Bounce>(json!({})).await;
}

#[tokio::test]
#[should_panic(expected = "expected a live send_welcome job")]
async fn assert_enqueued_fails_when_nothing_matches() {
    let db = setup().await;
    db.assert_enqueued::<SendWelcome>(json!({"user_id": 1})).await;
}

#[tokio::test]
async fn perform_job_runs_the_handler_with_a_real_context() {
    let db = setup().await;
    let out = db.perform_job::<SendWelcome>(Welcome { user_id: 3, locale: "en".into() }).await.expect("ok");
    assert_eq!(out, "welcome-3-en");
    let n: i64 =
        sqlx::query_scalar("select count(*) from outbox where user_id = 3").fetch_one(db.pool()).await.expect("n");
    assert_eq!(n, 1);

    assert_eq!(db.perform_job::<Charge>(5).await.expect("charged"), 5);
    let err = db.perform_job::<Charge>(-1).await.expect_err("refused");
    assert!(matches!(err, JobError::Fatal(_)), "{err}");
    let amounts: Vec<i64> = sqlx::query_scalar("select amount from charges").fetch_all(db.pool()).await.expect("rows");
    assert_eq!(amounts, vec![5], "the failed transactional attempt rolled back");
}

/// The row `perform_job` left: state, attempt, minutes until run_at, error kinds.
async fn left(db: &TestDatabase) -> (String, i32, i64, Vec<String>) {
    sqlx::query_as(
        "select state, attempt, round(extract(epoch from run_at - now()) / 60)::int8,
                array(select e ->> 'kind' from jsonb_array_elements(errors) e)
         from forge_jobs order by id desc limit 1",
    )
    .fetch_one(db.pool())
    .await
    .expect("row")
}

#[tokio::test]
async fn perform_job_applies_the_workers_outcome_policy() {
    let db = setup().await;
    let err = db.perform_job::<Later>(false).await.expect_err("fails");
    assert_eq!(err.message(), "attempt 1 failed");
    assert_eq!(left(&db).await, ("retryable".to_owned(), 1, 60, vec!["error".to_owned()]), "retried after the backoff");

    let err = db.perform_attempt::<Later>(false, 3).await.expect_err("fails");
    assert_eq!(err.message(), "gave up", "the last attempt sees is_last_attempt()");
    assert_eq!(left(&db).await, ("discarded".to_owned(), 3, 0, vec!["error".to_owned()]));

    let err = db.perform_job::<Later>(true).await.expect_err("snoozes");
    assert!(matches!(err, JobError::Snooze(_)), "{err}");
    assert_eq!(left(&db).await, ("scheduled".to_owned(), 0, 10, vec![]), "a snooze does not count the attempt");
}

#[tokio::test]
async fn drain_queue_runs_everything_available() {
    let db = setup().await;
    let welcomes = (0..5).map(|i| Welcome { user_id: i, locale: "de".into() }).collect();
    SendWelcome::dispatch_many(db.pool(), welcomes, DispatchOptions::new()).await.expect("dispatch");
    Bounce::dispatch(db.pool(), ()).await.expect("dispatch");
    let drained = db.drain_queue("mail").await;
    assert_eq!(drained, Drained { completed: 5, retryable: 1, discarded: 0, cancelled: 0 });

    // Bounce's retry is due in an hour; move the clock forward for it, and the next drain runs
    // its last attempt, which discards it.
    sqlx::query("update forge_jobs set run_at = now() where state = 'retryable'")
        .execute(db.pool())
        .await
        .expect("due");
    let drained = db.drain_queue("mail").await;
    assert_eq!(drained, Drained { completed: 0, retryable: 0, discarded: 1, cancelled: 0 });
    db.refute_enqueued::<SendWelcome>(json!({})).await;
    let n: i64 = sqlx::query_scalar("select count(*) from outbox").fetch_one(db.pool()).await.expect("n");
    assert_eq!(n, 5);
}

static FLAKY_CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Fails twice (an hour's backoff each time), then succeeds.
#[forge::job(queue = "flaky", max_attempts = 5, backoff(fixed, base = "1h", jitter = 0.0))]
async fn flaky(ctx: &JobContext, _args: ()) -> Result<u32, JobError> {
    FLAKY_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if ctx.attempt() < 3 {
        return Err(JobError::retry(format!("attempt {} failed", ctx.attempt())));
    }
    Ok(ctx.attempt())
}

#[tokio::test]
async fn drain_queue_with_retries_runs_a_flaky_job_to_success_in_one_call() {
    let db = setup().await;
    let id = Flaky::dispatch(db.pool(), ()).await.expect("dispatch");
    // Without the option, the first failure's retry is an hour away: the drain leaves it.
    let drained = db.drain_queue("flaky").await;
    assert_eq!(drained, Drained { completed: 0, retryable: 1, discarded: 0, cancelled: 0 });
    let drained = db.drain_queue_with("flaky", DrainOptions::default().with_retries()).await;
    assert_eq!(drained, Drained { completed: 1, retryable: 0, discarded: 0, cancelled: 0 });
    let (state, attempt): (String, i32) = sqlx::query_as("select state, attempt from forge_jobs where id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .expect("row");
    assert_eq!((state.as_str(), attempt), ("completed", 3));
    assert_eq!(FLAKY_CALLS.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn drain_queue_with_scheduled_runs_jobs_scheduled_for_later() {
    let db = setup().await;
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    let welcome = Welcome { user_id: 42, locale: "en".into() };
    SendWelcome::dispatch_with(db.pool(), welcome, DispatchOptions::new().run_at(tomorrow)).await.expect("dispatch");
    assert_eq!(db.drain_queue("mail").await, Drained::default(), "not due: left");
    let drained = db.drain_queue_with("mail", DrainOptions::default().with_scheduled()).await;
    assert_eq!(drained, Drained { completed: 1, retryable: 0, discarded: 0, cancelled: 0 });
}

/// Every morning: dispatches one welcome for the day it runs for.
#[forge::cron("0 8 * * *")]
async fn morning_digest(ctx: &CronContext) -> Result<(), JobError> {
    let day = ctx.scheduled_time().format("%Y%m%d").to_string().parse::<i64>().unwrap_or(0);
    SendWelcome::dispatch(ctx.db(), Welcome { user_id: day, locale: "digest".into() })
        .await
        .map_err(|e| JobError::retry(e.to_string()))?;
    Ok(())
}

#[tokio::test]
async fn perform_cron_fires_a_tick_and_what_it_dispatched_can_be_asserted() {
    let db = setup().await;
    let at: chrono::DateTime<chrono::Utc> = "2026-01-05T08:00:00Z".parse().expect("time");
    db.perform_cron::<MorningDigest>(at).await.expect("the cron ran");
    db.assert_enqueued::<SendWelcome>(json!({"user_id": 20260105, "locale": "digest"})).await;
    let recorded: i64 = sqlx::query_scalar(
        "select count(*) from forge_cron_runs where cron_name = 'morning_digest' and scheduled_at = $1",
    )
    .bind(at)
    .fetch_one(db.pool())
    .await
    .expect("runs");
    assert_eq!(recorded, 1, "the tick is recorded as the scheduler would");
}
