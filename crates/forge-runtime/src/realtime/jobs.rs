//! Job watches: one job's state, attempt, progress, output and last error, pushed when its row
//! changes.
//!
//! The engine's writes to `forge_jobs` never pay for watches (no trigger on that table): a node
//! with watches reads every watched job in one query per `[realtime] poll`. Each push carries a
//! `cursor` (the row version it shows); a client that reconnects with it gets nothing until the
//! job changes again, and one with an older cursor gets the job as it is now. A watch shows the
//! latest state, not every step between two reads.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::PgPool;

use super::outbox::{MemberId, Outbox, Outgoing};
use super::protocol::{JobState, ServerMessage};
use super::sql;

/// A job's row as a watch reads it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct JobRow {
    #[sqlx(flatten)]
    pub(super) state: JobState,
    /// The job API client that submitted it, if any.
    pub(super) client_id: Option<uuid::Uuid>,
    /// The row version (`xmin`): the cursor.
    pub(super) version: String,
}

/// Reads jobs `ids`.
pub(super) async fn fetch(pool: &PgPool, ids: &[i64]) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(sql::WATCHED_JOBS).bind(ids).fetch_all(pool).await
}

#[derive(Debug)]
struct Watcher {
    outbox: Outbox,
    sub: String,
    /// The version last pushed to this watcher.
    version: Option<String>,
}

impl Watcher {
    fn show(&mut self, row: &JobRow) -> Option<ServerMessage> {
        if self.version.as_deref() == Some(row.version.as_str()) {
            return None;
        }
        self.version = Some(row.version.clone());
        Some(ServerMessage::Job { id: self.sub.clone(), cursor: row.version.clone(), job: row.state.clone() })
    }
}

/// A node's job watches, by job.
#[derive(Debug, Default)]
pub(super) struct JobWatches {
    jobs: Mutex<HashMap<i64, HashMap<MemberId, Watcher>>>,
    /// The last message of each job (for a resync).
    last: Mutex<HashMap<i64, JobRow>>,
    of: Mutex<HashMap<MemberId, i64>>,
}

impl JobWatches {
    pub(super) fn is_empty(&self) -> bool {
        lock(&self.jobs).is_empty()
    }

    /// Adds a watcher of `row`'s job and shows it the job, unless `cursor` is the version it
    /// already has.
    pub(super) fn add(&self, member: MemberId, row: JobRow, outbox: &Outbox, sub: &str, cursor: Option<String>) {
        let id = row.state.id;
        let mut watcher = Watcher { outbox: outbox.clone(), sub: sub.to_owned(), version: cursor };
        if let Some(message) = watcher.show(&row) {
            outbox.push(message);
        }
        lock(&self.jobs).entry(id).or_default().insert(member, watcher);
        lock(&self.of).insert(member, id);
        lock(&self.last).entry(id).or_insert(row);
    }

    /// Ends a watch; whether `member` was one.
    pub(super) fn remove(&self, member: MemberId) -> bool {
        let Some(id) = lock(&self.of).remove(&member) else {
            return false;
        };
        let mut jobs = lock(&self.jobs);
        if let Some(watchers) = jobs.get_mut(&id) {
            watchers.remove(&member);
            if watchers.is_empty() {
                jobs.remove(&id);
                lock(&self.last).remove(&id);
            }
        }
        true
    }

    /// The job as last read, for a resync of `member`.
    pub(super) fn current(&self, member: MemberId) -> Option<ServerMessage> {
        let id = *lock(&self.of).get(&member)?;
        let mut jobs = lock(&self.jobs);
        let watcher = jobs.get_mut(&id)?.get_mut(&member)?;
        let last = lock(&self.last);
        let row = last.get(&id)?;
        watcher.version = None;
        watcher.show(row)
    }

    /// Reads every watched job and shows each watcher what changed; a job that is gone
    /// (deleted by retention) ends its watches with a 404 error.
    pub(super) async fn poll(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let ids: Vec<i64> = lock(&self.jobs).keys().copied().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let rows = fetch(pool, &ids).await?;
        let mut jobs = lock(&self.jobs);
        let mut last = lock(&self.last);
        let mut seen = std::collections::HashSet::new();
        for row in rows {
            seen.insert(row.state.id);
            if let Some(watchers) = jobs.get_mut(&row.state.id) {
                for watcher in watchers.values_mut() {
                    if let Some(message) = watcher.show(&row) {
                        watcher.outbox.push(message);
                    }
                }
            }
            last.insert(row.state.id, row);
        }
        let gone: Vec<i64> = jobs.keys().filter(|id| !seen.contains(id)).copied().collect();
        let mut of = lock(&self.of);
        for id in gone {
            last.remove(&id);
            for (member, watcher) in jobs.remove(&id).unwrap_or_default() {
                of.remove(&member);
                let message = ServerMessage::problem(
                    Some(watcher.sub.clone()),
                    axum::http::StatusCode::NOT_FOUND,
                    "not-found",
                    format!("job {id} is gone (deleted after its retention)"),
                );
                watcher.outbox.send(Outgoing { message, ended: Some(member) });
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
