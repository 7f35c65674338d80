//! A property test of bad data: arbitrary Unicode — NUL included, up to tens of kilobytes — as a
//! job's arguments and, from its handler, in its output, its error, a log line's fields and a
//! span's attributes. Every case checks that the arguments are stored exactly (or, holding a
//! NUL, refused with nothing written), that what the handler produced is stored as documented
//! (NUL replaced, cut to its cap), that a batch-mate dispatched beside it completes, and that
//! telemetry keeps flowing.

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::observability::LogQuery;
use forge::prelude::*;
use forge::testing::TestDatabase;
use forge::text::{caps, clean_json, clean_text};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
struct PropArgs {
    text: String,
    fail: bool,
}

/// Puts its text, with a NUL of its own, everywhere Forge stores what a handler produces.
#[forge::job(max_attempts = 1)]
async fn prop_echo(_ctx: &JobContext, args: PropArgs) -> Result<Value, JobError> {
    let produced = format!("{}\0", args.text);
    let span = tracing::info_span!("prop.span", detail = %produced);
    let _entered = span.enter();
    tracing::info!(detail = %produced, "prop line: {produced}");
    if args.fail {
        return Err(JobError::retry(produced));
    }
    Ok(json!({ "text": produced }))
}

/// Short arbitrary text, text with NULs, or long text.
fn text() -> impl Strategy<Value = String> {
    let with_nul = (any::<String>(), any::<String>()).prop_map(|(a, b)| format!("{a}\0{b}"));
    let long = proptest::collection::vec(any::<char>(), 3_000..12_000).prop_map(String::from_iter);
    prop_oneof![4 => any::<String>(), 2 => with_nul, 1 => long]
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> Result<T, TestCaseError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(TestCaseError::fail(format!("timed out waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check(db: &TestDatabase, node: &RunningForge, text: String, fail: bool) -> Result<(), TestCaseError> {
    let pool = db.pool();
    let before: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(pool).await.expect("count");
    let refused = PropEcho::dispatch(node, PropArgs { text: text.clone(), fail }).await;
    let text = if text.contains('\0') {
        prop_assert!(matches!(refused, Err(forge::jobs::JobsError::InvalidArgs { .. })), "{refused:?}");
        let after: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(pool).await.expect("count");
        prop_assert_eq!(after, before, "a refused dispatch wrote nothing");
        text.replace('\0', "")
    } else {
        text
    };
    let mate = PropEcho::dispatch(node, PropArgs { text: "mate".to_owned(), fail: false }).await.expect("mate");
    let id = PropEcho::dispatch(node, PropArgs { text: text.clone(), fail }).await.expect("dispatch");
    let stored: Value =
        sqlx::query_scalar("select args from forge_jobs where id = $1").bind(id).fetch_one(pool).await.expect("args");
    prop_assert_eq!(&stored["text"], &json!(text), "the arguments are stored exactly");

    let (state, output, errors) = wait_for("the job to finish", async || {
        let row: (String, Option<Value>, Value) =
            sqlx::query_as("select state, output, errors from forge_jobs where id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .expect("row");
        matches!(row.0.as_str(), "completed" | "discarded").then_some(row)
    })
    .await?;
    let produced = format!("{text}\0");
    if fail {
        let mut expected = produced.clone();
        clean_text(&mut expected, caps::ERROR_MESSAGE);
        prop_assert_eq!(state, "discarded");
        prop_assert_eq!(&errors[0]["message"], &json!(expected));
    } else {
        let mut expected = json!({ "text": produced });
        clean_json(&mut expected, caps::OUTPUT);
        prop_assert_eq!(state, "completed");
        prop_assert_eq!(output, Some(expected));
    }
    let mate_state: String = wait_for("the batch-mate", async || {
        let state: String = sqlx::query_scalar("select state from forge_jobs where id = $1")
            .bind(mate)
            .fetch_one(pool)
            .await
            .expect("mate");
        (state != "available" && state != "running").then_some(state)
    })
    .await?;
    prop_assert_eq!(mate_state, "completed");

    // Telemetry flows: the job's line and span are stored, cleaned and cut as documented.
    let line = wait_for("the job's log line", async || {
        let page = LogQuery::default().job(id.0).fetch(pool).await.expect("logs");
        page.entries.into_iter().find(|e| e.message.starts_with("prop line"))
    })
    .await?;
    let mut expected_field = json!(produced);
    clean_json(&mut expected_field, caps::LOG_FIELD);
    prop_assert_eq!(&line.fields["detail"], &expected_field);
    let mut expected_message = format!("prop line: {produced}");
    clean_text(&mut expected_message, caps::LOG_MESSAGE);
    prop_assert_eq!(&line.message, &expected_message);
    let attribute: Value = wait_for("the job's span", async || {
        sqlx::query_scalar("select attributes->'detail' from forge_traces where job_id = $1 and name = 'prop.span'")
            .bind(id)
            .fetch_optional(pool)
            .await
            .expect("span")
    })
    .await?;
    let mut expected_attribute = json!(produced);
    clean_json(&mut expected_attribute, caps::SPAN_ATTRIBUTE);
    prop_assert_eq!(attribute, expected_attribute);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_text_never_poisons_a_batch_or_stalls_telemetry() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.observability.flush_interval = "50ms".parse().expect("duration");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    let result = tokio::task::block_in_place(|| {
        runner.run(&(text(), any::<bool>()), |(text, fail)| handle.block_on(check(&db, &node, text, fail)))
    });
    node.stop().await.expect("stop");
    if let Err(e) = result {
        panic!("{e}");
    }
}
