//! Child runs: [`WorkflowContext::start_child`] starts one exactly once, and
//! [`Child::result`] waits for it durably. A child's end reaches its parent as an event
//! (`child:<id>`) sent in the child's finishing transaction, which also counts the parent's
//! open children down: the parent is woken, not polling.

use std::marker::PhantomData;
use std::time::Duration;

use forge_core::jobs::JobId;
use forge_core::workflows::{StepKind, StepStatus, WorkflowError};
use serde::{Deserialize, Serialize};

use super::context::{Landed, Record, StepFuture, WorkflowContext, Written};
use super::start::start_on;
use super::workflow::{Workflow, run_row};
use crate::jobs::{DispatchOptions, Job, NewJob};

/// A child run started by [`WorkflowContext::start_child`].
#[derive(Debug)]
pub struct Child<'a, W> {
    ctx: &'a WorkflowContext,
    run: JobId,
    workflow: PhantomData<fn() -> W>,
}

/// How a child run ended, as its parent receives it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ChildEnd {
    /// The child's job state: completed, discarded or cancelled.
    pub(crate) state: String,
    /// Its output, when completed.
    pub(crate) output: Option<serde_json::Value>,
    /// Why it failed, otherwise.
    pub(crate) error: Option<String>,
}

/// The event a child's end is sent to its parent as.
pub(crate) fn child_event(child: JobId) -> String {
    format!("child:{}", child.0)
}

impl<'a, W: Workflow> Child<'a, W>
where
    <W as Job>::Output: serde::de::DeserializeOwned,
{
    /// The child run's id.
    pub fn id(&self) -> JobId {
        self.run
    }

    /// Waits durably for the child to finish: its output, or [`WorkflowError::Step`] naming the
    /// child when it failed or was cancelled. The parent holds no worker slot meanwhile. The
    /// future borrows the context, not the handle, so `children.iter().map(|c| c.result())`
    /// can be joined.
    pub fn result(&self) -> StepFuture<'a, Result<<W as Job>::Output, WorkflowError>> {
        let (ctx, run) = (self.ctx, self.run);
        Box::pin(async move {
            let event = child_event(run);
            let end: Option<ChildEnd> = ctx.wait_for_event(&event, Duration::MAX).await?;
            let step = format!("child {run} ({})", <W as Job>::NAME);
            match end {
                Some(end) if end.state == "completed" => {
                    serde_json::from_value(end.output.unwrap_or(serde_json::Value::Null))
                        .map_err(|e| WorkflowError::Failed(format!("the output of {step} does not fit its type: {e}")))
                }
                Some(end) => Err(WorkflowError::Step {
                    step,
                    message: format!("{}: {}", end.state, end.error.unwrap_or_default()),
                }),
                None => Err(WorkflowError::Step { step, message: "never finished".to_owned() }),
            }
        })
    }
}

impl WorkflowContext {
    /// Starts a child run of workflow `W`, exactly once: the child's job and this step's
    /// checkpoint commit together, and the child's run key is derived from this run and the
    /// step, so a replay returns the same child. Await [`Child::result`] for its output.
    pub async fn start_child<W: Workflow>(&self, args: <W as Job>::Args) -> Result<Child<'_, W>, WorkflowError> {
        let (name, landed) = self.position(<W as Job>::NAME, StepKind::Child).await?;
        let seq = match landed {
            Landed::Recorded(r) if r.status == StepStatus::Completed => {
                let run = r.output.as_ref().and_then(|o| o.get("run")).and_then(serde_json::Value::as_i64);
                return match run {
                    Some(run) => Ok(Child { ctx: self, run: JobId(run), workflow: PhantomData }),
                    None => Err(WorkflowError::Failed(format!("step {name} recorded no child run"))),
                };
            }
            Landed::Recorded(r) => r.seq,
            Landed::New(seq) => seq,
        };
        let job = NewJob::of::<W>(&args, &DispatchOptions::new()).map_err(|e| WorkflowError::Failed(e.to_string()))?;
        let key = format!("{}/{}", self.run_id(), name);
        let mut tx = self.db().begin().await.map_err(|e| self.internal(e))?;
        let child = start_on(&mut tx, job, run_row::<W>(Some(&key), Some(self.run_id())))
            .await
            .map_err(|e| self.internal(e))?;
        let record = Record {
            status: StepStatus::Completed,
            output: Some(serde_json::json!({ "run": child.0 })),
            wake_at: None,
            ..Record::waiting(&name, seq, StepKind::Child, chrono::Utc::now())
        };
        match self.record_on(&mut tx, record).await? {
            Written::Ours => tx.commit().await.map_err(|e| self.internal(e))?,
            // Another execution started it first: ours rolls back, its child stands.
            Written::Theirs { .. } => drop(tx),
        }
        Ok(Child { ctx: self, run: child, workflow: PhantomData })
    }
}
