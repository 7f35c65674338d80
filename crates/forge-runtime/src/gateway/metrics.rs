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

use crate::functions::ForgeError;
use crate::observability::{DURATION_BUCKETS, Metrics};

/// The content type of the text format.
pub(super) const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counts an answered request.
pub(crate) fn record_request(m: &Metrics, method: &str, route: &str, status: u16, elapsed: Duration) {
    let code = axum::http::StatusCode::from_u16(status).ok();
    let status = code.as_ref().map_or("other", axum::http::StatusCode::as_str);
    m.count_and_observe(
        (
            "forge_http_requests_total",
            "HTTP requests answered, by method, route and status.",
            &[("method", method), ("route", route), ("status", status)],
        ),
        ("forge_http_request_duration_seconds", "Time to answer an HTTP request, by route.", &[("route", route)]),
        DURATION_BUCKETS,
        elapsed.as_secs_f64(),
    );
}

/// Counts a call of `function` (`None`: a name not registered).
pub(crate) fn record_call(
    m: &Metrics,
    function: Option<&str>,
    result: &Result<serde_json::Value, ForgeError>,
    elapsed: Duration,
) {
    // Only registered names become labels: callers cannot grow the series without bound.
    let function = function.unwrap_or("unknown");
    let code = result.as_ref().err().map(ForgeError::status);
    let status = code.as_ref().map_or("200", axum::http::StatusCode::as_str);
    m.count_and_observe(
        (
            "forge_function_calls_total",
            "Function calls, by function and outcome (as an HTTP status).",
            &[("function", function), ("status", status)],
        ),
        ("forge_function_call_duration_seconds", "Time a function call took, by function.", &[("function", function)]),
        DURATION_BUCKETS,
        elapsed.as_secs_f64(),
    );
}
