//! What an operator does to jobs and queues by hand (the dashboard, the CLI and a running node
//! call these): cancel or retry a job, run a waiting job now, delete a job, pause and resume a
//! queue, and retry or cancel every job a [`JobFilter`] selects.

use chrono::{DateTime, Utc};
use forge_core::jobs::{JobId, JobState};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::error::JobsError;
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
            query.push(" and state = ").push_bind(state);
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
    sql::QUEUE_PAUSES.pause(pool, queue, by).await
}

/// Resumes a paused queue and wakes its workers. Returns whether it was paused.
pub async fn resume_queue(pool: &PgPool, queue: &str) -> Result<bool, sqlx::Error> {
    let resumed = sql::QUEUE_PAUSES.resume(pool, queue).await?;
    if resumed {
        sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(queue).execute(pool).await?;
    }
    Ok(resumed)
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

async fn exists<'e>(executor: impl sqlx::PgExecutor<'e>, id: JobId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from forge_jobs where id = $1)").bind(id).fetch_one(executor).await
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
    let outcome = cancel_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// [`cancel`] inside the caller's transaction (the worker hears of it when it commits).
pub async fn cancel_in(conn: &mut sqlx::PgConnection, id: JobId) -> Result<CancelOutcome, JobsError> {
    let previous: Option<JobState> = sqlx::query_scalar(sql::CANCEL).bind(id).fetch_optional(&mut *conn).await?;
    Ok(match previous {
        Some(JobState::Running) => {
            sqlx::query(sql::NOTIFY).bind(sql::CANCEL_CHANNEL).bind(id.0.to_string()).execute(&mut *conn).await?;
            CancelOutcome::Requested
        }
        Some(_) => CancelOutcome::Cancelled,
        None if exists(&mut *conn, id).await? => CancelOutcome::AlreadyFinished,
        None => return Err(JobsError::NotFound(id)),
    })
}

/// Makes a discarded or cancelled job available again. Returns whether it was.
pub async fn retry(pool: &PgPool, id: JobId) -> Result<bool, JobsError> {
    let mut conn = pool.acquire().await?;
    retry_in(&mut conn, id).await
}

/// [`retry`] inside the caller's transaction (the workers hear of it when it commits).
pub async fn retry_in(conn: &mut sqlx::PgConnection, id: JobId) -> Result<bool, JobsError> {
    let queue: Option<String> = sqlx::query_scalar(sql::RETRY).bind(id.0).fetch_optional(&mut *conn).await?;
    if let Some(queue) = &queue {
        sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(queue).execute(&mut *conn).await?;
    }
    Ok(queue.is_some())
}
