//! `GET /sse?query=<name>&args=<JSON>`: one subscription as Server-Sent Events, for clients
//! that cannot use WebSocket.
//!
//! Each result is an event `data` (its data the query's result as JSON); an `error` event
//! carries a problem (the stream ends after one that ends the subscription); after the client
//! fell behind, a `resync` event precedes the latest result. Credentials come in the
//! `Authorization` header or, since `EventSource` cannot send headers, in `access_token` (which
//! proxies may log: prefer short-lived tokens there). The stream ends when they expire; the
//! client reconnects with a new one.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use super::hub::Realtime;
use super::outbox::{MemberId, Outbox, Outgoing};
use super::protocol::ServerMessage;
use super::sources::Caller;
use super::ws::{expiry, refused, too_many_connections};
use crate::gateway::Problem;

/// The subscription's id in its messages.
const SUB: &str = "sse";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SseQuery {
    query: String,
    args: Option<String>,
    access_token: Option<String>,
}

/// `GET /sse`.
pub(super) async fn stream(
    State(realtime): State<Realtime>,
    extensions: axum::http::Extensions,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let params: SseQuery = match serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()) {
        Ok(params) => params,
        Err(e) => {
            return bad_request(format!("the query string: {e} (expected query=<name>, args=<JSON>, access_token)"));
        }
    };
    let args = match params.args.as_deref().map(serde_json::from_str::<serde_json::Value>) {
        None => serde_json::Value::Null,
        Some(Ok(args)) => args,
        Some(Err(e)) => return bad_request(format!("`args` is not JSON: {e}")),
    };
    let Some(slot) = realtime.connection_slot() else {
        return too_many_connections("/sse");
    };
    let auth = match &params.access_token {
        Some(token) => realtime.authenticate_token(token).await,
        None => realtime.authenticate(&headers).await,
    };
    let auth = match auth {
        Ok(auth) => auth,
        Err(e) => return refused(&e, "/sse"),
    };
    let (outbox, mut rx) = Outbox::new(realtime.config().send_buffer.get());
    let caller = Caller { auth: &auth, local: crate::gateway::is_local(&extensions, &headers, &uri) };
    let member = match realtime.subscribe(&outbox, SUB, &params.query, args, caller).await {
        Ok(member) => member,
        Err(ServerMessage::Error { error, .. }) => return problem_response(error),
        Err(_) => return bad_request("the subscription was refused".to_owned()),
    };
    let guard = Guard { realtime, member };
    // The first result decides the status: a refused subscription is an HTTP problem.
    let first = match rx.recv().await {
        Some(Outgoing { message: ServerMessage::Error { error, .. }, ended: Some(_) }) => {
            return problem_response(error);
        }
        Some(Outgoing { message, .. }) => event(&message),
        None => return bad_request("the subscription ended".to_owned()),
    };
    let state = Stream { guard, outbox, rx, expires: expiry(&auth), first: Some(first), ended: false, _slot: slot };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        if let Some(first) = s.first.take() {
            return Some((Ok::<_, Infallible>(first), s));
        }
        if s.ended {
            return None;
        }
        let stop = s.guard.realtime.stopped().clone();
        let expires = s.expires;
        let event = tokio::select! {
            outgoing = s.rx.recv() => {
                let Outgoing { message, ended } = outgoing?;
                s.ended = ended.is_some();
                event(&message)
            }
            () = s.outbox.slowed() => {
                while s.rx.try_recv().is_ok() {}
                s.outbox.take_slow();
                // The latest result follows through the outbox.
                if let Some(message) = s.guard.realtime.current(s.guard.member) {
                    s.outbox.push(message);
                }
                Event::default().event("resync").data("{}")
            }
            () = async {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                s.ended = true;
                event(&ServerMessage::problem(
                    Some(SUB.to_owned()),
                    StatusCode::UNAUTHORIZED,
                    "credentials-expired",
                    "the credentials expired: reconnect with a new token".to_owned(),
                ))
            }
            () = stop.cancelled() => return None,
        };
        Some((Ok::<_, Infallible>(event), s))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

fn event(message: &ServerMessage) -> Event {
    let (name, data) = match message {
        ServerMessage::Data { data, .. } => ("data", data.to_string()),
        ServerMessage::Error { error, .. } => ("error", serde_json::to_string(error).unwrap_or_default()),
        ServerMessage::Job { cursor, job, .. } => {
            ("job", serde_json::json!({ "cursor": cursor, "job": job }).to_string())
        }
        ServerMessage::Resync => ("resync", "{}".to_owned()),
        ServerMessage::Pong => ("pong", "{}".to_owned()),
    };
    Event::default().event(name).data(data)
}

fn bad_request(detail: String) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, detail)
        .with_type("urn:forge:problem:bad-request")
        .with_instance("/sse")
        .into_response()
}

fn problem_response(mut problem: Problem) -> Response {
    problem.instance = Some("/sse".to_owned());
    problem.into_response()
}

/// A stream's state.
struct Stream {
    guard: Guard,
    outbox: Outbox,
    rx: tokio::sync::mpsc::Receiver<Outgoing>,
    expires: Option<tokio::time::Instant>,
    first: Option<Event>,
    ended: bool,
    _slot: OwnedSemaphorePermit,
}

/// Ends the subscription when the stream is dropped (the client went away).
struct Guard {
    realtime: Realtime,
    member: MemberId,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.realtime.unsubscribe(self.member);
    }
}
