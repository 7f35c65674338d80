//! [`JobsError`]: why dispatching, cancelling or retrying a job failed.

use forge_core::jobs::JobId;

/// Why a job could not be enqueued (or cancelled, or retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    /// The arguments could not be turned into JSON.
    #[error("cannot serialise the job's arguments: {0}")]
    Args(#[from] serde_json::Error),
    /// A kind unique by key was dispatched without `unique_key`.
    #[error(
        "job {kind} is unique by key: dispatch it with a unique key (DispatchOptions::unique_key; \
         `--unique-key` with `forge jobs dispatch`; `unique_key` in POST /_api/jobs)"
    )]
    MissingUniqueKey {
        /// The kind.
        kind: String,
    },
    /// An option is out of range.
    #[error("invalid dispatch option: {0}")]
    InvalidOption(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The insert raced with the end of a duplicate's life too many times.
    #[error("the job was not inserted (unique key contention)")]
    NotInserted,
    /// No job has that id.
    #[error("no job with id {0}")]
    NotFound(JobId),
    /// No job kind of that name is registered.
    #[error("no job kind {0:?} is registered")]
    UnknownKind(String),
    /// The arguments do not fit the kind's argument type.
    #[error("arguments do not fit job {kind}: {message}")]
    InvalidArgs {
        /// The kind.
        kind: String,
        /// Where and why (`to: missing field`).
        message: String,
    },
}
