//! The job engine: dispatch, claim, execute, complete, rescue.
//!
//! ## Leases and fencing
//!
//! A claim sets `state = 'running'`, increments `attempt`, and stamps `heartbeat_at` (the
//! lease) and `attempted_by` (the node). The node's heartbeater renews the lease of every job it
//! runs every third of `[worker] lease`. If a node dies, its leases stop being renewed;
//! maintenance finds running jobs whose `heartbeat_at` is older than the lease and makes them
//! `retryable` (or `discarded` when out of attempts), recording the lost attempt as an error.
//!
//! Every write that finishes an attempt is **fenced** by `(id, attempt, state = 'running')`. An
//! attempt that was rescued (and perhaps claimed again, with `attempt + 1`) can no longer change
//! the row: its late result is ignored. A job is therefore finalised once, whatever the
//! timing of crashes, pauses and rescues.
//!
//! A node also keeps a job from running twice at once: it stops an attempt whose lease it has
//! not renewed for 0.8 of a lease (self-fencing, `worker/heartbeat.rs`), and it never claims a
//! job that still has an attempt running on it (its running attempts are keyed by
//! `(id, attempt)`).
//!
//! ## Transactional jobs
//!
//! A kind declared `transactional` runs with an open transaction ([`JobContext::tx`]); on
//! success the completion is written inside that same transaction, fenced as above, and only
//! then committed. The job's database effects and its completion commit together or not at
//! all: a node dying mid-job rolls both back, and the rescued job runs again from a clean slate.
//! The price is one transaction held open for the attempt and one round trip per job instead of
//! the completer's batches.
//!
//! ## The hot path
//!
//! Dispatch is one INSERT (a batch is one statement over arrays). Each queue has one producer
//! per node that claims as many jobs as it has free slots with one `UPDATE … FOR UPDATE SKIP
//! LOCKED`; a full batch claims again at once, an empty one waits for a NOTIFY (coalesced by the
//! dispatching node's [`Notifier`]) or the poll interval. Outcomes go to a completer that writes
//! them in batches.

//! ## Files
//!
//! - `job.rs`: the [`Job`] trait and the [`JobRegistry`] the worker runs kinds from;
//! - `new_job.rs`, `dispatch.rs`, `notifier.rs`, `error.rs`: enqueueing ([`NewJob`],
//!   [`DispatchOptions`], the [`Dispatcher`] trait and [`insert_jobs`], debounced wake-ups,
//!   [`JobsError`]);
//! - `worker/`: producer, executor, outcome policy, heartbeat, listener (see its module doc);
//! - `completer.rs`: outcomes written in batches, fenced by `(id, attempt)`;
//! - `context.rs`: [`JobContext`], what a running attempt knows and can do;
//! - `maintenance.rs`: the leader's promote / rescue / prune duty;
//! - `control.rs` and `inspect.rs`: what operators do to jobs and what they read about them;
//! - `sql.rs`: every statement, the claim once.

pub(crate) mod completer;
pub(crate) mod context;
mod control;
mod dispatch;
mod error;
mod insert;
mod inspect;
mod job;
pub(crate) mod maintenance;
mod new_job;
mod notifier;
pub(crate) mod sql;
pub(crate) mod worker;

pub use crate::db::Tx;
pub use context::{Extensions, JobContext, TxError};
pub use control::{
    CancelOutcome, JobFilter, MAX_BULK, cancel, cancel_all, cancel_in, delete, pause_queue, resume_queue, retry,
    retry_all, retry_in, run_now,
};
pub use dispatch::{BatchedDispatcher, Dispatcher};
pub use error::JobsError;
pub use forge_core::jobs::{
    AttemptError, Backoff, BackoffKind, FailureKind, InvalidTransition, JobError, JobId, JobOptions, JobProgress,
    JobRecord, JobState, Priority, Unique, UniqueBy,
};
pub(crate) use insert::Prepared;
pub use insert::insert_jobs;
pub use inspect::{
    KnownKind, PausedQueue, QueueSummary, failures_since, find_job, known_kinds, list_jobs, paused_queues,
    queue_summaries, record_kinds,
};
pub use job::{BoxFuture, ErasedHandler, Job, JobRegistration, JobRegistry};
pub(crate) use maintenance::prune_events;
pub use new_job::{DispatchOptions, NewJob};
pub use notifier::Notifier;
pub use worker::ForceStop;
