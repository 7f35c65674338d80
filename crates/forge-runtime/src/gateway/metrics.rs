//! `GET /metrics`: the node's metrics in the Prometheus text format.
//!
//! | metric | type | labels |
//! |--------|------|--------|
//! | `forge_http_requests_total` | counter | `method`, `route` (the route template), `status` |
//! | `forge_http_request_duration_seconds` | histogram | `route` |
//! | `forge_function_calls_total` | counter | `function` (`unknown` for names not registered), `status` |
//! | `forge_function_call_duration_seconds` | histogram | `function` |
//! | `forge_queue_depth` | gauge | `queue`, `state` (unfinished jobs) |
//! | `forge_worker_busy_slots`, `forge_worker_slots` | gauge | — (worker nodes) |
//! | `forge_leader` | gauge | `role` (1 while this node leads; scheduler nodes) |
//! | `forge_db_pool_connections` | gauge | `state` (`idle`, `in_use`) |
//! | `forge_db_pool_max_connections` | gauge | — |
//!
//! and the job, telemetry and system metrics listed in the observability docs.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::routes::GatewayState;
use crate::functions::ForgeError;
use crate::observability::{DURATION_BUCKETS, sample_queue_depth};

/// The content type of the text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) fn record_request(state: &GatewayState, method: &str, route: &str, status: u16, elapsed: Duration) {
    let m = state.metrics();
    let status = status.to_string();
    m.count(
        "forge_http_requests_total",
        "HTTP requests answered, by method, route and status.",
        &[("method", method), ("route", route), ("status", &status)],
        1,
    );
    m.observe(
        "forge_http_request_duration_seconds",
        "Time to answer an HTTP request, by route.",
        DURATION_BUCKETS,
        &[("route", route)],
        elapsed.as_secs_f64(),
    );
}

pub(crate) fn record_call(
    state: &GatewayState,
    function: &str,
    result: &Result<serde_json::Value, ForgeError>,
    elapsed: Duration,
) {
    let m = state.metrics();
    // Only registered names become labels: callers cannot grow the series without bound.
    let function = if state.functions().get(function).is_some() { function } else { "unknown" };
    let status = match result {
        Ok(_) => "200".to_owned(),
        Err(e) => e.status().as_u16().to_string(),
    };
    m.count(
        "forge_function_calls_total",
        "Function calls, by function and outcome (as an HTTP status).",
        &[("function", function), ("status", &status)],
        1,
    );
    m.observe(
        "forge_function_call_duration_seconds",
        "Time a function call took, by function.",
        DURATION_BUCKETS,
        &[("function", function)],
        elapsed.as_secs_f64(),
    );
}

/// `GET /metrics`: the gauges are read afresh, then everything is rendered.
pub(crate) async fn serve(State(state): State<GatewayState>) -> Response {
    let telemetry = state.telemetry();
    telemetry.sample_gauges(state.pool());
    if let Err(e) = sample_queue_depth(telemetry.metrics(), state.pool()).await {
        tracing::warn!(error = %e, "/metrics could not count jobs");
    }
    let mut response = (StatusCode::OK, telemetry.metrics().render()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    response
}
