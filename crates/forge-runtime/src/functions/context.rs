//! The contexts functions run with.

use std::sync::Arc;

use forge_core::jobs::JobId;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::ForgeError;
use crate::jobs::{DispatchOptions, Job, JobTx, NewJob, insert_jobs};

/// What a query knows.
#[derive(Clone, Debug)]
pub struct QueryContext {
    pool: PgPool,
    request_id: String,
}

impl QueryContext {
    pub(crate) fn new(pool: PgPool, request_id: String) -> Self {
        Self { pool, request_id }
    }

    /// The pool, for reads.
    pub fn db(&self) -> &PgPool {
        &self.pool
    }

    /// The request's id (`X-Request-Id`).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// What a mutation knows: a transaction committed only if it succeeds.
#[derive(Clone, Debug)]
pub struct MutationContext {
    tx: Arc<Mutex<Option<Transaction<'static, Postgres>>>>,
    request_id: String,
}

impl MutationContext {
    pub(crate) fn new(tx: Transaction<'static, Postgres>, request_id: String) -> Self {
        Self { tx: Arc::new(Mutex::new(Some(tx))), request_id }
    }

    /// The mutation's transaction: use it as `&mut **tx`. It commits when the mutation returns
    /// `Ok`, and rolls back otherwise.
    pub async fn tx(&self) -> Result<JobTx, ForgeError> {
        let guard = self.tx.clone().lock_owned().await;
        OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| ForgeError::Internal("the mutation's transaction is finished".to_owned()))
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

    /// The request's id (`X-Request-Id`).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Takes the transaction out, for the gateway to commit or roll back.
    pub(crate) async fn take(&self) -> Option<Transaction<'static, Postgres>> {
        self.tx.lock().await.take()
    }
}
