//! Real-time: live queries over `GET /ws` (WebSocket) and `GET /sse` (Server-Sent Events).
//!
//! A client subscribes to a query with arguments; it gets the result at once and again each time
//! it changes. The protocol of `/ws` is JSON text frames ([`ClientMessage`], [`ServerMessage`]):
//!
//! ```text
//! → {"type":"subscribe","id":"notes","query":"list_notes","args":{"limit":20}}
//! ← {"type":"data","id":"notes","data":[…]}
//! ← {"type":"data","id":"notes","data":[…]}            (after a change)
//! → {"type":"unsubscribe","id":"notes"}
//! → {"type":"watch","id":"j","job":42}
//! ← {"type":"job","id":"j","cursor":"…","job":{"state":"running","progress":{…},…}}
//! → {"type":"ping"}  ← {"type":"pong"}
//! → {"type":"auth","token":"<JWT or API key>"}
//! ← {"type":"error","id":"notes","error":{<RFC 7807 problem>}}
//! ← {"type":"resync"}                                    (then every subscription's data)
//! ```
//!
//! Credentials come with the upgrade request (`Authorization` or `X-Api-Key`) or in an `auth`
//! message; a query's access rule is checked when it is subscribed to and again when the
//! credential expires (a JWT's `exp`), when the connection becomes anonymous.
//!
//! **Where changes come from.** Only Postgres: a statement-level trigger on each table a
//! subscribed query reads (its `reads = [..]`, or every application table for a query that
//! declares none) appends one row per writing transaction to `forge_changes` (see
//! `changes.rs`). Each gateway node follows that feed: every `[realtime] poll`, at once after a
//! mutation of its own, and on another node's `NOTIFY forge_changes` hint (sent at most once per
//! `debounce` per node, never from the trigger, so commits never queue on Postgres's notify
//! lock); with `listen = false` it only polls (PgBouncer in transaction mode).
//!
//! **Coalescing.** Subscriptions to the same query with the same caller and arguments form one
//! group, run once for all of them. Changes within `debounce` are read together and a group
//! already running is run once more after, not once per change; a result is pushed only when
//! its hash differs from the last one pushed.
//!
//! **Limits.** `max_connections` per node (503), `max_subscriptions` per connection (an
//! `error` message), `send_buffer` messages queued per connection (beyond it the connection
//! resyncs instead of growing), `idle_timeout` without a frame from the client (closed; the
//! server pings every third of it).

mod changes;
mod hub;
mod jobs;
mod outbox;
mod protocol;
mod sources;
mod sql;
mod sse;
mod ws;

use axum::Router;
use axum::routing::get;

pub use hub::Realtime;
pub use protocol::{ClientMessage, JobState, ServerMessage};
pub use sources::{Caller, LiveSource, LiveSources};

/// Whether a node configured by `config` serves `/ws` and `/sse`: `[realtime] enabled`, on a
/// node with the `function` role.
pub(crate) fn served(config: &forge_core::ForgeConfig) -> bool {
    config.realtime.enabled && config.node.roles.contains(forge_core::config::Role::Function)
}

/// `GET /ws` and `GET /sse`.
pub fn router(realtime: Realtime) -> Router {
    Router::new().route("/ws", get(ws::upgrade)).route("/sse", get(sse::stream)).with_state(realtime)
}
