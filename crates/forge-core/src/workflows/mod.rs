//! The pure parts of durable workflows: what a workflow returns when it does not finish
//! ([`WorkflowError`]), how a step is retried ([`RetryPolicy`]), how steps are named
//! ([`step_name`]) and what a run's timeline is made of ([`StepKind`], [`StepStatus`]).
//!
//! A workflow run is a job; its steps are checkpoint rows keyed by (run, step name), where a
//! name is the name the code gives plus its occurrence: the third `charge` of a run is
//! `charge#3`. The runtime (`forge_runtime::workflows`) does the rest.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::jobs::Backoff;

/// Why a workflow run did not produce its output.
///
/// Workflow code propagates what its context returns with `?`; some variants are not failures
/// but the run pausing ([`WorkflowError::Suspended`]) or being parked ([`WorkflowError::Blocked`]),
/// and the runtime acts on them whatever the code does with them. Any error type converts into
/// [`WorkflowError::Failed`] with `?`.
///
/// ```
/// use forge_core::workflows::WorkflowError;
///
/// fn check(amount: i64) -> Result<i64, WorkflowError> {
///     let n: i64 = "12".parse()?; // any error converts into Failed
///     if amount < 0 {
///         return Err(WorkflowError::failed("a negative amount"));
///     }
///     Ok(n + amount)
/// }
/// assert!(matches!(check(-1), Err(WorkflowError::Failed(_))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkflowError {
    /// A step failed for good (its retries exhausted, or a permanent error). Unless the code
    /// handles it, the run fails: its compensations run and the run's job is discarded.
    Step {
        /// The step's name (with its occurrence, `charge#2`).
        step: String,
        /// The step's last error.
        message: String,
    },
    /// The workflow failed: its compensations run and the run's job is discarded.
    Failed(String),
    /// The run waits (a sleep, an event, a step's retry) and has been put back as a scheduled
    /// job. Not a failure: return it (`?`) and the run resumes from here later.
    Suspended,
    /// The run's code no longer matches its recorded steps; the run is parked until an
    /// operator resumes or cancels it.
    Blocked(String),
    /// The run was cancelled; its compensations run.
    Cancelled,
    /// Forge could not record the run's progress (a database error): the execution is retried
    /// from its last checkpoint.
    Internal(String),
}

impl WorkflowError {
    /// The workflow fails with `message`.
    pub fn failed(message: impl fmt::Display) -> Self {
        WorkflowError::Failed(message.to_string())
    }

    /// The message recorded on the run.
    pub fn message(&self) -> String {
        match self {
            WorkflowError::Step { step, message } => format!("step {step} failed: {message}"),
            WorkflowError::Failed(m) => m.clone(),
            WorkflowError::Suspended => "suspended".to_owned(),
            WorkflowError::Blocked(reason) => format!("blocked: {reason}"),
            WorkflowError::Cancelled => "cancelled".to_owned(),
            WorkflowError::Internal(m) => m.clone(),
        }
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl<E: std::error::Error> From<E> for WorkflowError {
    fn from(e: E) -> Self {
        WorkflowError::Failed(crate::jobs::error_chain(&e))
    }
}

/// How often a failing step is tried, and how long apart.
///
/// The default is 3 attempts, 1 s apart and doubling (capped at 1 hour), with 10% jitter. A
/// wait of a few seconds or less is slept in place; a longer one suspends the run (no worker
/// slot is held) until the next attempt is due.
///
/// ```
/// use std::time::Duration;
/// use forge_core::workflows::RetryPolicy;
///
/// assert_eq!(RetryPolicy::default().max_attempts, 3);
/// assert_eq!(RetryPolicy::none().max_attempts, 1);
/// let p = RetryPolicy::fixed(5, Duration::from_millis(10));
/// assert_eq!(p.max_attempts, 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, backoff: Backoff::exponential(Duration::from_secs(1), Duration::from_secs(3600)) }
    }
}

impl RetryPolicy {
    /// One attempt: a failure is final.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// `max_attempts` attempts with `backoff` between them.
    pub fn new(max_attempts: u32, backoff: Backoff) -> Self {
        Self { max_attempts: max_attempts.max(1), backoff }
    }

    /// `max_attempts` attempts, `delay` apart, without jitter.
    pub fn fixed(max_attempts: u32, delay: Duration) -> Self {
        Self::new(max_attempts, Backoff::fixed(delay).with_jitter(0.0))
    }
}

/// The name a step is recorded under: `name` for its first occurrence in a run, `name#n` for
/// the n-th.
///
/// ```
/// use forge_core::workflows::step_name;
/// assert_eq!(step_name("charge", 1), "charge");
/// assert_eq!(step_name("charge", 3), "charge#3");
/// ```
pub fn step_name(name: &str, occurrence: u32) -> String {
    if occurrence <= 1 { name.to_owned() } else { format!("{name}#{occurrence}") }
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The name stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("unknown {} {s:?}", stringify!($name))),
                }
            }
        }
    };
}

text_enum! {
    /// What a recorded step is.
    StepKind {
        /// `ctx.step`: a closure run at least once, its output recorded.
        Step = "step",
        /// `ctx.tx_step`: a closure run in a transaction that also records it: exactly once.
        TxStep = "tx_step",
        /// `ctx.sleep` / `ctx.sleep_until`.
        Sleep = "sleep",
        /// `ctx.wait_for_event`.
        Event = "event",
        /// `ctx.patched`: a marker that the run took a new code path.
        Patch = "patch",
        /// `ctx.workflow_time`: the recorded time.
        Time = "time",
        /// `ctx.start_child`: a child run started (its id recorded).
        Child = "child",
    }
}

text_enum! {
    /// Where a recorded step is.
    StepStatus {
        /// Finished with an output (a step), woken (a sleep), received or timed out (an event).
        Completed = "completed",
        /// Failed for good: every later execution returns the same error.
        Failed = "failed",
        /// Failed with attempts left: the next execution runs it again.
        Retrying = "retrying",
        /// A sleep or an event wait not over yet.
        Waiting = "waiting",
    }
}

text_enum! {
    /// A run's state, as listings show it (derived from its job's state and its own row).
    RunStatus {
        /// Waiting for a worker, or waking up.
        Pending = "pending",
        /// An execution is under way.
        Running = "running",
        /// Suspended by `sleep`, `wait_for_event` or a step's retry.
        Waiting = "waiting",
        /// Parked: its code no longer matches its recorded steps.
        Blocked = "blocked",
        /// Finished with an output.
        Completed = "completed",
        /// Failed for good (its compensations ran).
        Failed = "failed",
        /// Cancelled (its compensations ran).
        Cancelled = "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in
            [StepKind::Step, StepKind::TxStep, StepKind::Sleep, StepKind::Event, StepKind::Patch, StepKind::Time]
        {
            assert_eq!(kind.as_str().parse::<StepKind>(), Ok(kind));
        }
        assert!("nope".parse::<StepStatus>().is_err());
        assert_eq!(RunStatus::Blocked.to_string(), "blocked");
    }

    #[test]
    fn retry_policy_has_at_least_one_attempt() {
        assert_eq!(RetryPolicy::new(0, Backoff::fixed(Duration::ZERO)).max_attempts, 1);
    }
}
