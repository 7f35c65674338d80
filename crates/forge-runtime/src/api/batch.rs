//! The [`Submitter`]: the job API's submissions, batched. Each handler hands its submission
//! over; a [`Batcher`] takes everything waiting (up to [`MAX_BATCH`]) and submits it with one
//! [`sql::SUBMIT`]: one round trip and one commit for many requests.

use std::collections::HashSet;

use sqlx::postgres::PgRow;

use super::sql;
use crate::db::batch::Batcher;
use crate::db::spares::Spares;
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
/// ended when the [`ApiState`](super::state::ApiState) holding it is dropped.
#[derive(Debug)]
pub(super) struct Submitter {
    batcher: Batcher<Pending, Option<PgRow>>,
}

impl Submitter {
    /// Starts [`SUBMITTERS`] tasks over `pool`, storing answers for `ttl` seconds.
    pub(super) fn start(pool: sqlx::PgPool, ttl: f64) -> Self {
        // A statement keeps its connection for the next one (see `Spares`).
        let spares = Spares::new(pool);
        let batcher = Batcher::start(SUBMITTERS, MAX_BATCH, move |batch| {
            let spares = spares.clone();
            async move { submit_batch(&spares, ttl, batch).await }
        });
        Self { batcher }
    }

    /// Submits `pending` with whatever else waits: its row of [`sql::SUBMIT`], or `None` when
    /// it is to go the transactional way.
    pub(super) async fn submit(&self, pending: Pending) -> Option<PgRow> {
        self.batcher.call(pending).await.flatten()
    }
}

/// Submits `batch` in one statement; answers each submission, in order, with its row of
/// [`sql::SUBMIT`], or `None` when it is to go the transactional way: a repeat of a key already
/// in the batch (where the first holds the key or has answered it), and every submission when
/// the statement fails or is undone.
pub(super) async fn submit_batch(spares: &Spares, ttl: f64, batch: Vec<Pending>) -> Vec<Option<PgRow>> {
    let mut keys = HashSet::new();
    let firsts: Vec<bool> = batch.iter().map(|p| p.lock_key.as_ref().is_none_or(|k| keys.insert(k.clone()))).collect();
    let all = firsts.len();
    let batch: Vec<Pending> = batch.into_iter().zip(&firsts).filter(|(_, first)| **first).map(|(p, _)| p).collect();
    let jobs = || batch.iter().map(|p| &p.job);
    let mut conn = match spares.take().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, submissions = batch.len(), "/v1: no connection for a batch of submissions; each goes alone");
            return (0..all).map(|_| None).collect();
        }
    };
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
        .fetch_all(&mut *conn)
        .await;
    match rows {
        Ok(rows) if rows.len() == batch.len() => {
            spares.keep(conn);
            let mut rows = rows.into_iter();
            firsts.into_iter().map(|first| if first { rows.next() } else { None }).collect()
        }
        outcome => {
            // Undone by the race, or failed: each submission goes the transactional way,
            // which meets the race's first answer, or the failure on its own.
            if let Err(e) = outcome
                && e.as_database_error().and_then(|e| e.code()).as_deref() != Some("22012")
            {
                tracing::warn!(error = %e, submissions = batch.len(), "/v1: a batch of submissions failed; each goes alone");
            }
            (0..all).map(|_| None).collect()
        }
    }
}
