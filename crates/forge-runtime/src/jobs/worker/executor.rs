//! One attempt, from claimed row to outcome.
//!
//! [`Attempt::run`] is the attempt itself (the handler under its timeout and cancellation, a
//! panic caught, a transactional job's completion written in its own transaction); the worker
//! runs every claimed job through it ([`execute`]), and so does `forge::testing::perform_job`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use forge_core::jobs::{FailureKind, JobError, JobId, JobOptions, JobState};
use futures_util::FutureExt;
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::outcome::{self, Ended};
use super::shared::{ClaimedJob, Shared, StopReason};
use crate::jobs::BatchedDispatcher;
use crate::jobs::completer::{self, Outcome};
use crate::jobs::context::{Claimed, Hold, JobContext};
use crate::observability::{DURATION_BUCKETS, Metrics, SpanContext};

/// What one attempt of a claimed job runs with.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    pub(crate) pool: &'a PgPool,
    pub(crate) node_id: &'a str,
    pub(crate) dispatcher: Option<BatchedDispatcher>,
    pub(crate) job: &'a ClaimedJob,
    pub(crate) options: &'a JobOptions,
    /// How long a renewal keeps the attempt's lease.
    pub(crate) lease: Duration,
    /// Fires when the attempt must stop (cancelled, lease lost, released).
    pub(crate) token: CancellationToken,
    /// Bounds the transactions transactional jobs hold at once; none bounds nothing.
    pub(crate) tx_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// What the node hands its jobs.
    pub(crate) extensions: crate::jobs::Extensions,
    /// The claim window holding the job, if one still may.
    pub(crate) hold: Option<Hold>,
}

impl Attempt<'_> {
    /// Runs `handler` once with a fresh [`JobContext`] and says how it ended. A panic is caught;
    /// losing the race to the kind's timeout or to the token drops (and so aborts) the handler.
    /// A transactional kind's transaction commits here, with the job's completion, only on
    /// success; on any other ending it rolls back.
    pub(crate) async fn run<T, F, Fut>(self, handler: F) -> Ended<T>
    where
        T: Serialize,
        F: FnOnce(JobContext) -> Fut,
        Fut: Future<Output = Result<T, JobError>> + Send,
    {
        let job = self.job;
        // Held until the transaction is committed or rolled back, when `run` returns.
        let mut _tx_slot = None;
        let tx = if self.options.transactional {
            // The job's transaction completes it, fenced by its row: written `running` first.
            if let Some(hold) = &self.hold
                && !hold.settled().await
            {
                return Ended::Stopped(StopReason::LeaseLost);
            }
            if let Some(slots) = &self.tx_slots {
                tokio::select! {
                    slot = slots.clone().acquire_owned() => _tx_slot = slot.ok(),
                    () = self.token.cancelled() => return Ended::Stopped(StopReason::Cancelled),
                }
            }
            match self.pool.begin().await {
                Ok(tx) => Some(tx),
                Err(e) => {
                    let e = JobError::retry(format!("cannot open the job's transaction: {e}"));
                    return Ended::Failed(e, FailureKind::Error);
                }
            }
        } else {
            None
        };
        let ctx = JobContext::new(
            Claimed {
                id: JobId(job.id),
                kind: job.kind.clone(),
                queue: job.queue.clone(),
                attempt: u32::try_from(job.attempt).unwrap_or(0),
                max_attempts: u32::try_from(job.max_attempts).unwrap_or(0),
                scheduled_at: job.run_at,
                lease: self.lease,
                hold: self.hold,
            },
            self.node_id.to_owned(),
            self.pool.clone(),
            self.dispatcher,
            self.token.clone(),
            tx,
            self.extensions,
        );
        let handler = std::panic::AssertUnwindSafe(handler(ctx.clone())).catch_unwind();
        let timeout = self.options.timeout;
        let ended = tokio::select! {
            finished = handler => match finished {
                Ok(Ok(output)) => Ended::Ok(output),
                Ok(Err(e)) => Ended::Failed(e, FailureKind::Error),
                Err(panic) => {
                    Ended::Failed(JobError::retry(format!("panicked: {}", panic_message(panic))), FailureKind::Panic)
                }
            },
            () = tokio::time::sleep(timeout) => {
                Ended::Failed(JobError::retry(format!("timed out after {timeout:?}")), FailureKind::Timeout)
            }
            () = self.token.cancelled() => Ended::Stopped(StopReason::Cancelled),
        };
        match (ctx.take_tx().await, ended) {
            (Some(tx), Ended::Ok(output)) => complete_in(tx, job, output).await,
            // Dropping the transaction rolls it back.
            (_, ended) => ended,
        }
    }
}

/// Completes a transactional job inside its own transaction, fenced like every completion.
async fn complete_in<T: Serialize>(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    job: &ClaimedJob,
    output: T,
) -> Ended<T> {
    let value = match serde_json::to_value(&output) {
        Ok(value) => value,
        Err(e) => {
            return Ended::Failed(JobError::permanent(format!("cannot store the output: {e}")), FailureKind::Error);
        }
    };
    let completed = Outcome {
        id: JobId(job.id),
        attempt: job.attempt,
        state: JobState::Completed,
        output: Some(value),
        error: None,
        run_at: None,
        uncount: false,
    }
    .storable();
    match completer::finish(&mut *tx, std::slice::from_ref(&completed)).await {
        Ok(rows) if rows.len() == 1 => match tx.commit().await {
            Ok(()) => Ended::Written(output),
            Err(e) => Ended::Failed(JobError::retry(format!("commit failed: {e}")), FailureKind::Error),
        },
        // Fenced off: the attempt was rescued meanwhile.
        Ok(_) => Ended::Stopped(StopReason::LeaseLost),
        Err(e) => {
            Ended::Failed(JobError::retry(format!("cannot complete in the job's transaction: {e}")), FailureKind::Error)
        }
    }
}

/// The worker's side of an attempt: runs it, settles how it ended against why it was stopped
/// (if it was), records metrics and sends the outcome to the completer.
pub(super) async fn execute(shared: Arc<Shared>, job: ClaimedJob, permit: OwnedSemaphorePermit) {
    let started = std::time::Instant::now();
    let started_at = Utc::now();
    let key = (job.id, job.attempt);
    let (token, hold) = shared
        .running
        .lock()
        .ok()
        .and_then(|r| r.get(&key).map(|r| (r.token.clone(), r.hold.clone())))
        .unwrap_or_default();
    let registered = shared.registry.get(&job.kind).cloned();
    let ended = match &registered {
        None => Ended::Failed(
            JobError::retry(format!("no handler for job kind {:?} on node {}", job.kind, shared.settings.node_id)),
            FailureKind::Error,
        ),
        Some(registered) => {
            let attempt = Attempt {
                pool: &shared.pool,
                node_id: &shared.settings.node_id,
                dispatcher: Some(shared.dispatcher.clone()),
                job: &job,
                options: &registered.options,
                lease: shared.settings.lease,
                token,
                tx_slots: Some(shared.tx_slots.clone()),
                extensions: shared.settings.extensions.clone(),
                hold,
            };
            attempt.run(|ctx| (registered.handler)(ctx, job.args.clone())).await
        }
    };
    // The handler has ended: from here on the entry only waits for its outcome to be written
    // (its lease still renewed, no longer fenced or abandoned). One lock reads why it was
    // stopped, if it was, and says so.
    let reason = shared.running.lock().ok().and_then(|mut r| {
        let entry = r.get_mut(&key)?;
        entry.finished = true;
        entry.reason
    });
    let ended = ended.settle(reason);
    if let Ended::Failed(e, _) = &ended
        && !matches!(e, JobError::Snooze(_))
    {
        tracing::warn!(error = %e.message(), "attempt failed");
    }
    let written = matches!(ended, Ended::Written(_));
    let backoff = registered.as_ref().map(|r| r.options.backoff).unwrap_or_default();
    let outcome = outcome::decide(&job, ended, backoff, started_at, &shared.settings.node_id);
    // Completed inside the job's own transaction: no outcome left to send, but completed.
    let state = outcome.as_ref().map(|o| o.state).or(written.then_some(JobState::Completed));
    let failed = outcome.as_ref().is_some_and(|o| o.error.is_some() && o.state != JobState::Cancelled);
    record_attempt(shared.telemetry.metrics(), &job, state, failed, started.elapsed());
    match outcome {
        // The attempt stays in the running table (its lease renewed) until the completer has
        // written its outcome: an outcome waiting out a database outage is not rescued meanwhile.
        Some(outcome) => shared.send_outcome(key, outcome),
        None => {
            if let Ok(mut running) = shared.running.lock() {
                running.remove(&key);
            }
        }
    }
    drop(permit);
}

/// The attempt's telemetry context (see [`SpanContext::for_attempt`]).
pub(super) fn task_context(shared: &Shared, job: &ClaimedJob) -> SpanContext {
    SpanContext::for_attempt(shared.telemetry.clone(), JobId(job.id), job.attempt, &job.metadata)
}

/// Counts the attempt by how it ended. (Its span is not recorded: the job's row holds it, see
/// [`crate::observability::trace`].)
fn record_attempt(metrics: &Metrics, job: &ClaimedJob, state: Option<JobState>, failed: bool, took: Duration) {
    let labels = [("kind", job.kind.as_str()), ("queue", job.queue.as_str())];
    metrics.observe(
        "forge_job_duration_seconds",
        "Time a job attempt ran, by kind and queue.",
        DURATION_BUCKETS,
        &labels,
        took.as_secs_f64(),
    );
    let Some(state) = state else { return };
    if failed {
        metrics.count("forge_jobs_failed_total", "Job attempts that failed, by kind and queue.", &labels, 1);
    }
    match state {
        JobState::Completed => {
            metrics.count("forge_jobs_completed_total", "Jobs completed, by kind and queue.", &labels, 1);
        }
        JobState::Discarded => {
            metrics.count("forge_jobs_discarded_total", "Jobs discarded, by kind and queue.", &labels, 1);
        }
        JobState::Cancelled => {
            metrics.count("forge_jobs_cancelled_total", "Jobs cancelled, by kind and queue.", &labels, 1);
        }
        _ => {}
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic".to_owned()
    }
}
