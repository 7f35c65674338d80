//! The outcome policy: how an attempt ended becomes the row's next state.
//!
//! | ended                                | next state                        | attempt counted |
//! |--------------------------------------|-----------------------------------|-----------------|
//! | handler returned `Ok`                | `completed` (output kept)         | yes             |
//! | `JobError::Retry`, panic, timeout    | `retryable` at now + backoff, or `discarded` on the last attempt | yes |
//! | `JobError::RetryIn(m, d)`            | `retryable` at now + d, or `discarded` on the last attempt | yes |
//! | `JobError::Fatal`                    | `discarded`                       | yes             |
//! | `JobError::Cancel`, or cancelled     | `cancelled`                       | yes             |
//! | `JobError::Snooze(d)`                | `scheduled` at now + d            | no              |
//! | released at shutdown                 | `available` now                   | no              |
//! | lease lost                           | nothing: the rescue already wrote it | -            |
//!
//! Every failure is recorded as an [`AttemptError`] with when the attempt started and where it
//! ran, so the row is also the attempt's span.

use chrono::{DateTime, Utc};
use forge_core::jobs::{AttemptError, Backoff, FailureKind, JobError, JobId, JobState};

use super::shared::{ClaimedJob, StopReason};
use crate::jobs::completer::Outcome;

/// How an attempt ended, before it becomes a row update. `T` is the handler's output.
#[derive(Debug)]
pub(crate) enum Ended<T = serde_json::Value> {
    /// The handler succeeded.
    Ok(T),
    /// The handler failed (or panicked, or timed out).
    Failed(JobError, FailureKind),
    /// The attempt was stopped from outside.
    Stopped(StopReason),
    /// Completed and written inside the job's own transaction: nothing left to send.
    Written(T),
}

impl<T> Ended<T> {
    /// The ending once the reason the attempt was stopped from outside (if it was) is known.
    pub(crate) fn settle(self, reason: Option<StopReason>) -> Self {
        match (self, reason) {
            (Ended::Written(output), _) => Ended::Written(output),
            // Another node owns the job now: this attempt's result would be fenced off anyway.
            (_, Some(StopReason::LeaseLost)) => Ended::Stopped(StopReason::LeaseLost),
            // A requested cancellation wins, even over a handler that returned when it saw it.
            (_, Some(StopReason::Cancelled)) => Ended::Stopped(StopReason::Cancelled),
            (Ended::Stopped(_), Some(reason)) => Ended::Stopped(reason),
            // Released at shutdown, but the handler finished first: its result stands.
            (ended, _) => ended,
        }
    }

    /// The ending as the policy reads it (the output as JSON) and as a caller sees it (the
    /// handler's own result): how `forge::testing` runs an attempt of a typed job.
    #[cfg(feature = "testing")]
    pub(crate) fn split(self) -> (Ended, Result<T, JobError>)
    where
        T: serde::Serialize,
    {
        match self {
            Ended::Ok(output) => match serde_json::to_value(&output) {
                Ok(value) => (Ended::Ok(value), Ok(output)),
                Err(e) => {
                    let e = JobError::permanent(format!("cannot store the output: {e}"));
                    (Ended::Failed(e.clone(), FailureKind::Error), Err(e))
                }
            },
            Ended::Written(output) => (Ended::Written(serde_json::Value::Null), Ok(output)),
            Ended::Failed(e, kind) => (Ended::Failed(e.clone(), kind), Err(e)),
            Ended::Stopped(reason) => {
                let e = match reason {
                    StopReason::Cancelled => JobError::cancel("cancelled"),
                    StopReason::LeaseLost => JobError::retry("the attempt's lease was lost"),
                    StopReason::Released => JobError::retry("released at shutdown"),
                };
                (Ended::Stopped(reason), Err(e))
            }
        }
    }
}

/// What the attempt's row update says; `None` when there is nothing to write (written in the
/// job's transaction, or the lease was lost).
pub(crate) fn decide(
    job: &ClaimedJob,
    ended: Ended,
    backoff: Backoff,
    started_at: DateTime<Utc>,
    node_id: &str,
) -> Option<Outcome> {
    let now = Utc::now();
    let error = |message: String, kind: FailureKind| {
        Some(AttemptError {
            attempt: job.attempt,
            at: now,
            message,
            kind,
            started_at: Some(started_at),
            node: Some(node_id.to_owned()),
        })
    };
    let base = |state: JobState| Outcome {
        id: JobId(job.id),
        attempt: job.attempt,
        state,
        output: None,
        error: None,
        run_at: None,
        uncount: false,
    };
    let later = |delay: std::time::Duration| now + chrono::Duration::from_std(delay).unwrap_or_default();
    let outcome = match ended {
        Ended::Written(_) | Ended::Stopped(StopReason::LeaseLost) => return None,
        Ended::Ok(output) => Outcome { output: Some(output), ..base(JobState::Completed) },
        Ended::Stopped(StopReason::Cancelled) => {
            Outcome { error: error("cancelled".to_owned(), FailureKind::Cancel), ..base(JobState::Cancelled) }
        }
        Ended::Stopped(StopReason::Released) => {
            Outcome { uncount: true, run_at: Some(now), ..base(JobState::Available) }
        }
        Ended::Failed(JobError::Snooze(delay), _) => {
            Outcome { uncount: true, run_at: Some(later(delay)), ..base(JobState::Scheduled) }
        }
        Ended::Failed(JobError::Cancel(message), _) => {
            Outcome { error: error(message, FailureKind::Cancel), ..base(JobState::Cancelled) }
        }
        Ended::Failed(JobError::Fatal(message), kind) => {
            Outcome { error: error(message, kind), ..base(JobState::Discarded) }
        }
        Ended::Failed(e, kind) if job.attempt >= job.max_attempts => {
            Outcome { error: error(e.message(), kind), ..base(JobState::Discarded) }
        }
        Ended::Failed(e, kind) => {
            let delay = match &e {
                JobError::RetryIn(_, delay) => *delay,
                _ => backoff.delay(u32::try_from(job.attempt).unwrap_or(1), random_unit()),
            };
            Outcome { error: error(e.message(), kind), run_at: Some(later(delay)), ..base(JobState::Retryable) }
        }
    };
    Some(outcome.storable())
}

/// A number in 0.0..1.0 for backoff jitter.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
