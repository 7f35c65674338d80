//! The [`Workflow`] trait, implemented by `#[forge::workflow]`, and starting runs.

use std::future::Future;
use std::time::Duration;

use forge_core::jobs::JobId;
use forge_core::workflows::WorkflowError;
use sqlx::PgConnection;

use super::context::WorkflowContext;
use super::error::WorkflowsError;
use super::start::{RunRow, start_many_on, start_on};
use crate::jobs::{DispatchOptions, Dispatcher, Job, NewJob};

/// A durable workflow. `#[forge::workflow]` implements it (and [`Job`]: a run is a job of the
/// workflow's kind) for a unit struct named after the function.
pub trait Workflow: Job {
    /// The code's version, recorded on each run when it starts.
    const VERSION: u32 = 1;

    /// The longest a whole run may take, from its start; past it the run fails (its
    /// compensations run). None: no limit.
    fn timeout() -> Option<Duration> {
        None
    }

    /// The workflow's code: one execution, replaying the run's recorded steps.
    fn execute(
        ctx: &WorkflowContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, WorkflowError>> + Send + '_;

    /// Starts a run; returns its id.
    fn start<'a, D: Dispatcher + ?Sized>(
        to: &'a D,
        args: Self::Args,
    ) -> impl Future<Output = Result<JobId, WorkflowsError>> + Send + 'a {
        Self::start_with(to, args, StartOptions::new())
    }

    /// Starts a run with options (an idempotent key, a delay, a queue, ...). With a key, a
    /// second start returns the first run's id and starts nothing.
    fn start_with<'a, D: Dispatcher + ?Sized>(
        to: &'a D,
        args: Self::Args,
        options: StartOptions,
    ) -> impl Future<Output = Result<JobId, WorkflowsError>> + Send + 'a {
        async move {
            let job = NewJob::of::<Self>(&args, &options.dispatch)?;
            let mut conn = to.dispatch_pool().acquire().await?;
            start_on(&mut conn, job, run_row::<Self>(options.key.as_deref(), None)).await
        }
    }

    /// Starts many runs in two statements (their jobs, then their rows); ids come back in the
    /// order of `args`. Runs started together take no key: start keyed runs one at a time.
    fn start_many<'a, D: Dispatcher + ?Sized>(
        to: &'a D,
        args: Vec<Self::Args>,
        options: StartOptions,
    ) -> impl Future<Output = Result<Vec<JobId>, WorkflowsError>> + Send + 'a {
        async move {
            let jobs = args.iter().map(|a| NewJob::of::<Self>(a, &options.dispatch)).collect::<Result<Vec<_>, _>>()?;
            let mut conn = to.dispatch_pool().acquire().await?;
            start_many_on(&mut conn, &jobs, run_row::<Self>(options.key.as_deref(), None)).await
        }
    }

    /// Starts a run inside the caller's transaction (a mutation's `ctx.tx()`): if it rolls back,
    /// there is no run. Workers are woken when it commits.
    fn start_in<'a>(
        conn: &'a mut PgConnection,
        args: Self::Args,
        options: StartOptions,
    ) -> impl Future<Output = Result<JobId, WorkflowsError>> + Send + 'a {
        async move {
            let job = NewJob::of::<Self>(&args, &options.dispatch)?;
            start_on(conn, job, run_row::<Self>(options.key.as_deref(), None)).await
        }
    }
}

/// How a run is started: [`DispatchOptions`] for its job, and an optional run key.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    key: Option<String>,
    dispatch: DispatchOptions,
}

impl StartOptions {
    /// No key, the workflow's own job options.
    pub fn new() -> Self {
        Self::default()
    }

    /// An idempotent run key: while a run with this key is kept, starting another returns it.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The job options of the run (delay, queue, priority, tags...).
    pub fn dispatch(mut self, options: DispatchOptions) -> Self {
        self.dispatch = options;
        self
    }
}

/// The row of a run of workflow `W`.
pub(crate) fn run_row<W: Workflow>(key: Option<&str>, parent: Option<JobId>) -> RunRow<'_> {
    RunRow { workflow: <W as Job>::NAME, version: W::VERSION, timeout: W::timeout(), key, parent }
}
