//! What a call carries ([`CallParts`]) and the contexts functions run with.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use forge_core::jobs::JobId;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Mutex;

use super::{Auth, ForgeError};
use crate::db::{Db, Tx, TxSlot};
use crate::jobs::{BatchedDispatcher, DispatchOptions, Dispatcher, Job, NewJob, Notifier, insert_jobs};
use crate::observability::TraceId;

/// Everything a call brings to its function: the pools, the caller, the request's ids.
///
/// The gateway builds one per request; `forge::testing` builds one per test call.
#[derive(Clone, Debug)]
pub struct CallParts {
    pub(crate) pool: PgPool,
    pub(crate) read_db: Db,
    pub(crate) request_id: String,
    pub(crate) trace_id: TraceId,
    pub(crate) auth: Auth,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) http: reqwest::Client,
    pub(crate) notifier: Option<Notifier>,
    pub(crate) dispatcher: Option<BatchedDispatcher>,
    /// When the HTTP request making the call will be answered with a timeout anyway
    /// (`[gateway] request_timeout`): a function timeout ending later needs no timer of its own.
    pub(crate) request_deadline: Option<std::time::Instant>,
}

impl CallParts {
    /// A call by an anonymous caller, writing through `pool` and reading through `read_pool`
    /// (see [`crate::db::read_only_pool`]), with fresh request and trace ids.
    pub fn new(pool: PgPool, read_pool: PgPool) -> Self {
        Self::reading_through(pool, Db::new(read_pool))
    }

    /// [`CallParts::new`] with queries reading through `read_db`, shared with other calls (so
    /// that a connection one call keeps serves the next).
    pub(crate) fn reading_through(pool: PgPool, read_db: Db) -> Self {
        Self {
            pool,
            read_db,
            request_id: crate::observability::new_uuid().to_string(),
            trace_id: TraceId::new(),
            auth: Auth::anonymous(),
            client_ip: None,
            http: default_http_client(),
            notifier: None,
            dispatcher: None,
            request_deadline: None,
        }
    }

    /// Sets the caller.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = request_id.into();
        self
    }

    /// Sets the trace id (as a W3C `traceparent` carries it).
    pub fn with_trace_id(mut self, trace_id: TraceId) -> Self {
        self.trace_id = trace_id;
        self
    }

    /// Sets the client's address (for rate limits by IP).
    pub fn with_client_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.client_ip = ip;
        self
    }

    /// Sets the notifier that wakes workers after an action dispatches.
    pub fn with_notifier(mut self, notifier: Option<Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Sets the node's dispatcher: an action's single dispatches share INSERTs with other
    /// callers' (see [`BatchedDispatcher`]).
    pub fn with_dispatcher(mut self, dispatcher: Option<BatchedDispatcher>) -> Self {
        self.dispatcher = dispatcher;
        self
    }

    /// Sets the HTTP client actions use.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// A call's parts sharing these pools, client, notifier and dispatcher, with its own
    /// request id, trace and caller: what `self.clone().with_request_id(…)…` gives, without
    /// cloning the id and caller only to replace them (the gateway does this per request).
    pub(crate) fn for_call(&self, request_id: String, trace_id: TraceId, auth: Auth) -> Self {
        Self {
            pool: self.pool.clone(),
            read_db: self.read_db.clone(),
            request_id,
            trace_id,
            auth,
            client_ip: self.client_ip,
            http: self.http.clone(),
            notifier: self.notifier.clone(),
            dispatcher: self.dispatcher.clone(),
            request_deadline: self.request_deadline,
        }
    }
}

/// The HTTP client actions get by default: 5 s to connect, 30 s per request.
fn default_http_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// A function kind's context, and how a call of that kind begins and ends: a query gets a
/// read-only pool, a mutation a transaction committed only on success, an action its HTTP
/// client. The function macros run every handler through it.
pub trait CallContext: Clone + Send + Sync + 'static {
    /// The context of a call over `parts` (a mutation's opens its transaction).
    fn open(parts: CallParts) -> impl Future<Output = Result<Self, ForgeError>> + Send;

    /// Ends the call: a mutation commits when `ok` and rolls back otherwise.
    fn close(self, ok: bool) -> impl Future<Output = Result<(), ForgeError>> + Send {
        let _ = ok;
        async { Ok(()) }
    }
}

impl CallContext for QueryContext {
    async fn open(parts: CallParts) -> Result<Self, ForgeError> {
        Ok(Self::new(parts))
    }
}

impl CallContext for MutationContext {
    async fn open(parts: CallParts) -> Result<Self, ForgeError> {
        let tx = parts.pool.begin().await?;
        Ok(Self::new(tx, parts))
    }

    async fn close(self, ok: bool) -> Result<(), ForgeError> {
        match (self.take().await, ok) {
            (Some(tx), true) => tx.commit().await?,
            (Some(tx), false) => {
                let _ = tx.rollback().await;
            }
            (None, _) => {}
        }
        Ok(())
    }
}

impl CallContext for ActionContext {
    async fn open(parts: CallParts) -> Result<Self, ForgeError> {
        Ok(Self::new(parts))
    }
}

/// What a query knows: a read-only pool, the caller and the request.
#[derive(Clone, Debug)]
pub struct QueryContext {
    parts: CallParts,
}

impl QueryContext {
    pub(crate) fn new(parts: CallParts) -> Self {
        Self { parts }
    }

    /// A pool whose sessions are read-only (`default_transaction_read_only`): a write fails
    /// with an error instead of slipping through a query. Statements run on it keep their
    /// connection for the next one (see [`Db`]).
    pub fn db(&self) -> &Db {
        &self.parts.read_db
    }

    /// The caller.
    pub fn auth(&self) -> &Auth {
        &self.parts.auth
    }

    /// The request's id (`X-Request-Id`).
    pub fn request_id(&self) -> &str {
        &self.parts.request_id
    }

    /// The trace this call belongs to (from `traceparent`, or new).
    pub fn trace_id(&self) -> TraceId {
        self.parts.trace_id
    }
}

/// What a mutation knows: a transaction committed only if it succeeds, the caller and the
/// request.
#[derive(Clone, Debug)]
pub struct MutationContext {
    tx: Arc<Mutex<TxSlot>>,
    parts: CallParts,
}

impl MutationContext {
    /// Runs `f` with a context whose transaction commits if `f` returns `Ok` and rolls back
    /// otherwise.
    pub(crate) async fn in_transaction<O, F, Fut>(parts: CallParts, f: F) -> Result<O, ForgeError>
    where
        F: FnOnce(MutationContext) -> Fut,
        Fut: Future<Output = Result<O, ForgeError>>,
    {
        let ctx = Self::open(parts).await?;
        let result = f(ctx.clone()).await;
        ctx.close(result.is_ok()).await?;
        result
    }

    pub(crate) fn new(tx: Transaction<'static, Postgres>, parts: CallParts) -> Self {
        Self { tx: Arc::new(Mutex::new(Some(tx))), parts }
    }

    /// The mutation's transaction, an executor as it is: `.execute(&mut ctx.tx().await?)`. It
    /// commits when the mutation returns `Ok`, and rolls back otherwise.
    pub async fn tx(&self) -> Result<Tx, ForgeError> {
        Tx::lock(self.tx.clone())
            .await
            .ok_or_else(|| ForgeError::Internal("the mutation's transaction is finished".to_owned()))
    }

    /// Dispatches a job inside the mutation's transaction: if the mutation fails, the job is not
    /// enqueued.
    pub async fn dispatch<J: Job>(&self, args: J::Args) -> Result<JobId, ForgeError> {
        self.dispatch_with::<J>(args, DispatchOptions::new()).await
    }

    /// [`MutationContext::dispatch`] with options.
    pub async fn dispatch_with<J: Job>(&self, args: J::Args, options: DispatchOptions) -> Result<JobId, ForgeError> {
        let job = NewJob::of::<J>(&args, &options)?;
        let mut tx = self.tx().await?;
        let ids = insert_jobs(&mut tx, std::slice::from_ref(&job), true).await?;
        ids.first().copied().ok_or_else(|| ForgeError::Internal("the job was not inserted".to_owned()))
    }

    /// The caller.
    pub fn auth(&self) -> &Auth {
        &self.parts.auth
    }

    /// The request's id (`X-Request-Id`).
    pub fn request_id(&self) -> &str {
        &self.parts.request_id
    }

    /// The trace this call belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.parts.trace_id
    }

    /// Takes the transaction out, for the runner to commit or roll back.
    pub(crate) async fn take(&self) -> Option<Transaction<'static, Postgres>> {
        self.tx.lock().await.take()
    }
}

/// What an action knows: an HTTP client with timeouts, the pool, the caller and the request.
/// An action may run mutations ([`ActionContext::mutate`]) and dispatch jobs (it is a
/// [`Dispatcher`]: `SendEmail::dispatch(ctx, args)`).
#[derive(Clone, Debug)]
pub struct ActionContext {
    parts: CallParts,
}

impl ActionContext {
    pub(crate) fn new(parts: CallParts) -> Self {
        Self { parts }
    }

    /// An HTTP client: 5 s to connect, 30 s per request unless the request sets its own.
    pub fn http(&self) -> &reqwest::Client {
        &self.parts.http
    }

    /// The pool. Writes here commit at once; use [`ActionContext::mutate`] for all-or-nothing.
    pub fn db(&self) -> &PgPool {
        &self.parts.pool
    }

    /// Runs `f` as a mutation: its transaction commits if `f` returns `Ok` and rolls back
    /// otherwise, jobs it dispatches included.
    ///
    /// ```ignore
    /// let id = ctx.mutate(|m| async move { create_note(&m, note).await }).await?;
    /// ```
    pub async fn mutate<O, F, Fut>(&self, f: F) -> Result<O, ForgeError>
    where
        F: FnOnce(MutationContext) -> Fut,
        Fut: Future<Output = Result<O, ForgeError>>,
    {
        MutationContext::in_transaction(self.parts.clone(), f).await
    }

    /// The caller.
    pub fn auth(&self) -> &Auth {
        &self.parts.auth
    }

    /// The request's id (`X-Request-Id`).
    pub fn request_id(&self) -> &str {
        &self.parts.request_id
    }

    /// The trace this call belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.parts.trace_id
    }
}

impl Dispatcher for ActionContext {
    fn dispatch_pool(&self) -> &PgPool {
        &self.parts.pool
    }

    fn dispatch_notifier(&self) -> Option<&Notifier> {
        self.parts.notifier.as_ref()
    }

    fn dispatch_batched(&self) -> Option<&BatchedDispatcher> {
        self.parts.dispatcher.as_ref()
    }
}
