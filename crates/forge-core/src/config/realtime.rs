//! `[realtime]`: live queries over `GET /ws` and `GET /sse`.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use super::Duration;

/// `[realtime]`: subscriptions to queries, pushed again when a table they read changes.
///
/// Changes are read from Postgres alone: a statement-level trigger on each table a subscribed
/// query reads appends one row per writing transaction to `forge_changes`; each gateway node
/// reads that feed every `poll` (at once after a mutation of its own, and after another node's
/// hint when `listen` is on), re-runs the queries that read a changed table once per `debounce`
/// and pushes a result only when it differs from the last one.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RealtimeConfig {
    /// Whether `/ws` and `/sse` are served. Default `true`.
    pub enabled: bool,
    /// How often a node reads the change feed when nothing woke it. Default `"250ms"`.
    pub poll: Duration,
    /// How long a node gathers changes before re-running the queries they touch (a burst of
    /// writes costs one re-run per subscription group). Default `"50ms"`.
    pub debounce: Duration,
    /// Whether nodes wake each other with a `NOTIFY` hint (at most one per `debounce` per node)
    /// after a mutation. Turn it off behind PgBouncer in transaction mode: nodes then rely on
    /// `poll`. Default `true`.
    pub listen: bool,
    /// Most WebSocket and SSE connections a node holds at once; one more is refused with 503.
    /// Default 10,000.
    pub max_connections: NonZeroUsize,
    /// Most subscriptions on one connection; one more is refused with an `error` message.
    /// Default 100.
    pub max_subscriptions: NonZeroUsize,
    /// Messages queued for one connection before it counts as slow: its pending updates are
    /// then dropped and it gets a `resync` message followed by each subscription's current
    /// result, so memory stays bounded. Default 64.
    pub send_buffer: NonZeroUsize,
    /// A WebSocket that sends nothing (not even a pong to the server's pings, sent every third
    /// of this) for this long is closed. Default `"60s"`.
    pub idle_timeout: Duration,
    /// How long rows of `forge_changes` are kept. Default `"1h"`.
    pub change_retention: Duration,
    /// How often a built-in source (the dashboard's live pages: `forge:overview`, `forge:jobs`,
    /// `forge:job`) is read again while someone follows it; Forge's own tables carry no change
    /// trigger. Its value is pushed only when it changed; a source is read no sooner than ten
    /// times its last read took. Default `"1s"`.
    pub source_poll: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll: Duration::from_millis(250),
            debounce: Duration::from_millis(50),
            listen: true,
            max_connections: NonZeroUsize::new(10_000).expect("10,000 is not zero"),
            max_subscriptions: NonZeroUsize::new(100).expect("100 is not zero"),
            send_buffer: NonZeroUsize::new(64).expect("64 is not zero"),
            idle_timeout: Duration::from_secs(60),
            change_retention: Duration::from_secs(3600),
            source_poll: Duration::from_secs(1),
        }
    }
}
