//! `/v1/jobs`: submit, read, list, cancel and retry a client's jobs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use forge_core::jobs::{JobId, Priority};
use serde::Deserialize;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::body;
use super::error::ApiError;
use super::idempotency::{self, Change, Post, to_json};
use super::sql;
use super::state::ApiState;
use super::submit;
use super::types::{ApiJob, NewWebhook, NoOptions, Page, SubmitJob, SubmittedJob};
use crate::jobs::{CancelOutcome, DispatchOptions, NewJob, insert_jobs};

/// The longest `delay` (and the farthest `run_at`) a submit may ask for: about ten years.
const MAX_DELAY_SECS: u64 = 10 * 366 * 86_400;
/// Listing pages hold at most this many jobs.
pub(super) const MAX_PAGE: i64 = 100;

/// `POST /v1/jobs`.
#[utoipa::path(post, operation_id = "submit_job", path = "/v1/jobs", tag = "jobs", request_body = SubmitJob, responses((status = 201, description = "The job, accepted (and its webhook's secret, when it asked for one)", body = SubmittedJob, links(("get" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))), ("cancel" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")))), ("retry" = (operation_id = "retry_job", parameters(("id" = "$response.body#/id")))), ("report" = (operation_id = "get_job_report", parameters(("id" = "$response.body#/id")))), ("events" = (operation_id = "list_job_events", parameters(("id" = "$response.body#/id"))))))))]
pub(super) async fn submit(State(state): State<ApiState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let client = match state.client(&headers, "jobs:write").await {
        Ok(client) => client,
        Err(e) => return e.into_response(),
    };
    let value = match body::json_value(&headers, &body) {
        Ok(value) => value,
        Err(e) => return e.into_response(),
    };
    let (job, webhook) = match body::parse::<SubmitJob>(value.clone()).and_then(|mut submit| {
        let webhook = submit.webhook.take();
        if let Some(url) = &webhook {
            crate::api::webhooks::routes::check_url("webhook", url, &state)?;
        }
        Ok((new_job(&state, client, submit)?, webhook))
    }) {
        Ok(parsed) => parsed,
        Err(e) => return e.into_response(),
    };
    let owner = client.to_string();
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    let (queue, available) = (job.queue.clone(), job.run_at.is_none_or(|at| at <= chrono::Utc::now()));
    let notify = state.insert_notifies();
    // One statement when it can do the whole submission (see `submit`).
    if webhook.is_none()
        && !notify
        && submit::fits(&job)
        && let submit::Outcome::Answered(answer) = submit::submit(&state, &headers, &post, &job).await
    {
        let created = matches!(answer, Ok((StatusCode::CREATED, _, false)));
        if created && available {
            state.wake(&queue);
        }
        return idempotency::respond(answer);
    }
    let response = idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            let ids = insert_jobs(conn, std::slice::from_ref(&job), notify).await?;
            let id = ids.first().copied().ok_or_else(|| ApiError::Internal("the insert returned no id".to_owned()))?;
            // A kind unique by its arguments may answer with a live duplicate: only the
            // client's own is theirs to see.
            let job = find(conn, id, client).await?.ok_or_else(|| {
                ApiError::Conflict("a job of this kind with these arguments is already live".to_owned())
            })?;
            let webhook = match webhook {
                Some(url) => {
                    let new = NewWebhook { url, events: Vec::new(), description: None };
                    Some(crate::api::webhooks::routes::create_endpoint(conn, client, Some(id.0), &new).await?)
                }
                None => None,
            };
            Ok((StatusCode::CREATED, to_json(&SubmittedJob { job, webhook })?))
        })
    })
    .await;
    // After the commit: a notice sent inside the transaction would hold Postgres's global
    // notify lock through the commit, queueing every concurrent submission behind it.
    if response.status() == StatusCode::CREATED && available {
        state.wake(&queue);
    }
    response
}

/// The row a submit inserts: an exposed kind, arguments that fit its type, options in range.
fn new_job(state: &ApiState, client: Uuid, submit: SubmitJob) -> Result<NewJob, ApiError> {
    body::check_text("kind", &submit.kind, 255)?;
    if !state.is_exposed(&submit.kind) {
        return Err(ApiError::field("kind", format!("no job kind `{}` is open to clients", submit.kind)));
    }
    let mut options = DispatchOptions::new();
    if let Some(queue) = submit.queue {
        body::check_text("queue", &queue, 64)?;
        options = options.queue(queue);
    }
    if let Some(priority) = submit.priority {
        let priority = priority
            .parse::<Priority>()
            .ok()
            .ok_or_else(|| ApiError::field("priority", "must be one of critical, high, normal, low, background"))?;
        options = options.priority(priority);
    }
    if let Some(at) = submit.run_at {
        if at > chrono::Utc::now() + chrono::Duration::seconds(MAX_DELAY_SECS as i64) {
            return Err(ApiError::field("run_at", "must be within ten years"));
        }
        options = options.run_at(at);
    } else if let Some(delay) = submit.delay {
        if delay > MAX_DELAY_SECS {
            return Err(ApiError::field("delay", "must be at most ten years, in seconds"));
        }
        options = options.delay(std::time::Duration::from_secs(delay));
    }
    if let Some(n) = submit.max_attempts {
        if !(1..=100).contains(&n) {
            return Err(ApiError::field("max_attempts", "must be 1 to 100"));
        }
        options = options.max_attempts(n);
    }
    if submit.tags.len() > 16 {
        return Err(ApiError::field("tags", "at most 16 tags"));
    }
    for (i, tag) in submit.tags.iter().enumerate() {
        body::check_text(&format!("tags[{i}]"), tag, 64)?;
    }
    options = options.tags(submit.tags);
    let job = state.registry().new_job_with(&submit.kind, submit.args, &options)?;
    Ok(job.with_client(client))
}

/// `GET /v1/jobs/{id}`.
#[utoipa::path(get, operation_id = "get_job", path = "/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path, description = "The job's id")), responses((status = 200, description = "The job", body = ApiJob)))]
pub(super) async fn get(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = async {
        let client = state.client(&headers, "jobs:read").await?;
        let id = job_id(&id)?;
        let mut conn = state.pool().acquire().await?;
        find(&mut conn, id, client).await?.ok_or_else(|| not_found(id))
    };
    match result.await {
        Ok(job) => Json(job).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The query of `GET /v1/jobs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    tag: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// The states a listing may filter on.
const STATES: [&str; 7] = ["scheduled", "available", "running", "retryable", "completed", "discarded", "cancelled"];

/// `GET /v1/jobs`: the client's jobs, newest first; `next_cursor` pages on.
#[utoipa::path(get, operation_id = "list_jobs", path = "/v1/jobs", tag = "jobs", params(("state" = Option<String>, Query, pattern = "^(scheduled|available|running|retryable|completed|discarded|cancelled)$", description = "Only jobs in this state"), ("kind" = Option<String>, Query, description = "Only jobs of this kind"), ("tag" = Option<String>, Query, description = "Only jobs with this tag"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Items per page (default 50)")), responses((status = 200, description = "The client's jobs, newest first", body = Page<ApiJob>)))]
pub(super) async fn list(State(state): State<ApiState>, uri: Uri, headers: HeaderMap) -> Response {
    let result = async {
        let client = state.client(&headers, "jobs:read").await?;
        let query: ListQuery = body::query(uri.query())?;
        let limit = match &query.limit {
            None => 50,
            Some(n) => n
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| ApiError::BadRequest(format!("query parameter `limit` must be 1 to {MAX_PAGE}")))?,
        };
        let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new(sql::LIST_JOBS);
        q.push_bind(client);
        if let Some(s) = &query.state {
            if !STATES.contains(&s.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter `state` must be one of {}",
                    STATES.join(", ")
                )));
            }
            q.push(" and state = ").push_bind(s.clone());
        }
        if let Some(kind) = &query.kind {
            q.push(" and kind = ").push_bind(kind.replace('\0', ""));
        }
        if let Some(tag) = &query.tag {
            q.push(" and tags @> array[").push_bind(tag.replace('\0', "")).push("]::text[]");
        }
        if let Some(cursor) = &query.cursor {
            let before = cursor.parse::<i64>().map_err(|_| {
                ApiError::BadRequest("query parameter `cursor` is not a cursor this API gave".to_owned())
            })?;
            q.push(" and id < ").push_bind(before);
        }
        q.push(" order by id desc limit ").push_bind(limit + 1);
        let mut jobs: Vec<ApiJob> = q.build_query_as().fetch_all(state.pool()).await?;
        let next_cursor = if jobs.len() as i64 > limit {
            jobs.truncate(usize::try_from(limit).unwrap_or(0));
            jobs.last().map(|j| j.id.to_string())
        } else {
            None
        };
        Ok(Page { data: jobs, next_cursor })
    };
    match result.await {
        Ok(page) => Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/jobs/{id}/cancel`: 200 with the job (cancelled, or running with
/// `cancel_requested`); 409 when it has finished.
#[utoipa::path(post, operation_id = "cancel_job", path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path, description = "The job's id")), request_body(content = Option<NoOptions>, description = "Nothing, or `{}`"), responses((status = 200, description = "The job: cancelled, or running with `cancel_requested` (it ends `cancelled` soon)", body = ApiJob)))]
pub(super) async fn cancel(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    control(state, uri, headers, id, body, Control::Cancel).await
}

/// `POST /v1/jobs/{id}/retry`: 200 with the job, available again; 409 unless it failed
/// (`discarded`) or was cancelled.
#[utoipa::path(post, operation_id = "retry_job", path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = i64, Path, description = "The job's id")), request_body(content = Option<NoOptions>, description = "Nothing, or `{}`"), responses((status = 200, description = "The job, available again", body = ApiJob)))]
pub(super) async fn retry(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    control(state, uri, headers, id, body, Control::Retry).await
}

#[derive(Clone, Copy)]
enum Control {
    Cancel,
    Retry,
}

async fn control(state: ApiState, uri: Uri, headers: HeaderMap, id: String, body: Bytes, what: Control) -> Response {
    let scope = "jobs:write";
    let prepared = async {
        let client = state.client(&headers, scope).await?;
        let id = job_id(&id)?;
        let value = body::json_value(&headers, &body)?;
        body::parse::<NoOptions>(value.clone())?;
        Ok::<_, ApiError>((client, id, value))
    };
    let (client, id, value) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let owner = client.to_string();
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            let job = find_locked(conn, id, client).await?.ok_or_else(|| not_found(id))?;
            match what {
                Control::Cancel => {
                    if crate::jobs::cancel_in(conn, id).await? == CancelOutcome::AlreadyFinished {
                        return Err(ApiError::Conflict(format!(
                            "job {id} has finished ({}): nothing to cancel",
                            job.state
                        )));
                    }
                }
                Control::Retry => {
                    if !crate::jobs::retry_in(conn, id).await? {
                        return Err(ApiError::Conflict(format!(
                            "job {id} is {}: only a failed (discarded) or cancelled job can be retried",
                            job.state
                        )));
                    }
                }
            }
            let job = find(conn, id, client).await?.ok_or_else(|| not_found(id))?;
            Ok((StatusCode::OK, to_json(&job)?))
        })
    })
    .await
}

/// A client's job.
pub(super) async fn find(conn: &mut PgConnection, id: JobId, client: Uuid) -> Result<Option<ApiJob>, ApiError> {
    Ok(sqlx::query_as(sql::GET_JOB).bind(id.0).bind(client).fetch_optional(conn).await?)
}

/// A client's job, its row locked for a change.
async fn find_locked(conn: &mut PgConnection, id: JobId, client: Uuid) -> Result<Option<ApiJob>, ApiError> {
    let statement = format!("{} for update", sql::GET_JOB);
    Ok(sqlx::query_as(&statement).bind(id.0).bind(client).fetch_optional(conn).await?)
}

/// A job id from a path.
pub(super) fn job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(JobId)
        .ok_or_else(|| ApiError::NotFound(format!("no job {}", text.chars().take(40).collect::<String>())))
}

pub(super) fn not_found(id: JobId) -> ApiError {
    ApiError::NotFound(format!("no job {id}"))
}
