//! The sign-up workflow against real PostgreSQL, with `forge::testing`: confirmed in time it
//! activates the account; unconfirmed for three days (the test's clock moves) it closes it; a
//! provisioning failure undoes what was done, newest first; registering twice starts one run;
//! bad input changes nothing.

use std::time::Duration;

use forge::jobs::JobId;
use forge::testing::{RunOutcome, TestCaller, TestDatabase};
use serde_json::json;

#[path = "../src/signup.rs"]
mod signup;

use signup::{Account, SignUp};

async fn register(db: &TestDatabase, email: &str, workspace: &str) -> JobId {
    let run: i64 = db
        .call("register", json!({ "email": email, "workspace": workspace }), &TestCaller::anonymous())
        .await
        .expect("register");
    JobId(run)
}

async fn status(db: &TestDatabase, email: &str) -> Option<String> {
    db.call("account_status", json!(email), &TestCaller::anonymous()).await.expect("status")
}

#[tokio::test]
async fn a_confirmed_sign_up_activates_the_account_and_registering_twice_starts_one_run() {
    let db = TestDatabase::new().await.expect("db");
    let id = register(&db, "ada@example.com", "analytical").await;
    assert_eq!(register(&db, "ada@example.com", "analytical").await, id, "one run per address");
    let mut run = db.workflow_run::<SignUp>(id);
    assert!(matches!(run.run().await, RunOutcome::Waiting { event: Some(ref e), .. } if e == "email_confirmed"));
    assert_eq!(status(&db, "ada@example.com").await.as_deref(), Some("pending"));
    let mails: i64 = forge::sqlx::query_scalar("select count(*) from outbox where email = 'ada@example.com'")
        .fetch_one(db.pool())
        .await
        .expect("outbox");
    assert_eq!(mails, 1);

    let confirmed: bool = db
        .call("confirm_email", json!({ "email": "ada@example.com", "from_ip": "192.0.2.1" }), &TestCaller::anonymous())
        .await
        .expect("confirm");
    assert!(confirmed);
    let RunOutcome::Completed(account) = run.run().await else { panic!("the sign-up did not complete") };
    assert_eq!(account, Account { id: account.id, workspace: "analytical".into() });
    assert_eq!(status(&db, "ada@example.com").await.as_deref(), Some("active"));
    assert_eq!(
        run.step_names().await,
        ["open_account", "send_confirmation", "email_confirmed", "provision_workspace", "activate"]
    );
    // A second click on the link changes nothing.
    let again: bool = db
        .call("confirm_email", json!({ "email": "ada@example.com", "from_ip": "192.0.2.1" }), &TestCaller::anonymous())
        .await
        .unwrap_or(false);
    assert!(!again);
}

#[tokio::test]
async fn an_unconfirmed_sign_up_times_out_after_three_days_and_closes_the_account() {
    let db = TestDatabase::new().await.expect("db");
    let mut run = db.workflow_run::<SignUp>(register(&db, "bob@example.com", "bobs").await);
    assert!(matches!(run.run().await, RunOutcome::Waiting { .. }));
    run.advance(Duration::from_secs(2 * 86_400)).await;
    assert!(matches!(run.run().await, RunOutcome::Waiting { .. }), "two days in, it still waits");
    run.advance(Duration::from_secs(86_400)).await;
    let RunOutcome::Failed(reason) = run.run().await else { panic!("the sign-up did not fail") };
    assert!(reason.contains("not confirmed within 3 days"), "{reason}");
    assert_eq!(status(&db, "bob@example.com").await.as_deref(), Some("closed"), "compensated");
    let steps = run.steps().await;
    assert!(steps[0].compensated_at.is_some(), "the account's opening was undone");
}

#[tokio::test]
async fn a_failed_provisioning_undoes_the_account() {
    let db = TestDatabase::new().await.expect("db");
    let mut run = db.workflow_run::<SignUp>(register(&db, "eve@example.com", " ").await);
    run.run().await;
    run.send_event("email_confirmed", json!({ "from_ip": "192.0.2.9" })).await.expect("event");
    let RunOutcome::Failed(reason) = run.run().await else { panic!("the sign-up did not fail") };
    assert!(reason.contains("a workspace needs a name"), "{reason}");
    assert_eq!(status(&db, "eve@example.com").await.as_deref(), Some("closed"));
    let workspaces: i64 =
        forge::sqlx::query_scalar("select count(*) from workspaces").fetch_one(db.pool()).await.expect("workspaces");
    assert_eq!(workspaces, 0);
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let db = TestDatabase::new().await.expect("db");
    let bad = db
        .call::<i64>("register", json!({ "email": "not-an-address", "workspace": "x" }), &TestCaller::anonymous())
        .await;
    assert!(bad.is_err(), "{bad:?}");
    let unknown = db
        .call::<bool>(
            "confirm_email",
            json!({ "email": "nobody@example.com", "from_ip": "x" }),
            &TestCaller::anonymous(),
        )
        .await;
    assert!(format!("{unknown:?}").contains("no sign-up for that address"), "{unknown:?}");
    let runs: i64 =
        forge::sqlx::query_scalar("select count(*) from forge_workflow_runs").fetch_one(db.pool()).await.expect("runs");
    assert_eq!(runs, 0);
}
