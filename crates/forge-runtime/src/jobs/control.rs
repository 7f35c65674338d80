//! What an operator does to jobs and queues by hand (the dashboard and the CLI call these): pause
//! and resume a queue, run a waiting job now, delete a job, and retry or cancel every job a
//! [`JobFilter`] selects.

use chrono::{DateTime, Utc};
use forge_core::jobs::{JobId, JobState};
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::dispatch::JobsError;
use super::sql;

/// Most jobs one bulk retry or cancel changes; a larger set takes several calls.
pub const MAX_BULK: i64 = 10_000;

/// Which jobs a listing or a bulk action covers. Every field narrows the set; the default is
/// every job.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs carrying this tag.
    pub tag: Option<String>,
    /// Only jobs whose arguments contain this JSON (`args @> value`: `{"user": 7}` matches any
    /// job whose arguments have `user` 7).
    pub args: Option<serde_json::Value>,
    /// Only jobs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub until: Option<DateTime<Utc>>,
}

impl JobFilter {
    /// Appends ` and …` conditions for every field set.
    pub(crate) fn push_conditions(&self, query: &mut QueryBuilder<'_, Postgres>) {
        if let Some(state) = self.state {
            query.push(" and state = ").push_bind(state.as_str());
        }
        if let Some(kind) = &self.kind {
            query.push(" and kind = ").push_bind(kind.clone());
        }
        if let Some(queue) = &self.queue {
            query.push(" and queue = ").push_bind(queue.clone());
        }
        if let Some(tag) = &self.tag {
            query.push(" and ").push_bind(tag.clone()).push(" = any(tags)");
        }
        if let Some(args) = &self.args {
            query.push(" and args @> ").push_bind(args.clone()).push("::jsonb");
        }
        if let Some(since) = self.since {
            query.push(" and created_at >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            query.push(" and created_at < ").push_bind(until);
        }
    }
}

/// Pauses a queue: from the next claim on, no node takes its jobs. Running jobs finish.
/// Pausing a paused queue changes nothing.
pub async fn pause_queue(pool: &PgPool, queue: &str, by: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql::PAUSE_QUEUE).bind(queue).bind(by).execute(pool).await?;
    Ok(())
}

/// Resumes a paused queue and wakes its workers. Returns whether it was paused.
pub async fn resume_queue(pool: &PgPool, queue: &str) -> Result<bool, sqlx::Error> {
    let resumed: Option<String> = sqlx::query_scalar(sql::RESUME_QUEUE).bind(queue).fetch_optional(pool).await?;
    if resumed.is_some() {
        sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(queue).execute(pool).await?;
    }
    Ok(resumed.is_some())
}

/// A paused queue.
#[derive(Clone, Debug, Serialize)]
pub struct PausedQueue {
    /// The queue.
    pub name: String,
    /// Since when.
    pub paused_at: DateTime<Utc>,
    /// Who paused it, as they said.
    pub paused_by: Option<String>,
}

/// A queue as operators see it: unfinished jobs by state, and whether it is paused.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueSummary {
    /// Unfinished jobs by state (`available`, `scheduled`, `running`, `retryable`).
    pub depth: std::collections::BTreeMap<String, i64>,
    /// Since when it is paused, if it is.
    pub paused_at: Option<DateTime<Utc>>,
}

/// Every queue with unfinished jobs or a pause, by name.
pub async fn queue_summaries(pool: &PgPool) -> Result<std::collections::BTreeMap<String, QueueSummary>, sqlx::Error> {
    let mut queues: std::collections::BTreeMap<String, QueueSummary> = Default::default();
    for (queue, state, n) in crate::observability::queue_depths(pool).await? {
        queues.entry(queue).or_default().depth.insert(state, n);
    }
    for p in paused_queues(pool).await? {
        queues.entry(p.name).or_default().paused_at = Some(p.paused_at);
    }
    Ok(queues)
}

/// The paused queues.
pub async fn paused_queues(pool: &PgPool) -> Result<Vec<PausedQueue>, sqlx::Error> {
    let rows: Vec<(String, DateTime<Utc>, Option<String>)> = sqlx::query_as(sql::PAUSED_QUEUES).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(name, paused_at, paused_by)| PausedQueue { name, paused_at, paused_by }).collect())
}

/// Makes a scheduled or retryable job available at once. Returns whether it was waiting.
pub async fn run_now(pool: &PgPool, id: JobId) -> Result<bool, JobsError> {
    let queue: Option<String> = sqlx::query_scalar(sql::RUN_NOW).bind(id.0).fetch_optional(pool).await?;
    if let Some(queue) = &queue {
        sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(queue).execute(pool).await?;
    } else if !exists(pool, id).await? {
        return Err(JobsError::NotFound(id));
    }
    Ok(queue.is_some())
}

/// Deletes a job that is not running (a running one must be cancelled first). Returns whether
/// it was deleted: `false` means it is running.
pub async fn delete(pool: &PgPool, id: JobId) -> Result<bool, JobsError> {
    let deleted: Option<i64> = sqlx::query_scalar(sql::DELETE).bind(id.0).fetch_optional(pool).await?;
    if deleted.is_none() && !exists(pool, id).await? {
        return Err(JobsError::NotFound(id));
    }
    Ok(deleted.is_some())
}

async fn exists(pool: &PgPool, id: JobId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from forge_jobs where id = $1)").bind(id.0).fetch_one(pool).await
}

/// Makes every discarded or cancelled job the filter selects available again (at most
/// [`MAX_BULK`] of them). Returns how many.
pub async fn retry_all(pool: &PgPool, filter: &JobFilter) -> Result<u64, sqlx::Error> {
    let mut query =
        QueryBuilder::new("with target as (select id from forge_jobs where state in ('discarded', 'cancelled')");
    filter.push_conditions(&mut query);
    query.push(" order by id limit ").push_bind(MAX_BULK).push(" for update skip locked) ");
    query.push(sql::RETRY_TARGETS);
    let queues: Vec<String> = query.build_query_scalar().fetch_all(pool).await?;
    let mut distinct = queues.clone();
    distinct.sort_unstable();
    distinct.dedup();
    for queue in &distinct {
        sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(queue).execute(pool).await?;
    }
    Ok(queues.len() as u64)
}

/// Cancels every unfinished job the filter selects (at most [`MAX_BULK`] of them); running
/// ones are stopped through their workers. Returns how many were cancelled or asked to stop.
pub async fn cancel_all(pool: &PgPool, filter: &JobFilter) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut query = QueryBuilder::new(
        "with target as (select id, state from forge_jobs \
         where state in ('scheduled', 'available', 'retryable', 'running')",
    );
    filter.push_conditions(&mut query);
    query.push(" order by id limit ").push_bind(MAX_BULK).push(" for update skip locked) ");
    query.push(sql::CANCEL_TARGETS);
    let rows: Vec<(i64, bool)> = query.build_query_as().fetch_all(&mut *tx).await?;
    let running: Vec<i64> = rows.iter().filter(|(_, running)| *running).map(|(id, _)| *id).collect();
    if !running.is_empty() {
        sqlx::query(sql::NOTIFY_CANCELS).bind(&running).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// Records the kinds `registry` holds in `forge_job_kinds`, as seen by `node_id` now.
pub async fn record_kinds(pool: &PgPool, registry: &super::JobRegistry, node_id: &str) -> Result<(), sqlx::Error> {
    let names = registry.names();
    let queues: Vec<&str> = names.iter().map(|k| registry.options(k).map_or("default", |o| o.queue)).collect();
    let attempts: Vec<i32> = names
        .iter()
        .map(|k| registry.options(k).map_or(1, |o| i32::try_from(o.max_attempts).unwrap_or(i32::MAX)))
        .collect();
    sqlx::query(sql::RECORD_KINDS).bind(&names).bind(&queues).bind(&attempts).bind(node_id).execute(pool).await?;
    Ok(())
}

/// A job kind some node of the application has registered.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct KnownKind {
    /// The kind.
    pub kind: String,
    /// Its default queue.
    pub queue: String,
    /// Its default attempts.
    pub max_attempts: i32,
    /// When a node last registered it.
    pub seen_at: DateTime<Utc>,
}

/// The job kinds the application's nodes have registered, by name.
pub async fn known_kinds(pool: &PgPool) -> Result<Vec<KnownKind>, sqlx::Error> {
    sqlx::query_as("select kind, queue, max_attempts, seen_at from forge_job_kinds order by kind").fetch_all(pool).await
}

/// Jobs the filter selects, newest first, `limit` of them with ids below `before`; each as JSON
/// (the columns of [`find_job`]).
pub async fn list_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let mut query = QueryBuilder::new(format!(
        "select coalesce(jsonb_agg(to_jsonb(j) order by j.id desc), '[]') from (select {} from forge_jobs where true",
        sql::JOB_COLUMNS
    ));
    filter.push_conditions(&mut query);
    if let Some(id) = before {
        query.push(" and id < ").push_bind(id);
    }
    query.push(" order by id desc limit ").push_bind(limit).push(") j");
    let rows: serde_json::Value = query.build_query_scalar().fetch_one(pool).await?;
    Ok(match rows {
        serde_json::Value::Array(rows) => rows,
        _ => Vec::new(),
    })
}

/// One job as JSON: kind, queue, state, attempts, arguments, output, errors, progress, tags,
/// metadata, times, the node that ran it.
pub async fn find_job(pool: &PgPool, id: JobId) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "select to_jsonb(j) from (select {} from forge_jobs where id = $1) j",
        sql::JOB_COLUMNS
    ))
    .bind(id.0)
    .fetch_optional(pool)
    .await
}

/// Failed attempts recorded since `since`, and how many of those jobs were discarded.
pub async fn failures_since(pool: &PgPool, since: DateTime<Utc>) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(sql::FAILURES_SINCE).bind(since).fetch_one(pool).await
}
