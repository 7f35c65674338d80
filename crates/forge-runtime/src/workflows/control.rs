//! What is done to runs from outside: send an event, cancel, resume a blocked run; and what
//! operators read about them.

use chrono::{DateTime, Utc};
use forge_core::jobs::JobId;
use forge_core::workflows::RunStatus;
use serde::Serialize;
use sqlx::{Acquire, PgConnection, PgPool};

use super::error::WorkflowsError;
use super::sql;

/// A run, by id or by its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunRef {
    /// The run's id (its job's id).
    Id(JobId),
    /// The key it was started with.
    Key(String),
}

impl From<JobId> for RunRef {
    fn from(id: JobId) -> Self {
        RunRef::Id(id)
    }
}

impl From<&str> for RunRef {
    fn from(key: &str) -> Self {
        RunRef::Key(key.to_owned())
    }
}

impl From<String> for RunRef {
    fn from(key: String) -> Self {
        RunRef::Key(key)
    }
}

impl std::fmt::Display for RunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunRef::Id(id) => write!(f, "{id}"),
            RunRef::Key(key) => write!(f, "with key {key:?}"),
        }
    }
}

/// What sending an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventSent {
    /// Stored; `woke` says whether the run was waiting for it and was made runnable now.
    Delivered {
        /// The run.
        run: JobId,
        /// Whether the run was suspended waiting for this event.
        woke: bool,
    },
    /// An event of that name was already sent to the run: the first one stands.
    AlreadySent {
        /// The run.
        run: JobId,
    },
}

/// Sends the event `name` with `payload` to a run. The event is stored even if the run is not
/// waiting yet (a later wait sees it); a run waiting for it is woken at once. The first event
/// of a name wins. Errors: no such run, the run has finished, a bad name or payload.
pub async fn send_event(
    pool: &PgPool,
    run: impl Into<RunRef>,
    name: &str,
    payload: impl Serialize,
) -> Result<EventSent, WorkflowsError> {
    let mut conn = pool.acquire().await?;
    send_event_in(&mut conn, run, name, payload).await
}

/// [`send_event`] inside the caller's transaction (a mutation's `ctx.tx()`): the event exists,
/// and the run wakes, only if it commits.
pub async fn send_event_in(
    conn: &mut PgConnection,
    run: impl Into<RunRef>,
    name: &str,
    payload: impl Serialize,
) -> Result<EventSent, WorkflowsError> {
    let run = run.into();
    if name.is_empty() || name.len() > 200 || name.contains('\0') {
        return Err(WorkflowsError::InvalidName(format!("an event name is 1 to 200 bytes without NUL, got {name:?}")));
    }
    let payload = serde_json::to_value(payload).map_err(|e| WorkflowsError::Payload(e.to_string()))?;
    if let Some(path) = forge_core::text::find_nul(&payload) {
        return Err(WorkflowsError::Payload(format!("a NUL character at {path}, which Postgres cannot store")));
    }
    let size = payload.to_string().len();
    if size > forge_core::text::caps::OUTPUT {
        return Err(WorkflowsError::Payload(format!(
            "{size} bytes; an event's payload is at most {} bytes",
            forge_core::text::caps::OUTPUT
        )));
    }
    let (by_id, by_key) = match &run {
        RunRef::Id(id) => (Some(id.0), None),
        RunRef::Key(key) => (None, Some(key.as_str())),
    };
    let mut tx = conn.begin().await?;
    // The job row first: a suspending execution takes the same lock before it looks for events.
    let target: Option<(i64, String, String)> =
        sqlx::query_as(sql::EVENT_TARGET).bind(by_id).bind(by_key).fetch_optional(&mut *tx).await?;
    let Some((id, state, _queue)) = target else {
        return Err(WorkflowsError::NotFound(run.to_string()));
    };
    if matches!(state.as_str(), "completed" | "discarded" | "cancelled") {
        return Err(WorkflowsError::Finished { run: JobId(id), state });
    }
    let stored = sqlx::query(sql::INSERT_EVENT).bind(id).bind(name).bind(&payload).fetch_optional(&mut *tx).await?;
    if stored.is_none() {
        tx.commit().await?;
        return Ok(EventSent::AlreadySent { run: JobId(id) });
    }
    let woke: Option<String> =
        sqlx::query_scalar(sql::WAKE_FOR_EVENT).bind(id).bind(name).fetch_optional(&mut *tx).await?;
    if let Some(queue) = &woke {
        sqlx::query(crate::jobs::sql::NOTIFY).bind("forge_jobs").bind(queue).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(EventSent::Delivered { run: JobId(id), woke: woke.is_some() })
}

/// Asks a run to cancel. Its next execution (at once, if it is waiting) replays its record and
/// runs the compensations of its completed steps, newest first, then the run is `cancelled`.
/// A run executing now stops at its next step. Errors: no such run, or it has finished.
pub async fn cancel(pool: &PgPool, run: impl Into<RunRef>) -> Result<(), WorkflowsError> {
    let id = resolve(pool, run.into()).await?;
    let mut tx = pool.begin().await?;
    // The job row first, as a suspending execution locks it: the request is either seen by the
    // suspension or finds the run suspended and wakes it.
    let (state, queue): (String, String) = sqlx::query_as(sql::LOCK_RUN).bind(id.0).fetch_one(&mut *tx).await?;
    if matches!(state.as_str(), "completed" | "discarded" | "cancelled") {
        return Err(WorkflowsError::Finished { run: id, state });
    }
    sqlx::query(sql::REQUEST_CANCEL).bind(id.0).execute(&mut *tx).await?;
    if sqlx::query(sql::WAKE).bind(id.0).execute(&mut *tx).await?.rows_affected() > 0 {
        sqlx::query(crate::jobs::sql::NOTIFY).bind("forge_jobs").bind(&queue).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Resumes a blocked run on the current code. With `from_seq`, the steps it recorded at that
/// position and after are forgotten first (they run again, as new steps); without, the run
/// replays its whole record again (resume after deploying code that matches it).
pub async fn resume(pool: &PgPool, run: impl Into<RunRef>, from_seq: Option<i32>) -> Result<(), WorkflowsError> {
    let id = resolve(pool, run.into()).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(sql::LOCK_RUN).bind(id.0).execute(&mut *tx).await?;
    let queue: Option<String> = sqlx::query_scalar(sql::RESUME).bind(id.0).fetch_optional(&mut *tx).await?;
    let Some(queue) = queue else {
        return Err(WorkflowsError::NotBlocked(id));
    };
    sqlx::query(sql::FORGET_FROM).bind(id.0).bind(from_seq).execute(&mut *tx).await?;
    sqlx::query(crate::jobs::sql::NOTIFY).bind("forge_jobs").bind(&queue).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Retries a failed (or cancelled) run from its first failed step: that step's record and every
/// later one are forgotten, so they run again on the current code. When compensations already
/// ran, the run resumes from the first compensated step instead (its effects were undone, so it
/// runs again). Returns the position it resumes from (`None`: it replays its whole record, as
/// when its own code, not a step, failed). Errors: no such run, or it has not failed.
pub async fn retry(pool: &PgPool, run: impl Into<RunRef>) -> Result<Option<i32>, WorkflowsError> {
    let id = resolve(pool, run.into()).await?;
    let mut tx = pool.begin().await?;
    let state: String = sqlx::query_scalar(sql::LOCK_FOR_RETRY).bind(id.0).fetch_one(&mut *tx).await?;
    if !matches!(state.as_str(), "discarded" | "cancelled") {
        return Err(WorkflowsError::NotFailed { run: id, state });
    }
    let from: Option<i32> = sqlx::query_scalar(sql::RETRY_FROM).bind(id.0).fetch_one(&mut *tx).await?;
    sqlx::query(sql::FORGET_FROM).bind(id.0).bind(from).execute(&mut *tx).await?;
    let queue: String = sqlx::query_scalar(sql::RETRY).bind(id.0).fetch_one(&mut *tx).await?;
    sqlx::query(crate::jobs::sql::NOTIFY).bind("forge_jobs").bind(&queue).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(from)
}

async fn resolve(pool: &PgPool, run: RunRef) -> Result<JobId, WorkflowsError> {
    match &run {
        RunRef::Id(id) => {
            let found: Option<i64> = sqlx::query_scalar("select id from forge_workflow_runs where id = $1")
                .bind(id.0)
                .fetch_optional(pool)
                .await?;
            found.map(JobId).ok_or_else(|| WorkflowsError::NotFound(run.to_string()))
        }
        RunRef::Key(key) => {
            let found: Option<i64> = sqlx::query_scalar(sql::RUN_BY_KEY).bind(key).fetch_optional(pool).await?;
            found.map(JobId).ok_or_else(|| WorkflowsError::NotFound(run.to_string()))
        }
    }
}

/// A run as operators see it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct RunInfo {
    /// The run's id (its job's).
    pub id: i64,
    /// The workflow.
    pub workflow: String,
    /// The version it started on.
    pub version: i32,
    /// Its key, if started with one.
    pub run_key: Option<String>,
    /// Its job's state.
    pub state: String,
    /// The event it is suspended waiting for.
    pub waiting_for: Option<String>,
    /// Why it is blocked.
    pub blocked_reason: Option<String>,
    /// The position it is blocked at.
    pub blocked_seq: Option<i32>,
    /// When cancellation was asked for.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// When its whole-run timeout passes.
    pub deadline: Option<DateTime<Utc>>,
    /// The run that started it, for a child run.
    pub parent_id: Option<i64>,
    /// Its child runs not finished yet.
    pub open_children: i32,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When its job is next due.
    pub run_at: DateTime<Utc>,
    /// When it finished.
    pub finalized_at: Option<DateTime<Utc>>,
    /// Its output.
    pub output: Option<serde_json::Value>,
    /// Its failed executions.
    pub errors: serde_json::Value,
    /// Its arguments.
    pub args: serde_json::Value,
}

impl RunInfo {
    /// The run's status, from its job's state and its own row.
    pub fn status(&self) -> RunStatus {
        match self.state.as_str() {
            "completed" => RunStatus::Completed,
            "discarded" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "running" => RunStatus::Running,
            _ if self.blocked_reason.is_some() => RunStatus::Blocked,
            "scheduled" | "retryable" if self.run_at > Utc::now() => RunStatus::Waiting,
            _ => RunStatus::Pending,
        }
    }
}

/// One recorded step of a run.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct StepInfo {
    /// Its name with its occurrence (`charge#2`).
    pub name: String,
    /// Its position in the run.
    pub seq: i32,
    /// `step`, `tx_step`, `sleep`, `event`, `patch` or `time`.
    pub kind: String,
    /// `completed`, `failed`, `retrying` or `waiting`.
    pub status: String,
    /// Its output.
    pub output: Option<serde_json::Value>,
    /// Its last error.
    pub error: Option<String>,
    /// Attempts counted.
    pub attempts: i32,
    /// When a sleep wakes, a wait times out, or a retry is due.
    pub wake_at: Option<DateTime<Utc>>,
    /// When it was first reached.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// When its compensation ran.
    pub compensated_at: Option<DateTime<Utc>>,
    /// Why its compensation failed, if it did.
    pub compensation_error: Option<String>,
}

/// One event sent to a run.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct EventInfo {
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: serde_json::Value,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

/// A run, if there is one with that id or key.
pub async fn find_run(pool: &PgPool, run: impl Into<RunRef>) -> Result<Option<RunInfo>, WorkflowsError> {
    let id = match resolve(pool, run.into()).await {
        Ok(id) => id,
        Err(WorkflowsError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(sqlx::query_as(sql::RUN).bind(id.0).fetch_optional(pool).await?)
}

/// A run's recorded steps, in order.
pub async fn run_steps(pool: &PgPool, run: JobId) -> Result<Vec<StepInfo>, WorkflowsError> {
    Ok(sqlx::query_as(sql::STEPS).bind(run.0).fetch_all(pool).await?)
}

/// The events sent to a run, oldest first.
pub async fn run_events(pool: &PgPool, run: JobId) -> Result<Vec<EventInfo>, WorkflowsError> {
    Ok(sqlx::query_as(sql::EVENTS).bind(run.0).fetch_all(pool).await?)
}

/// Which runs [`list_runs`] returns.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only this workflow's.
    pub workflow: Option<String>,
    /// Only the run with this key.
    pub key: Option<String>,
    /// Only these statuses.
    pub status: Option<RunStatus>,
    /// Runs older than this id (the next page).
    pub before: Option<i64>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<i64>,
}

/// Runs, newest first.
pub async fn list_runs(pool: &PgPool, filter: &RunFilter) -> Result<Vec<RunInfo>, WorkflowsError> {
    let limit = filter.limit.unwrap_or(50).clamp(1, 500);
    let runs: Vec<RunInfo> = sqlx::query_as(sql::LIST)
        .bind(&filter.workflow)
        .bind(&filter.key)
        .bind(filter.before)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(match filter.status {
        Some(status) => runs.into_iter().filter(|r| r.status() == status).collect(),
        None => runs,
    })
}
