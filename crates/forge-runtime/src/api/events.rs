//! `GET /v1/jobs/{id}/events`: a job's events after a cursor, as a JSON page or, with
//! `Accept: text/event-stream`, as Server-Sent Events.
//!
//! The stream sends each event as `id: <event id>`, `event: <type>`, `data: <the event as
//! JSON>`; a client that reconnects with `Last-Event-ID` (or `?cursor=`) gets what came after,
//! with no gap and no repeat: a job's events are appended by statements that hold its row
//! lock, so their ids increase in commit order. The stream ends once the job has finished and
//! every event is sent; a comment is sent every 15 seconds to keep proxies from closing it.
//! Each stream polls its job's events (every 200 ms, one indexed query); a shared, notified
//! feed is planned with real-time watches.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use forge_core::jobs::JobId;
use serde::Deserialize;
use uuid::Uuid;

use super::body;
use super::error::ApiError;
use super::jobs::{MAX_PAGE, find, job_id, not_found};
use super::sql;
use super::state::ApiState;
use super::types::{JobEvent, Page};

/// How often a stream looks for new events.
const POLL: Duration = Duration::from_millis(200);

/// The query of `/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/jobs/{id}/events`.
#[utoipa::path(get, operation_id = "list_job_events", path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = i64, Path, description = "The job's id"), ("cursor" = Option<i64>, Query, minimum = 0, description = "Events after this id"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Items per page (default 100)"), ("Last-Event-ID" = Option<String>, Header, description = "Resume a stream after this event id (as `cursor`)")), responses((status = 200, description = "A page of events, oldest first; with `Accept: text/event-stream`, a Server-Sent Events stream (`id` the event's id, `event` its type, `data` the event) that ends when the job has finished", content((Page<JobEvent> = "application/json"), (String = "text/event-stream")))))]
pub(super) async fn events(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let client = state.client(&headers, "jobs:read").await?;
        let id = job_id(&id)?;
        let query: EventsQuery = body::query(uri.query())?;
        let mut conn = state.pool().acquire().await?;
        find(&mut conn, id, client).await?.ok_or_else(|| not_found(id))?;
        drop(conn);
        let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
        let after = match query.cursor.as_deref().or(last_event_id) {
            None => 0,
            Some(c) => c.trim().parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
                ApiError::BadRequest("the cursor (or Last-Event-ID) is not an event id this API gave".to_owned())
            })?,
        };
        let limit = match &query.limit {
            None => MAX_PAGE,
            Some(n) => n
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| ApiError::BadRequest(format!("query parameter `limit` must be 1 to {MAX_PAGE}")))?,
        };
        if wants_stream(&headers) {
            return Ok::<_, ApiError>(stream(state.clone(), client, id, after).into_response());
        }
        let events = page(&state, id, after, limit).await?;
        let next_cursor = events.last().map(|e| e.id.to_string());
        Ok(Json(Page { data: events, next_cursor }).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream")))
}

async fn page(state: &ApiState, id: JobId, after: i64, limit: i64) -> Result<Vec<JobEvent>, ApiError> {
    Ok(sqlx::query_as(sql::EVENTS_AFTER).bind(id.0).bind(after).bind(limit).fetch_all(state.pool()).await?)
}

/// Where a stream is.
struct Cursor {
    state: ApiState,
    client: Uuid,
    id: JobId,
    after: i64,
    pending: std::collections::VecDeque<JobEvent>,
}

fn stream(state: ApiState, client: Uuid, id: JobId, after: i64) -> impl IntoResponse {
    let cursor = Cursor { state, client, id, after, pending: Default::default() };
    let events = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.pending.pop_front() {
                c.after = event.id;
                let sse = Event::default()
                    .id(event.id.to_string())
                    .event(event.event_type.clone())
                    .json_data(&event)
                    .unwrap_or_else(|_| Event::default().comment("an event could not be written"));
                return Some((Ok::<_, Infallible>(sse), c));
            }
            // Whether the job had finished is read before its events, so the events read after
            // include its last one.
            let finished: Result<Option<bool>, sqlx::Error> =
                sqlx::query_scalar(sql::JOB_FINISHED).bind(c.id.0).bind(c.client).fetch_optional(c.state.pool()).await;
            let finished = match finished {
                Ok(Some(finished)) => finished,
                // Deleted (retention), or the database failed: end; the client reconnects.
                Ok(None) | Err(_) => return None,
            };
            match page(&c.state, c.id, c.after, MAX_PAGE).await {
                Ok(events) if events.is_empty() && finished => return None,
                Ok(events) if events.is_empty() => tokio::time::sleep(POLL).await,
                Ok(events) => c.pending.extend(events),
                Err(_) => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
