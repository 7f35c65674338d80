//! [`JobContext`]: what a running attempt knows and can do.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use forge_core::jobs::JobId;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::dispatch::BatchedDispatcher;
use super::dispatch::Dispatcher;
use super::notifier::Notifier;
use super::sql;
use crate::db::{Tx, TxSlot};

/// The context of one attempt of one job. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: JobId,
    kind: String,
    queue: String,
    attempt: u32,
    max_attempts: u32,
    scheduled_at: DateTime<Utc>,
    lease: std::time::Duration,
    node_id: String,
    pool: PgPool,
    dispatcher: Option<BatchedDispatcher>,
    cancel: CancellationToken,
    tx: Option<Arc<Mutex<TxSlot>>>,
    extensions: Extensions,
    hold: Option<Hold>,
}

/// A claim window's hold on an attempt's job: its row is locked by the window's transaction,
/// not yet written `running` (see `worker/window.rs`). What needs the row written first (progress,
/// a lease renewal, a transactional job's own transaction, a workflow's records) asks the
/// window to end and waits for it: [`Hold::settled`].
#[derive(Clone, Debug)]
pub(crate) struct Hold {
    /// Asks the window to end now.
    pub(crate) ask: Arc<tokio::sync::Notify>,
    /// `Some(true)` once the window has written its jobs, `Some(false)` if it failed (its jobs
    /// went back to the queue).
    pub(crate) settled: tokio::sync::watch::Receiver<Option<bool>>,
}

impl Hold {
    /// Asks the window to end, and says whether it wrote the job (`false`: the window failed,
    /// and the job is back in the queue).
    pub(crate) async fn settled(&self) -> bool {
        if let Some(done) = *self.settled.borrow() {
            return done;
        }
        self.ask.notify_one();
        let mut settled = self.settled.clone();
        settled.wait_for(Option::is_some).await.map(|v| v.unwrap_or(false)).unwrap_or(false)
    }
}

/// Values a node hands to every job it runs, by type ([`JobContext::extension`]): the
/// application's shared state, or Forge's own (the job API's webhook settings).
pub type Extensions = Arc<axum::http::Extensions>;

/// Why a transaction could not be handed out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The job kind is not declared `transactional`.
    #[error("job {0} is not transactional: declare it with #[forge::job(transactional)] to use ctx.tx()")]
    NotTransactional(String),
    /// The transaction was already committed or rolled back.
    #[error("the job's transaction is finished")]
    Finished,
}

/// Parts of a claimed job the worker hands to a context.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) id: JobId,
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) scheduled_at: DateTime<Utc>,
    /// How long a renewal keeps the lease (the node's `[worker] lease`).
    pub(crate) lease: std::time::Duration,
    /// The claim window holding the job, if one still may.
    pub(crate) hold: Option<Hold>,
}

impl JobContext {
    pub(crate) fn new(
        job: Claimed,
        node_id: String,
        pool: PgPool,
        dispatcher: Option<BatchedDispatcher>,
        cancel: CancellationToken,
        tx: Option<Transaction<'static, Postgres>>,
        extensions: Extensions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: job.id,
                kind: job.kind,
                queue: job.queue,
                attempt: job.attempt,
                max_attempts: job.max_attempts,
                scheduled_at: job.scheduled_at,
                lease: job.lease,
                node_id,
                pool,
                dispatcher,
                cancel,
                tx: tx.map(|tx| Arc::new(Mutex::new(Some(tx)))),
                extensions,
                hold: job.hold,
            }),
        }
    }

    /// The value of type `T` the node hands its jobs, if it has one.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.inner.extensions.get::<T>()
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.inner.id
    }

    /// The job's kind.
    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    /// The queue it was claimed from.
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Attempts allowed before the job is discarded.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// Whether an earlier attempt failed.
    pub fn is_retry(&self) -> bool {
        self.inner.attempt > 1
    }

    /// Whether a failure now discards the job.
    pub fn is_last_attempt(&self) -> bool {
        self.inner.attempt >= self.inner.max_attempts
    }

    /// When the job was due to run.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        self.inner.scheduled_at
    }

    /// The node running this attempt.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The pool. In a transactional job, use [`JobContext::tx`] for work that must commit with
    /// the job's completion.
    pub fn db(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The attempt's transaction (transactional jobs only): it commits in the same transaction
    /// that marks the job completed, and rolls back if the attempt fails, times out, panics or
    /// its node dies.
    ///
    /// ```no_run
    /// # async fn demo(ctx: &forge_runtime::jobs::JobContext) -> Result<(), Box<dyn std::error::Error>> {
    /// sqlx::query("insert into ledger (amount) values (10)").execute(&mut ctx.tx().await?).await?;
    /// # Ok(()) }
    /// ```
    pub fn tx(&self) -> impl std::future::Future<Output = Result<Tx, TxError>> + Send + 'static {
        let slot = self.inner.tx.clone().ok_or_else(|| TxError::NotTransactional(self.inner.kind.clone()));
        async move { Tx::lock(slot?).await.ok_or(TxError::Finished) }
    }

    /// Takes the transaction out, for the worker to commit or roll back.
    pub(crate) async fn take_tx(&self) -> Option<Transaction<'static, Postgres>> {
        match &self.inner.tx {
            Some(slot) => slot.lock().await.take(),
            None => None,
        }
    }

    /// Records progress (0–100, with a message) and renews the lease. The message is stored
    /// with NULs replaced and cut to [`forge_core::text::caps::PROGRESS_MESSAGE`] bytes.
    pub async fn progress(&self, percent: u8, message: impl Into<String>) -> Result<(), sqlx::Error> {
        self.claimed().await;
        let mut message = message.into();
        forge_core::text::clean_text(&mut message, forge_core::text::caps::PROGRESS_MESSAGE);
        let progress = serde_json::json!({ "percent": percent.min(100), "message": message });
        sqlx::query(sql::PROGRESS)
            .bind(self.inner.id.0)
            .bind(self.attempt_i32())
            .bind(progress)
            .bind(self.inner.lease.as_secs_f64())
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    /// Renews the lease now (the worker also renews it periodically).
    pub async fn heartbeat(&self) -> Result<bool, sqlx::Error> {
        if !self.claimed().await {
            return Ok(false);
        }
        let renewed = sqlx::query(sql::HEARTBEAT)
            .bind(vec![self.inner.id.0])
            .bind(&self.inner.node_id)
            .bind(self.inner.lease.as_secs_f64())
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(renewed.is_some())
    }

    /// Fires when the job is cancelled (or its lease lost, or the worker gives up on it): long
    /// handlers should `select!` on it and return.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Waits until the job's row says it runs (its claim window, if one holds it, has ended);
    /// `false` if the window failed and the job went back to the queue. What writes to the
    /// job's own row calls this first.
    pub(crate) async fn claimed(&self) -> bool {
        match &self.inner.hold {
            Some(hold) => hold.settled().await,
            None => true,
        }
    }

    fn attempt_i32(&self) -> i32 {
        i32::try_from(self.inner.attempt).unwrap_or(i32::MAX)
    }
}

impl Dispatcher for JobContext {
    fn dispatch_pool(&self) -> &PgPool {
        &self.inner.pool
    }

    fn dispatch_notifier(&self) -> Option<&Notifier> {
        self.inner.dispatcher.as_ref().and_then(|d| d.dispatch_notifier())
    }

    fn dispatch_batched(&self) -> Option<&BatchedDispatcher> {
        self.inner.dispatcher.as_ref()
    }
}
