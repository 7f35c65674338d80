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
use forge_core::text;
use sqlx::{PgExecutor, PgPool};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::notifier::Notifier;
use super::sql;
use crate::db::refused_data;

/// Most outcomes written by one statement.
const MAX_BATCH: usize = 1000;
/// Batches written at the same time.
const WRITERS: usize = 2;
/// Outcomes waiting to be written past which the worker stops claiming.
pub(crate) const MAX_BACKLOG: usize = 20_000;

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

impl Outcome {
    /// The outcome as Postgres can store it: NULs replaced, the output and the error's message
    /// cut to their caps ([`forge_core::text::caps`]).
    pub(crate) fn storable(mut self) -> Self {
        if let Some(output) = &mut self.output {
            text::clean_json(output, text::caps::OUTPUT);
        }
        if let Some(error) = &mut self.error {
            text::clean_text(&mut error.message, text::caps::ERROR_MESSAGE);
            if let Some(node) = &mut error.node {
                text::clean_text(node, 256);
            }
        }
        self
    }

    /// What is written instead when this outcome's data is refused anyway: the same state,
    /// with the output and error replaced by a note saying why.
    fn unstorable(&self, why: &sqlx::Error) -> Self {
        let note = format!("could not be stored: {why}");
        let note_for = |what: &str| {
            let mut text = format!("the {what} {note}");
            text::clean_text(&mut text, text::caps::ERROR_MESSAGE);
            text
        };
        Outcome {
            id: self.id,
            attempt: self.attempt,
            state: self.state,
            output: self.output.as_ref().map(|_| serde_json::json!({ "forge_error": note_for("output") })),
            error: self.error.as_ref().map(|e| AttemptError { message: note_for("error"), node: None, ..e.clone() }),
            run_at: self.run_at,
            uncount: self.uncount,
        }
    }
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
    let rows = match write_retrying(pool, batch).await {
        Ok(rows) => rows,
        // Data Postgres refused: write each half on its own, so one bad outcome does not hold
        // back the others; a single refused outcome is written with a note instead of its data.
        Err(e) if batch.len() > 1 => {
            tracing::debug!(error = %e, batch = batch.len(), "a batch of job outcomes was refused; splitting it");
            let (left, right) = batch.split_at(batch.len() / 2);
            Box::pin(write(pool, notifier, left)).await;
            Box::pin(write(pool, notifier, right)).await;
            return;
        }
        Err(e) => {
            let fallback = batch[0].unstorable(&e);
            tracing::error!(error = %e, job = %batch[0].id, "a job's outcome was refused by the database; writing it with a note instead");
            match write_retrying(pool, std::slice::from_ref(&fallback)).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, job = %batch[0].id, "could not write a job's outcome; its lease will expire and it will be rescued");
                    return;
                }
            }
        }
    };
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
}

/// Writes `batch`, retrying with backoff for as long as the database cannot be reached (or
/// fails for any reason but the data); an error refusing the data is returned at once.
async fn write_retrying(pool: &PgPool, batch: &[Outcome]) -> Result<Vec<(JobId, JobState, String)>, sqlx::Error> {
    let mut tries = 0u32;
    let mut wait = Duration::from_millis(100);
    loop {
        match finish(pool, batch).await {
            Ok(rows) => {
                if tries > 0 {
                    tracing::info!(batch = batch.len(), tries, "job outcomes written after the database came back");
                }
                return Ok(rows);
            }
            Err(e) if !refused_data(&e) => {
                tries += 1;
                if tries == 1 || tries.is_power_of_two() {
                    tracing::warn!(error = %e, batch = batch.len(), tries, "could not write job outcomes; retrying");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
