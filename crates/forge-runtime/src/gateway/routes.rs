//! The router, its layers and its probes (`/health`, `/ready`, `/metrics`).

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use super::problem::Problem;
use super::state::GatewayState;
use super::{metrics, request, rpc};
use crate::db::sql;
use crate::observability::sample_queue_depth;

/// How long `/ready` waits for the database before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The gateway's router: `/health`, `/ready`, `/rpc`, `/rpc/{function}` and `/metrics`, with
/// request ids, trace context, access logs, the body limit (413), the request timeout (408)
/// and CORS as configured.
pub fn router(state: GatewayState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes (the dashboard's) served beside the gateway's, under the same
/// layers.
pub fn router_with(state: GatewayState, extra: Router) -> Router {
    let settings = state.http_settings().clone();
    let gateway: Router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(serve_metrics))
        .route("/rpc", post(rpc::call_jsonrpc))
        .route("/rpc/{function}", post(rpc::call_rest))
        .with_state(state.clone());
    let mut router = gateway
        .merge(extra)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.timeout));
    if let Some(cors) = cors_layer(&settings.cors_origins) {
        router = router.layer(cors);
    }
    router.layer(middleware::from_fn_with_state(state, request::observe))
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-api-key"),
                header::HeaderName::from_static("x-request-id"),
                header::HeaderName::from_static("traceparent"),
            ])
            .expose_headers([header::HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

async fn not_found(uri: axum::http::Uri) -> Response {
    Problem::new(StatusCode::NOT_FOUND, format!("no route for {}", uri.path()))
        .with_instance(uri.path().to_owned())
        .into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /metrics`: the gauges are read afresh, then everything is rendered.
async fn serve_metrics(State(state): State<GatewayState>) -> Response {
    let telemetry = state.telemetry();
    telemetry.sample_gauges(state.pool());
    if let Err(e) = sample_queue_depth(telemetry.metrics(), state.pool()).await {
        tracing::warn!(error = %e, "/metrics could not count jobs");
    }
    let mut response = (StatusCode::OK, telemetry.metrics().render()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(metrics::TEXT_FORMAT));
    response
}

async fn ready(State(state): State<GatewayState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, not_ready_reason(&state)).await {
        Ok(None) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Ok(Some(reason)) => not_ready(reason),
        Err(_) => not_ready(format!("database unreachable: no answer within {}s", READY_TIMEOUT.as_secs())),
    }
}

async fn not_ready_reason(state: &GatewayState) -> Option<String> {
    let pool = state.pool();
    if let Err(e) = sqlx::query(sql::PING).execute(pool).await {
        return Some(format!("database unreachable: {e}"));
    }
    match state.migrator().pending_reason(pool).await {
        Ok(reason) => reason,
        Err(e) => Some(format!("cannot read the migration ledger: {e}")),
    }
}

fn not_ready(reason: String) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, reason)
        .with_type("urn:forge:problem:not-ready")
        .with_instance("/ready")
        .into_response()
}
