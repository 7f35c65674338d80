//! `/_api/workflows…`: runs (filtered by workflow, status, key), one run's timeline (its steps,
//! events, logs and trace through its job), and the cancel, send-event and resume actions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, bad};
use super::extract::{ApiPath, ApiQuery};
use crate::dashboard::DashboardState;
use crate::jobs::JobId;
use crate::workflows::{self, EventInfo, RunFilter, RunInfo, RunStatus, StepInfo, WorkflowsError};

impl From<WorkflowsError> for ApiError {
    fn from(e: WorkflowsError) -> Self {
        match e {
            WorkflowsError::NotFound(detail) => ApiError::NotFound(format!("no workflow run {detail}")),
            WorkflowsError::Database(e) => ApiError::Database(e),
            e @ (WorkflowsError::InvalidName(_) | WorkflowsError::Payload(_)) => ApiError::Invalid(e.to_string()),
            e => ApiError::Conflict(e.to_string()),
        }
    }
}

/// A run with its status.
#[derive(Debug, Serialize)]
pub(super) struct Run {
    #[serde(flatten)]
    run: RunInfo,
    status: RunStatus,
}

impl From<RunInfo> for Run {
    fn from(run: RunInfo) -> Self {
        let status = run.status();
        Self { run, status }
    }
}

/// A page of runs, newest first; `next` is the `before` of the next page.
#[derive(Debug, Serialize)]
pub(super) struct RunsPage {
    runs: Vec<Run>,
    next: Option<i64>,
}

/// `?workflow=&status=&key=&before=&limit=`.
#[derive(Debug, Deserialize)]
pub(super) struct RunsQuery {
    workflow: Option<String>,
    status: Option<String>,
    key: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

pub(super) async fn list(
    State(state): State<DashboardState>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<RunsPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit", "must be between 1 and 500"));
    }
    let status = q.status.as_deref().map(str::parse::<RunStatus>).transpose().map_err(|e| bad("status", e))?;
    let filter = RunFilter { workflow: q.workflow, key: q.key, status, before: q.before, limit: Some(limit + 1) };
    let mut runs = workflows::list_runs(state.pool(), &filter).await?;
    let more = runs.len() as i64 > limit;
    runs.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more { runs.last().map(|r| r.id) } else { None };
    Ok(Json(RunsPage { runs: runs.into_iter().map(Run::from).collect(), next }))
}

/// `{id}` of a run's routes.
#[derive(Debug, Deserialize)]
pub(super) struct RunPath {
    id: i64,
}

impl RunPath {
    /// The path of run `id` (for the live workflow page).
    pub(super) fn of(id: i64) -> Self {
        Self { id }
    }
}

/// A run's timeline: the run, its steps in order, the events sent to it. Its logs and trace are
/// its job's (`/_api/jobs/{id}/logs`, `/_api/jobs/{id}/trace`).
#[derive(Debug, Serialize)]
pub(super) struct RunDetail {
    run: Run,
    steps: Vec<StepInfo>,
    events: Vec<EventInfo>,
}

pub(super) async fn one(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<RunPath>,
) -> ApiResult<Json<RunDetail>> {
    let run = workflows::find_run(state.pool(), JobId(p.id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workflow run {}", p.id)))?;
    let steps = workflows::run_steps(state.pool(), JobId(p.id)).await?;
    let events = workflows::run_events(state.pool(), JobId(p.id)).await?;
    Ok(Json(RunDetail { run: run.into(), steps, events }))
}

/// What an action did.
#[derive(Debug, Serialize)]
pub(super) struct Done {
    run: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    woke: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<bool>,
}

pub(super) async fn cancel(State(state): State<DashboardState>, ApiPath(p): ApiPath<RunPath>) -> ApiResult<Json<Done>> {
    workflows::cancel(state.pool(), JobId(p.id)).await?;
    Ok(Json(Done { run: p.id, woke: None, delivered: None }))
}

/// `POST /_api/workflows/{id}/events` body.
#[derive(Debug, Deserialize)]
pub(super) struct EventBody {
    name: String,
    #[serde(default)]
    payload: serde_json::Value,
}

pub(super) async fn send_event(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<RunPath>,
    body: Result<Json<EventBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Done>)> {
    let Json(body) = body.map_err(|e| ApiError::Bad(format!("the body is not an event: {}", e.body_text())))?;
    let sent = workflows::send_event(state.pool(), JobId(p.id), &body.name, body.payload).await?;
    let (delivered, woke) = match sent {
        workflows::EventSent::Delivered { woke, .. } => (true, woke),
        _ => (false, false),
    };
    let status = if delivered { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Done { run: p.id, woke: Some(woke), delivered: Some(delivered) })))
}

/// `POST /_api/workflows/{id}/resume` body: the position to resume from (its recorded steps
/// from there on are forgotten), or none to replay them all.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ResumeBody {
    from_step: Option<i32>,
}

pub(super) async fn resume(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<RunPath>,
    body: Option<Json<ResumeBody>>,
) -> ApiResult<Json<Done>> {
    let from = body.map(|Json(b)| b.from_step).unwrap_or_default();
    workflows::resume(state.pool(), JobId(p.id), from).await?;
    Ok(Json(Done { run: p.id, woke: Some(true), delivered: None }))
}

/// A retried run, and the position it resumes from.
#[derive(Debug, Serialize)]
pub(super) struct Retried {
    run: i64,
    from_step: Option<i32>,
}

pub(super) async fn retry(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<RunPath>,
) -> ApiResult<Json<Retried>> {
    let from_step = workflows::retry(state.pool(), JobId(p.id)).await?;
    Ok(Json(Retried { run: p.id, from_step }))
}
