//! Durable workflows, on the job engine.
//!
//! A **run is a job** of the workflow's kind: it is claimed, leased, fenced, retried, rescued
//! and shown like any job. What a run adds is its record: each call its code makes to the
//! [`WorkflowContext`] (a step, a sleep, an event wait, a version marker) is a checkpoint row
//! keyed by (run, step name with occurrence), and every execution of the run replays the record
//! before doing anything new. So:
//!
//! - a **step** runs at least once: its output is recorded after it returns, and a crash before
//!   the checkpoint runs it again; a **tx_step** runs exactly once: its transaction commits its
//!   effects and its checkpoint together;
//! - **sleeps and event waits** end the execution and put the run back as a scheduled job (no
//!   worker slot or connection is held while it waits); an event and a suspending wait meet
//!   under the run's job-row lock, taken first by both, so a wake-up is never lost;
//! - the run's **outcome** is the job's, written once by the fenced finish;
//! - a run whose code no longer matches its record is **parked** (blocked) until an operator
//!   resumes or cancels it; it is never silently re-run or failed;
//! - when a run fails for good or is cancelled, the **compensations** of its completed steps run
//!   newest first, each once, each recorded.
//!
//! ## Files
//!
//! - `workflow.rs`: the [`Workflow`] trait and starting runs ([`StartOptions`]);
//! - `context.rs`: [`WorkflowContext`], steps ([`Step`], [`TxStep`]), sleeps, events, patches;
//! - `child.rs`: child runs, started once and awaited durably;
//! - `start.rs`: a run's job and row inserted together;
//! - `replay.rs`: matching the code's calls against the record;
//! - `execute.rs`: one execution, and how it ends becomes the job's outcome;
//! - `control.rs`: events, cancel, resume, and reading runs;
//! - `sql.rs`: every statement.

mod child;
mod context;
mod control;
mod error;
mod execute;
mod replay;
mod sql;
mod start;
mod workflow;

pub use child::Child;
#[cfg(feature = "testing")]
pub(crate) use context::{OVERRIDES, Overrides};
pub use context::{Step, StepFuture, TxStep, WorkflowContext};
pub use control::{
    EventInfo, EventSent, RunFilter, RunInfo, RunRef, StepInfo, cancel, find_run, list_runs, resume, retry, run_events,
    run_steps, send_event, send_event_in,
};
pub use error::WorkflowsError;
pub use execute::execute;
pub use forge_core::workflows::{RetryPolicy, RunStatus, StepKind, StepStatus, WorkflowError, step_name};
pub use workflow::{StartOptions, Workflow};
