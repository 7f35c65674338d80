//! The `/_api` handlers and their access check.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Postgres, QueryBuilder};

use super::sql;
use crate::gateway::{GatewayState, Problem};
use crate::jobs::{self, CancelOutcome, JobId, JobsError};
use crate::observability::{self, LogCursor, LogQuery, SeriesQuery};

/// Most jobs one page holds.
const MAX_JOBS_PAGE: i64 = 500;
/// The states a job can be in.
const STATES: [&str; 7] = ["scheduled", "available", "running", "retryable", "completed", "discarded", "cancelled"];

/// The `/_api` routes, behind the access check.
pub(crate) fn router(state: GatewayState) -> Router<GatewayState> {
    Router::new()
        .route("/_api/jobs", get(jobs))
        .route("/_api/jobs/{id}", get(job))
        .route("/_api/jobs/{id}/logs", get(job_logs))
        .route("/_api/jobs/{id}/retry", post(retry_job))
        .route("/_api/jobs/{id}/cancel", post(cancel_job))
        .route("/_api/logs", get(logs))
        .route("/_api/traces/{trace_id}", get(trace))
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

async fn jobs(State(state): State<GatewayState>, Query(params): Params) -> ApiResult {
    let limit = int(&params, "limit")?.unwrap_or(50);
    if !(1..=MAX_JOBS_PAGE).contains(&limit) {
        return Err(bad("limit", format!("must be between 1 and {MAX_JOBS_PAGE}")));
    }
    let before = int(&params, "before")?;
    if let Some(s) = params.get("state")
        && !STATES.contains(&s.as_str())
    {
        return Err(bad("state", format!("{s:?} is not one of {}", STATES.join(", "))));
    }
    let mut outer: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "select coalesce(jsonb_agg(to_jsonb(j) order by j.id desc), '[]') from (select {} from forge_jobs where true",
        sql::JOB_COLUMNS
    ));
    for key in ["state", "kind", "queue"] {
        if let Some(v) = params.get(key) {
            outer.push(format!(" and {key} = ")).push_bind(v.clone());
        }
    }
    if let Some(id) = before {
        outer.push(" and id < ").push_bind(id);
    }
    outer.push(" order by id desc limit ").push_bind(limit + 1).push(") j");
    let rows: Value = outer.build_query_scalar().fetch_one(state.pool()).await?;
    let mut rows = match rows {
        Value::Array(rows) => rows,
        _ => Vec::new(),
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().and_then(|r| r["id"].as_i64()) } else { None };
    Ok(Json(json!({ "jobs": rows, "next": next })).into_response())
}

fn job_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().map_err(|_| bad("id", format!("{id:?} is not a job id")))
}

async fn job(State(state): State<GatewayState>, Path(id): Path<String>) -> ApiResult {
    let id = job_id(&id)?;
    let row: Option<Value> = sqlx::query_scalar(&format!(
        "select to_jsonb(j) from (select {} from forge_jobs where id = $1) j",
        sql::JOB_COLUMNS
    ))
    .bind(id)
    .fetch_optional(state.pool())
    .await?;
    let mut row = row.ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let trace_id = observability::trace_of_job(id, &row["metadata"]);
    row["trace_id"] = trace_id.into();
    Ok(Json(row).into_response())
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
        query = query.trace(trace.clone());
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
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("trace_id", "a trace id is 32 hex digits"));
    }
    let trace = observability::trace(state.pool(), &trace_id.to_ascii_lowercase()).await?;
    let trace = trace.ok_or_else(|| ApiError::NotFound(format!("no spans stored for trace {trace_id}")))?;
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
    let rows = observability::queue_depths(state.pool()).await?;
    let mut queues: std::collections::BTreeMap<String, serde_json::Map<String, Value>> = Default::default();
    for (queue, s, n) in rows {
        queues.entry(queue).or_default().insert(s, n.into());
    }
    let list: Vec<Value> = queues.into_iter().map(|(name, depth)| json!({ "name": name, "depth": depth })).collect();
    Ok(Json(json!({ "queues": list })).into_response())
}

async fn nodes(State(state): State<GatewayState>) -> ApiResult {
    let nodes: Vec<Value> =
        sqlx::query_scalar(&format!("select to_jsonb(n) from ({}) n", sql::NODES)).fetch_all(state.pool()).await?;
    Ok(Json(json!({ "nodes": nodes })).into_response())
}

async fn functions(State(state): State<GatewayState>) -> Response {
    Json(json!({ "functions": state.functions().list() })).into_response()
}
