//! `GET /metrics`: the node's metrics in the Prometheus text format.
//!
//! | metric | type | labels |
//! |--------|------|--------|
//! | `forge_http_requests_total` | counter | `method`, `route` (the route template), `status` |
//! | `forge_http_request_duration_seconds` | histogram | `route` |
//! | `forge_function_calls_total` | counter | `function` (`unknown` for names not registered), `status` |
//! | `forge_function_call_duration_seconds` | histogram | `function` |
//! | `forge_jobs` | gauge | `queue`, `state` |
//! | `forge_worker_busy_slots`, `forge_worker_slots` | gauge | — (worker nodes) |
//! | `forge_leader` | gauge | — (1 while this node leads; scheduler nodes) |
//! | `forge_db_pool_connections` | gauge | `state` (`idle`, `in_use`) |
//! | `forge_db_pool_max_connections` | gauge | — |

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::routes::GatewayState;
use super::sql;
use crate::functions::ForgeError;
use crate::observability::{DURATION_BUCKETS, render_gauge};

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

/// `GET /metrics`.
pub(crate) async fn serve(State(state): State<GatewayState>) -> Response {
    let mut out = state.metrics().render();
    match sqlx::query_as::<_, (String, String, i64)>(sql::JOB_COUNTS).fetch_all(state.pool()).await {
        Ok(rows) => {
            let values: Vec<_> = rows
                .into_iter()
                .map(|(queue, state, n)| (vec![("queue", queue), ("state", state)], n as f64))
                .collect();
            render_gauge(&mut out, "forge_jobs", "Jobs in the table, by queue and state.", &values);
        }
        Err(e) => tracing::warn!(error = %e, "/metrics could not count jobs"),
    }
    if let Some((busy, total)) = state.probes().worker_slots() {
        render_gauge(&mut out, "forge_worker_busy_slots", "Jobs running on this node.", &[(vec![], busy as f64)]);
        render_gauge(&mut out, "forge_worker_slots", "Jobs this node may run at once.", &[(vec![], total as f64)]);
    }
    if let Some(leader) = state.probes().is_leader() {
        let v = if leader { 1.0 } else { 0.0 };
        render_gauge(&mut out, "forge_leader", "1 while this node leads the cluster.", &[(vec![], v)]);
    }
    let pool = state.pool();
    let (size, idle) = (pool.size() as f64, pool.num_idle() as f64);
    render_gauge(
        &mut out,
        "forge_db_pool_connections",
        "Open connections in the node's pool, by state.",
        &[(vec![("state", "idle".to_owned())], idle), (vec![("state", "in_use".to_owned())], (size - idle).max(0.0))],
    );
    let max = f64::from(pool.options().get_max_connections());
    render_gauge(&mut out, "forge_db_pool_max_connections", "The pool's size limit.", &[(vec![], max)]);
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    response
}
