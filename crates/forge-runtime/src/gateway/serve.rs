//! The gateway's HTTP server: accepts connections, bounds how many are open, closes those that
//! take too long to send their headers (slow-header attacks), tells each request which
//! connection it came on ([`Connection`]), and stops gracefully.
//!
//! `axum::serve` does none of the first three; this loop is the same few lines over
//! `hyper-util` with those settings.
//!
//! A connection's two time limits, `[gateway] header_read_timeout` (waiting for a request's
//! head) and `request_timeout` (a request in flight, answered `408` by the request middleware),
//! are kept by its own task with one timer ([`Watch`]), not by a timer per request: hyper's
//! header timer and a `tokio::time::timeout` per request each put an entry in the runtime's
//! one timer wheel and took it out again, four times a request under a lock every core shares
//! (`forge-bench rpc`: about a tenth of the throughput).
//!
//! A stop reaches each connection's task the same way, through its [`Watch`] ([`Open`]): a task
//! waiting on the node's stop token itself would poll it at each wake-up, two or three times a
//! request, and each poll takes the token's two locks, shared by every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The connection a request came on: the peer's address and the address it reached (the
/// listener's real address, whatever the configuration said). In every request's extensions as
/// `ConnectInfo<Connection>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The client (or the proxy in front of it).
    pub peer: SocketAddr,
    /// The local address the connection reached.
    pub local: SocketAddr,
}

/// How the server treats connections: `[gateway] header_read_timeout`, `request_timeout`,
/// `max_connections`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServeSettings {
    pub(crate) header_read_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// `now + wait`, or a day from now for a wait too long for the clock (`"1000y"`).
fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// "No limit" in [`Watch::deadline`]: a response's body is going out.
const NO_LIMIT: u64 = u64::MAX;

/// A connection's time limits, set by its requests and checked by its task (in every
/// request's extensions). The connection is always in one of three phases: waiting for a
/// request's head (up to `header_read_timeout`, then it is closed, as hyper's own header timer
/// would), running a request (up to its deadline, then the request is answered `408`), or
/// sending a response's body (no limit: a stream of events may last hours). HTTP/1 runs one
/// request at a time per connection, and all of this happens inside the connection's task (but
/// the stop, set once by the accept loop), so the atomics are not contended.
#[derive(Debug)]
pub(crate) struct Watch {
    epoch: Instant,
    header_read_timeout: Duration,
    /// When the current phase's time is up, in milliseconds after `epoch` ([`NO_LIMIT`]: never).
    deadline: AtomicU64,
    /// Whether the phase is a request's (its end answers `408`) or the wait for a head (its end
    /// closes the connection).
    in_request: AtomicBool,
    /// The request in flight has run out of time.
    expired: AtomicBool,
    /// The node is stopping: the connection finishes its request in flight, then closes.
    stopping: AtomicBool,
    /// The connection's task, woken when the node stops.
    stop_waker: AtomicWaker,
}

/// What [`Watch::check`] found.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// Nothing yet; look again at this instant at the latest.
    Until(Instant),
    /// The request in flight ran out of time.
    Request,
    /// No request's head came in time.
    Head,
}

impl Watch {
    fn new(header_read_timeout: Duration) -> Self {
        let watch = Self {
            epoch: Instant::now(),
            header_read_timeout,
            deadline: AtomicU64::new(NO_LIMIT),
            in_request: AtomicBool::new(false),
            expired: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop_waker: AtomicWaker::new(),
        };
        watch.idle();
        watch
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(NO_LIMIT - 1)
    }

    /// A request's head came: the request may run until `deadline`.
    pub(crate) fn request_started(&self, deadline: Instant) {
        self.expired.store(false, Ordering::Relaxed);
        self.in_request.store(true, Ordering::Relaxed);
        self.deadline.store(self.millis(deadline), Ordering::Relaxed);
    }

    /// The request has its answer; its body goes out, without a limit.
    pub(crate) fn answered(&self) {
        self.in_request.store(false, Ordering::Relaxed);
        self.deadline.store(NO_LIMIT, Ordering::Relaxed);
    }

    /// The answer's body is out: the next head must come within `header_read_timeout`.
    pub(crate) fn idle(&self) {
        let deadline = Instant::now().checked_add(self.header_read_timeout).map_or(NO_LIMIT, |d| self.millis(d));
        self.in_request.store(false, Ordering::Relaxed);
        self.deadline.store(deadline, Ordering::Relaxed);
    }

    /// Whether the request in flight has run out of time (the middleware then answers `408`).
    pub(crate) fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// The node is stopping: wakes the connection's task.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop_waker.wake();
    }

    /// Ready once the node is stopping. Polled by the connection's task at each wake-up: two
    /// atomics of this connection's own, no lock.
    fn poll_stop(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stopping.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.stop_waker.register(cx.waker());
        // A stop between the load above and the registration has woken nobody: look again.
        if self.stopping.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    }

    /// What is due at `now`; a request found out of time is marked expired. `every` bounds the
    /// wait: a deadline set later is at least `every` after it is set, so looking again within
    /// `every` never misses one.
    fn check(&self, now: Instant, every: Duration) -> Due {
        let deadline = self.deadline.load(Ordering::Relaxed);
        let next = after(now, every);
        if deadline == NO_LIMIT || self.millis(now) < deadline {
            let at = if deadline == NO_LIMIT {
                next
            } else {
                self.epoch.checked_add(Duration::from_millis(deadline)).unwrap_or(next).min(next)
            };
            return Due::Until(at);
        }
        if self.in_request.load(Ordering::Relaxed) {
            self.expired.store(true, Ordering::Relaxed);
            // Answered `408` at the connection's next poll; then the body, then a new head.
            self.deadline.store(NO_LIMIT, Ordering::Relaxed);
            Due::Request
        } else {
            Due::Head
        }
    }
}

/// The connections open, each by its [`Watch`], so that a stop reaches them all. Only the
/// accept loop adds to it, and it stops them once it has stopped accepting: no connection is
/// added after the stop.
#[derive(Debug, Default)]
struct Open {
    watches: Mutex<Vec<Weak<Watch>>>,
}

impl Open {
    fn add(&self, watch: &Arc<Watch>) {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        // Closed connections are forgotten before the list would grow: it stays about as long as
        // the most connections open at once, and adding costs no more than a push on average.
        if watches.len() == watches.capacity() {
            watches.retain(|w| w.strong_count() > 0);
        }
        watches.push(Arc::downgrade(watch));
    }

    /// Tells every connection still open that the node stops.
    fn stop_all(&self) {
        let watches = std::mem::take(&mut *self.watches.lock().unwrap_or_else(PoisonError::into_inner));
        for watch in watches.iter().filter_map(Weak::upgrade) {
            watch.stop();
        }
    }
}

/// Serves `app` on `listener` until `stop`; then stops accepting and waits for the requests in
/// flight (the caller bounds that wait).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ServeSettings,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let connections = TaskTracker::new();
    let open = Open::default();
    let builder = http1::Builder::new();
    // The connection's task looks at its `Watch` at least this often (one timer per
    // connection, reset about once per time limit, whatever the number of requests).
    let every = settings.header_read_timeout.min(settings.request_timeout).max(Duration::from_millis(1));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the listener itself is fine. Wait a moment instead of spinning.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let info = ConnectInfo(Connection { peer, local: stream.local_addr().unwrap_or(local) });
        let watch = Arc::new(Watch::new(settings.header_read_timeout));
        open.add(&watch);
        let app = app.clone();
        let service = {
            let watch = watch.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request: Request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(info);
                request.extensions_mut().insert(watch.clone());
                app.clone().oneshot(request)
            })
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let mut stopped = std::pin::pin!(std::future::poll_fn(|cx| watch.poll_stop(cx)));
            let mut look = std::pin::pin!(tokio::time::sleep_until(after(Instant::now(), every).into()));
            let mut stopping = false;
            let ended = loop {
                tokio::select! {
                    ended = connection.as_mut() => break ended,
                    () = stopped.as_mut(), if !stopping => {
                        // Finish the request in flight (still within its time limit), answer
                        // it with `Connection: close`, end.
                        connection.as_mut().graceful_shutdown();
                        stopping = true;
                    }
                    () = look.as_mut() => {
                        let now = Instant::now();
                        match watch.check(now, every) {
                            Due::Until(at) => look.as_mut().reset(at.into()),
                            // The loop polls the connection again at once: the request in
                            // flight sees that it expired and is answered `408`.
                            Due::Request => look.as_mut().reset(after(now, every).into()),
                            Due::Head => {
                                tracing::debug!(peer = %peer, "no request head within header_read_timeout: connection closed");
                                break Ok(());
                            }
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    open.stop_all();
    connections.close();
    connections.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_waits_for_a_head_then_a_request_then_a_body_each_with_its_own_limit() {
        let (head, every) = (Duration::from_secs(10), Duration::from_secs(10));
        let watch = Watch::new(head);
        let start = watch.epoch;
        // Waiting for the first head: due at ten seconds, then closed.
        assert_eq!(watch.check(start + Duration::from_secs(3), every), Due::Until(start + Duration::from_secs(10)));
        assert_eq!(watch.check(start + Duration::from_secs(11), every), Due::Head);
        // A request until its deadline: then expired, once, and answered.
        watch.request_started(start + Duration::from_secs(20));
        assert_eq!(watch.check(start + Duration::from_secs(12), every), Due::Until(start + Duration::from_secs(20)));
        assert!(!watch.expired());
        assert_eq!(watch.check(start + Duration::from_secs(21), every), Due::Request);
        assert!(watch.expired());
        assert!(matches!(watch.check(start + Duration::from_secs(22), every), Due::Until(_)), "expired once");
        // A body going out has no limit: looked at again every `every`.
        watch.answered();
        let now = start + Duration::from_secs(500);
        assert_eq!(watch.check(now, every), Due::Until(now + every));
        // The next request starts afresh.
        watch.request_started(now + Duration::from_secs(30));
        assert!(!watch.expired());
        assert_eq!(watch.check(now, every), Due::Until(now + every), "never waits past `every`");
    }

    #[test]
    fn limits_too_long_for_the_clock_are_no_limits() {
        let watch = Watch::new(Duration::MAX);
        let now = Instant::now();
        assert_eq!(watch.check(now, Duration::MAX), Due::Until(after(now, Duration::MAX)));
        assert!(after(now, Duration::MAX) > now, "a far wait is still a wait");
    }
}
