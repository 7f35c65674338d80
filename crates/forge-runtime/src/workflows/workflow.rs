//! The [`Workflow`] trait, implemented by `#[forge::workflow]`, and starting runs.

use std::future::Future;
use std::time::Duration;

use forge_core::jobs::JobId;
use forge_core::workflows::WorkflowError;
use sqlx::{Acquire, PgConnection};

use super::context::WorkflowContext;
use super::error::WorkflowsError;
use super::sql;
use crate::jobs::{DispatchOptions, Dispatcher, Job, NewJob, insert_jobs};

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
            start_on(&mut conn, job, Self::NAME, Self::VERSION, Self::timeout(), options.key.as_deref()).await
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
            start_on(conn, job, Self::NAME, Self::VERSION, Self::timeout(), options.key.as_deref()).await
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

/// Inserts the run's job and its row in one transaction (a savepoint inside the caller's);
/// when `key` is taken, nothing is inserted and the holder's id is returned.
async fn start_on(
    conn: &mut PgConnection,
    job: NewJob,
    workflow: &str,
    version: u32,
    timeout: Option<Duration>,
    key: Option<&str>,
) -> Result<JobId, WorkflowsError> {
    if let Some(key) = key {
        if key.is_empty() || key.len() > 512 || key.contains('\0') {
            return Err(WorkflowsError::InvalidName(format!(
                "a run key is 1 to 512 bytes without NUL, got {} bytes",
                key.len()
            )));
        }
        if let Some(id) = sqlx::query_scalar::<_, i64>(sql::RUN_BY_KEY).bind(key).fetch_optional(&mut *conn).await? {
            return Ok(JobId(id));
        }
    }
    let mut tx = conn.begin().await?;
    let id = insert_jobs(&mut tx, std::slice::from_ref(&job), true)
        .await?
        .into_iter()
        .next()
        .ok_or(crate::jobs::JobsError::NotInserted)?;
    let inserted: Option<i64> = sqlx::query_scalar(sql::START)
        .bind(id.0)
        .bind(workflow)
        .bind(i32::try_from(version).unwrap_or(i32::MAX))
        .bind(key)
        .bind(timeout.map(|t| t.as_secs_f64()))
        .fetch_optional(&mut *tx)
        .await?;
    match (inserted, key) {
        (Some(_), _) => {
            tx.commit().await?;
            Ok(id)
        }
        // Another start took the key meanwhile (its insert committed while ours waited).
        (None, Some(key)) => {
            tx.rollback().await?;
            let holder: i64 = sqlx::query_scalar(sql::RUN_BY_KEY).bind(key).fetch_one(&mut *conn).await?;
            Ok(JobId(holder))
        }
        (None, None) => Err(WorkflowsError::NotFound(format!("{id} (its row could not be inserted)"))),
    }
}
