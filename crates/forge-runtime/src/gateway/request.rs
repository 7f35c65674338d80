//! The middleware every request passes: its id, its trace, its access-log line and its metrics.
//!
//! - `X-Request-Id`: taken from the request when it is 1 to 128 visible ASCII characters,
//!   otherwise generated (a UUID); echoed on the response and handed to functions.
//! - `traceparent` (W3C Trace Context, parsed by [`TraceParent::parse`]): a valid header's trace
//!   id is kept and its span id becomes the parent; otherwise a new trace starts. The request runs inside a
//!   `forge.http` span carrying both, and functions see the trace id.
//! - One `forge::access` event per request: method, route, status, duration, request id, trace
//!   id.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::metrics;
use super::state::GatewayState;
use crate::observability::{TraceId, TraceParent};

/// What the middleware learnt about a request, for the handlers.
#[derive(Clone, Debug)]
pub(crate) struct RequestMeta {
    pub(crate) request_id: String,
    pub(crate) trace_id: TraceId,
    pub(crate) client_ip: Option<IpAddr>,
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The middleware.
pub(crate) async fn observe(State(state): State<GatewayState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let parent = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceParent::parse);
    let trace_id = parent.map_or_else(TraceId::new, |p| p.trace_id);
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client_ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    request.extensions_mut().insert(RequestMeta { request_id: request_id.clone(), trace_id, client_ip });
    let span = tracing::info_span!(
        "forge.http",
        node_id = state.telemetry().node_id(),
        span_kind = "server",
        method = %method,
        route = %route,
        request_id = %request_id,
        trace_id = %trace_id,
        parent_span_id = parent.map(|p| tracing::field::display(p.parent_id)),
        status = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    if response.status().is_server_error() {
        span.record("status", "error");
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics::record_request(state.metrics(), method.as_str(), &route, status, elapsed);
    // Inside the request's span: the line carries its node and trace.
    span.in_scope(|| {
        tracing::info!(
            target: "forge::access",
            method = %method,
            path = %path,
            route = %route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = %request_id,
            trace_id = %trace_id,
            client_ip = client_ip.map(|ip| ip.to_string()),
            "request"
        );
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(request_id(&headers), "has space");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
