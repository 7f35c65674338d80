//! `forge workflows list|show|cancel|send-event|resume|retry`: workflow runs from the database, the
//! same functions the dashboard uses.

use clap::Subcommand;
use forge::jobs::JobId;
use forge::workflows::{self, RunFilter, RunInfo, RunRef, RunStatus, WorkflowsError};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::output::{done, print_json};

/// `forge workflows …`.
#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowsAction {
    /// Runs, newest first.
    List {
        /// Only this workflow's runs.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs in this status: pending, running, waiting, blocked, completed, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only the run with this key.
        #[arg(long)]
        key: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One run: its state, its steps in order, the events sent to it.
    Show {
        /// The run's id, or its key.
        run: String,
    },
    /// Cancel a run: its compensations run, newest first, then it is cancelled.
    Cancel {
        /// The run's id, or its key.
        run: String,
    },
    /// Send an event to a run (the first event of a name wins).
    SendEvent {
        /// The run's id, or its key.
        run: String,
        /// The event's name.
        name: String,
        /// Its payload, as JSON (default null).
        #[arg(long, default_value = "null")]
        payload: String,
    },
    /// Retry a failed or cancelled run from its first failed (or compensated) step.
    Retry {
        /// The run's id, or its key.
        run: String,
    },
    /// Resume a blocked run on the current code.
    Resume {
        /// The run's id, or its key.
        run: String,
        /// Forget the steps it recorded from this position on (they run again as new steps).
        #[arg(long)]
        from_step: Option<i32>,
    },
}

impl WorkflowsAction {
    /// Whether the command only reads.
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Self::List { .. } | Self::Show { .. })
    }
}

/// A run given on the command line: a number is an id, anything else a key.
fn run_ref(run: &str) -> RunRef {
    match run.parse::<i64>() {
        Ok(id) => RunRef::Id(JobId(id)),
        Err(_) => RunRef::Key(run.to_owned()),
    }
}

fn error(e: WorkflowsError) -> String {
    e.to_string()
}

fn row(run: &RunInfo) -> Value {
    let mut value = serde_json::to_value(run).unwrap_or(Value::Null);
    value["status"] = json!(run.status());
    value
}

pub(crate) async fn workflows(pool: &PgPool, action: WorkflowsAction, json: bool) -> Result<(), String> {
    match action {
        WorkflowsAction::List { workflow, status, key, limit } => {
            let status = status.map(|s| s.parse::<RunStatus>()).transpose()?;
            let filter = RunFilter { workflow, key, status, before: None, limit: Some(limit) };
            let runs = workflows::list_runs(pool, &filter).await.map_err(error)?;
            if json {
                return print_json(&runs.iter().map(row).collect::<Vec<_>>());
            }
            println!(
                "{:<10} {:<24} {:<10} {:<24} {:<20} WAITING FOR / BLOCKED",
                "RUN", "WORKFLOW", "STATUS", "KEY", "STARTED"
            );
            for r in &runs {
                let note = r.blocked_reason.clone().or_else(|| r.waiting_for.clone()).unwrap_or_default();
                println!(
                    "{:<10} {:<24} {:<10} {:<24} {:<20} {note}",
                    r.id,
                    r.workflow,
                    r.status(),
                    r.run_key.as_deref().unwrap_or("-"),
                    r.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
            if runs.is_empty() {
                println!("(no runs)");
            }
            Ok(())
        }
        WorkflowsAction::Show { run } => {
            let info = workflows::find_run(pool, run_ref(&run))
                .await
                .map_err(error)?
                .ok_or_else(|| format!("no workflow run {run}"))?;
            let id = JobId(info.id);
            let steps = workflows::run_steps(pool, id).await.map_err(error)?;
            let events = workflows::run_events(pool, id).await.map_err(error)?;
            if json {
                return print_json(&json!({ "run": row(&info), "steps": steps, "events": events }));
            }
            println!("run {} ({} v{}) {}", info.id, info.workflow, info.version, info.status());
            if let Some(key) = &info.run_key {
                println!("key: {key}");
            }
            if let Some(reason) = &info.blocked_reason {
                println!("blocked at step {}: {reason}", info.blocked_seq.unwrap_or(0));
                println!("  resume: forge workflows resume {} [--from-step N]; or cancel it", info.id);
            }
            if let Some(event) = &info.waiting_for {
                println!("waiting for event {event:?} (until {})", info.run_at.format("%Y-%m-%d %H:%M:%S"));
            }
            println!("{:<4} {:<24} {:<8} {:<10} {:<8} DETAIL", "#", "STEP", "KIND", "STATUS", "TRIES");
            for s in &steps {
                let detail = match (&s.error, &s.output) {
                    (Some(e), _) => e.clone(),
                    (None, Some(o)) => o.to_string().chars().take(80).collect(),
                    _ => s.wake_at.map(|t| format!("until {}", t.format("%Y-%m-%d %H:%M:%S"))).unwrap_or_default(),
                };
                let compensated = if s.compensated_at.is_some() { " (compensated)" } else { "" };
                println!(
                    "{:<4} {:<24} {:<8} {:<10} {:<8} {detail}{compensated}",
                    s.seq, s.name, s.kind, s.status, s.attempts
                );
            }
            for e in &events {
                println!("event {:?} at {}: {}", e.name, e.sent_at.format("%Y-%m-%d %H:%M:%S"), e.payload);
            }
            Ok(())
        }
        WorkflowsAction::Cancel { run } => {
            workflows::cancel(pool, run_ref(&run)).await.map_err(error)?;
            done(json, json!({ "run": run, "cancel_requested": true }), &format!("run {run}: cancel requested"))
        }
        WorkflowsAction::SendEvent { run, name, payload } => {
            let payload: Value =
                serde_json::from_str(&payload).map_err(|e| format!("--payload is not valid JSON: {e}"))?;
            let sent = workflows::send_event(pool, run_ref(&run), &name, payload).await.map_err(error)?;
            let (delivered, woke) = match sent {
                workflows::EventSent::Delivered { woke, .. } => (true, woke),
                _ => (false, false),
            };
            let message = match (delivered, woke) {
                (true, true) => format!("event {name} sent to run {run}; it was waiting and is woken"),
                (true, false) => format!("event {name} sent to run {run}"),
                _ => format!("run {run} already had an event {name}; the first one stands"),
            };
            done(json, json!({ "run": run, "event": name, "delivered": delivered, "woke": woke }), &message)
        }
        WorkflowsAction::Retry { run } => {
            let from = workflows::retry(pool, run_ref(&run)).await.map_err(error)?;
            let message = match from {
                Some(seq) => format!("run {run} retried from step {seq}"),
                None => format!("run {run} retried (its whole record replays)"),
            };
            done(json, json!({ "run": run, "retried": true, "from_step": from }), &message)
        }
        WorkflowsAction::Resume { run, from_step } => {
            workflows::resume(pool, run_ref(&run), from_step).await.map_err(error)?;
            done(json, json!({ "run": run, "resumed": true, "from_step": from_step }), &format!("run {run} resumed"))
        }
    }
}
