//! Built-in live sources: subscription targets that are not registered queries, such as the
//! dashboard's pages (`forge:overview`, `forge:jobs`, `forge:job`). They read Forge's own tables,
//! which carry no change trigger (the engine's hot path stays as it is), so a group subscribed
//! to one is run again every `[realtime] source_poll` instead of on a change; as for queries, its
//! result is pushed only when it differs from the last one, and every subscriber with the same
//! arguments shares one run.
//!
//! A source is written above this layer (the dashboard) and handed to [`Realtime::with_sources`](super::Realtime::with_sources).

use std::collections::HashMap;
use std::sync::Arc;

use crate::functions::{Auth, ForgeError};
use crate::jobs::BoxFuture;

/// Who is subscribing to a source.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// Their credentials.
    pub auth: &'a Auth,
    /// Whether the connection comes from this machine (loopback peer and listener, a loopback
    /// `Host`, no proxy headers): what the dashboard's `open_on_loopback` trusts.
    pub local: bool,
}

/// A built-in live source.
pub trait LiveSource: Send + Sync + std::fmt::Debug + 'static {
    /// Whether `caller` may subscribe (checked at subscribe time and again when the caller's
    /// credentials change or expire).
    fn authorize(&self, caller: Caller<'_>) -> Result<(), ForgeError>;

    /// The source's current value for `args`.
    fn run(&self, args: serde_json::Value) -> BoxFuture<Result<serde_json::Value, ForgeError>>;
}

/// The sources a node serves, by name.
#[derive(Clone, Debug, Default)]
pub struct LiveSources {
    sources: HashMap<String, Arc<dyn LiveSource>>,
}

impl LiveSources {
    /// No sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `source` under `name` (by convention `forge:…`, which no function can be named).
    pub fn with(mut self, name: impl Into<String>, source: impl LiveSource) -> Self {
        self.sources.insert(name.into(), Arc::new(source));
        self
    }

    /// The source named `name`.
    pub(super) fn get(&self, name: &str) -> Option<Arc<dyn LiveSource>> {
        self.sources.get(name).cloned()
    }
}
