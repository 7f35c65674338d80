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
        let rows = if let [job] = batch[..]
            && job.client.is_none()
        {
            let statement = if job.unique_key.is_some() { sql::INSERT_ONE } else { &sql::INSERT_ONE_WITHOUT_KEY };
            sqlx::query(statement)
                .bind(&job.kind)
                .bind(&job.queue)
                .bind(&job.args)
                .bind(job.priority)
                .bind(job.max_attempts)
                .bind(job.run_at)
                .bind(job.unique_key.as_deref())
                .bind(job.unique_period)
                .bind(job.capability.as_deref())
                .bind(&job.tags)
                .bind(&metadata[pending[0]])
                .bind(notify)
                .fetch_all(&mut *conn)
                .await?
        } else {
            insert_many(conn, &batch, &pending, &metadata, notify).await?
        };

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

/// [`sql::INSERT`] (or its form without keys) for `batch`, the jobs of `jobs` at `pending`.
async fn insert_many(
    conn: &mut PgConnection,
    batch: &[&NewJob],
    pending: &[usize],
    metadata: &[serde_json::Value],
    notify: bool,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    let statement = if batch.iter().any(|j| j.unique_key.is_some()) { sql::INSERT } else { &sql::INSERT_WITHOUT_KEYS };
    sqlx::query(statement)
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
        .await
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;

    fn job(kind: &str) -> NewJob {
        NewJob {
            kind: kind.to_owned(),
            queue: "default".to_owned(),
            args: serde_json::json!({ "n": 1 }),
            priority: 2,
            max_attempts: 3,
            run_at: None,
            unique_key: None,
            unique_period: false,
            capability: None,
            tags: vec!["a".to_owned(), "b c".to_owned()],
            metadata: serde_json::Map::new(),
            client: None,
        }
    }

    /// The columns a dispatch writes, with `run_at` as whether it is in the future.
    type Written = (
        String,
        String,
        serde_json::Value,
        String,
        i16,
        i32,
        bool,
        Option<String>,
        bool,
        Option<String>,
        Vec<String>,
        serde_json::Value,
    );

    async fn written(conn: &mut PgConnection, id: JobId) -> Written {
        sqlx::query_as(
            "select kind, queue, args, state, priority, max_attempts, run_at > now(), unique_key, unique_period,
                    capability, tags, metadata
             from forge_jobs where id = $1",
        )
        .bind(id.0)
        .fetch_one(conn)
        .await
        .expect("the job")
    }

    /// A single job goes through its own one-row statement, a batch through the arrays: both
    /// write the same row, answer a held unique key with its holder, and notify only for a job
    /// available now.
    #[tokio::test]
    async fn a_job_alone_is_written_as_in_a_batch() {
        let db = crate::testing::TestDatabase::new().await.expect("db");
        let mut conn = db.pool().acquire().await.expect("conn");
        let mut listener = sqlx::postgres::PgListener::connect_with(db.pool()).await.expect("listener");
        listener.listen("forge_jobs").await.expect("listen");

        let mut keyed = job("keyed");
        keyed.unique_key = Some("k1".to_owned());
        let mut later = job("later");
        later.run_at = Some(Utc::now() + Duration::hours(1));
        later.capability = Some("gpu".to_owned());
        later.queue = "slow".to_owned();
        let mut period = job("period");
        period.unique_key = Some("p1".to_owned());
        period.unique_period = true;
        for one in [job("plain"), keyed, later, period] {
            let alone =
                insert_rows(&mut conn, std::slice::from_ref(&one), true, None, Count::ByCallers).await.expect("alone");
            let mut other = one.clone();
            other.unique_key = other.unique_key.map(|k| format!("{k}-batch"));
            let batch =
                insert_rows(&mut conn, &[other, job("filler")], true, None, Count::ByCallers).await.expect("batch");
            let (mut a, mut b) = (written(&mut conn, alone[0]).await, written(&mut conn, batch[0]).await);
            (a.7, b.7) = (None, None);
            assert_eq!(a, b, "{}", one.kind);
            if one.unique_key.is_some() {
                let again = insert_rows(&mut conn, std::slice::from_ref(&one), true, None, Count::ByCallers)
                    .await
                    .expect("again");
                assert_eq!(again, alone, "a held key answers with its holder");
            }
        }
        // Every statement above that wrote a job available now notified its queue once: the
        // three jobs alone on `default` and the four batches (their filler is on `default`);
        // never the job scheduled later on `slow`, nor the inserts that met a held key.
        let mut queues = Vec::new();
        while queues.len() < 7 {
            let notice = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv()).await;
            queues.push(notice.expect("a notice within 10 s").expect("a notice").payload().to_owned());
        }
        assert!(queues.iter().all(|q| q == "default"), "{queues:?}");
    }
}
