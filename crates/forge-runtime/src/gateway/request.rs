//! The middleware every request passes: its id, its trace, its access-log line and its metrics.
//!
//! - `X-Request-Id`: taken from the request when it is 1 to 128 visible ASCII characters,
//!   otherwise generated (a UUID); echoed on the response and handed to functions.
//! - `traceparent` (W3C Trace Context, parsed by [`TraceParent::parse`]): a valid header's trace
//!   id is kept and its span id becomes the parent; otherwise a new trace starts. The request runs inside a
//!   `forge.http` span carrying both, and functions see the trace id. A set sampled flag stores
//!   the span whatever `[observability] request_spans` says (the caller records the trace).
//! - One `forge::access` event per request: method, path, route, status, duration, request id,
//!   trace id, client address; at `warn` for a 5xx answer, `debug` for a health probe, `info`
//!   otherwise. The `forge.http` span carries the same facts (`path`, `status_code`,
//!   `client_ip`), so storing the span is storing the line: telemetry stores an `info` access
//!   line only when `store_level` names `forge::access` (see `observability::StoreFilter`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::metrics;
use super::problem::Problem;
use super::serve::{Connection, Watch};
use super::state::{GatewayState, HttpSettings};
use crate::observability::{ACCESS_TARGET, HTTP_SPAN, TraceId, TraceParent, new_uuid};

/// What the middleware learnt about a request, for the handlers.
#[derive(Clone, Debug)]
pub(crate) struct RequestMeta {
    pub(crate) request_id: String,
    pub(crate) trace_id: TraceId,
    pub(crate) client_ip: Option<IpAddr>,
    /// When the request is answered `408` if it is still running.
    pub(crate) deadline: Instant,
}

/// `X-Request-Id`, named once: a header looked up by a `&str` has its name parsed each time.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `traceparent` (W3C Trace Context).
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || {
                // Written by hand: `to_string` goes through the formatter.
                let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
                new_uuid().hyphenated().encode_lower(&mut text).to_owned()
            },
            str::to_owned,
        )
}

/// The middleware: around the request's span, the load shedding (`503` past `[gateway]
/// max_concurrent_requests`, probes excepted) and the request timeout (`408`), so that shed and
/// timed-out requests are logged and counted like the others.
pub(crate) async fn observe(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let Gate { state, slots, timeout } = gate;
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let traceparent = request.headers().get(&TRACEPARENT).and_then(|v| v.to_str().ok());
    let (parent, sampled) = traceparent.and_then(TraceParent::parse_sampled).unzip();
    let trace_id = parent.map_or_else(TraceId::new, |p| p.trace_id);
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    let path = capped_path(request.uri().path());
    let peer = request.extensions().get::<ConnectInfo<Connection>>().map(|c| c.0.peer.ip());
    let client_ip = peer.map(|peer| client_ip(peer, request.headers(), state.trusted_proxies()));
    // Written once, for the span and the access line.
    let client_text = client_ip.map(IpText::new);
    // A timeout too long for the clock (`request_timeout = "1000y"`) is no deadline at all.
    let deadline = started.checked_add(timeout.as_std()).unwrap_or_else(|| started + FAR_FUTURE);
    request.extensions_mut().insert(RequestMeta { request_id: request_id.clone(), trace_id, client_ip, deadline });
    let span = tracing::info_span!(
        HTTP_SPAN,
        node_id = state.telemetry().node_id(),
        span_kind = "server",
        // Texts as texts: the storage layer copies them without formatting them.
        method = method.as_str(),
        route = route.as_str(),
        path = path.as_str(),
        request_id = request_id.as_str(),
        trace_id = %trace_id,
        parent_span_id = parent.map(|p| tracing::field::display(p.parent_id)),
        trace_sampled = sampled == Some(true),
        client_ip = client_text.as_ref().map(tracing::field::display),
        status_code = tracing::field::Empty,
        status = tracing::field::Empty,
        function = tracing::field::Empty,
        function_kind = tracing::field::Empty,
    );
    let probe = matches!(route.as_str(), "/health" | "/ready");
    // Served by the gateway's own server, the connection keeps the time (one timer per
    // connection); otherwise (the router served by another server) a timer of its own.
    let watch = request.extensions_mut().remove::<Arc<Watch>>();
    let mut response = {
        let answer = std::pin::pin!(Some(async {
            // Held until the answer is ready.
            let _slot = if probe {
                None
            } else {
                let Some(slot) = slots.take() else { return overloaded(&path) };
                Some(slot)
            };
            match &watch {
                Some(watch) => {
                    watch.request_started(deadline);
                    until_expired(watch, next.run(request)).await.unwrap_or_else(|| timed_out(&path, timeout))
                }
                None => match tokio::time::timeout_at(deadline.into(), next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => timed_out(&path, timeout),
                },
            }
        }));
        in_span(&span, answer).await
    };
    if let Some(watch) = watch {
        watch.answered();
        response = response.map(|body| axum::body::Body::new(Sent { body, watch: Some(watch) }));
    }
    if response.status().is_server_error() {
        span.record("status", "error");
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.record("status_code", status);
    metrics::record_request(state.metrics(), method_label(&method), &route, status, elapsed);
    // In the request's span: the line carries its node and trace. Probes (a load balancer asks
    // every few seconds) are logged at debug only.
    let duration_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    // The span is the line's explicit parent: no entering and leaving it once more.
    macro_rules! access {
        ($level:expr) => {
            tracing::event!(
                target: ACCESS_TARGET,
                parent: &span,
                $level,
                method = %method,
                path = %path,
                route = %route,
                status,
                duration_ms,
                request_id = %request_id,
                trace_id = %trace_id,
                client_ip = client_text.as_ref().map(IpText::as_str),
                "request"
            )
        };
    }
    if probe {
        access!(tracing::Level::DEBUG);
    } else if response.status().is_server_error() {
        access!(tracing::Level::WARN);
    } else {
        access!(tracing::Level::INFO);
    }
    response
}

/// `future`, polled inside `span`, as `Instrumented` does, but without a clone of the span
/// and without entering it once more to drop a future that has returned (nothing in it is left
/// to drop). A future dropped before it returns (the client went away) is dropped inside the
/// span, so that what its parts log on the way out is still the request's.
///
/// The caller pins the future in place (`Some(future)`): taken by value, it would be kept twice
/// in this future's state (an argument, then its pinned copy), a kilobyte more per request to
/// allocate and copy.
async fn in_span<F: Future>(span: &tracing::Span, future: std::pin::Pin<&mut Option<F>>) -> F::Output {
    struct Pending<'a, 'f, F> {
        span: &'a tracing::Span,
        future: std::pin::Pin<&'f mut Option<F>>,
    }
    impl<F> Drop for Pending<'_, '_, F> {
        fn drop(&mut self) {
            if self.future.is_some() {
                let _inside = self.span.enter();
                self.future.set(None);
            }
        }
    }
    let mut pending = Pending { span, future };
    std::future::poll_fn(|cx| {
        // Never none: the `await` below stops polling once it is ready.
        let Some(future) = pending.future.as_mut().as_pin_mut() else {
            return std::task::Poll::Pending;
        };
        let output = std::task::ready!(pending.span.in_scope(|| future.poll(cx)));
        pending.future.set(None);
        std::task::Poll::Ready(output)
    })
    .await
}

/// `future`'s output, or `None` once `watch` says the request ran out of time (checked at
/// every poll: the connection's task polls the request again when it marks it expired).
async fn until_expired<F: Future>(watch: &Watch, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if watch.expired() {
            return std::task::Poll::Ready(None);
        }
        future.as_mut().poll(cx).map(Some)
    })
    .await
}

/// A response's body, telling its connection's [`Watch`] when it is all out (or dropped):
/// from then on the connection waits for the next request's head, within
/// `header_read_timeout`.
struct Sent {
    body: axum::body::Body,
    watch: Option<Arc<Watch>>,
}

impl Sent {
    fn done(&mut self) {
        if let Some(watch) = self.watch.take() {
            watch.idle();
        }
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for Sent {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() {
            self.done();
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What the request middleware ([`observe`]) holds: the gateway, its slots for
/// requests in flight and the request timeout.
#[derive(Clone, Debug)]
pub(super) struct Gate {
    state: GatewayState,
    /// `[gateway] max_concurrent_requests` permits: a request without one is answered `503`
    /// with `Retry-After: 1` instead of queueing more work than the database can take (a
    /// flood of calls then cannot starve the engine of connections). Probes are never shed.
    slots: Arc<Slots>,
    /// `[gateway] request_timeout`: past it, `408`.
    timeout: forge_core::config::Duration,
}

impl Gate {
    pub(super) fn new(state: GatewayState, settings: &HttpSettings) -> Self {
        Self { state, slots: Arc::new(Slots::new(settings.max_concurrent_requests)), timeout: settings.timeout }
    }
}

/// The requests in flight, at most `limit`: one counter, no lock. A semaphore would do, but
/// tokio's takes its lock to give each permit back, one lock per request that every core
/// shares; a request here never waits for a slot, so a counter is all it needs.
#[derive(Debug)]
struct Slots {
    limit: usize,
    taken: AtomicUsize,
}

/// A request's slot, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(limit: usize) -> Self {
        Self { limit, taken: AtomicUsize::new(0) }
    }

    /// A slot, or none when `limit` requests are in flight.
    fn take(&self) -> Option<Slot<'_>> {
        let mut taken = self.taken.load(Ordering::Relaxed);
        loop {
            if taken >= self.limit {
                return None;
            }
            match self.taken.compare_exchange_weak(taken, taken + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(self)),
                Err(now) => taken = now,
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::Release);
    }
}

/// The `503` for a request beyond `[gateway] max_concurrent_requests`.
fn overloaded(path: &str) -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the gateway is at its limit of requests in flight; retry shortly",
    )
    .with_type("urn:forge:problem:overloaded")
    .with_instance(path)
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The `408` for a request that took longer than `[gateway] request_timeout`.
fn timed_out(path: &str, timeout: forge_core::config::Duration) -> Response {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        format!("the request took longer than [gateway] request_timeout ({timeout})"),
    )
    .with_type("urn:forge:problem:request-timeout")
    .with_instance(path)
    .into_response()
}

/// A deadline that never comes (what `tokio::time::timeout` uses for durations past the clock).
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);

/// Longest request path kept in an access-log line.
const MAX_LOGGED_PATH: usize = 256;

fn capped_path(path: &str) -> String {
    let mut path = path.to_owned();
    forge_core::text::clean_text(&mut path, MAX_LOGGED_PATH);
    path
}

/// The method as a metric label: the standard ones by name, anything else `other` (a caller
/// cannot grow the series without bound).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// An address's text, written once on the stack. std's `Display` for an IPv4 address goes
/// through the formatter for each of its four numbers (about 900 instructions per request,
/// for the span and again for the access line); this writes the digits itself.
struct IpText {
    bytes: [u8; IpText::MAX],
    len: usize,
}

impl IpText {
    /// The longest address text: an IPv6 address with an embedded IPv4 one.
    const MAX: usize = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".len();

    fn new(ip: IpAddr) -> Self {
        let mut text = Self { bytes: [0; Self::MAX], len: 0 };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(_) => {
                let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{ip}"));
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl std::fmt::Display for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Who sent the request: the peer, unless the peer is a trusted proxy; then the nearest address
/// in `X-Forwarded-For` (read from the right) that is not itself a trusted proxy.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[forge_core::config::IpRange]) -> IpAddr {
    if !trusted.iter().any(|range| range.contains(peer)) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect();
    hops.into_iter().rev().find(|hop| !trusted.iter().any(|range| range.contains(*hop))).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let trusted: Vec<forge_core::config::IpRange> = vec!["10.0.0.0/8".parse().expect("range")];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.7"));
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(client_ip(proxy, &headers, &trusted), "203.0.113.9".parse::<IpAddr>().expect("ip"));
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger, "an untrusted peer's header is ignored");
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(proxy, &headers, &[]), proxy);
        assert_eq!(method_label(&axum::http::Method::from_bytes(b"BREW").expect("method")), "other");
        assert_eq!(capped_path(&"a".repeat(1000)).len(), MAX_LOGGED_PATH + "… [cut: 1000 bytes in all]".len());
    }

    /// An event's message and the name of the span it is in.
    type Sighting = (String, Option<&'static str>);

    /// Each event seen, with its span.
    #[derive(Clone, Default)]
    struct Seen(Arc<std::sync::Mutex<Vec<Sighting>>>);

    impl<S> tracing_subscriber::Layer<S> for Seen
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    self.0 = format!("{value:?}");
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            let span = ctx.event_span(event).map(|s| s.name());
            self.0.lock().expect("seen").push((message.0, span));
        }
    }

    /// Logs when it is polled and when it is dropped.
    struct Noisy(bool);

    impl Future for Noisy {
        type Output = u8;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<u8> {
            tracing::info!("polled");
            if self.0 {
                std::task::Poll::Ready(7)
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    }

    impl Drop for Noisy {
        fn drop(&mut self) {
            tracing::info!("dropped");
        }
    }

    #[tokio::test]
    async fn a_request_future_runs_in_its_span_and_is_dropped_in_it_if_it_never_answers() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = Seen::default();
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(seen.clone()));
        let span = tracing::info_span!("request");
        let events = || std::mem::take(&mut *seen.0.lock().expect("seen"));

        assert_eq!(in_span(&span, std::pin::pin!(Some(Noisy(false)))).await, 7);
        assert_eq!(
            events(),
            [("polled".into(), Some("request")), ("polled".into(), Some("request")), ("dropped".into(), None)],
            "polled inside the span; a future that returned is dropped outside it"
        );

        let mut noisy = std::pin::pin!(Some(Noisy(false)));
        let mut cancelled = Box::pin(in_span(&span, noisy.as_mut()));
        assert!(futures_util::poll!(cancelled.as_mut()).is_pending());
        drop(cancelled);
        assert_eq!(
            events(),
            [("polled".into(), Some("request")), ("dropped".into(), Some("request"))],
            "a future dropped before it returns is dropped inside the span"
        );
    }

    #[test]
    fn slots_are_taken_up_to_the_limit_and_given_back_when_dropped() {
        let slots = Slots::new(2);
        let first = slots.take().expect("a first slot");
        let second = slots.take().expect("a second slot");
        assert!(slots.take().is_none(), "a third beyond the limit of two");
        drop(first);
        let third = slots.take().expect("the first one given back");
        assert!(slots.take().is_none());
        drop((second, third));
        assert_eq!(slots.taken.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_address_is_written_as_std_writes_it() {
        let addresses = [
            "0.0.0.0",
            "127.0.0.1",
            "10.9.99.100",
            "255.255.255.255",
            "192.168.1.254",
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for address in addresses {
            let ip: IpAddr = address.parse().expect("an address");
            assert_eq!(IpText::new(ip).as_str(), ip.to_string(), "{address}");
            assert_eq!(format!("{:>20}", IpText::new(ip)), format!("{:>20}", ip.to_string()));
        }
        for bits in (0..=u32::MAX).step_by(65_521) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(bits));
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
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
