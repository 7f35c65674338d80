//! The INSERT behind every dispatch: [`insert_jobs`], one statement per call whatever the
//! number of jobs, with uniqueness; and [`Prepared`], a job checked and traced before a
//! statement made elsewhere inserts it.

use std::collections::{HashMap, VecDeque};

use forge_core::jobs::JobId;
use sqlx::{PgConnection, Row};

use super::error::JobsError;
use super::new_job::NewJob;
use super::sql;
use crate::observability::{DispatchSpan, TraceParent};

/// Inserts `jobs` in one statement (plus a lookup when unique keys collide) and returns their
/// ids in order; a job whose unique key is held returns the holder's id.
///
/// Inside a stored trace, the insert is a `forge.dispatch` span naming the jobs, and the jobs'
/// attempts continue the trace under it.
pub async fn insert_jobs(conn: &mut PgConnection, jobs: &[NewJob], notify: bool) -> Result<Vec<JobId>, JobsError> {
    let (span, traceparent) = DispatchSpan::start();
    let inserted = insert_rows(conn, jobs, notify, traceparent, Count::Here).await;
    if let Some(span) = span {
        let ids: Vec<i64> = inserted.as_ref().map(|ids| ids.iter().map(|id| id.0).collect()).unwrap_or_default();
        span.finish(jobs.iter().map(|j| j.kind.as_str()), &ids, inserted.is_err());
    }
    inserted
}

/// A job about to be inserted by a statement of another module (the job API's one-statement
/// submission), prepared as [`insert_jobs`] prepares its own: checked, its metadata carrying
/// the dispatcher's `traceparent`, its `forge.dispatch` span open.
pub(crate) struct Prepared {
    /// The metadata to store.
    pub(crate) metadata: serde_json::Value,
    span: Option<DispatchSpan>,
}

impl Prepared {
    /// Checks `job` (a NUL anywhere is refused) and opens its span.
    pub(crate) fn new(job: &NewJob) -> Result<Self, JobsError> {
        if let Some(refused) = refuse_nul(job) {
            return Err(refused);
        }
        let (span, traceparent) = DispatchSpan::start();
        let mut metadata = job.metadata.clone();
        if let Some(tp) = traceparent
            && !metadata.contains_key("traceparent")
        {
            metadata.insert("traceparent".to_owned(), tp.to_string().into());
        }
        Ok(Self { metadata: serde_json::Value::Object(metadata), span })
    }

    /// Records the insert: the job counted in `forge_jobs_enqueued_total` when it got `id`,
    /// and the span finished.
    pub(crate) fn finish(self, job: &NewJob, id: Option<i64>) {
        if id.is_some()
            && let Some(m) = crate::observability::current_metrics()
        {
            m.count(
                "forge_jobs_enqueued_total",
                "Jobs inserted, by kind and queue.",
                &[("kind", job.kind.as_str()), ("queue", job.queue.as_str())],
                1,
            );
        }
        if let Some(span) = self.span {
            span.finish(std::iter::once(job.kind.as_str()), id.as_slice(), id.is_none());
        }
    }
}

/// Postgres cannot store NUL (`\u0000`) in text or JSON, and a job's data is never changed
/// behind its dispatcher's back: a NUL anywhere in it is refused before anything is written.
fn refuse_nul(job: &NewJob) -> Option<JobsError> {
    let refused = |message: String| Some(JobsError::InvalidArgs { kind: job.kind.replace('\0', "\\u0000"), message });
    let nul = "a NUL character (\\u0000), which Postgres cannot store";
    if let Some(path) = forge_core::text::find_nul(&job.args) {
        return refused(format!("{path} holds {nul}"));
    }
    let texts = [
        ("kind", Some(job.kind.as_str())),
        ("queue", Some(job.queue.as_str())),
        ("unique key", job.unique_key.as_deref()),
    ];
    for (what, text) in texts {
        if text.is_some_and(|t| t.contains('\0')) {
            return refused(format!("the {what} holds {nul}"));
        }
    }
    if job.tags.iter().any(|t| t.contains('\0')) || job.capability.as_deref().is_some_and(|c| c.contains('\0')) {
        return refused(format!("a tag or the capability holds {nul}"));
    }
    if job.metadata.iter().any(|(key, value)| key.contains('\0') || forge_core::text::find_nul(value).is_some()) {
        return refused(format!("the metadata holds {nul}"));
    }
    None
}

/// Where inserted jobs are counted in `forge_jobs_enqueued_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Count {
    /// In the metrics of the current span's node.
    Here,
    /// By each caller, in its own span ([`Prepared::finish`]): the insert runs for others.
    ByCallers,
}

/// [`insert_jobs`] with `traceparent` (the dispatcher's span) in the jobs' metadata.
pub(super) async fn insert_rows(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    notify: bool,
    traceparent: Option<TraceParent>,
    count: Count,
) -> Result<Vec<JobId>, JobsError> {
    if let Some(refused) = jobs.iter().find_map(refuse_nul) {
        return Err(refused);
    }
    let mut ids: Vec<Option<JobId>> = vec![None; jobs.len()];
    let metadata: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            let mut m = j.metadata.clone();
            if let Some(tp) = &traceparent
                && !m.contains_key("traceparent")
            {
                m.insert("traceparent".to_owned(), tp.to_string().into());
            }
            serde_json::Value::Object(m)
        })
        .collect();
    let metrics = if count == Count::Here { crate::observability::current_metrics() } else { None };
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    for _ in 0..5 {
        if pending.is_empty() {
            break;
        }
        let batch: Vec<&NewJob> = pending.iter().map(|i| &jobs[*i]).collect();
        let statement =
            if batch.iter().any(|j| j.unique_key.is_some()) { sql::INSERT } else { &sql::INSERT_WITHOUT_KEYS };
        let rows = sqlx::query(statement)
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
            .bind(batch.iter().map(|j| j.client).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;

        // Inserted rows come back in input order (ids are assigned in that order).
        let mut plain: VecDeque<JobId> = VecDeque::new();
        let mut keyed: HashMap<(String, String), JobId> = HashMap::new();
        // Counted once per kind and queue, not once per row.
        let mut enqueued: Vec<((&str, &str), u64)> = Vec::new();
        for row in &rows {
            let id = JobId(row.try_get("id")?);
            if metrics.is_some() {
                let pair: (&str, &str) = (row.try_get("kind")?, row.try_get("queue")?);
                match enqueued.iter_mut().find(|(p, _)| *p == pair) {
                    Some((_, n)) => *n += 1,
                    None => enqueued.push((pair, 1)),
                }
            }
            match row.try_get::<Option<String>, _>("unique_key")? {
                Some(key) => {
                    keyed.insert((row.try_get("kind")?, key), id);
                }
                None => plain.push_back(id),
            }
        }
        if let Some(m) = &metrics {
            for ((kind, queue), n) in enqueued {
                m.count(
                    "forge_jobs_enqueued_total",
                    "Jobs inserted, by kind and queue.",
                    &[("kind", kind), ("queue", queue)],
                    n,
                );
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
