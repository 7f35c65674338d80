//! The `/_api` handlers and their access check.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use forge_core::jobs::{JobRecord, JobState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::sql;
use crate::cluster;
use crate::cron::{self, CronRegistration};
use crate::gateway::{GatewayState, Problem};
use crate::jobs::{self, CancelOutcome, JobFilter, JobId, JobsError};
use crate::observability::{self, LogCursor, LogQuery, SeriesQuery, TraceId};

/// Most jobs one page holds.
const MAX_JOBS_PAGE: i64 = 500;

/// The `/_api` routes, behind the access check.
pub(crate) fn router(state: GatewayState) -> Router<GatewayState> {
    Router::new()
        .route("/_api/overview", get(overview))
        .route("/_api/jobs", get(jobs).post(dispatch))
        .route("/_api/jobs/retry", post(retry_jobs))
        .route("/_api/jobs/cancel", post(cancel_jobs))
        .route("/_api/jobs/{id}", get(job))
        .route("/_api/jobs/{id}/logs", get(job_logs))
        .route("/_api/jobs/{id}/trace", get(job_trace))
        .route("/_api/jobs/{id}/retry", post(retry_job))
        .route("/_api/jobs/{id}/cancel", post(cancel_job))
        .route("/_api/jobs/{id}/run", post(run_job_now))
        .route("/_api/jobs/{id}/delete", post(delete_job))
        .route("/_api/job-kinds", get(job_kinds))
        .route("/_api/crons", get(crons))
        .route("/_api/crons/{name}/trigger", post(trigger_cron))
        .route("/_api/crons/{name}/pause", post(pause_cron))
        .route("/_api/crons/{name}/resume", post(resume_cron))
        .route("/_api/queues/{name}/pause", post(pause_queue))
        .route("/_api/queues/{name}/resume", post(resume_queue))
        .route("/_api/logs", get(logs))
        .route("/_api/traces/{trace_id}", get(trace))
        .route("/_api/metrics", get(metric_names))
        .route("/_api/metrics/{name}", get(metric))
        .route("/_api/queues", get(queues))
        .route("/_api/nodes", get(nodes))
        .route("/_api/functions", get(functions))
        .layer(middleware::from_fn_with_state(state, admin_only))
}

/// The header every state-changing call carries. A page on another site can neither add it to
/// a form post nor send it with `fetch` without a CORS preflight this gateway refuses, so a
/// browser that has the dashboard open cannot be made to act by another site.
pub(crate) const CSRF_HEADER: &str = "x-forge-csrf";

/// Open on a loopback-only development gateway; otherwise the `admin` role. State-changing
/// calls (POST) also need [`CSRF_HEADER`].
async fn admin_only(State(state): State<GatewayState>, request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST && !request.headers().contains_key(CSRF_HEADER) {
        let detail = format!("state-changing calls need the `{CSRF_HEADER}` header");
        return problem(StatusCode::FORBIDDEN, "csrf", detail, request.uri().path());
    }
    if state.dashboard_open() {
        return next.run(request).await;
    }
    let instance = request.uri().path().to_owned();
    match state.authenticator().authenticate(request.headers()).await {
        Ok(auth) if auth.has_role("admin") => next.run(request).await,
        Ok(auth) if auth.is_authenticated() => {
            problem(StatusCode::FORBIDDEN, "forbidden", "the dashboard needs the admin role", &instance)
        }
        Ok(_) | Err(_) => {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the dashboard needs credentials with the admin role (a bearer JWT or an API key)",
                &instance,
            );
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

fn problem(status: StatusCode, kind: &str, detail: impl Into<String>, instance: &str) -> Response {
    Problem::new(status, detail).with_type(format!("urn:forge:problem:{kind}")).with_instance(instance).into_response()
}

/// Why an `/_api` call was refused or failed.
#[derive(Debug)]
enum ApiError {
    /// A parameter is malformed: 400 naming it.
    Bad(String),
    /// What was asked for does not exist: 404.
    NotFound(String),
    /// The job is not in a state that allows the action: 409.
    Conflict(String),
    /// The body is well formed but does not fit (a job's arguments): 422.
    Invalid(String),
    /// The database failed: 503.
    Database(sqlx::Error),
}

fn bad(parameter: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::Bad(format!("`{parameter}`: {message}"))
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Bad(detail) => problem(StatusCode::BAD_REQUEST, "invalid-parameter", detail, "/_api"),
            Self::NotFound(detail) => problem(StatusCode::NOT_FOUND, "not-found", detail, "/_api"),
            Self::Conflict(detail) => problem(StatusCode::CONFLICT, "conflict", detail, "/_api"),
            Self::Invalid(detail) => problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-args", detail, "/_api"),
            Self::Database(e) => {
                tracing::error!(error = %e, "dashboard query failed");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database did not answer; try again",
                    "/_api",
                )
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

type Params = Query<HashMap<String, String>>;

fn int(params: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    params.get(key).map(|v| v.parse::<i64>().map_err(|_| bad(key, format!("{v:?} is not an integer")))).transpose()
}

fn time(params: &HashMap<String, String>, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(key)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad(key, format!("{v:?} is not an RFC 3339 time")))
        })
        .transpose()
}

/// The filter a listing's (or a bulk action's) parameters describe.
fn job_filter(params: &HashMap<String, String>) -> Result<JobFilter, ApiError> {
    let mut filter = JobFilter::default();
    if let Some(s) = params.get("state").filter(|s| !s.is_empty()) {
        let state = s.parse::<JobState>().map_err(|_| {
            let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            bad("state", format!("{s:?} is not one of {}", names.join(", ")))
        })?;
        filter.state = Some(state);
    }
    let text = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    filter.kind = text("kind");
    filter.queue = text("queue");
    filter.tag = text("tag");
    if let Some(args) = text("args") {
        let value: Value = serde_json::from_str(&args).map_err(|e| bad("args", format!("is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(bad("args", "must be a JSON object (the jobs whose arguments contain it are listed)"));
        }
        filter.args = Some(value);
    }
    filter.since = time(params, "since")?;
    filter.until = time(params, "until")?;
    Ok(filter)
}

async fn jobs(State(state): State<GatewayState>, Query(params): Params) -> ApiResult {
    let limit = int(&params, "limit")?.unwrap_or(50);
    if !(1..=MAX_JOBS_PAGE).contains(&limit) {
        return Err(bad("limit", format!("must be between 1 and {MAX_JOBS_PAGE}")));
    }
    let before = int(&params, "before")?.map(JobId);
    let filter = job_filter(&params)?;
    let mut rows = jobs::list_jobs(state.pool(), &filter, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| r.id) } else { None };
    Ok(Json(json!({ "jobs": rows, "next": next })).into_response())
}

/// A JSON body, or 400 saying what is wrong with it.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { bytes };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if e.inner().is_syntax() || e.inner().is_eof() {
            bad("body", format!("is not valid JSON: {}", e.inner()))
        } else if path == "." {
            bad("body", e.inner())
        } else {
            bad(&path, e.inner())
        }
    })
}

/// `POST /_api/jobs`: what the dispatch form sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchRequest {
    kind: String,
    #[serde(default)]
    args: Value,
    queue: Option<String>,
    priority: Option<i16>,
    run_at: Option<DateTime<Utc>>,
}

async fn dispatch(State(state): State<GatewayState>, bytes: Bytes) -> ApiResult {
    let request: DispatchRequest = body(&bytes)?;
    let mut job = state.jobs().new_job(&request.kind, request.args).map_err(|e| match e {
        JobsError::UnknownKind(kind) => {
            bad("kind", format!("no job kind {kind:?} is registered (see GET /_api/job-kinds)"))
        }
        JobsError::InvalidArgs { message, .. } => {
            ApiError::Invalid(format!("`args` do not fit {}: {message}", request.kind))
        }
        other => jobs_error(other),
    })?;
    if let Some(queue) = request.queue.filter(|q| !q.is_empty()) {
        job.queue = queue;
    }
    if let Some(priority) = request.priority {
        if !(0..=4).contains(&priority) {
            return Err(bad("priority", "must be 0 (critical) to 4 (background)"));
        }
        job.priority = priority;
    }
    if let Some(at) = request.run_at {
        job.run_at = Some(at);
    }
    let mut conn = state.pool().acquire().await?;
    let ids = jobs::insert_jobs(&mut conn, std::slice::from_ref(&job), true).await.map_err(jobs_error)?;
    let id = ids.first().ok_or_else(|| ApiError::Conflict("the job was not inserted".to_owned()))?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id.0, "kind": job.kind, "queue": job.queue }))).into_response())
}

async fn job_kinds(State(state): State<GatewayState>) -> Response {
    let kinds: Vec<Value> = state
        .jobs()
        .names()
        .into_iter()
        .filter_map(|kind| {
            let o = state.jobs().options(kind)?;
            Some(json!({
                "kind": kind,
                "queue": o.queue,
                "priority": o.priority.as_i16(),
                "max_attempts": o.max_attempts,
            }))
        })
        .collect();
    Json(json!({ "kinds": kinds })).into_response()
}

async fn run_job_now(State(state): State<GatewayState>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    if jobs::run_now(state.pool(), JobId(id)).await.map_err(jobs_error)? {
        return Ok(Json(json!({ "id": id, "state": "available" })).into_response());
    }
    Err(ApiError::Conflict(format!("job {id} is not waiting: only scheduled or retryable jobs can be run now")))
}

async fn delete_job(State(state): State<GatewayState>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    if jobs::delete(state.pool(), JobId(id)).await.map_err(jobs_error)? {
        return Ok(Json(json!({ "id": id, "deleted": true })).into_response());
    }
    Err(ApiError::Conflict(format!("job {id} is running: cancel it first")))
}

/// The filter of a bulk action, as a JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRequest {
    state: Option<String>,
    kind: Option<String>,
    queue: Option<String>,
    tag: Option<String>,
    args: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl BulkRequest {
    fn filter(self) -> Result<JobFilter, ApiError> {
        let fields = [
            ("state", self.state),
            ("kind", self.kind),
            ("queue", self.queue),
            ("tag", self.tag),
            ("args", self.args),
            ("since", self.since),
            ("until", self.until),
        ];
        let params: HashMap<String, String> =
            fields.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))).collect();
        job_filter(&params)
    }
}

async fn retry_jobs(State(state): State<GatewayState>, bytes: Bytes) -> ApiResult {
    let filter = body::<BulkRequest>(&bytes)?.filter()?;
    let count = jobs::retry_all(state.pool(), &filter).await?;
    Ok(Json(json!({ "retried": count, "limit": jobs::MAX_BULK })).into_response())
}

async fn cancel_jobs(State(state): State<GatewayState>, bytes: Bytes) -> ApiResult {
    let filter = body::<BulkRequest>(&bytes)?.filter()?;
    let count = jobs::cancel_all(state.pool(), &filter).await?;
    Ok(Json(json!({ "cancelled": count, "limit": jobs::MAX_BULK })).into_response())
}

fn job_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().map_err(|_| bad("id", format!("{id:?} is not a job id")))
}

/// A job as the job page shows it: its record and the trace it runs in.
#[derive(Serialize)]
struct JobDetail {
    #[serde(flatten)]
    job: JobRecord,
    trace_id: TraceId,
}

async fn job(State(state): State<GatewayState>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    let row = jobs::find_job(state.pool(), JobId(id)).await?;
    let job = row.ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let trace_id = observability::trace_of_job(job.id, &job.metadata);
    Ok(Json(JobDetail { job, trace_id }).into_response())
}

async fn job_logs(State(state): State<GatewayState>, Path(id): Path<String>, Query(params): Params) -> ApiResult {
    let id = job_id(&id)?;
    let mut params = params;
    params.insert("job".to_owned(), id.to_string());
    logs(State(state), Query(params)).await
}

async fn retry_job(State(state): State<GatewayState>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    if jobs::retry(state.pool(), JobId(id)).await.map_err(jobs_error)? {
        return Ok(Json(json!({ "id": id, "state": "available" })).into_response());
    }
    let current: Option<String> =
        sqlx::query_scalar("select state from forge_jobs where id = $1").bind(id).fetch_optional(state.pool()).await?;
    match current {
        None => Err(ApiError::NotFound(format!("no job {id}"))),
        Some(current) => {
            Err(ApiError::Conflict(format!("job {id} is {current}: only discarded or cancelled jobs can be retried")))
        }
    }
}

async fn cancel_job(State(state): State<GatewayState>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    match jobs::cancel(state.pool(), JobId(id)).await.map_err(jobs_error)? {
        CancelOutcome::Cancelled => Ok(Json(json!({ "id": id, "state": "cancelled" })).into_response()),
        // The worker running it was told; the job ends cancelled when it stops.
        CancelOutcome::Requested => {
            Ok(Json(json!({ "id": id, "state": "running", "cancel_requested": true })).into_response())
        }
        CancelOutcome::AlreadyFinished => Err(ApiError::Conflict(format!("job {id} has already finished"))),
    }
}

fn jobs_error(e: JobsError) -> ApiError {
    match e {
        JobsError::NotFound(id) => ApiError::NotFound(format!("no job {id}")),
        JobsError::Database(e) => ApiError::Database(e),
        e @ (JobsError::InvalidOption(_) | JobsError::Args(_)) => ApiError::Bad(e.to_string()),
        other => ApiError::Conflict(other.to_string()),
    }
}

async fn logs(State(state): State<GatewayState>, Query(params): Params) -> ApiResult {
    let mut query = LogQuery::default();
    if let Some(level) = params.get("level") {
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(bad("level", format!("{level:?} is not one of error, warn, info, debug, trace")));
        }
        query = query.min_level(level);
    }
    if let Some(text) = params.get("q").filter(|t| !t.is_empty()) {
        query = query.text(text.clone());
    }
    if let Some(id) = int(&params, "job")? {
        query = query.job(id);
    }
    if let Some(trace) = params.get("trace") {
        let trace = TraceId::parse(trace).ok_or_else(|| bad("trace", "a trace id is 32 hex digits"))?;
        query = query.trace(trace);
    }
    if let Some(node) = params.get("node") {
        query = query.node(node.clone());
    }
    if let Some(t) = time(&params, "since")? {
        query = query.since(t);
    }
    if let Some(t) = time(&params, "until")? {
        query = query.until(t);
    }
    if let Some(n) = int(&params, "limit")? {
        let max = observability::MAX_LOG_PAGE;
        let n = u32::try_from(n).ok().filter(|n| (1..=max).contains(n));
        query = query.limit(n.ok_or_else(|| bad("limit", format!("must be between 1 and {max}")))?);
    }
    match (time(&params, "before_at")?, int(&params, "before_id")?) {
        (Some(at), Some(id)) => query = query.before(LogCursor { at, id }),
        (None, None) => {}
        _ => return Err(bad("before_at", "goes with `before_id` (both from a page's `next`)")),
    }
    Ok(Json(query.fetch(state.pool()).await?).into_response())
}

async fn trace(State(state): State<GatewayState>, Path(trace_id): Path<String>) -> ApiResult {
    let Some(id) = TraceId::parse(&trace_id) else {
        return Err(bad("trace_id", "a trace id is 32 hex digits"));
    };
    let trace = observability::trace(state.pool(), id).await?;
    let trace = trace.ok_or_else(|| ApiError::NotFound(format!("no spans stored for trace {trace_id}")))?;
    Ok(Json(trace).into_response())
}

async fn job_trace(State(state): State<GatewayState>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    let trace = observability::job_trace(state.pool(), JobId(id)).await?;
    let trace = trace.ok_or_else(|| ApiError::NotFound(format!("no job {id}, or it has no spans yet")))?;
    Ok(Json(trace).into_response())
}

async fn metric(State(state): State<GatewayState>, Path(name): Path<String>, request: Request) -> ApiResult {
    // `label` repeats, so the query string is read as pairs.
    let pairs = request.uri().query().map(query_pairs).transpose()?.unwrap_or_default();
    let params: HashMap<String, String> = pairs.iter().filter(|(k, _)| k != "label").cloned().collect();
    let until = time(&params, "until")?.unwrap_or_else(Utc::now);
    let since = time(&params, "since")?.unwrap_or(until - chrono::Duration::hours(1));
    if since >= until {
        return Err(bad("since", "must be before `until`"));
    }
    let mut query = SeriesQuery::new(name).range(since, until);
    if let Some(step) = params.get("step") {
        match step.parse::<forge_core::config::Duration>().map(|d| d.as_std()) {
            Ok(d) if d >= Duration::from_secs(1) => query = query.step(d),
            _ => return Err(bad("step", format!("{step:?} is not a duration of at least 1s, such as \"1m\""))),
        }
    }
    for (_, label) in pairs.iter().filter(|(k, _)| k == "label") {
        let (key, value) = label.split_once(':').ok_or_else(|| bad("label", format!("{label:?} is not key:value")))?;
        query = query.label(key, value);
    }
    Ok(Json(json!({ "series": query.fetch(state.pool()).await? })).into_response())
}

async fn metric_names(State(state): State<GatewayState>) -> ApiResult {
    let names: Vec<String> = sqlx::query_scalar(sql::METRIC_NAMES).fetch_all(state.pool()).await?;
    Ok(Json(json!({ "names": names })).into_response())
}

/// `a=1&b=2` as decoded pairs, keeping repeats.
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            percent_decode(&s).ok_or_else(|| bad(k, "is not valid percent-encoding"))
        };
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn queues(State(state): State<GatewayState>) -> ApiResult {
    let mut summaries = jobs::queue_summaries(state.pool()).await?;
    // This node's queues are listed even while empty.
    for (name, _) in state.queue_config() {
        summaries.entry(name.clone()).or_default();
    }
    let concurrency = |name: &str| state.queue_config().iter().find(|(n, _)| n == name).map(|(_, c)| *c);
    let list: Vec<Value> = summaries
        .into_iter()
        .map(|(name, q)| {
            json!({ "name": name, "depth": q.depth, "concurrency": concurrency(&name), "paused_at": q.paused_at })
        })
        .collect();
    Ok(Json(json!({ "queues": list })).into_response())
}

fn queue_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 200 {
        return Err(bad("queue", "a queue name is 1 to 200 characters"));
    }
    Ok(())
}

async fn pause_queue(State(state): State<GatewayState>, Path(name): Path<String>) -> ApiResult {
    queue_name(&name)?;
    jobs::pause_queue(state.pool(), &name, "dashboard").await?;
    Ok(Json(json!({ "queue": name, "paused": true })).into_response())
}

async fn resume_queue(State(state): State<GatewayState>, Path(name): Path<String>) -> ApiResult {
    queue_name(&name)?;
    let was_paused = jobs::resume_queue(state.pool(), &name).await?;
    Ok(Json(json!({ "queue": name, "paused": false, "was_paused": was_paused })).into_response())
}

async fn crons(State(state): State<GatewayState>) -> ApiResult {
    let crons = state.crons().status(state.pool(), 5, 10).await?;
    Ok(Json(json!({ "crons": crons })).into_response())
}

fn cron_named(state: &GatewayState, name: &str) -> Result<&'static CronRegistration, ApiError> {
    state.crons().get(name).ok_or_else(|| ApiError::NotFound(format!("no cron {name:?} is registered")))
}

async fn trigger_cron(State(state): State<GatewayState>, Path(name): Path<String>) -> ApiResult {
    let reg = cron_named(&state, &name)?;
    let id = cron::trigger(state.pool(), reg, "dashboard").await.map_err(jobs_error)?;
    Ok(Json(json!({ "cron": name, "job_id": id.0 })).into_response())
}

async fn pause_cron(State(state): State<GatewayState>, Path(name): Path<String>) -> ApiResult {
    let reg = cron_named(&state, &name)?;
    cron::pause_cron(state.pool(), reg.name, "dashboard").await?;
    Ok(Json(json!({ "cron": name, "paused": true })).into_response())
}

async fn resume_cron(State(state): State<GatewayState>, Path(name): Path<String>) -> ApiResult {
    let reg = cron_named(&state, &name)?;
    let was_paused = cron::resume_cron(state.pool(), reg.name).await?;
    Ok(Json(json!({ "cron": name, "paused": false, "was_paused": was_paused })).into_response())
}

/// Counts by state, nodes and the leader, and the latest failures: the overview's numbers (its
/// charts read `/_api/metrics`).
async fn overview(State(state): State<GatewayState>) -> ApiResult {
    let counts: Value = sqlx::query_scalar(sql::STATE_COUNTS).fetch_one(state.pool()).await?;
    let failures: Value = sqlx::query_scalar(&format!(
        "select coalesce(jsonb_agg(to_jsonb(j) order by j.id desc), '[]') from ({}) j",
        sql::RECENT_FAILURES
    ))
    .fetch_one(state.pool())
    .await?;
    let nodes = cluster::nodes(state.pool()).await?;
    Ok(Json(json!({
        "project": state.project(),
        "counts": counts,
        "recent_failures": failures,
        "nodes": nodes,
    }))
    .into_response())
}

async fn nodes(State(state): State<GatewayState>) -> ApiResult {
    let nodes = cluster::nodes(state.pool()).await?;
    Ok(Json(json!({ "nodes": nodes })).into_response())
}

async fn functions(State(state): State<GatewayState>) -> Response {
    Json(json!({ "functions": state.functions().list() })).into_response()
}
