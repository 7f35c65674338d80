//! The [`Submitter`]: the job API's submissions, batched. Each handler hands its submission
//! over; the submitter's tasks take everything waiting when they are free (up to
//! [`MAX_BATCH`]) and submit it with one [`sql::SUBMIT`]: one round trip and one commit for
//! many requests. Alone, a submission goes at once, as a batch of one; under load, batches
//! grow with the queue, so the database's work per submission falls as the load rises (the
//! group commit River's and Oban's inserters do for their callers).

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::postgres::PgRow;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::sql;
use crate::jobs::NewJob;

/// The most submissions one statement carries.
const MAX_BATCH: usize = 64;
/// Statements in flight at once (each holding one connection while it runs). Fewer make
/// bigger batches: 2 beat 4 by 11–40% (`api --submit-only`, alternating), and 1 beat 2 by
/// another 7–14%, but one slow statement would then hold every submission behind it.
const SUBMITTERS: usize = 2;

/// One submission waiting for a statement.
pub(super) struct Pending {
    /// The idempotency key's owner and key, as one string (the lock's and the batch's key).
    pub(super) lock_key: Option<String>,
    pub(super) owner: String,
    pub(super) key: Option<String>,
    pub(super) job: NewJob,
    pub(super) metadata: serde_json::Value,
    pub(super) path: String,
    pub(super) fingerprint: Vec<u8>,
}

/// The tasks that submit waiting submissions in batches; started with the first submission,
/// ended when the [`ApiState`] holding it is dropped.
#[derive(Debug)]
pub(super) struct Submitter {
    queue: mpsc::Sender<(Pending, Reply)>,
}

/// Where a submission's row goes: `None` when the statement was undone, failed or not run.
pub(super) type Reply = oneshot::Sender<Option<PgRow>>;

impl Submitter {
    /// Starts [`SUBMITTERS`] tasks over `pool`, storing answers for `ttl` seconds.
    pub(super) fn start(pool: sqlx::PgPool, ttl: f64) -> Self {
        let (queue, waiting) = mpsc::channel(MAX_BATCH * SUBMITTERS * 4);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..SUBMITTERS {
            tokio::spawn(work(waiting.clone(), pool.clone(), ttl));
        }
        Self { queue }
    }

    /// Submits `pending` with whatever else waits: its row of [`sql::SUBMIT`], or `None` when
    /// it is to go the transactional way.
    pub(super) async fn submit(&self, pending: Pending) -> Option<PgRow> {
        let (reply, row) = oneshot::channel();
        self.queue.send((pending, reply)).await.ok()?;
        row.await.ok().flatten()
    }
}

/// One submitter task: takes what waits, submits it, answers each submission; ends when no
/// sender is left.
async fn work(waiting: Arc<Mutex<mpsc::Receiver<(Pending, Reply)>>>, pool: sqlx::PgPool, ttl: f64) {
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH
                && let Ok(next) = waiting.try_recv()
            {
                batch.push(next);
            }
            batch
        };
        submit_batch(&pool, ttl, batch).await;
    }
}

/// Submits `batch` in one statement. A repeat of a key already in the batch is answered
/// `None` at once (its caller goes the transactional way, where the first holds the key or
/// has answered it); so is every submission when the statement fails or is undone.
pub(super) async fn submit_batch(pool: &sqlx::PgPool, ttl: f64, batch: Vec<(Pending, Reply)>) {
    let mut keys = HashSet::new();
    let (batch, repeats): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|(p, _)| p.lock_key.as_ref().is_none_or(|k| keys.insert(k.clone())));
    for (_, reply) in repeats {
        let _ = reply.send(None);
    }
    let (batch, replies): (Vec<Pending>, Vec<Reply>) = batch.into_iter().unzip();
    let jobs = || batch.iter().map(|p| &p.job);
    let rows: Result<Vec<PgRow>, sqlx::Error> = sqlx::query(sql::SUBMIT)
        .bind(batch.iter().map(|p| p.lock_key.as_deref()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.owner.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.key.as_deref()).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(jobs().map(|j| &j.args).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.max_attempts).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.capability.as_deref()).collect::<Vec<_>>())
        .bind(jobs().map(|j| serde_json::json!(j.tags)).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| &p.metadata).collect::<Vec<_>>())
        .bind(jobs().map(|j| j.client).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.path.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.fingerprint.as_slice()).collect::<Vec<_>>())
        .bind(ttl)
        .fetch_all(pool)
        .await;
    match rows {
        Ok(rows) if rows.len() == replies.len() => {
            for (reply, row) in replies.into_iter().zip(rows) {
                let _ = reply.send(Some(row));
            }
        }
        outcome => {
            // Undone by the race, or failed: each submission goes the transactional way,
            // which meets the race's first answer, or the failure on its own.
            if let Err(e) = outcome
                && e.as_database_error().and_then(|e| e.code()).as_deref() != Some("22012")
            {
                tracing::warn!(error = %e, submissions = batch.len(), "/v1: a batch of submissions failed; each goes alone");
            }
            for reply in replies {
                let _ = reply.send(None);
            }
        }
    }
}
