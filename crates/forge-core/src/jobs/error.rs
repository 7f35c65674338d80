//! What a job handler returns when it does not succeed.

use std::fmt;
use std::time::Duration;

/// A job attempt's failure, and what should happen next.
///
/// Any error type converts into [`JobError::Retry`] with `?`, so handlers read naturally:
///
/// ```
/// use forge_core::jobs::JobError;
///
/// fn parse(input: &str) -> Result<u32, JobError> {
///     let n: u32 = input.parse()?; // a parse error: retried with backoff
///     if n == 0 {
///         return Err(JobError::permanent("zero is never valid")); // discarded, no retry
///     }
///     Ok(n)
/// }
/// assert!(matches!(parse("x"), Err(JobError::Retry(_))));
/// assert!(matches!(parse("0"), Err(JobError::Fatal(_))));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum JobError {
    /// Failed; retry after the backoff if attempts are left, else discard.
    Retry(String),
    /// Failed for good: discard now, whatever the attempts left.
    Fatal(String),
    /// Stop and mark the job cancelled.
    Cancel(String),
    /// Not now: run again after this long, without counting the attempt.
    Snooze(Duration),
    /// Failed; retry after exactly this delay (instead of the backoff) if attempts are left,
    /// else discard. For a handler that knows when to try again (a `Retry-After`, a published
    /// retry schedule).
    RetryIn(String, Duration),
}

impl JobError {
    /// A failure worth retrying.
    pub fn retry(message: impl fmt::Display) -> Self {
        JobError::Retry(message.to_string())
    }

    /// A failure worth retrying after `delay` (not the kind's backoff).
    pub fn retry_in(message: impl fmt::Display, delay: Duration) -> Self {
        JobError::RetryIn(message.to_string(), delay)
    }

    /// A failure no retry will fix: the job is discarded.
    pub fn permanent(message: impl fmt::Display) -> Self {
        JobError::Fatal(message.to_string())
    }

    /// Cancel the job.
    pub fn cancel(reason: impl fmt::Display) -> Self {
        JobError::Cancel(reason.to_string())
    }

    /// Run again after `delay`, not counting this attempt.
    pub fn snooze(delay: Duration) -> Self {
        JobError::Snooze(delay)
    }

    /// The message recorded on the job.
    pub fn message(&self) -> String {
        match self {
            JobError::Retry(m) | JobError::Fatal(m) | JobError::Cancel(m) | JobError::RetryIn(m, _) => m.clone(),
            JobError::Snooze(d) => format!("snoozed for {d:?}"),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Retry(m) | JobError::RetryIn(m, _) => write!(f, "{m}"),
            JobError::Fatal(m) => write!(f, "permanent: {m}"),
            JobError::Cancel(m) => write!(f, "cancelled: {m}"),
            JobError::Snooze(d) => write!(f, "snoozed for {d:?}"),
        }
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::Retry(error_chain(&e))
    }
}

/// An error's message followed by its sources' (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
