//! Enqueueing: one INSERT per call, one statement per batch, uniqueness, and debounced
//! wake-ups.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_core::jobs::{JobId, JobOptions, Priority, UniqueBy};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;

use super::job::Job;
use super::sql;
use crate::observability::DispatchSpan;

/// Why a job could not be enqueued (or cancelled, or retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    /// The arguments could not be turned into JSON.
    #[error("cannot serialise the job's arguments: {0}")]
    Args(#[from] serde_json::Error),
    /// A kind unique by key was dispatched without `unique_key`.
    #[error("job {kind} is unique by key: dispatch it with DispatchOptions::unique_key")]
    MissingUniqueKey {
        /// The kind.
        kind: &'static str,
    },
    /// An option is out of range.
    #[error("invalid dispatch option: {0}")]
    InvalidOption(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The insert raced with the end of a duplicate's life too many times.
    #[error("the job was not inserted (unique key contention)")]
    NotInserted,
    /// No job has that id.
    #[error("no job with id {0}")]
    NotFound(JobId),
    /// No job kind of that name is registered.
    #[error("no job kind {0:?} is registered")]
    UnknownKind(String),
    /// The arguments do not fit the kind's argument type.
    #[error("arguments do not fit job {kind}: {message}")]
    InvalidArgs {
        /// The kind.
        kind: String,
        /// Where and why (`to: missing field`).
        message: String,
    },
}

/// Per-dispatch options; each unset one takes the kind's default.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// Run no earlier than this.
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this long from now (ignored when `run_at` is set).
    pub delay: Option<Duration>,
    /// Priority.
    pub priority: Option<Priority>,
    /// Queue.
    pub queue: Option<String>,
    /// Uniqueness key (for kinds unique by key; on other kinds it makes this dispatch unique).
    pub unique_key: Option<String>,
    /// Tags, for filtering.
    pub tags: Vec<String>,
    /// Attempts before discarding.
    pub max_attempts: Option<u32>,
}

impl DispatchOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs at `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Runs after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the uniqueness key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Adds tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Sets the attempts.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

/// One row to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) args: serde_json::Value,
    pub(crate) priority: i16,
    pub(crate) max_attempts: i32,
    pub(crate) run_at: Option<DateTime<Utc>>,
    pub(crate) unique_key: Option<String>,
    pub(crate) unique_period: bool,
    pub(crate) capability: Option<String>,
    pub(crate) tags: Vec<String>,
    /// Context travelling with the job: `traceparent` (the dispatcher's span, filled in at
    /// insert) and `cron` (the cron that fired it).
    pub(crate) metadata: serde_json::Map<String, serde_json::Value>,
}

impl NewJob {
    /// The row for a job of kind `J` with `args` and `options`.
    pub fn of<J: Job>(args: &J::Args, options: &DispatchOptions) -> Result<Self, JobsError> {
        let defaults = J::options();
        let args = serde_json::to_value(args)?;
        let max_attempts = options.max_attempts.unwrap_or(defaults.max_attempts);
        let max_attempts = i32::try_from(max_attempts)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| JobsError::InvalidOption(format!("max_attempts {max_attempts} must be 1 or more")))?;
        let run_at = options
            .run_at
            .or_else(|| options.delay.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| Utc::now() + d));
        let (unique_key, unique_period) = match (&options.unique_key, defaults.unique) {
            (key, Some(unique)) => {
                let base = match (unique.by, key) {
                    (_, Some(key)) => key.clone(),
                    (UniqueBy::Args, None) => args_digest(&args),
                    (UniqueBy::Key, None) => return Err(JobsError::MissingUniqueKey { kind: J::NAME }),
                };
                match unique.period {
                    Some(period) if period.as_secs() > 0 => {
                        let window = Utc::now().timestamp().max(0) as u64 / period.as_secs();
                        (Some(format!("{base}@{window}")), true)
                    }
                    _ => (Some(base), false),
                }
            }
            (Some(key), None) => (Some(key.clone()), false),
            (None, None) => (None, false),
        };
        Ok(Self {
            kind: J::NAME.to_owned(),
            queue: options.queue.clone().unwrap_or_else(|| defaults.queue.to_owned()),
            args,
            priority: options.priority.unwrap_or(defaults.priority).as_i16(),
            max_attempts,
            run_at,
            unique_key,
            unique_period,
            capability: defaults.capability.map(str::to_owned),
            tags: options.tags.clone(),
            metadata: serde_json::Map::new(),
        })
    }

    /// A row for kind `kind` with raw JSON arguments and a kind's options.
    pub fn with_options(kind: impl Into<String>, args: serde_json::Value, options: &JobOptions) -> Self {
        Self {
            kind: kind.into(),
            queue: options.queue.to_owned(),
            args,
            priority: options.priority.as_i16(),
            max_attempts: i32::try_from(options.max_attempts).unwrap_or(i32::MAX).max(1),
            run_at: None,
            unique_key: None,
            unique_period: false,
            capability: options.capability.map(str::to_owned),
            tags: Vec::new(),
            metadata: serde_json::Map::new(),
        }
    }

    /// A row for kind `kind` with raw JSON arguments and default options (for tools such as the
    /// CLI that do not know the Rust type).
    pub fn raw(kind: impl Into<String>, queue: impl Into<String>, args: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            queue: queue.into(),
            args,
            priority: Priority::Normal.as_i16(),
            max_attempts: 20,
            run_at: None,
            unique_key: None,
            unique_period: false,
            capability: None,
            tags: Vec::new(),
            metadata: serde_json::Map::new(),
        }
    }
}

impl NewJob {
    /// Runs this job no earlier than `at`.
    pub fn with_run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Allows this many attempts (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = i32::try_from(n).unwrap_or(i32::MAX).max(1);
        self
    }

    /// Runs it at this priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority.as_i16();
        self
    }

    /// Puts it on this queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
}

/// Hex SHA-256 of the arguments' canonical JSON (object keys sorted).
fn args_digest(args: &serde_json::Value) -> String {
    let canonical = serde_json::to_string(args).unwrap_or_default();
    Sha256::digest(canonical.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Something jobs can be dispatched through: a pool, a running node, a job's context.
pub trait Dispatcher: Send + Sync {
    /// The pool to insert with.
    fn dispatch_pool(&self) -> &PgPool;

    /// The node's debounced notifier, if there is one; without it, the INSERT notifies.
    fn dispatch_notifier(&self) -> Option<&Notifier> {
        None
    }

    /// The span dispatches run in: a node names itself in it, so the jobs it inserts are counted
    /// in its metrics. None by default (the current span decides).
    fn dispatch_span(&self) -> tracing::Span {
        tracing::Span::none()
    }

    /// Inserts `jobs` and wakes the workers of their queues.
    fn insert<'a>(&'a self, jobs: &'a [NewJob]) -> impl Future<Output = Result<Vec<JobId>, JobsError>> + Send + 'a {
        let span = self.dispatch_span();
        tracing::Instrument::instrument(
            async move {
                let mut conn = self.dispatch_pool().acquire().await?;
                let notifier = self.dispatch_notifier();
                let ids = insert_jobs(&mut conn, jobs, notifier.is_none()).await?;
                if let Some(notifier) = notifier {
                    let now = Utc::now();
                    let mut queues: Vec<&str> = Vec::new();
                    for job in jobs.iter().filter(|j| j.run_at.is_none_or(|t| t <= now)) {
                        if !queues.contains(&job.queue.as_str()) {
                            queues.push(&job.queue);
                        }
                    }
                    for queue in queues {
                        notifier.notify(queue);
                    }
                }
                Ok(ids)
            },
            span,
        )
    }
}

impl Dispatcher for PgPool {
    fn dispatch_pool(&self) -> &PgPool {
        self
    }
}

/// Inserts `jobs` in one statement (plus a lookup when unique keys collide) and returns their
/// ids in order; a job whose unique key is held returns the holder's id.
///
/// Inside a stored trace, the insert is a `forge.dispatch` span naming the jobs, and the jobs'
/// attempts continue the trace under it.
pub async fn insert_jobs(conn: &mut PgConnection, jobs: &[NewJob], notify: bool) -> Result<Vec<JobId>, JobsError> {
    let (span, traceparent) = DispatchSpan::start();
    let inserted = insert_rows(conn, jobs, notify, traceparent).await;
    if let Some(span) = span {
        let ids: Vec<i64> = inserted.as_ref().map(|ids| ids.iter().map(|id| id.0).collect()).unwrap_or_default();
        span.finish(jobs.iter().map(|j| j.kind.as_str()), &ids, inserted.is_err());
    }
    inserted
}

/// [`insert_jobs`] with `traceparent` (the dispatcher's span) in the jobs' metadata.
async fn insert_rows(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    notify: bool,
    traceparent: Option<String>,
) -> Result<Vec<JobId>, JobsError> {
    let mut ids: Vec<Option<JobId>> = vec![None; jobs.len()];
    let metadata: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            let mut m = j.metadata.clone();
            if let Some(tp) = &traceparent
                && !m.contains_key("traceparent")
            {
                m.insert("traceparent".to_owned(), tp.clone().into());
            }
            serde_json::Value::Object(m)
        })
        .collect();
    let metrics = crate::observability::current_metrics();
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    for _ in 0..5 {
        if pending.is_empty() {
            break;
        }
        let batch: Vec<&NewJob> = pending.iter().map(|i| &jobs[*i]).collect();
        let rows = sqlx::query(sql::INSERT)
            .bind(batch.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.args.clone()).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.priority).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.run_at).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.unique_key.as_deref()).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.unique_period).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| j.capability.as_deref()).collect::<Vec<_>>())
            .bind(batch.iter().map(|j| serde_json::json!(j.tags)).collect::<Vec<_>>())
            .bind(pending.iter().map(|i| metadata[*i].clone()).collect::<Vec<_>>())
            .bind(notify)
            .fetch_all(&mut *conn)
            .await?;

        // Inserted rows come back in input order (ids are assigned in that order).
        let mut plain: VecDeque<JobId> = VecDeque::new();
        let mut keyed: HashMap<(String, String), JobId> = HashMap::new();
        for row in &rows {
            let id = JobId(row.try_get("id")?);
            if let Some(m) = &metrics {
                let (kind, queue): (&str, &str) = (row.try_get("kind")?, row.try_get("queue")?);
                m.count(
                    "forge_jobs_enqueued_total",
                    "Jobs inserted, by kind and queue.",
                    &[("kind", kind), ("queue", queue)],
                    1,
                );
            }
            match row.try_get::<Option<String>, _>("unique_key")? {
                Some(key) => {
                    keyed.insert((row.try_get("kind")?, key), id);
                }
                None => plain.push_back(id),
            }
        }
        let mut missing = Vec::new();
        for &i in &pending {
            let job = &jobs[i];
            ids[i] = match &job.unique_key {
                None => plain.pop_front(),
                Some(key) => keyed.get(&(job.kind.clone(), key.clone())).copied(),
            };
            if ids[i].is_none() {
                missing.push(i);
            }
        }
        if missing.is_empty() {
            break;
        }
        // Unique conflicts: the holder's id is the answer.
        let kinds: Vec<&str> = missing.iter().map(|i| jobs[*i].kind.as_str()).collect();
        let keys: Vec<&str> = missing.iter().map(|i| jobs[*i].unique_key.as_deref().unwrap_or_default()).collect();
        let holders = sqlx::query(sql::FIND_UNIQUE).bind(&kinds).bind(&keys).fetch_all(&mut *conn).await?;
        for row in holders {
            let key: (String, String) = (row.try_get("kind")?, row.try_get("unique_key")?);
            let id = JobId(row.try_get("id")?);
            for &i in &missing {
                if jobs[i].kind == key.0 && jobs[i].unique_key.as_deref() == Some(key.1.as_str()) {
                    ids[i] = Some(id);
                }
            }
        }
        // A holder that finished between the insert and the lookup: insert again.
        pending = missing.into_iter().filter(|i| ids[*i].is_none()).collect();
    }
    ids.into_iter().map(|id| id.ok_or(JobsError::NotInserted)).collect()
}

/// Wakes idle workers of a queue through `NOTIFY forge_jobs`, coalescing: while one notice is
/// being sent, requests for the same queues pile up and go out together in the next one, so a
/// burst of dispatches costs a handful of NOTIFYs, not one per job.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<String>,
}

impl Notifier {
    /// A notifier sending through `pool`; its task ends when every clone is dropped.
    pub fn spawn(pool: PgPool) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut queues = vec![first];
                while let Ok(more) = rx.try_recv() {
                    if !queues.contains(&more) {
                        queues.push(more);
                    }
                }
                for queue in queues {
                    if let Err(e) = sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(&queue).execute(&pool).await {
                        tracing::debug!(error = %e, queue, "could not notify workers; they will poll");
                    }
                }
            }
        });
        Self { tx }
    }

    /// Asks for the workers of `queue` to be woken.
    pub fn notify(&self, queue: &str) {
        let _ = self.tx.send(queue.to_owned());
    }
}

/// What [`cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job had not started: it is cancelled now.
    Cancelled,
    /// The job is running: its worker was asked to stop it, and it will end cancelled.
    Requested,
    /// The job had already finished; nothing changed.
    AlreadyFinished,
}

/// Cancels job `id`: at once if it has not started, through its worker if it is running.
pub async fn cancel(pool: &PgPool, id: JobId) -> Result<CancelOutcome, JobsError> {
    let mut tx = pool.begin().await?;
    let previous: Option<String> = sqlx::query_scalar(sql::CANCEL).bind(id.0).fetch_optional(&mut *tx).await?;
    let outcome = match previous.as_deref() {
        Some("running") => {
            sqlx::query(sql::NOTIFY).bind(sql::CANCEL_CHANNEL).bind(id.0.to_string()).execute(&mut *tx).await?;
            CancelOutcome::Requested
        }
        Some(_) => CancelOutcome::Cancelled,
        None => {
            let exists: bool = sqlx::query_scalar("select exists (select 1 from forge_jobs where id = $1)")
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await?;
            if !exists {
                return Err(JobsError::NotFound(id));
            }
            CancelOutcome::AlreadyFinished
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Makes a discarded or cancelled job available again. Returns whether it was.
pub async fn retry(pool: &PgPool, id: JobId) -> Result<bool, JobsError> {
    let queue: Option<String> = sqlx::query_scalar(sql::RETRY).bind(id.0).fetch_optional(pool).await?;
    if let Some(queue) = &queue {
        sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(queue).execute(pool).await?;
    }
    Ok(queue.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_digest_ignores_key_order() {
        let a = serde_json::json!({"a": 1, "b": [1, 2]});
        let b: serde_json::Value = serde_json::from_str(r#"{"b": [1, 2], "a": 1}"#).unwrap();
        assert_eq!(args_digest(&a), args_digest(&b));
        assert_ne!(args_digest(&a), args_digest(&serde_json::json!({"a": 2, "b": [1, 2]})));
    }
}
