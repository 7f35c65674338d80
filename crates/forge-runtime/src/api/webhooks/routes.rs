//! `/v1/webhooks`: a client's endpoints, their secrets, deliveries, recovery and resends.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EVENT_TYPES, manage, signature, sql};
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::idempotency::{self, Change, Post, to_json};
use crate::api::state::ApiState;
use crate::api::types::{
    DeliveryAttempt, NewWebhook, NoOptions, Page, Recover, Replayed, ResendEvent, RotateSecret, WebhookEndpoint,
    WebhookWithSecret,
};

/// The longest a previous secret keeps signing after a rotation.
const MAX_SECRET_GRACE: u64 = 7 * 86_400;
/// Endpoints a client may have.
const MAX_ENDPOINTS: i64 = 100;

/// Checks an endpoint's URL: `http` or `https` with a host, at most 2,048 characters, no NUL.
pub(crate) fn check_url(path: &str, url: &str, state: &ApiState) -> Result<(), ApiError> {
    body::check_text(path, url, 2048)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| ApiError::field(path, format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::field(path, "must be an http or https URL"));
    }
    let Some(host) = parsed.host_str() else {
        return Err(ApiError::field(path, "must name a host"));
    };
    // A literal address is checked now too (a name is checked at each delivery, resolved).
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>()
        && !state.webhooks().policy().allows(ip)
    {
        return Err(ApiError::field(
            path,
            format!("{ip} is an address webhooks may not reach ([api.webhooks] allow_private, allowed_ranges)"),
        ));
    }
    Ok(())
}

/// Creates an endpoint (of client `client`, for job `job` alone when given) with a new secret.
pub(crate) async fn create_endpoint(
    conn: &mut PgConnection,
    client: Uuid,
    job: Option<i64>,
    new: &NewWebhook,
) -> Result<WebhookWithSecret, ApiError> {
    let secret = signature::new_secret();
    let endpoint: WebhookEndpoint = sqlx::query_as(sql::INSERT_ENDPOINT)
        .bind(Uuid::new_v4())
        .bind(client)
        .bind(job)
        .bind(&new.url)
        .bind(&new.events)
        .bind(new.description.as_deref())
        .bind(&secret)
        .fetch_one(conn)
        .await?;
    Ok(WebhookWithSecret { endpoint, secret })
}

/// `POST /v1/webhooks`: 201 with the endpoint and its secret (shown this once).
#[utoipa::path(post, operation_id = "create_webhook", path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhook, responses((status = 201, description = "The endpoint and its secret, shown this once", body = WebhookWithSecret, links(("get" = (operation_id = "get_webhook", parameters(("id" = "$response.body#/id")))), ("delete" = (operation_id = "delete_webhook", parameters(("id" = "$response.body#/id")))), ("rotate_secret" = (operation_id = "rotate_webhook_secret", parameters(("id" = "$response.body#/id")))), ("enable" = (operation_id = "enable_webhook", parameters(("id" = "$response.body#/id")))), ("disable" = (operation_id = "disable_webhook", parameters(("id" = "$response.body#/id")))), ("recover" = (operation_id = "recover_webhook", parameters(("id" = "$response.body#/id")))), ("resend" = (operation_id = "resend_webhook_event", parameters(("id" = "$response.body#/id")))), ("deliveries" = (operation_id = "list_webhook_deliveries", parameters(("id" = "$response.body#/id"))))))))]
pub(crate) async fn create(State(state): State<ApiState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let prepared = async {
        let client = state.client(&headers, "webhooks").await?;
        let value = body::json_value(&headers, &body)?;
        let new: NewWebhook = body::parse(value.clone())?;
        check_url("url", &new.url, &state)?;
        for (i, event) in new.events.iter().enumerate() {
            if !EVENT_TYPES.contains(&event.as_str()) {
                return Err(ApiError::field(
                    format!("events[{i}]"),
                    format!("must be one of {}", EVENT_TYPES.join(", ")),
                ));
            }
        }
        if let Some(description) = &new.description {
            body::check_text("description", description, 500)?;
        }
        Ok::<_, ApiError>((client, value, new))
    };
    let (client, value, new) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let owner = client.to_string();
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            let count: i64 = sqlx::query_scalar(
                "select count(*) from forge_webhook_endpoints where client_id = $1 and job_id is null",
            )
            .bind(client)
            .fetch_one(&mut *conn)
            .await?;
            if count >= MAX_ENDPOINTS {
                return Err(ApiError::Conflict(format!("a client has at most {MAX_ENDPOINTS} endpoints")));
            }
            let created = create_endpoint(conn, client, None, &new).await?;
            Ok((StatusCode::CREATED, to_json(&created)?))
        })
    })
    .await
}

/// `GET /v1/webhooks`.
#[utoipa::path(get, operation_id = "list_webhooks", path = "/v1/webhooks", tag = "webhooks", responses((status = 200, description = "The client's endpoints", body = Page<WebhookEndpoint>)))]
pub(crate) async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let result = async {
        let client = state.client(&headers, "webhooks").await?;
        let endpoints: Vec<WebhookEndpoint> =
            sqlx::query_as(sql::LIST_ENDPOINTS).bind(client).fetch_all(state.pool()).await?;
        Ok::<_, ApiError>(Json(Page { data: endpoints, next_cursor: None }))
    };
    result.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(get, operation_id = "get_webhook", path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id")), responses((status = 200, description = "The endpoint", body = WebhookEndpoint)))]
pub(crate) async fn get(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = async {
        let client = state.client(&headers, "webhooks").await?;
        let id = endpoint_id(&id)?;
        let mut conn = state.pool().acquire().await?;
        Ok::<_, ApiError>(Json(find(&mut conn, id, client).await?))
    };
    result.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `DELETE /v1/webhooks/{id}`: 204.
#[utoipa::path(delete, operation_id = "delete_webhook", path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id")), responses((status = 204, description = "Deleted; nothing more is delivered to it")))]
pub(crate) async fn delete(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = async {
        let client = state.client(&headers, "webhooks").await?;
        let id = endpoint_id(&id)?;
        let deleted: Option<Uuid> =
            sqlx::query_scalar(sql::DELETE_ENDPOINT).bind(id).bind(client).fetch_optional(state.pool()).await?;
        deleted.ok_or_else(|| not_found(id))?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT)
    };
    result.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// What the POST routes under an endpoint do.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Action {
    RotateSecret,
    Enable,
    Disable,
    Recover,
    Resend,
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[utoipa::path(post, operation_id = "rotate_webhook_secret", path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id")), request_body(content = Option<RotateSecret>, description = "The grace period, or nothing (a day)"), responses((status = 200, description = "The endpoint and its new secret; deliveries carry both signatures during the grace period", body = WebhookWithSecret)))]
pub(crate) async fn rotate_secret(
    state: State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    act(state, uri, headers, id, body, Action::RotateSecret).await
}

/// `POST /v1/webhooks/{id}/enable`: deliveries resume (the failure streak forgotten).
#[utoipa::path(post, operation_id = "enable_webhook", path = "/v1/webhooks/{id}/enable", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id")), request_body(content = Option<NoOptions>, description = "Nothing, or `{}`"), responses((status = 200, description = "The endpoint, enabled", body = WebhookEndpoint)))]
pub(crate) async fn enable(
    state: State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    act(state, uri, headers, id, body, Action::Enable).await
}

/// `POST /v1/webhooks/{id}/disable`: no event is delivered until it is enabled.
#[utoipa::path(post, operation_id = "disable_webhook", path = "/v1/webhooks/{id}/disable", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id")), request_body(content = Option<NoOptions>, description = "Nothing, or `{}`"), responses((status = 200, description = "The endpoint, disabled", body = WebhookEndpoint)))]
pub(crate) async fn disable(
    state: State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    act(state, uri, headers, id, body, Action::Disable).await
}

/// `POST /v1/webhooks/{id}/recover`: enables the endpoint and replays the events since a time.
#[utoipa::path(post, operation_id = "recover_webhook", path = "/v1/webhooks/{id}/recover", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id")), request_body = Recover, responses((status = 202, description = "The endpoint is enabled and the events it wants since then are queued again", body = Replayed)))]
pub(crate) async fn recover(
    state: State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    act(state, uri, headers, id, body, Action::Recover).await
}

/// `POST /v1/webhooks/{id}/resend`: delivers one event (`{"event_id": …}`) again.
#[utoipa::path(post, operation_id = "resend_webhook_event", path = "/v1/webhooks/{id}/resend", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id")), request_body = ResendEvent, responses((status = 202, description = "The event is queued again", body = Replayed)))]
pub(crate) async fn resend(
    state: State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    act(state, uri, headers, id, body, Action::Resend).await
}

/// The checked body of an action.
enum Parsed {
    Rotate(u64),
    Plain,
    Recover(Recover),
    Resend(i64),
}

async fn act(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
    action: Action,
) -> Response {
    let prepared = async {
        let client = state.client(&headers, "webhooks").await?;
        let id = endpoint_id(&id)?;
        let value = body::json_value(&headers, &body)?;
        let parsed = match action {
            Action::RotateSecret => {
                let rotate: RotateSecret = body::parse(value.clone())?;
                let grace = rotate.grace_seconds.unwrap_or(86_400);
                if grace > MAX_SECRET_GRACE {
                    return Err(ApiError::field("grace_seconds", "must be at most 7 days (604800)"));
                }
                Parsed::Rotate(grace)
            }
            Action::Enable | Action::Disable => {
                body::parse::<NoOptions>(value.clone())?;
                Parsed::Plain
            }
            Action::Recover => Parsed::Recover(body::parse(value.clone())?),
            Action::Resend => Parsed::Resend(body::parse::<ResendEvent>(value.clone())?.event_id),
        };
        Ok::<_, ApiError>((client, id, value, parsed))
    };
    let (client, id, value, parsed) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let owner = client.to_string();
    let post = Post { owner: &owner, path: uri.path(), body: &value };
    let settings = state.webhooks().clone();
    idempotency::run(&state, &headers, post, move |conn| -> Change<'_> {
        Box::pin(async move {
            find(conn, id, client).await?;
            let answer = match parsed {
                Parsed::Rotate(grace) => {
                    let secret = signature::new_secret();
                    let endpoint: WebhookEndpoint = sqlx::query_as(sql::ROTATE_SECRET)
                        .bind(id)
                        .bind(&secret)
                        .bind(grace as f64)
                        .fetch_one(&mut *conn)
                        .await?;
                    to_json(&WebhookWithSecret { endpoint, secret })?
                }
                Parsed::Plain => {
                    let enable = matches!(action, Action::Enable);
                    to_json(&manage::set_enabled(conn, id, enable, "disabled by the client").await?)?
                }
                Parsed::Recover(recover) => {
                    to_json(&Replayed { queued: manage::recover(conn, &settings, id, recover.since).await? })?
                }
                Parsed::Resend(event) => {
                    to_json(&Replayed { queued: manage::resend(conn, &settings, id, event).await? })?
                }
            };
            let status =
                if matches!(action, Action::Recover | Action::Resend) { StatusCode::ACCEPTED } else { StatusCode::OK };
            Ok((status, answer))
        })
    })
    .await
}

/// The query of `/deliveries`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/webhooks/{id}/deliveries`: attempts, newest first, in keyset pages.
#[utoipa::path(get, operation_id = "list_webhook_deliveries", path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "The endpoint's id"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Items per page (default 50)")), responses((status = 200, description = "Delivery attempts, newest first", body = Page<DeliveryAttempt>)))]
pub(crate) async fn deliveries(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let client = state.client(&headers, "webhooks").await?;
        let id = endpoint_id(&id)?;
        let query: DeliveriesQuery = body::query(uri.query())?;
        let mut conn = state.pool().acquire().await?;
        find(&mut conn, id, client).await?;
        let page = delivery_page(&mut conn, id, query.cursor.as_deref(), query.limit.as_deref()).await?;
        Ok::<_, ApiError>(Json(page))
    };
    result.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// A page of an endpoint's delivery attempts (also the dashboard's).
pub(crate) async fn delivery_page(
    conn: &mut PgConnection,
    id: Uuid,
    cursor: Option<&str>,
    limit: Option<&str>,
) -> Result<Page<DeliveryAttempt>, ApiError> {
    let before = match cursor {
        None => i64::MAX,
        Some(c) => c
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest("query parameter `cursor` is not a cursor this API gave".to_owned()))?,
    };
    let limit = match limit {
        None => 50,
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::BadRequest("query parameter `limit` must be 1 to 100".to_owned()))?,
    };
    let mut rows: Vec<DeliveryAttempt> =
        sqlx::query_as(sql::DELIVERIES).bind(id).bind(before).bind(limit + 1).fetch_all(conn).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Page { data: rows, next_cursor })
}

async fn find(conn: &mut PgConnection, id: Uuid, client: Uuid) -> Result<WebhookEndpoint, ApiError> {
    let endpoint: Option<WebhookEndpoint> =
        sqlx::query_as(sql::GET_ENDPOINT).bind(id).bind(client).fetch_optional(conn).await?;
    endpoint.ok_or_else(|| not_found(id))
}

fn endpoint_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::NotFound(format!("no webhook endpoint {}", text.chars().take(40).collect::<String>())))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no webhook endpoint {id}"))
}
