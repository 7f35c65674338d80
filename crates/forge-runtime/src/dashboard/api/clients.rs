//! `/_api/clients` and `/_api/webhooks…`: the job API's clients with their keys (prefixes
//! only), every webhook endpoint with its delivery history, and the operator's controls
//! (enable, disable, recover what an endpoint missed, resend one event).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, body};
use super::extract::{ApiPath, ApiQuery};
use crate::api::types::{ClientKey, DeliveryAttempt, Page, WebhookEndpoint};
use crate::api::webhooks::{manage, routes::delivery_page};
use crate::dashboard::{DashboardState, sql};
use crate::gateway::ApiKey;

/// A client with its counts and keys.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(super) struct ClientRow {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
    /// Its jobs still in the table.
    jobs: i64,
    /// Its webhook endpoints.
    endpoints: i64,
    #[sqlx(skip)]
    keys: Vec<ClientKey>,
}

/// `GET /_api/clients`.
#[derive(Debug, Serialize)]
pub(super) struct Clients {
    clients: Vec<ClientRow>,
}

pub(super) async fn list(State(state): State<DashboardState>) -> ApiResult<Json<Clients>> {
    let mut clients: Vec<ClientRow> = sqlx::query_as(sql::API_CLIENTS).fetch_all(state.pool()).await?;
    let keys: Vec<ApiKey> = sqlx::query_as(sql::API_CLIENT_KEYS).fetch_all(state.pool()).await?;
    for key in keys {
        if let Some(client) = clients.iter_mut().find(|c| Some(c.id) == key.client_id) {
            client.keys.push(ClientKey::from(key));
        }
    }
    Ok(Json(Clients { clients }))
}

/// An endpoint as the webhooks page lists it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(super) struct EndpointRow {
    id: Uuid,
    client_id: Uuid,
    /// The client's name.
    client: String,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
    failing_since: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    /// Successful attempts in the last day.
    ok_24h: i64,
    /// Failed attempts in the last day.
    failed_24h: i64,
}

/// `GET /_api/webhooks`.
#[derive(Debug, Serialize)]
pub(super) struct Endpoints {
    endpoints: Vec<EndpointRow>,
}

pub(super) async fn endpoints(State(state): State<DashboardState>) -> ApiResult<Json<Endpoints>> {
    Ok(Json(Endpoints { endpoints: sqlx::query_as(sql::WEBHOOK_ENDPOINTS).fetch_all(state.pool()).await? }))
}

/// `{id}` of an endpoint's routes.
#[derive(Debug, Deserialize)]
pub(super) struct EndpointPath {
    id: Uuid,
}

/// The query of an endpoint's page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /_api/webhooks/{id}`: the endpoint and a page of its delivery attempts.
#[derive(Debug, Serialize)]
pub(super) struct EndpointDetail {
    endpoint: WebhookEndpoint,
    deliveries: Page<DeliveryAttempt>,
}

pub(super) async fn endpoint(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<EndpointPath>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<EndpointDetail>> {
    let mut conn = state.pool().acquire().await?;
    let endpoint = find(&mut conn, p.id).await?;
    let deliveries = delivery_page(&mut conn, p.id, q.cursor.as_deref(), q.limit.as_deref()).await?;
    Ok(Json(EndpointDetail { endpoint, deliveries }))
}

async fn find(conn: &mut sqlx::PgConnection, id: Uuid) -> ApiResult<WebhookEndpoint> {
    let endpoint: Option<WebhookEndpoint> = sqlx::query_as(crate::api::webhooks::sql::GET_ENDPOINT)
        .bind(id)
        .bind(None::<Uuid>)
        .fetch_optional(conn)
        .await?;
    endpoint.ok_or_else(|| ApiError::NotFound(format!("no webhook endpoint {id}")))
}

pub(super) async fn enable(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<EndpointPath>,
) -> ApiResult<Json<WebhookEndpoint>> {
    set_enabled(&state, p.id, true).await
}

pub(super) async fn disable(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<EndpointPath>,
) -> ApiResult<Json<WebhookEndpoint>> {
    set_enabled(&state, p.id, false).await
}

async fn set_enabled(state: &DashboardState, id: Uuid, enable: bool) -> ApiResult<Json<WebhookEndpoint>> {
    let mut conn = state.pool().acquire().await?;
    find(&mut conn, id).await?;
    Ok(Json(manage::set_enabled(&mut conn, id, enable, "disabled by an operator").await?))
}

/// `POST /_api/webhooks/{id}/recover` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecoverBody {
    since: DateTime<Utc>,
}

/// `POST /_api/webhooks/{id}/resend` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResendBody {
    event_id: i64,
}

/// What a recovery or resend queued.
#[derive(Debug, Serialize)]
pub(super) struct Queued {
    queued: u64,
}

pub(super) async fn recover(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<EndpointPath>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<Queued>> {
    let RecoverBody { since } = body(&bytes)?;
    let mut tx = state.pool().begin().await?;
    find(&mut tx, p.id).await?;
    let queued = manage::recover(&mut tx, state.webhooks(), p.id, since).await?;
    tx.commit().await?;
    Ok(Json(Queued { queued }))
}

pub(super) async fn resend(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<EndpointPath>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<Queued>> {
    let ResendBody { event_id } = body(&bytes)?;
    let mut conn = state.pool().acquire().await?;
    find(&mut conn, p.id).await?;
    Ok(Json(Queued { queued: manage::resend(&mut conn, state.webhooks(), p.id, event_id).await? }))
}

/// An endpoint Forge disabled by itself, for the overview's banner.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(super) struct DisabledEndpoint {
    id: Uuid,
    client: String,
    url: String,
    disabled_reason: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
}

/// The endpoints Forge disabled by itself (a 410, failing too long), newest first.
pub(super) async fn disabled(state: &DashboardState) -> ApiResult<Vec<DisabledEndpoint>> {
    Ok(sqlx::query_as(sql::WEBHOOKS_DISABLED).fetch_all(state.pool()).await?)
}
