//! `GET /ws`: one WebSocket, many subscriptions.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::hub::Realtime;
use super::hub::bearer;
use super::outbox::{MemberId, Outbox, Outgoing};
use super::protocol::{ClientMessage, ServerMessage};
use super::sources::Caller;
use crate::functions::{Auth, AuthMethod};
use crate::gateway::{AuthError, Problem};

/// The largest message a client may send.
const MAX_MESSAGE: usize = 64 * 1024;
/// Each connection's read and write buffer (they grow for a larger message).
const BUFFER: usize = 8 * 1024;
/// The longest subscription id.
const MAX_ID: usize = 64;

/// `GET /ws`: checks the connection limit and any credentials in the request, then upgrades.
pub(super) async fn upgrade(
    State(realtime): State<Realtime>,
    extensions: axum::http::Extensions,
    uri: axum::http::Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return Problem::new(rejection.status(), format!("{rejection}: /ws speaks WebSocket"))
                .with_type("urn:forge:problem:websocket")
                .with_instance("/ws")
                .into_response();
        }
    };
    let Some(slot) = realtime.connection_slot() else {
        return too_many_connections("/ws");
    };
    let auth = match realtime.authenticate(&headers).await {
        Ok(auth) => auth,
        Err(e) => return refused(&e, "/ws"),
    };
    upgrade
        .max_message_size(MAX_MESSAGE)
        // Small buffers (the defaults are 128 KiB each per connection): a node holds thousands.
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        .on_upgrade(move |socket| {
            let mut connection = Connection::new(realtime, auth, slot);
            connection.local = crate::gateway::is_local(&extensions, &headers, &uri);
            connection.credential = credential_headers(&headers);
            connection.run(socket)
        })
}

/// 503 at `[realtime] max_connections`.
pub(super) fn too_many_connections(instance: &str) -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node holds as many real-time connections as [realtime] max_connections allows; retry shortly or elsewhere",
    )
    .with_type("urn:forge:problem:too-many-connections")
    .with_instance(instance)
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// 401 (503 when they cannot be checked) for credentials that do not hold.
pub(super) fn refused(e: &AuthError, instance: &str) -> Response {
    let (status, detail) = match e {
        AuthError::Unavailable(reason) => {
            tracing::error!(error = %reason, "credentials could not be checked");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later".to_owned())
        }
        other => (StatusCode::UNAUTHORIZED, other.to_string()),
    };
    Problem::new(status, detail).with_type("urn:forge:problem:unauthorized").with_instance(instance).into_response()
}

/// The headers of `headers` that carry credentials (kept to check an API key again).
fn credential_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [axum::http::header::AUTHORIZATION, axum::http::HeaderName::from_static("x-api-key")] {
        if let Some(value) = headers.get(&name) {
            kept.insert(name, value.clone());
        }
    }
    kept
}

/// When `auth`'s credential expires (a JWT's `exp`).
pub(super) fn expiry(auth: &Auth) -> Option<Instant> {
    let exp = auth.claims().get("exp")?.as_i64()?;
    let left = exp.saturating_sub(chrono::Utc::now().timestamp());
    Some(Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

/// One subscription (or watch) of a connection.
struct Subscription {
    member: MemberId,
    what: What,
}

/// What a subscription follows.
enum What {
    Query { query: String, args: serde_json::Value },
    Job { job: i64 },
}

/// One WebSocket.
struct Connection {
    realtime: Realtime,
    auth: Auth,
    /// Whether the connection comes from this machine (for the dashboard's sources).
    local: bool,
    /// The headers that proved `auth`: an API key is checked again with each server ping, so
    /// a revoked (or expired) key stops serving its subscriptions within a third of
    /// `idle_timeout`.
    credential: HeaderMap,
    expires: Option<Instant>,
    subs: HashMap<String, Subscription>,
    outbox: Outbox,
    rx: tokio::sync::mpsc::Receiver<Outgoing>,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    fn new(realtime: Realtime, auth: Auth, slot: OwnedSemaphorePermit) -> Self {
        let (outbox, rx) = Outbox::new(realtime.config().send_buffer.get());
        let expires = expiry(&auth);
        Self {
            realtime,
            auth,
            local: false,
            credential: HeaderMap::new(),
            expires,
            subs: HashMap::new(),
            outbox,
            rx,
            _slot: slot,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let idle = self.realtime.config().idle_timeout.as_std();
        let mut ping = tokio::time::interval(idle / 3);
        ping.tick().await;
        let mut heard = Instant::now();
        let stop = self.realtime.stopped().clone();
        let close = loop {
            let expires = self.expires;
            tokio::select! {
                incoming = stream.next() => {
                    heard = Instant::now();
                    match incoming {
                        Some(Ok(Message::Text(text))) => self.handle(text.as_str()).await,
                        Some(Ok(Message::Binary(_))) => self.outbox.push(ServerMessage::problem(
                            None,
                            StatusCode::BAD_REQUEST,
                            "bad-message",
                            "send messages as JSON text frames".to_owned(),
                        )),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                        Some(Ok(_)) => {}
                    }
                }
                outgoing = self.rx.recv() => {
                    let Some(outgoing) = outgoing else { break None };
                    if let Some(member) = outgoing.ended {
                        self.subs.retain(|_, sub| sub.member != member);
                    }
                    if send(&mut sink, &outgoing.message).await.is_err() {
                        break None;
                    }
                }
                () = self.outbox.slowed() => {
                    if self.resync(&mut sink).await.is_err() {
                        break None;
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() >= idle {
                        break Some((close_code::AWAY, "idle: nothing heard within [realtime] idle_timeout"));
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                    self.recheck_key().await;
                }
                () = sleep_until(expires) => self.expire().await,
                () = stop.cancelled() => break Some((close_code::AWAY, "the node is shutting down")),
            }
        };
        if let Some((code, reason)) = close {
            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
        }
        for sub in self.subs.values() {
            self.realtime.unsubscribe(sub.member);
        }
    }

    async fn handle(&mut self, text: &str) {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(e) => {
                return self.outbox.push(ServerMessage::problem(
                    None,
                    StatusCode::BAD_REQUEST,
                    "bad-message",
                    format!("not a message this protocol knows: {e}"),
                ));
            }
        };
        match message {
            ClientMessage::Ping => self.outbox.push(ServerMessage::Pong),
            ClientMessage::Subscribe { id, query, args } => self.subscribe(id, What::Query { query, args }, None).await,
            ClientMessage::Watch { id, job, cursor } => self.subscribe(id, What::Job { job }, cursor).await,
            ClientMessage::Unsubscribe { id } => match self.subs.remove(&id) {
                Some(sub) => self.realtime.unsubscribe(sub.member),
                None => self.outbox.push(ServerMessage::problem(
                    Some(id),
                    StatusCode::NOT_FOUND,
                    "no-subscription",
                    "no subscription has this id on this connection".to_owned(),
                )),
            },
            ClientMessage::Auth { token } => match self.realtime.authenticate_token(&token).await {
                Ok(auth) => {
                    // It parsed, or the token would have been refused.
                    self.credential = bearer(&token).unwrap_or_default();
                    self.expires = expiry(&auth);
                    self.auth = auth;
                    self.resubscribe().await;
                }
                Err(e) => self.outbox.push(ServerMessage::problem(
                    None,
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    format!("{e}; the connection keeps its previous credentials"),
                )),
            },
        }
    }

    async fn subscribe(&mut self, id: String, what: What, cursor: Option<String>) {
        if id.is_empty() || id.chars().count() > MAX_ID || id.chars().any(char::is_control) {
            return self.outbox.push(ServerMessage::problem(
                None,
                StatusCode::BAD_REQUEST,
                "bad-message",
                format!("a subscription id is 1 to {MAX_ID} characters, none of them control characters"),
            ));
        }
        if self.subs.contains_key(&id) {
            return self.outbox.push(ServerMessage::problem(
                Some(id),
                StatusCode::CONFLICT,
                "subscription-exists",
                "this connection already has a subscription with this id".to_owned(),
            ));
        }
        let max = self.realtime.config().max_subscriptions.get();
        if self.subs.len() >= max {
            return self.outbox.push(ServerMessage::problem(
                Some(id),
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-subscriptions",
                format!("a connection holds at most {max} subscriptions ([realtime] max_subscriptions)"),
            ));
        }
        let subscribed = match &what {
            What::Query { query, args } => {
                let caller = Caller { auth: &self.auth, local: self.local };
                self.realtime.subscribe(&self.outbox, &id, query, args.clone(), caller).await
            }
            What::Job { job } => self.realtime.watch_job(&self.outbox, &id, *job, cursor, &self.auth).await,
        };
        match subscribed {
            Ok(member) => {
                self.subs.insert(id, Subscription { member, what });
            }
            Err(message) => self.outbox.push(message),
        }
    }

    /// Runs every subscription again as the connection's current caller.
    async fn resubscribe(&mut self) {
        let subs = std::mem::take(&mut self.subs);
        for (id, sub) in subs {
            self.realtime.unsubscribe(sub.member);
            self.subscribe(id, sub.what, None).await;
        }
    }

    /// Checks an API key again (revoked, or past its expiry: the connection expires). A database
    /// that cannot answer leaves the connection as it is until the next check.
    async fn recheck_key(&mut self) {
        if !matches!(self.auth.method(), AuthMethod::ApiKey { .. }) {
            return;
        }
        match self.realtime.authenticate(&self.credential).await {
            Ok(auth) if auth.is_authenticated() => {}
            Err(AuthError::Unavailable(_)) => {}
            Ok(_) | Err(_) => self.expire().await,
        }
    }

    /// The credential expired: the connection is anonymous from now on, and each subscription
    /// is run again as such (one that needs credentials ends with a 401 error).
    async fn expire(&mut self) {
        self.expires = None;
        self.auth = Auth::anonymous();
        self.resubscribe().await;
    }

    /// The connection fell behind: drop what is queued, say so, and send each subscription's
    /// latest result.
    async fn resync<S>(&mut self, sink: &mut S) -> Result<(), axum::Error>
    where
        S: futures_util::Sink<Message, Error = axum::Error> + Unpin,
    {
        while let Ok(outgoing) = self.rx.try_recv() {
            if let Some(member) = outgoing.ended {
                self.subs.retain(|_, sub| sub.member != member);
            }
        }
        self.outbox.take_slow();
        send(sink, &ServerMessage::Resync).await?;
        for sub in self.subs.values() {
            if let Some(message) = self.realtime.current(sub.member) {
                send(sink, &message).await?;
            }
        }
        Ok(())
    }
}

async fn send<S>(sink: &mut S, message: &ServerMessage) -> Result<(), axum::Error>
where
    S: futures_util::Sink<Message, Error = axum::Error> + Unpin,
{
    let text = serde_json::to_string(message).unwrap_or_default();
    sink.send(Message::Text(text.into())).await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
