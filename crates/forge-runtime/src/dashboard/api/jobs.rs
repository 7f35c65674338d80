//! `/_api/jobs…` and `/_api/job-kinds`: listings, one job with its logs and trace, dispatch, and
//! the operator actions on one job or on every job a filter selects.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ApiResult, bad, body};
use super::extract::{ApiPath, ApiQuery};
use super::telemetry::{self, LogParams};
use crate::dashboard::DashboardState;
use crate::jobs::{self, CancelOutcome, DispatchOptions, JobFilter, JobId, JobRecord, JobState, JobsError, Priority};
use crate::observability::{self, LogPage, Trace, TraceId};

/// Most jobs one page holds.
const MAX_JOBS_PAGE: i64 = 500;

/// The fields a filter is made of (a listing's query, a bulk action's body).
const FILTER_FIELDS: [&str; 7] = ["state", "kind", "queue", "tag", "args", "since", "until"];

/// Which jobs a listing or a bulk action covers.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FilterParams {
    state: Option<JobState>,
    kind: Option<String>,
    queue: Option<String>,
    tag: Option<String>,
    /// JSON the jobs' arguments contain.
    args: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl FilterParams {
    fn into_filter(self) -> ApiResult<JobFilter> {
        let args = match self.args {
            None => None,
            Some(text) => {
                let value: Value = serde_json::from_str(&text).map_err(|e| bad("args", format!("is not JSON: {e}")))?;
                if !value.is_object() {
                    return Err(bad("args", "must be a JSON object (the jobs whose arguments contain it are listed)"));
                }
                Some(value)
            }
        };
        let text = |v: Option<String>| v.filter(|v| !v.is_empty());
        Ok(JobFilter {
            state: self.state,
            kind: text(self.kind),
            queue: text(self.queue),
            tag: text(self.tag),
            args,
            since: self.since,
            until: self.until,
        })
    }
}

/// A page of a listing.
#[derive(Debug, Deserialize)]
pub(super) struct PageParams {
    limit: Option<i64>,
    /// The previous page's `next`.
    before: Option<JobId>,
}

/// `{id}` of a job's routes.
#[derive(Debug, Deserialize)]
pub(super) struct JobPath {
    id: JobId,
}

impl JobPath {
    /// The path of job `id` (for the live job page).
    pub(super) fn of(id: i64) -> Self {
        Self { id: JobId(id) }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize)]
pub(super) struct JobsPage {
    jobs: Vec<JobRecord>,
    /// Where the next (older) page starts.
    next: Option<JobId>,
}

pub(super) async fn list(
    State(state): State<DashboardState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<FilterParams>,
) -> ApiResult<Json<JobsPage>> {
    let limit = page.limit.unwrap_or(50);
    if !(1..=MAX_JOBS_PAGE).contains(&limit) {
        return Err(bad("limit", format!("must be between 1 and {MAX_JOBS_PAGE}")));
    }
    let mut jobs = jobs::list_jobs(state.pool(), &filter.into_filter()?, page.before, limit + 1).await?;
    let more = jobs.len() as i64 > limit;
    jobs.truncate(limit as usize);
    let next = if more { jobs.last().map(|j| j.id) } else { None };
    Ok(Json(JobsPage { jobs, next }))
}

/// A job as the job page shows it: its record and the trace it runs in.
#[derive(Debug, Serialize)]
pub(super) struct JobDetail {
    #[serde(flatten)]
    job: JobRecord,
    trace_id: TraceId,
}

pub(super) async fn one(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<JobPath>,
) -> ApiResult<Json<JobDetail>> {
    let job =
        jobs::find_job(state.pool(), p.id).await?.ok_or_else(|| ApiError::NotFound(format!("no job {}", p.id)))?;
    let trace_id = observability::trace_of_job(job.id, &job.metadata);
    Ok(Json(JobDetail { job, trace_id }))
}

pub(super) async fn logs(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<JobPath>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> ApiResult<Json<LogPage>> {
    telemetry::fetch_logs(&state, LogParams { job: Some(p.id.0), ..params }).await
}

pub(super) async fn trace(State(state): State<DashboardState>, ApiPath(p): ApiPath<JobPath>) -> ApiResult<Json<Trace>> {
    let trace = observability::job_trace(state.pool(), p.id).await?;
    trace.map(Json).ok_or_else(|| ApiError::NotFound(format!("no job {}, or it has no spans yet", p.id)))
}

/// `POST /_api/jobs`: what the dispatch form (and `forge jobs dispatch`) sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchRequest {
    kind: String,
    #[serde(default)]
    args: Value,
    queue: Option<String>,
    priority: Option<i16>,
    run_at: Option<DateTime<Utc>>,
    unique_key: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A dispatched job.
#[derive(Debug, Serialize)]
pub(super) struct Dispatched {
    id: JobId,
    kind: String,
    queue: String,
}

pub(super) async fn dispatch(
    State(state): State<DashboardState>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Dispatched>)> {
    let request: DispatchRequest = body(&bytes)?;
    let priority = match request.priority {
        None => None,
        Some(p) => {
            Some(Priority::from_i16(p).ok_or_else(|| bad("priority", "must be 0 (critical) to 4 (background)"))?)
        }
    };
    let options = DispatchOptions {
        run_at: request.run_at,
        priority,
        queue: request.queue.filter(|q| !q.is_empty()),
        unique_key: request.unique_key.filter(|k| !k.is_empty()),
        tags: request.tags,
        ..DispatchOptions::default()
    };
    let job = state.jobs().new_job_with(&request.kind, request.args, &options).map_err(|e| match e {
        JobsError::UnknownKind(kind) => {
            bad("kind", format!("no job kind {kind:?} is registered (see GET /_api/job-kinds)"))
        }
        JobsError::InvalidArgs { message, .. } => {
            ApiError::Invalid(format!("`args` do not fit {}: {message}", request.kind))
        }
        e @ JobsError::MissingUniqueKey { .. } => bad("unique_key", e.to_string()),
        other => other.into(),
    })?;
    let mut conn = state.pool().acquire().await?;
    let ids = jobs::insert_jobs(&mut conn, std::slice::from_ref(&job), true).await?;
    let id = *ids.first().ok_or_else(|| ApiError::Conflict("the job was not inserted".to_owned()))?;
    Ok((StatusCode::CREATED, Json(Dispatched { id, kind: job.kind, queue: job.queue })))
}

/// A kind `POST /_api/jobs` accepts, with its defaults.
#[derive(Debug, Serialize)]
pub(super) struct JobKind {
    kind: &'static str,
    queue: &'static str,
    priority: i16,
    max_attempts: u32,
}

/// The kinds `POST /_api/jobs` accepts.
#[derive(Debug, Serialize)]
pub(super) struct JobKinds {
    kinds: Vec<JobKind>,
}

pub(super) async fn kinds(State(state): State<DashboardState>) -> Json<JobKinds> {
    let registry = state.jobs();
    let kinds = registry
        .names()
        .into_iter()
        .filter_map(|kind| {
            let o = registry.options(kind)?;
            Some(JobKind { kind, queue: o.queue, priority: o.priority.as_i16(), max_attempts: o.max_attempts })
        })
        .collect();
    Json(JobKinds { kinds })
}

/// A job's state after an action.
#[derive(Debug, Serialize)]
pub(super) struct JobChanged {
    id: JobId,
    state: JobState,
    /// Cancelling a running job asks its worker to stop it: it ends cancelled when it stops.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancel_requested: bool,
}

impl JobChanged {
    fn now(id: JobId, state: JobState) -> Json<Self> {
        Json(Self { id, state, cancel_requested: false })
    }
}

/// A deleted job.
#[derive(Debug, Serialize)]
pub(super) struct Deleted {
    id: JobId,
    deleted: bool,
}

pub(super) async fn run_now(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<JobPath>,
) -> ApiResult<Json<JobChanged>> {
    if jobs::run_now(state.pool(), p.id).await? {
        return Ok(JobChanged::now(p.id, JobState::Available));
    }
    Err(ApiError::Conflict(format!("job {} is not waiting: only scheduled or retryable jobs can be run now", p.id)))
}

pub(super) async fn delete(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<JobPath>,
) -> ApiResult<Json<Deleted>> {
    if jobs::delete(state.pool(), p.id).await? {
        return Ok(Json(Deleted { id: p.id, deleted: true }));
    }
    Err(ApiError::Conflict(format!("job {} is running: cancel it first", p.id)))
}

pub(super) async fn retry(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<JobPath>,
) -> ApiResult<Json<JobChanged>> {
    if jobs::retry(state.pool(), p.id).await? {
        return Ok(JobChanged::now(p.id, JobState::Available));
    }
    match jobs::find_job(state.pool(), p.id).await? {
        None => Err(ApiError::NotFound(format!("no job {}", p.id))),
        Some(job) => Err(ApiError::Conflict(format!(
            "job {} is {}: only discarded or cancelled jobs can be retried",
            p.id, job.state
        ))),
    }
}

pub(super) async fn cancel(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<JobPath>,
) -> ApiResult<Json<JobChanged>> {
    match jobs::cancel(state.pool(), p.id).await? {
        CancelOutcome::Cancelled => Ok(JobChanged::now(p.id, JobState::Cancelled)),
        CancelOutcome::Requested => Ok(Json(JobChanged { id: p.id, state: JobState::Running, cancel_requested: true })),
        CancelOutcome::AlreadyFinished => Err(ApiError::Conflict(format!("job {} has already finished", p.id))),
    }
}

/// What a bulk action did.
#[derive(Debug, Serialize)]
pub(super) struct Bulk {
    #[serde(skip_serializing_if = "Option::is_none")]
    retried: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled: Option<u64>,
    /// Most jobs one call changes.
    limit: i64,
}

/// A bulk action's body: a filter, and nothing else (empty fields count as absent, as the page
/// sends them).
fn bulk_filter(bytes: &[u8]) -> ApiResult<JobFilter> {
    let mut fields: serde_json::Map<String, Value> = body(bytes)?;
    fields.retain(|_, v| !v.is_null() && v.as_str() != Some(""));
    if let Some(unknown) = fields.keys().find(|k| !FILTER_FIELDS.contains(&k.as_str())) {
        return Err(bad(unknown, format!("is not a filter field (one of {})", FILTER_FIELDS.join(", "))));
    }
    let params: FilterParams = body(&serde_json::to_vec(&fields).unwrap_or_default())?;
    params.into_filter()
}

pub(super) async fn retry_all(State(state): State<DashboardState>, bytes: Bytes) -> ApiResult<Json<Bulk>> {
    let count = jobs::retry_all(state.pool(), &bulk_filter(&bytes)?).await?;
    Ok(Json(Bulk { retried: Some(count), cancelled: None, limit: jobs::MAX_BULK }))
}

pub(super) async fn cancel_all(State(state): State<DashboardState>, bytes: Bytes) -> ApiResult<Json<Bulk>> {
    let count = jobs::cancel_all(state.pool(), &bulk_filter(&bytes)?).await?;
    Ok(Json(Bulk { retried: None, cancelled: Some(count), limit: jobs::MAX_BULK }))
}
