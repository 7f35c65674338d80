//! The middleware every request passes: its id, its trace, its access-log line and its metrics.
//!
//! - `X-Request-Id`: taken from the request when it is 1 to 128 visible ASCII characters,
//!   otherwise generated (a UUID); echoed on the response and handed to functions.
//! - `traceparent` (W3C Trace Context): a valid header's trace id is kept and its span id
//!   becomes the parent; otherwise a new trace starts. The request runs inside a
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
use super::routes::GatewayState;
use crate::functions::new_trace_id;

/// What the middleware learnt about a request, for the handlers.
#[derive(Clone, Debug)]
pub(crate) struct RequestMeta {
    pub(crate) request_id: String,
    pub(crate) trace_id: String,
    pub(crate) client_ip: Option<IpAddr>,
}

/// A parsed W3C `traceparent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: String,
    pub(crate) parent_id: String,
}

/// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` if malformed or all-zero ids.
pub(crate) fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    valid.then(|| TraceParent { trace_id: trace_id.to_owned(), parent_id: parent_id.to_owned() })
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
    let parent = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(parse_traceparent);
    let trace_id = parent.as_ref().map_or_else(new_trace_id, |p| p.trace_id.clone());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client_ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    request.extensions_mut().insert(RequestMeta {
        request_id: request_id.clone(),
        trace_id: trace_id.clone(),
        client_ip,
    });
    let span = tracing::info_span!(
        "forge.http",
        node_id = state.telemetry().node_id(),
        span_kind = "server",
        method = %method,
        route = %route,
        request_id = %request_id,
        trace_id = %trace_id,
        parent_span_id = parent.as_ref().map(|p| p.parent_id.as_str()),
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
    metrics::record_request(&state, method.as_str(), &route, status, elapsed);
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
    fn traceparent_is_parsed_strictly() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(good),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
                parent_id: "00f067aa0ba902b7".to_owned()
            })
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

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
