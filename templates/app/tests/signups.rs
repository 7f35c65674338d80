//! {{name}}'s tests: each gets a fresh database with every migration applied (Forge's and
//! this app's), on DATABASE_URL's server or the embedded PostgreSQL.

use forge::prelude::*;
use forge::testing::{TestCaller, TestDatabase};
use serde_json::json;

#[path = "../src/signups.rs"]
mod signups;

use signups::{SendWelcome, SignUp};

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
