//! [`WorkflowsError`]: why starting, signalling or operating a workflow run failed.

use forge_core::jobs::JobId;

use crate::jobs::JobsError;

/// Why a workflow run could not be started, sent an event, cancelled or resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowsError {
    /// Inserting the run's job failed.
    #[error(transparent)]
    Jobs(#[from] JobsError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A payload could not be turned into JSON, or Postgres could not store it.
    #[error("invalid payload: {0}")]
    Payload(String),
    /// An event name is empty, too long or holds a NUL.
    #[error("invalid event name: {0}")]
    InvalidName(String),
    /// No run has that id or key.
    #[error("no workflow run {0}")]
    NotFound(String),
    /// The run has finished (completed, failed or cancelled): it takes no events or cancels.
    #[error("workflow run {run} has finished ({state})")]
    Finished {
        /// The run.
        run: JobId,
        /// Its job's final state.
        state: String,
    },
    /// The run has not failed or been cancelled, so there is nothing to retry.
    #[error("workflow run {run} is {state}: only a failed or cancelled run can be retried")]
    NotFailed {
        /// The run.
        run: JobId,
        /// Its job's state.
        state: String,
    },
    /// The run is not blocked, so there is nothing to resume.
    #[error("workflow run {0} is not blocked")]
    NotBlocked(JobId),
}
