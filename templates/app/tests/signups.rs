//! {{name}}'s tests: each gets a fresh database with every migration applied (Forge's and
//! this app's), on DATABASE_URL's server or the embedded PostgreSQL. The app's functions, jobs
//! and crons are registered because this test links `{{crate}}`.

use forge::prelude::*;
use forge::testing::{DrainOptions, TestCaller, TestDatabase};
use serde_json::json;

use {{crate}}::signups::{DailyDigest, SendDigest, SendWelcome, SignUp};

#[tokio::test]
async fn signing_up_records_the_email_and_dispatches_the_welcome() {
    let db = TestDatabase::new().await.expect("a test database");
    let caller = TestCaller::anonymous();
    let job: JobId = db.call("sign_up", json!({ "email": "Ada@Example.com" }), &caller).await.expect("sign up");
    db.assert_enqueued::<SendWelcome>(json!({ "email": "ada@example.com" })).await;
    let count: i64 = db.call("signup_count", json!(null), &caller).await.expect("count");
    assert_eq!(count, 1);
    assert!(job.0 > 0);
}

#[tokio::test]
async fn a_bad_email_is_refused_and_nothing_is_written() {
    let db = TestDatabase::new().await.expect("a test database");
    let refused = db.call::<JobId>("sign_up", json!({ "email": "nope" }), &TestCaller::anonymous()).await;
    assert!(refused.is_err());
    db.refute_enqueued::<SendWelcome>(json!({ "email": "nope" })).await;
}

#[tokio::test]
async fn the_welcome_job_marks_the_signup() {
    let db = TestDatabase::new().await.expect("a test database");
    forge::sqlx::query("insert into signups (email) values ('ada@example.com')").execute(db.pool()).await.expect("row");
    let out = db.perform_job::<SendWelcome>(SignUp { email: "ada@example.com".into() }).await.expect("job");
    assert_eq!(out, "welcome, ada@example.com");
    let welcomed: bool = forge::sqlx::query_scalar("select welcomed_at is not null from signups")
        .fetch_one(db.pool())
        .await
        .expect("row");
    assert!(welcomed);
}

#[tokio::test]
async fn recent_signups_lists_the_newest_first_with_their_welcome() {
    let db = TestDatabase::new().await.expect("a test database");
    let caller = TestCaller::anonymous();
    for email in ["ada@example.com", "grace@example.com"] {
        let _: JobId = db.call("sign_up", json!({ "email": email }), &caller).await.expect("sign up");
    }
    db.perform_job::<SendWelcome>(SignUp { email: "ada@example.com".into() }).await.expect("job");
    let list: serde_json::Value = db.call("recent_signups", json!(null), &caller).await.expect("list");
    assert_eq!(
        list,
        json!([
            { "email": "grace@example.com", "welcomed": false, "welcome_failed": false },
            { "email": "ada@example.com", "welcomed": true, "welcome_failed": false },
        ])
    );
}

/// The real worker runs the queue; `with_retries` runs each retry at once instead of after its
/// backoff, so all five attempts happen in one call.
#[tokio::test]
async fn a_welcome_that_keeps_failing_is_retried_then_flagged() {
    let db = TestDatabase::new().await.expect("a test database");
    let caller = TestCaller::anonymous();
    let _: JobId = db.call("sign_up", json!({ "email": "ghost@bounce.example" }), &caller).await.expect("sign up");
    let drained = db.drain_queue_with("default", DrainOptions::default().with_retries()).await;
    assert_eq!((drained.completed, drained.discarded), (0, 1), "{drained:?}");
    let (attempts, failed): (i32, bool) = forge::sqlx::query_as(
        "select j.attempt, s.welcome_failed from forge_jobs j join signups s on s.email = j.args->>'email'",
    )
    .fetch_one(db.pool())
    .await
    .expect("row");
    assert_eq!((attempts, failed), (5, true));
}

/// `perform_attempt` runs a chosen attempt, so the last-attempt path is tested on its own.
#[tokio::test]
async fn only_the_last_failed_attempt_flags_the_signup() {
    let db = TestDatabase::new().await.expect("a test database");
    forge::sqlx::query("insert into signups (email) values ('ghost@bounce.example')").execute(db.pool()).await.expect("row");
    let failed = || async {
        forge::sqlx::query_scalar::<_, bool>("select welcome_failed from signups").fetch_one(db.pool()).await.expect("row")
    };
    let args = || SignUp { email: "ghost@bounce.example".into() };
    assert!(db.perform_attempt::<SendWelcome>(args(), 1).await.is_err());
    assert!(!failed().await, "the first attempt must not flag the sign-up");
    assert!(db.perform_attempt::<SendWelcome>(args(), 5).await.is_err());
    assert!(failed().await, "the last attempt flags the sign-up");
}

/// `perform_cron` fires a tick as the scheduler would; what it dispatched is then checked, and
/// run, like any job.
#[tokio::test]
async fn the_morning_tick_dispatches_the_digest_of_the_day_before() {
    let db = TestDatabase::new().await.expect("a test database");
    forge::sqlx::query("insert into signups (email, created_at) values ('ada@example.com', '2026-01-04T15:00:00Z')")
        .execute(db.pool())
        .await
        .expect("row");
    db.perform_cron::<DailyDigest>("2026-01-05T08:00:00Z".parse().expect("a time")).await.expect("the tick");
    db.assert_enqueued::<SendDigest>(json!({ "day": "2026-01-04" })).await;
    let drained = db.drain_queue("default").await;
    assert_eq!(drained.completed, 1, "{drained:?}");
    let count: i64 = forge::sqlx::query_scalar("select (output)::bigint from forge_jobs where kind = $1")
        .bind(<SendDigest as Job>::NAME)
        .fetch_one(db.pool())
        .await
        .expect("the digest's output");
    assert_eq!(count, 1);
}
