//! What a client (`/v1/webhooks`) and an operator (the dashboard) may both do to an endpoint:
//! enable or disable it, recover what it missed, resend one event. Each runs on the caller's
//! connection (inside its transaction), on an endpoint the caller has already found.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::dispatch::Wanted;
use super::settings::WebhookSettings;
use super::sql;
use crate::api::error::ApiError;
use crate::api::types::WebhookEndpoint;
use crate::jobs::insert_jobs;

/// The most events a recovery replays.
pub(crate) const MAX_RECOVER: i64 = 10_000;

/// Enables endpoint `id` (its failure streak forgotten) or disables it, saying `reason`.
pub(crate) async fn set_enabled(
    conn: &mut PgConnection,
    id: Uuid,
    enable: bool,
    reason: &str,
) -> Result<WebhookEndpoint, ApiError> {
    Ok(sqlx::query_as(sql::SET_ENABLED).bind(id).bind(enable).bind(reason).fetch_one(conn).await?)
}

/// Enables endpoint `id` and queues again every event it wants since `since` (at most
/// [`MAX_RECOVER`]): the deliveries queued.
pub(crate) async fn recover(
    conn: &mut PgConnection,
    settings: &WebhookSettings,
    id: Uuid,
    since: DateTime<Utc>,
) -> Result<u64, ApiError> {
    sqlx::query(sql::SET_ENABLED).bind(id).bind(true).bind("").execute(&mut *conn).await?;
    let wanted: Vec<Wanted> =
        sqlx::query_as(sql::EVENTS_SINCE).bind(id).bind(since).bind(MAX_RECOVER).fetch_all(&mut *conn).await?;
    queue(conn, settings, &wanted).await
}

/// Queues event `event` to endpoint `id` again; 404 when the endpoint does not want it.
pub(crate) async fn resend(
    conn: &mut PgConnection,
    settings: &WebhookSettings,
    id: Uuid,
    event: i64,
) -> Result<u64, ApiError> {
    let wanted: Vec<Wanted> =
        sqlx::query_as(sql::EVENT_FOR_ENDPOINT).bind(id).bind(event).fetch_all(&mut *conn).await?;
    if wanted.is_empty() {
        return Err(ApiError::NotFound(format!("no event {event} for this endpoint")));
    }
    queue(conn, settings, &wanted).await
}

/// Queues a delivery of each wanted event.
async fn queue(conn: &mut PgConnection, settings: &WebhookSettings, wanted: &[Wanted]) -> Result<u64, ApiError> {
    let jobs: Vec<_> = wanted.iter().filter_map(|w| w.delivery(settings)).collect();
    if !jobs.is_empty() {
        insert_jobs(conn, &jobs, true).await?;
    }
    Ok(jobs.len() as u64)
}
