//! The [`Job`] trait, implemented by `#[forge::job]`, and the type-erased registry the worker
//! runs jobs from.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use forge_core::jobs::{JobError, JobId, JobOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

use super::context::JobContext;
use super::dispatch::Dispatcher;
use super::error::JobsError;
use super::insert::insert_jobs;
use super::new_job::{DispatchOptions, NewJob};

/// A boxed future, as the registry stores handlers.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A kind of job. `#[forge::job]` implements it for a unit struct named after the function
/// (`send_email` → `SendEmail`); implement it by hand when a macro does not fit, and register
/// it with `ForgeBuilder::job`.
pub trait Job: Sized + Send + Sync + 'static {
    /// The kind stored in `forge_jobs.kind`: unique per application, stable across deploys.
    const NAME: &'static str;
    /// The arguments, stored as JSON.
    type Args: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The result, stored as JSON in `forge_jobs.output`.
    type Output: Serialize + Send + 'static;

    /// The kind's defaults (queue, priority, attempts, backoff, timeout, ...).
    fn options() -> JobOptions {
        JobOptions::new()
    }

    /// Runs one attempt.
    fn run(ctx: &JobContext, args: Self::Args) -> impl Future<Output = Result<Self::Output, JobError>> + Send + '_;

    /// Enqueues a job with the kind's defaults; returns its id (or, for a unique kind with a
    /// live duplicate, the duplicate's id).
    fn dispatch<'a, D: Dispatcher + ?Sized>(
        to: &'a D,
        args: Self::Args,
    ) -> impl Future<Output = Result<JobId, JobsError>> + Send + 'a {
        Self::dispatch_with(to, args, DispatchOptions::new())
    }

    /// Enqueues a job with per-dispatch options.
    fn dispatch_with<'a, D: Dispatcher + ?Sized>(
        to: &'a D,
        args: Self::Args,
        options: DispatchOptions,
    ) -> impl Future<Output = Result<JobId, JobsError>> + Send + 'a {
        async move {
            let job = NewJob::of::<Self>(&args, &options)?;
            let ids = to.insert(std::slice::from_ref(&job)).await?;
            ids.into_iter().next().ok_or(JobsError::NotInserted)
        }
    }

    /// Enqueues a job inside the caller's transaction: if it rolls back, there is no job. The
    /// workers are notified when (and only if) the transaction commits.
    fn dispatch_in<'a>(
        conn: &'a mut PgConnection,
        args: Self::Args,
        options: DispatchOptions,
    ) -> impl Future<Output = Result<JobId, JobsError>> + Send + 'a {
        async move {
            let job = NewJob::of::<Self>(&args, &options)?;
            let ids = insert_jobs(conn, std::slice::from_ref(&job), true).await?;
            ids.into_iter().next().ok_or(JobsError::NotInserted)
        }
    }

    /// Enqueues many jobs in one statement; ids come back in the order of `args`.
    fn dispatch_many<'a, D: Dispatcher + ?Sized>(
        to: &'a D,
        args: Vec<Self::Args>,
        options: DispatchOptions,
    ) -> impl Future<Output = Result<Vec<JobId>, JobsError>> + Send + 'a {
        async move {
            let jobs = args.iter().map(|a| NewJob::of::<Self>(a, &options)).collect::<Result<Vec<_>, _>>()?;
            to.insert(&jobs).await
        }
    }
}

impl NewJob {
    /// The row for a job of kind `J` with `args` and `options`.
    pub fn of<J: Job>(args: &J::Args, options: &DispatchOptions) -> Result<Self, JobsError> {
        Self::for_kind(J::NAME, J::options(), serde_json::to_value(args)?, options)
    }
}

/// A handler with its types erased: JSON in, JSON out.
pub type ErasedHandler = fn(JobContext, serde_json::Value) -> BoxFuture<Result<serde_json::Value, JobError>>;

/// One job kind as the worker sees it. `#[forge::job]` submits one to the global registry.
#[derive(Debug)]
pub struct JobRegistration {
    /// The kind.
    pub name: &'static str,
    /// Its defaults.
    pub options: fn() -> JobOptions,
    /// Its handler.
    pub handler: ErasedHandler,
    /// Whether a JSON value fits its arguments (the error says where it does not).
    pub check_args: fn(&serde_json::Value) -> Result<(), String>,
}

impl JobRegistration {
    /// The registration of `J`.
    pub const fn of<J: Job>() -> Self {
        Self { name: J::NAME, options: J::options, handler: run_erased::<J>, check_args: check_erased::<J> }
    }
}

fn check_erased<J: Job>(args: &serde_json::Value) -> Result<(), String> {
    match serde_path_to_error::deserialize::<_, J::Args>(args) {
        Ok(_) => Ok(()),
        Err(e) if e.path().to_string() == "." => Err(e.inner().to_string()),
        Err(e) => Err(format!("{}: {}", e.path(), e.inner())),
    }
}

inventory::collect!(JobRegistration);

fn run_erased<J: Job>(ctx: JobContext, args: serde_json::Value) -> BoxFuture<Result<serde_json::Value, JobError>> {
    Box::pin(async move {
        let args: J::Args = serde_json::from_value(args)
            .map_err(|e| JobError::permanent(format!("arguments do not fit {}: {e}", J::NAME)))?;
        let output = J::run(&ctx, args).await?;
        serde_json::to_value(output).map_err(|e| JobError::permanent(format!("cannot store the output: {e}")))
    })
}

/// The job kinds a node can run: every `#[forge::job]` in the binary, plus any registered by hand.
#[derive(Clone, Debug, Default)]
pub struct JobRegistry {
    kinds: Arc<HashMap<&'static str, RegisteredJob>>,
}

/// A registered kind with its options resolved.
#[derive(Clone, Debug)]
pub(crate) struct RegisteredJob {
    pub(crate) options: JobOptions,
    pub(crate) handler: ErasedHandler,
    pub(crate) check_args: fn(&serde_json::Value) -> Result<(), String>,
}

impl JobRegistry {
    /// Every kind submitted by `#[forge::job]`, plus `extra`.
    pub fn collect(extra: &[&'static JobRegistration]) -> Self {
        let mut kinds = HashMap::new();
        for r in inventory::iter::<JobRegistration>.into_iter().chain(extra.iter().copied()) {
            kinds
                .insert(r.name, RegisteredJob { options: (r.options)(), handler: r.handler, check_args: r.check_args });
        }
        Self { kinds: Arc::new(kinds) }
    }

    /// The kinds, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// A new job of `kind` with `args`, checked against the kind's argument type, with the
    /// kind's options. Errors: the kind is not registered, or the arguments do not fit (the
    /// message names the field).
    pub fn new_job(&self, kind: &str, args: serde_json::Value) -> Result<NewJob, JobsError> {
        let registered = self.get(kind).ok_or_else(|| JobsError::UnknownKind(kind.to_owned()))?;
        (registered.check_args)(&args).map_err(|message| JobsError::InvalidArgs { kind: kind.to_owned(), message })?;
        Ok(NewJob::with_options(kind, args, &registered.options))
    }

    /// [`JobRegistry::new_job`] with dispatch options over the kind's own: its uniqueness rule
    /// applies (a kind unique by key without `unique_key` is refused with
    /// [`JobsError::MissingUniqueKey`]), as in a typed `dispatch_with`.
    pub fn new_job_with(
        &self,
        kind: &str,
        args: serde_json::Value,
        options: &DispatchOptions,
    ) -> Result<NewJob, JobsError> {
        let (&name, registered) =
            self.kinds.get_key_value(kind).ok_or_else(|| JobsError::UnknownKind(kind.to_owned()))?;
        (registered.check_args)(&args).map_err(|message| JobsError::InvalidArgs { kind: kind.to_owned(), message })?;
        NewJob::for_kind(name, registered.options.clone(), args, options)
    }

    /// The options a kind runs with.
    pub fn options(&self, kind: &str) -> Option<&JobOptions> {
        self.get(kind).map(|r| &r.options)
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&RegisteredJob> {
        self.kinds.get(kind)
    }
}
