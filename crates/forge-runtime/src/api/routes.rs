//! The `/v1` router.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Router, middleware};

use super::state::ApiState;
use super::webhooks::routes as webhooks;
use super::{clients, events, jobs, limits, openapi, reports};

/// The job API's routes (see the module doc), to merge into the gateway's router.
pub fn router(state: ApiState) -> Router {
    let document: Arc<str> =
        openapi::document(state.exposed_kinds()).to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")).into();
    Router::new()
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/jobs/{id}/report", get(reports::report))
        .route("/v1/jobs/{id}/events", get(events::events))
        .route("/v1/clients", post(clients::create).get(clients::list))
        .route("/v1/clients/{id}", get(clients::get))
        .route("/v1/clients/{id}/keys", post(clients::create_key).get(clients::keys))
        .route("/v1/clients/{id}/keys/{key_id}/rotate", post(clients::rotate_key))
        .route("/v1/clients/{id}/keys/{key_id}/revoke", post(clients::revoke_key))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::get).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/webhooks/{id}/enable", post(webhooks::enable))
        .route("/v1/webhooks/{id}/disable", post(webhooks::disable))
        .route("/v1/webhooks/{id}/recover", post(webhooks::recover))
        .route("/v1/webhooks/{id}/resend", post(webhooks::resend))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits::per_client))
        .route("/v1/openapi.json", get(move || served(document.clone())))
        .with_state(state)
}

/// `GET /v1/openapi.json`: the OpenAPI 3.1 document of `/v1` (no credentials needed).
async fn served(document: Arc<str>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.to_string())
}
