//! The reports pipeline against real PostgreSQL, with `forge::testing`: a request becomes a
//! built report and a mail in the outbox; a refused mail is retried (and delivered once); the nightly cron requests
//! every subscriber's report; bad input changes nothing.

use forge::prelude::*;
use forge::testing::{TestCaller, TestDatabase};
use serde_json::json;

#[path = "../src/pipeline.rs"]
mod pipeline;

use pipeline::{BuildReport, EmailReport, ReportStatus};

async fn seed_orders(db: &TestDatabase) {
    forge::sqlx::raw_sql(
        "insert into orders (amount_cents, created_at) values
           (1000, now() - interval '1 hour'), (2550, now() - interval '5 hours'),
           (9900, now() - interval '3 days'), (100, now() - interval '30 days')",
    )
    .execute(db.pool())
    .await
    .expect("orders");
}

async fn status(db: &TestDatabase, request: i64) -> ReportStatus {
    db.call("report_status", request, &TestCaller::anonymous()).await.expect("status")
}

#[tokio::test]
async fn a_request_is_built_then_mailed() {
    let db = TestDatabase::new().await.expect("db");
    seed_orders(&db).await;
    let request: i64 = db
        .call("request_report", json!({ "email": "ops@example.com", "period": "day" }), &TestCaller::anonymous())
        .await
        .expect("request");
    db.assert_enqueued::<BuildReport>(json!({ "request": request })).await;
    assert_eq!(status(&db, request).await.status, "requested");

    let built = db.drain_queue("reports").await;
    assert_eq!(built.completed, 1);
    let report = status(&db, request).await;
    assert_eq!((report.status.as_str(), report.orders, report.total_cents), ("built", Some(2), Some(3550)));
    db.assert_enqueued::<EmailReport>(json!({ "request": request })).await;

    assert_eq!(db.drain_queue("mail").await.completed, 1);
    let report = status(&db, request).await;
    assert_eq!(report.status, "delivered");
    assert!(report.delivered_at.is_some());
    let (to, body): (String, String) =
        forge::sqlx::query_as("select to_email, body from outbox").fetch_one(db.pool()).await.expect("mail");
    assert_eq!(to, "ops@example.com");
    assert_eq!(body, "2 orders, 35.50 in total, over the last day.");
}

#[tokio::test]
async fn a_refused_mail_is_retried_and_delivered_once() {
    let db = TestDatabase::new().await.expect("db");
    seed_orders(&db).await;
    let request: i64 = db
        .call("request_report", json!({ "email": "ops@flaky.example", "period": "week" }), &TestCaller::anonymous())
        .await
        .expect("request");
    db.drain_queue("reports").await;
    // Attempt 1 is refused: the job waits for its backoff. Run it now instead of waiting.
    let first = db.drain_queue("mail").await;
    assert_eq!((first.completed, first.retryable), (0, 1), "{first:?}");
    let id: i64 = forge::sqlx::query_scalar("select id from forge_jobs where kind = 'email_report'")
        .fetch_one(db.pool())
        .await
        .expect("job");
    assert!(forge::jobs::run_now(db.pool(), JobId(id)).await.expect("run now"));
    let second = db.drain_queue("mail").await;
    assert_eq!(second.completed, 1, "{second:?}");
    let (attempt, errors): (i32, serde_json::Value) =
        forge::sqlx::query_as("select attempt, errors from forge_jobs where kind = 'email_report'")
            .fetch_one(db.pool())
            .await
            .expect("job");
    assert_eq!(attempt, 2);
    assert_eq!(errors[0]["message"], "421 mail server busy");
    let sent: i64 = forge::sqlx::query_scalar("select count(*) from outbox").fetch_one(db.pool()).await.expect("count");
    assert_eq!(sent, 1);
    assert_eq!(status(&db, request).await.orders, Some(3));
}

#[tokio::test]
async fn the_nightly_cron_requests_every_subscribers_report() {
    let db = TestDatabase::new().await.expect("db");
    forge::sqlx::raw_sql(
        "insert into report_subscriptions (email, period) values ('a@example.com', 'day'), ('b@example.com', 'week')",
    )
    .execute(db.pool())
    .await
    .expect("subscriptions");
    // Run the cron's job as the scheduler would dispatch it.
    let args = forge::cron::CronArgs { scheduled_at: chrono::Utc::now(), catch_up: false };
    db.perform_job::<pipeline::NightlyReports>(args).await.expect("cron");
    let requested: i64 =
        forge::sqlx::query_scalar("select count(*) from report_requests").fetch_one(db.pool()).await.expect("count");
    assert_eq!(requested, 2);
    assert_eq!(db.drain_queue("reports").await.completed, 2);
    assert_eq!(db.drain_queue("mail").await.completed, 2);
}

#[tokio::test]
async fn a_bad_request_changes_nothing() {
    let db = TestDatabase::new().await.expect("db");
    let caller = TestCaller::anonymous();
    let refused = db.call::<i64>("request_report", json!({ "email": "nobody", "period": "day" }), &caller).await;
    assert!(refused.is_err());
    let wrong_period =
        db.call::<i64>("request_report", json!({ "email": "a@example.com", "period": "year" }), &caller).await;
    assert!(wrong_period.is_err());
    let rows: i64 =
        forge::sqlx::query_scalar("select count(*) from report_requests").fetch_one(db.pool()).await.expect("count");
    assert_eq!(rows, 0);
    db.refute_enqueued::<BuildReport>(json!({})).await;
    let missing = db.call::<ReportStatus>("report_status", 42, &caller).await;
    assert!(matches!(missing, Err(ForgeError::NotFound(_))), "{missing:?}");
}
