//! The completer: attempt outcomes from every executing job go through one channel and are
//! written in batches, one statement per batch. Under load a batch holds hundreds of outcomes;
//! when idle, each outcome is written as soon as it arrives.
//!
//! **Nothing is dropped while the node lives.** A batch that fails because the database cannot
//! be reached is retried, with backoff, until it answers; meanwhile the worker keeps the
//! attempts in its running table (so their leases are renewed as soon as the database is back,
//! and the leader's grace keeps it from rescuing them first), and stops claiming once
//! [`MAX_BACKLOG`] outcomes wait. Each batch written is reported back ([`Written`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_core::jobs::{AttemptError, JobId, JobState};
use sqlx::{PgExecutor, PgPool};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::notifier::Notifier;
use super::sql;

/// Most outcomes written by one statement.
const MAX_BATCH: usize = 1000;
/// Batches written at the same time.
const WRITERS: usize = 2;
/// Outcomes waiting to be written past which the worker stops claiming.
pub(crate) const MAX_BACKLOG: usize = 20_000;
/// Tries of a batch that fails for a reason other than an unreachable database.
const DATA_ERROR_TRIES: u32 = 5;

/// Called with the attempts of each batch once it is written (or fenced off).
pub(crate) type Written = Arc<dyn Fn(&[(JobId, i32)]) + Send + Sync>;

/// The end of one attempt, ready to be written.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) id: JobId,
    pub(crate) attempt: i32,
    pub(crate) state: JobState,
    pub(crate) output: Option<serde_json::Value>,
    pub(crate) error: Option<AttemptError>,
    pub(crate) run_at: Option<DateTime<Utc>>,
    /// The attempt does not count (released, snoozed).
    pub(crate) uncount: bool,
}

enum Message {
    Outcome(Outcome),
    Flush(oneshot::Sender<()>),
}

/// A handle to send outcomes to the completer.
#[derive(Clone, Debug)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Message>,
    /// Outcomes sent and not yet written.
    backlog: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Outcome(o) => write!(f, "Outcome({})", o.id),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Completer {
    /// Starts the completer task; it ends, after writing everything sent, when every handle is
    /// dropped.
    pub(crate) fn spawn(pool: PgPool, notifier: Notifier, written: Written) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let backlog = Arc::new(AtomicUsize::new(0));
        let pending = backlog.clone();
        let handle = tokio::spawn(async move {
            // Up to WRITERS batches are written at once, so a slow statement does not hold up
            // the next batch; outcomes touch distinct rows, so their order does not matter.
            let writers = Arc::new(Semaphore::new(WRITERS));
            while let Some(first) = rx.recv().await {
                let mut batch = Vec::new();
                let mut flushed = Vec::new();
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    match message {
                        Message::Outcome(o) => batch.push(o),
                        Message::Flush(done) => flushed.push(done),
                    }
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    let Ok(permit) = writers.clone().acquire_owned().await else { break };
                    let (pool, notifier, written, pending) =
                        (pool.clone(), notifier.clone(), written.clone(), pending.clone());
                    tokio::spawn(async move {
                        write(&pool, &notifier, &batch).await;
                        let attempts: Vec<(JobId, i32)> = batch.iter().map(|o| (o.id, o.attempt)).collect();
                        written(&attempts);
                        pending.fetch_sub(batch.len(), Ordering::SeqCst);
                        drop(permit);
                    });
                }
                if !flushed.is_empty() {
                    // Everything sent before the flush is in a batch that is written or being
                    // written: wait for all writers to be idle.
                    if let Ok(all) = writers.acquire_many(WRITERS as u32).await {
                        drop(all);
                    }
                    for done in flushed {
                        let _ = done.send(());
                    }
                }
            }
            let _ = writers.acquire_many(WRITERS as u32).await;
        });
        (Self { tx, backlog }, handle)
    }

    /// Outcomes sent and not yet written.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
    }

    pub(crate) fn send(&self, outcome: Outcome) {
        self.backlog.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(Message::Outcome(outcome)).is_err() {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(
                "completer stopped; an outcome was not written (the job's lease will expire and it will be rescued)"
            );
        }
    }

    /// Waits until everything sent so far is written.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Writes `batch` in one fenced statement; returns the rows it changed (id, new state, queue).
/// Outcomes of attempts no longer running (rescued, cancelled) change nothing.
pub(crate) async fn finish<'e>(
    executor: impl PgExecutor<'e>,
    batch: &[Outcome],
) -> Result<Vec<(JobId, JobState, String)>, sqlx::Error> {
    let ids: Vec<JobId> = batch.iter().map(|o| o.id).collect();
    let attempts: Vec<i32> = batch.iter().map(|o| o.attempt).collect();
    let states: Vec<JobState> = batch.iter().map(|o| o.state).collect();
    let outputs: Vec<Option<&serde_json::Value>> = batch.iter().map(|o| o.output.as_ref()).collect();
    let errors: Vec<Option<serde_json::Value>> = batch
        .iter()
        .map(|o| o.error.as_ref().map(serde_json::to_value).transpose())
        .collect::<Result<_, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let run_ats: Vec<Option<DateTime<Utc>>> = batch.iter().map(|o| o.run_at).collect();
    let uncount: Vec<i32> = batch.iter().map(|o| i32::from(o.uncount)).collect();
    sqlx::query_as(sql::FINISH)
        .bind(&ids)
        .bind(&attempts)
        .bind(&states)
        .bind(&outputs)
        .bind(&errors)
        .bind(&run_ats)
        .bind(&uncount)
        .fetch_all(executor)
        .await
}

async fn write(pool: &PgPool, notifier: &Notifier, batch: &[Outcome]) {
    let mut tries = 0u32;
    let mut wait = Duration::from_millis(100);
    loop {
        match finish(pool, batch).await {
            Ok(rows) => {
                if tries > 0 {
                    tracing::info!(batch = batch.len(), tries, "job outcomes written after the database came back");
                }
                if rows.len() < batch.len() {
                    tracing::debug!(
                        written = rows.len(),
                        sent = batch.len(),
                        "some outcomes were for attempts no longer running (rescued or cancelled); ignored"
                    );
                }
                let mut queues: Vec<String> = Vec::new();
                for (_, state, queue) in rows {
                    if state == JobState::Available && !queues.contains(&queue) {
                        queues.push(queue);
                    }
                }
                for queue in queues {
                    notifier.notify(&queue);
                }
                return;
            }
            Err(e) => {
                tries += 1;
                // An unreachable database is waited out; anything else is given up after a few
                // tries (the jobs' leases then expire and the leader rescues them).
                if !unreachable(&e) && tries >= DATA_ERROR_TRIES {
                    tracing::error!(error = %e, batch = batch.len(), "could not write job outcomes; giving up");
                    return;
                }
                if tries == 1 || tries.is_power_of_two() {
                    tracing::warn!(error = %e, batch = batch.len(), tries, "could not write job outcomes; retrying");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Whether `e` says the database could not be reached (rather than refused the data).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Connection exceptions, shutting down / cannot connect now, insufficient resources.
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }),
        _ => false,
    }
}
