//! One execution of a run: load its record, run the workflow's code against it, and turn how
//! the code ended into the job's outcome.
//!
//! | the execution ended                          | the run's job                                |
//! |----------------------------------------------|----------------------------------------------|
//! | the code returned `Ok`                       | `completed`, the output stored               |
//! | a sleep, a step's retry, an event wait       | `scheduled` at the wake time (or the event's |
//! | (written under the run's job-row lock)       | timeout), not counted                        |
//! | the code diverged from the record            | parked: `scheduled` far ahead, run `blocked` |
//! | a step failed for good, or the code failed   | compensations, then `discarded`              |
//! | cancel requested, or the run's timeout       | compensations, then `cancelled` / `discarded`|
//! | a compensation or a checkpoint write failed  | retried (`retryable`), replaying the record  |
//!
//! A child run writes its own ending, in one transaction with the event that tells its parent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_core::jobs::{AttemptError, FailureKind, JobError, JobId, JobState};
use forge_core::workflows::WorkflowError;

use super::child::{ChildEnd, child_event};
use super::context::{Interrupt, Stop, WorkflowContext};
use super::control::send_event_in;
use super::error::WorkflowsError;
use super::replay::RecordedStep;
use super::sql;
use super::workflow::Workflow;
use crate::jobs::completer::{self, Outcome};
use crate::jobs::{Job, JobContext};

/// A run's row as an execution starts.
#[derive(sqlx::FromRow)]
struct Loaded {
    #[allow(dead_code)]
    workflow: String,
    version: i32,
    deadline: Option<DateTime<Utc>>,
    blocked_reason: Option<String>,
    cancelling: bool,
    parent_id: Option<i64>,
    steps: sqlx::types::Json<Vec<RecordedStep>>,
}

/// Runs one execution of workflow `W` for the job `job` (the run): what `#[forge::workflow]`
/// makes the workflow's `Job::run`.
pub async fn execute<W: Workflow>(job: &JobContext, args: <W as Job>::Args) -> Result<<W as Job>::Output, JobError> {
    let run = job.id();
    // A run's records and its suspensions are fenced by its row: written `running` first.
    if !job.claimed().await {
        return Err(JobError::retry("the claim window holding this run failed; the run is back in its queue"));
    }
    let loaded = load(job, W::NAME, W::VERSION, W::timeout())
        .await
        .map_err(|e| JobError::retry(format!("cannot load the workflow run: {e}")))?;
    if loaded.blocked_reason.is_some() {
        // Woken by an operator (resume or run now): the code may have been fixed; if it still
        // diverges, it parks again.
        sqlx::query(sql::UNBLOCK).bind(run.0).execute(job.db()).await.map_err(|e| JobError::retry(e.to_string()))?;
    }
    let stop = if loaded.cancelling {
        Some(Stop::Cancel)
    } else if loaded.deadline.is_some_and(|d| Utc::now() >= d) {
        Some(Stop::Timeout)
    } else {
        None
    };
    let version = u32::try_from(loaded.version).unwrap_or(0);
    let ctx = WorkflowContext::new(job.clone(), version, loaded.deadline, loaded.steps.0, stop);
    let result = W::execute(&ctx, args).await;
    let interrupt = ctx.take_interrupt();
    let failure = match (interrupt, result) {
        // Written in the execution's own transaction: the worker's fenced write changes nothing.
        (Some(Interrupt::Written), _) => return Err(JobError::Snooze(Duration::ZERO)),
        (Some(Interrupt::Internal(message)), _) | (None, Err(WorkflowError::Internal(message))) => {
            return Err(JobError::Retry(message));
        }
        (Some(Interrupt::Stop(stop)), _) => stop_failure(stop),
        (None, Ok(output)) => {
            if let Some(parent) = loaded.parent_id {
                let json = serde_json::to_value(&output)
                    .map_err(|e| JobError::permanent(format!("cannot store the output: {e}")))?;
                let end = ChildEnd { state: "completed".to_owned(), output: Some(json), error: None };
                finish_child(job, JobId(parent), end).await?;
            }
            return Ok(output);
        }
        (None, Err(WorkflowError::Cancelled)) => stop_failure(Stop::Cancel),
        (None, Err(e)) => match ctx.stop() {
            Some(stop) if !matches!(e, WorkflowError::Step { .. } | WorkflowError::Failed(_)) => stop_failure(stop),
            _ => JobError::Fatal(e.message()),
        },
    };
    let compensated = ctx.compensate().await?;
    if compensated > 0 {
        tracing::info!(run = %run, compensated, "workflow run compensated");
    }
    if let Some(parent) = loaded.parent_id {
        let state = if matches!(failure, JobError::Cancel(_)) { JobState::Cancelled } else { JobState::Discarded };
        let end = ChildEnd { state: state.as_str().to_owned(), output: None, error: Some(failure.message()) };
        finish_child(job, JobId(parent), end).await?;
    }
    Err(failure)
}

/// Finishes a child run in one transaction with the event that tells its parent (waking it if
/// it waits) and the parent's count of open children. The worker's own write of the same
/// ending is then fenced off.
async fn finish_child(job: &JobContext, parent: JobId, end: ChildEnd) -> Result<(), JobError> {
    let attempt = i32::try_from(job.attempt()).unwrap_or(i32::MAX);
    let state: JobState = match end.state.as_str() {
        "completed" => JobState::Completed,
        "cancelled" => JobState::Cancelled,
        _ => JobState::Discarded,
    };
    let error = end.error.as_ref().map(|message| AttemptError {
        attempt,
        at: Utc::now(),
        message: message.clone(),
        kind: if state == JobState::Cancelled { FailureKind::Cancel } else { FailureKind::Error },
        started_at: None,
        node: Some(job.node_id().to_owned()),
    });
    let outcome =
        Outcome { id: job.id(), attempt, state, output: end.output.clone(), error, run_at: None, uncount: false }
            .storable();
    let written: Result<bool, sqlx::Error> = async {
        let mut tx = job.db().begin().await?;
        if completer::finish(&mut *tx, std::slice::from_ref(&outcome)).await?.is_empty() {
            return Ok(false);
        }
        match send_event_in(&mut tx, parent, &child_event(job.id()), &end).await {
            Ok(_) | Err(WorkflowsError::Finished { .. } | WorkflowsError::NotFound(_)) => {}
            Err(WorkflowsError::Database(e)) => return Err(e),
            Err(e) => return Err(sqlx::Error::Protocol(e.to_string())),
        }
        sqlx::query(sql::CHILD_CLOSED).bind(parent.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }
    .await;
    match written {
        Ok(true) => Ok(()),
        Ok(false) => Err(JobError::retry("the run's lease was lost before it finished")),
        Err(e) => Err(JobError::retry(format!("cannot finish the child run: {e}"))),
    }
}

fn stop_failure(stop: Stop) -> JobError {
    match stop {
        Stop::Cancel => JobError::cancel("the workflow run was cancelled"),
        Stop::Timeout => JobError::permanent("the workflow run's timeout passed"),
    }
}

/// The run's row and steps; a run dispatched as a plain job (without `start`) gets its row now.
async fn load(
    job: &JobContext,
    workflow: &str,
    version: u32,
    timeout: Option<Duration>,
) -> Result<Loaded, sqlx::Error> {
    let run = job.id().0;
    if let Some(loaded) = sqlx::query_as::<_, Loaded>(sql::LOAD).bind(run).fetch_optional(job.db()).await? {
        return Ok(loaded);
    }
    let inserted = sqlx::query_as::<_, Loaded>(sql::INSERT_RUN)
        .bind(run)
        .bind(workflow)
        .bind(i32::try_from(version).unwrap_or(i32::MAX))
        .bind(timeout.map(|t| t.as_secs_f64()))
        .fetch_optional(job.db())
        .await?;
    match inserted {
        Some(loaded) => Ok(loaded),
        // Another execution inserted it meanwhile.
        None => sqlx::query_as::<_, Loaded>(sql::LOAD).bind(run).fetch_one(job.db()).await,
    }
}
