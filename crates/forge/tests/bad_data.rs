//! Bad data never poisons a batch: a NUL or an oversized value in a job's output, error,
//! progress, log line or span is stored cleaned and cut (never refused), a row the database
//! refuses anyway is written with a note while its batch-mates are written as they are, and a
//! log record the database refuses is dropped without stalling the ones after it.

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::observability::LogQuery;
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
struct EchoArgs {
    mode: String,
    text: String,
}

/// Returns, fails with, reports or logs `text`, as `mode` says.
#[forge::job(max_attempts = 1)]
async fn echo(ctx: &JobContext, args: EchoArgs) -> Result<Value, JobError> {
    match args.mode.as_str() {
        "error" => Err(JobError::retry(args.text)),
        "progress" => {
            ctx.progress(50, args.text).await.map_err(|e| JobError::retry(e.to_string()))?;
            Ok(Value::Null)
        }
        "log" => {
            let span = tracing::info_span!("echo.inner", detail = %args.text);
            let _entered = span.enter();
            tracing::info!(detail = %args.text, "logged: {}", args.text);
            Ok(Value::Null)
        }
        _ => Ok(json!({ "text": args.text })),
    }
}

async fn node(db: &TestDatabase) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.observability.flush_interval = "50ms".parse().expect("duration");
    Forge::builder().config(config).build().expect("build").start().await.expect("start")
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// (state, output, errors, progress) of job `id`.
async fn row(pool: &sqlx::PgPool, id: JobId) -> (String, Option<Value>, Value, Option<Value>) {
    sqlx::query_as("select state, output, errors, progress from forge_jobs where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("job")
}

async fn all_final(pool: &sqlx::PgPool, ids: &[JobId]) -> bool {
    let open: i64 = sqlx::query_scalar(
        "select count(*) from forge_jobs where id = any($1) and state not in ('completed', 'discarded', 'cancelled')",
    )
    .bind(ids)
    .fetch_one(pool)
    .await
    .expect("count");
    open == 0
}

fn echo_args(mode: &str, text: impl Into<String>) -> EchoArgs {
    EchoArgs { mode: mode.to_owned(), text: text.into() }
}

#[tokio::test]
async fn oversized_outputs_errors_and_progress_are_cut_with_a_marker_and_batch_mates_complete() {
    let db = TestDatabase::new().await.expect("db");
    let forge = node(&db).await;
    let mut plain = Vec::new();
    for i in 0..40 {
        plain.push(Echo::dispatch(&forge, echo_args("output", format!("plain {i}"))).await.expect("dispatch"));
    }
    let huge = Echo::dispatch(&forge, echo_args("output", "x".repeat(2 * 1024 * 1024))).await.expect("dispatch");
    let long_error = Echo::dispatch(&forge, echo_args("error", "e".repeat(100_000))).await.expect("dispatch");
    let progress = Echo::dispatch(&forge, echo_args("progress", "p".repeat(5000))).await.expect("dispatch");
    let mut ids = plain.clone();
    ids.extend([huge, long_error, progress]);
    wait_for("every job to finish", async || all_final(db.pool(), &ids).await.then_some(())).await;

    for id in &plain {
        assert_eq!(row(db.pool(), *id).await.0, "completed");
    }
    let (state, output, _, _) = row(db.pool(), huge).await;
    let output = output.expect("output");
    assert_eq!(state, "completed");
    assert_eq!(output["forge_cut"]["bytes"], json!(2 * 1024 * 1024 + 11), "{output:.200}");
    assert!(output["forge_cut"]["preview"].as_str().expect("preview").starts_with(r#"{"text":"xxx"#));

    let (state, _, errors, _) = row(db.pool(), long_error).await;
    let message = errors[0]["message"].as_str().expect("message");
    assert_eq!(state, "discarded");
    assert!(message.len() < 17 * 1024 && message.ends_with("… [cut: 100000 bytes in all]"), "{message:.100}");

    let (_, _, _, stored) = row(db.pool(), progress).await;
    let stored = stored.expect("progress");
    assert!(stored["message"].as_str().expect("message").ends_with("[cut: 5000 bytes in all]"));
    forge.stop().await.expect("stop");
}

/// Puts a NUL in its output, error, progress or logs, as `mode` says (from its own code: a
/// job's arguments cannot hold one).
#[forge::job(max_attempts = 1)]
async fn nul_everywhere(ctx: &JobContext, mode: String) -> Result<Value, JobError> {
    let nul = "before\u{0}after".to_owned();
    match mode.as_str() {
        "error" => Err(JobError::retry(nul)),
        "progress" => {
            ctx.progress(10, nul).await.map_err(|e| JobError::retry(e.to_string()))?;
            Ok(Value::Null)
        }
        "log" => {
            let span = tracing::info_span!("nul.span", attribute = %nul);
            let _entered = span.enter();
            tracing::info!(field = %nul, key = "nul-log", "line with {nul}");
            Ok(Value::Null)
        }
        _ => Ok(json!({ "text": nul, nul.clone(): 1 })),
    }
}

#[tokio::test]
async fn a_nul_from_the_handler_is_stored_as_a_replacement_character_everywhere() {
    let db = TestDatabase::new().await.expect("db");
    let forge = node(&db).await;
    let mut mates = Vec::new();
    for _ in 0..30 {
        mates.push(Echo::dispatch(&forge, echo_args("output", "mate")).await.expect("dispatch"));
    }
    let output = NulEverywhere::dispatch(&forge, "output".to_owned()).await.expect("dispatch");
    let error = NulEverywhere::dispatch(&forge, "error".to_owned()).await.expect("dispatch");
    let progress = NulEverywhere::dispatch(&forge, "progress".to_owned()).await.expect("dispatch");
    let log = NulEverywhere::dispatch(&forge, "log".to_owned()).await.expect("dispatch");
    let mut ids = mates.clone();
    ids.extend([output, error, progress, log]);
    wait_for("every job to finish", async || all_final(db.pool(), &ids).await.then_some(())).await;

    let cleaned = "before\u{FFFD}after";
    for id in &mates {
        assert_eq!(row(db.pool(), *id).await.0, "completed");
    }
    assert_eq!(row(db.pool(), output).await.1, Some(json!({ "text": cleaned, cleaned: 1 })));
    assert_eq!(row(db.pool(), error).await.2[0]["message"], cleaned);
    assert_eq!(row(db.pool(), progress).await.3.expect("progress")["message"], cleaned);
    assert_eq!(row(db.pool(), log).await.0, "completed");
    let line = wait_for("the log line", async || {
        let page = LogQuery::default().job(log.0).text("line with").fetch(db.pool()).await.expect("logs");
        page.entries.into_iter().next()
    })
    .await;
    assert_eq!(line.message, format!("line with {cleaned}"));
    assert_eq!(line.fields["field"], cleaned);
    let attribute: Option<String> =
        sqlx::query_scalar("select attributes->>'attribute' from forge_traces where name = 'nul.span' and job_id = $1")
            .bind(log)
            .fetch_optional(db.pool())
            .await
            .expect("span");
    assert_eq!(attribute.as_deref(), Some(cleaned));
    forge.stop().await.expect("stop");
}

#[tokio::test]
async fn a_nul_in_a_jobs_arguments_is_refused_before_anything_is_written() {
    let db = TestDatabase::new().await.expect("db");
    let refused = Echo::dispatch(db.pool(), echo_args("output", "a\u{0}b")).await.expect_err("refused");
    let message = refused.to_string();
    assert!(message.contains("$.text") && message.contains("NUL"), "{message}");
    let many = Echo::dispatch_many(
        db.pool(),
        vec![echo_args("output", "fine"), echo_args("x", "\u{0}")],
        DispatchOptions::default(),
    )
    .await
    .expect_err("refused");
    assert!(matches!(many, forge::jobs::JobsError::InvalidArgs { .. }), "{many:?}");
    let rows: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count");
    assert_eq!(rows, 0, "nothing of a refused dispatch is written");
}

#[tokio::test]
async fn an_outcome_the_database_refuses_is_written_with_a_note_and_its_batch_mates_as_they_are() {
    let db = TestDatabase::new().await.expect("db");
    // Stands for any value Postgres refuses that Forge's cleaning does not foresee.
    sqlx::raw_sql(
        "create function refuse_poison() returns trigger language plpgsql as $$
         begin
           if new.output ? 'text' and new.output->>'text' = 'poison' then
             raise exception 'poisoned output' using errcode = '22023';
           end if;
           return new;
         end $$;
         create trigger refuse_poison before update on forge_jobs for each row execute function refuse_poison();",
    )
    .execute(db.pool())
    .await
    .expect("trigger");
    // Dispatched before the node starts, so their outcomes arrive together and share batches.
    let mut mates = Vec::new();
    for i in 0..60 {
        mates.push(Echo::dispatch(db.pool(), echo_args("output", format!("mate {i}"))).await.expect("dispatch"));
    }
    let poison = Echo::dispatch(db.pool(), echo_args("output", "poison")).await.expect("dispatch");
    let forge = node(&db).await;
    let mut ids = mates.clone();
    ids.push(poison);
    wait_for("every job to finish", async || all_final(db.pool(), &ids).await.then_some(())).await;
    for (i, id) in mates.iter().enumerate() {
        let (state, output, _, _) = row(db.pool(), *id).await;
        assert_eq!((state.as_str(), output), ("completed", Some(json!({ "text": format!("mate {i}") }))));
    }
    let (state, output, _, _) = row(db.pool(), poison).await;
    let note = output.expect("output")["forge_error"].as_str().expect("a note").to_owned();
    assert_eq!(state, "completed");
    assert!(note.contains("could not be stored") && note.contains("poisoned output"), "{note}");
    let attempts: i32 = sqlx::query_scalar("select attempt from forge_jobs where id = $1")
        .bind(poison)
        .fetch_one(db.pool())
        .await
        .expect("row");
    assert_eq!(attempts, 1, "the job ran once");
    forge.stop().await.expect("stop");
}

#[tokio::test]
async fn a_log_record_the_database_refuses_is_dropped_and_the_ones_after_it_are_written() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(
        "create function refuse_poison_log() returns trigger language plpgsql as $$
         begin
           if new.message like '%poison%' then raise exception 'poisoned log' using errcode = '22023'; end if;
           return new;
         end $$;
         create trigger refuse_poison_log before insert on forge_logs for each row execute function refuse_poison_log();",
    )
    .execute(db.pool())
    .await
    .expect("trigger");
    let forge = node(&db).await;
    let poison = Echo::dispatch(&forge, echo_args("log", "poison")).await.expect("dispatch");
    wait_for("the poisoned job", async || (row(db.pool(), poison).await.0 == "completed").then_some(())).await;
    let after = Echo::dispatch(&forge, echo_args("log", "clean")).await.expect("dispatch");
    let line = wait_for("the line after the refused one", async || {
        let page = LogQuery::default().job(after.0).text("logged: clean").fetch(db.pool()).await.expect("logs");
        page.entries.into_iter().next()
    })
    .await;
    assert_eq!(line.fields["detail"], "clean");
    assert!(forge.telemetry().dropped_logs() >= 1, "the refused record is counted as dropped");
    let poisoned: i64 =
        sqlx::query_scalar("select count(*) from forge_logs where job_id = $1 and message like '%poison%'")
            .bind(poison)
            .fetch_one(db.pool())
            .await
            .expect("count");
    assert_eq!(poisoned, 0);
    forge.stop().await.expect("stop");
}
