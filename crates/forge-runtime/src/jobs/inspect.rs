//! What operators read about jobs and queues (the dashboard and the CLI call these): listings
//! and single jobs as [`JobRecord`]s, queue summaries, the kinds the nodes run, recent failures.

use chrono::{DateTime, Utc};
use forge_core::jobs::{JobId, JobRecord, Priority, Unique, UniqueBy};
use serde::Serialize;
use sqlx::{PgPool, QueryBuilder};

use super::control::JobFilter;
use super::error::JobsError;
use super::new_job::{DispatchOptions, NewJob, unique_key};
use super::sql;

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

/// Records the kinds `registry` holds in `forge_job_kinds`, as seen by `node_id` now: queue,
/// attempts, priority, uniqueness rule and capability.
pub async fn record_kinds(pool: &PgPool, registry: &super::JobRegistry, node_id: &str) -> Result<(), sqlx::Error> {
    let names = registry.names();
    let options: Vec<forge_core::jobs::JobOptions> =
        names.iter().map(|k| registry.options(k).cloned().unwrap_or_default()).collect();
    let queues: Vec<&str> = options.iter().map(|o| o.queue).collect();
    let attempts: Vec<i32> = options.iter().map(|o| i32::try_from(o.max_attempts).unwrap_or(i32::MAX)).collect();
    let priorities: Vec<i16> = options.iter().map(|o| o.priority.as_i16()).collect();
    let unique_by: Vec<Option<&str>> = options
        .iter()
        .map(|o| {
            o.unique.map(|u| match u.by {
                UniqueBy::Args => "args",
                UniqueBy::Key => "key",
            })
        })
        .collect();
    let periods: Vec<Option<i64>> = options
        .iter()
        .map(|o| o.unique.and_then(|u| u.period).map(|p| i64::try_from(p.as_millis()).unwrap_or(i64::MAX)))
        .collect();
    let capabilities: Vec<Option<&str>> = options.iter().map(|o| o.capability).collect();
    sqlx::query(sql::RECORD_KINDS)
        .bind(&names)
        .bind(&queues)
        .bind(&attempts)
        .bind(node_id)
        .bind(&priorities)
        .bind(&unique_by)
        .bind(&periods)
        .bind(&capabilities)
        .execute(pool)
        .await?;
    Ok(())
}

/// A job kind some node of the application has registered, with the rules a dispatch follows.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct KnownKind {
    /// The kind.
    pub kind: String,
    /// Its default queue.
    pub queue: String,
    /// Its default attempts.
    pub max_attempts: i32,
    /// Its default priority (0 critical to 4 background).
    pub priority: i16,
    /// `args` or `key` when the kind is unique.
    pub unique_by: Option<String>,
    /// The uniqueness window in milliseconds, when it has one.
    pub unique_period_ms: Option<i64>,
    /// The capability a worker needs to run it.
    pub capability: Option<String>,
    /// When a node last registered it.
    pub seen_at: DateTime<Utc>,
}

impl KnownKind {
    /// The kind's uniqueness rule.
    pub fn unique(&self) -> Option<Unique> {
        let by = match self.unique_by.as_deref()? {
            "key" => UniqueBy::Key,
            _ => UniqueBy::Args,
        };
        let period = self.unique_period_ms.and_then(|ms| u64::try_from(ms).ok()).map(std::time::Duration::from_millis);
        Some(Unique { by, period })
    }
}

impl NewJob {
    /// A job of a kind some node recorded in `forge_job_kinds` ([`super::KnownKind`]), for tools
    /// without the application's code (the `forge` CLI): the kind's queue, priority, attempts,
    /// capability and uniqueness rule apply as they would in the app, `options` over them. The
    /// arguments are not checked against the kind's type (only the app can).
    pub fn for_known(known: &KnownKind, args: serde_json::Value, options: &DispatchOptions) -> Result<Self, JobsError> {
        let max_attempts = options.max_attempts.map_or(known.max_attempts, |n| i32::try_from(n).unwrap_or(i32::MAX));
        if max_attempts < 1 {
            return Err(JobsError::InvalidOption(format!("max_attempts {max_attempts} must be 1 or more")));
        }
        let run_at = options
            .run_at
            .or_else(|| options.delay.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| Utc::now() + d));
        let (unique_key, unique_period) =
            unique_key(&known.kind, known.unique(), options.unique_key.as_deref(), &args)?;
        Ok(Self {
            kind: known.kind.clone(),
            queue: options.queue.clone().unwrap_or_else(|| known.queue.clone()),
            args,
            priority: options.priority.map_or(known.priority, Priority::as_i16),
            max_attempts,
            run_at,
            unique_key,
            unique_period,
            capability: known.capability.clone(),
            tags: options.tags.clone(),
            metadata: serde_json::Map::new(),
            client: None,
        })
    }
}

/// The job kinds the application's nodes have registered, by name.
pub async fn known_kinds(pool: &PgPool) -> Result<Vec<KnownKind>, sqlx::Error> {
    sqlx::query_as(
        "select kind, queue, max_attempts, priority, unique_by, unique_period_ms, capability, seen_at \
         from forge_job_kinds order by kind",
    )
    .fetch_all(pool)
    .await
}

/// Jobs the filter selects, newest first, `limit` of them with ids below `before`.
pub async fn list_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<JobId>,
    limit: i64,
) -> Result<Vec<JobRecord>, sqlx::Error> {
    let mut query = QueryBuilder::new(format!("select {} from forge_jobs where true", JobRecord::COLUMNS));
    filter.push_conditions(&mut query);
    if let Some(id) = before {
        query.push(" and id < ").push_bind(id);
    }
    query.push(" order by id desc limit ").push_bind(limit);
    query.build_query_as().fetch_all(pool).await
}

/// One job: kind, queue, state, attempts, arguments, output, errors, progress, tags, metadata,
/// times, the node that ran it.
pub async fn find_job(pool: &PgPool, id: JobId) -> Result<Option<JobRecord>, sqlx::Error> {
    sqlx::query_as(&format!("select {} from forge_jobs where id = $1", JobRecord::COLUMNS))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Failed attempts recorded since `since`, and how many of those jobs were discarded.
pub async fn failures_since(pool: &PgPool, since: DateTime<Utc>) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(sql::FAILURES_SINCE).bind(since).fetch_one(pool).await
}
