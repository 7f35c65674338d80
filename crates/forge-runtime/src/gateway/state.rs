//! [`GatewayState`]: what the gateway's handlers share.

use std::sync::Arc;
use std::time::Duration;

use forge_core::ForgeConfig;
use sqlx::PgPool;

use super::auth::Authenticator;
use super::metrics;
use crate::db::{Migrator, read_only_pool};
use crate::functions::{Auth, CallParts, ForgeError, FunctionKind, FunctionRegistry};
use crate::jobs::{BatchedDispatcher, Dispatcher, Notifier};
use crate::observability::{Metrics, Telemetry, TraceId, new_uuid};

/// What the gateway's handlers share.
#[derive(Clone, Debug)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    migrator: Migrator,
    functions: FunctionRegistry,
    auth: Authenticator,
    telemetry: Arc<Telemetry>,
    /// The node's dispatcher (its notifier wakes workers), when it has one.
    dispatcher: Option<BatchedDispatcher>,
    http: HttpSettings,
    /// When `/metrics` last counted the queues.
    depth_sampled: std::sync::Mutex<Option<std::time::Instant>>,
    /// Woken after every mutation or action that succeeds (the live queries' change feed
    /// reads at once instead of at its next poll).
    writes: Arc<tokio::sync::Notify>,
    /// What every call's parts start from (pools, notifier, dispatcher, HTTP client): cloned
    /// per request, which is cheaper than building them and drawing ids the request replaces.
    parts: CallParts,
}

/// The layers' settings: `[gateway] body_limit`, `request_timeout`, `cors_origins`,
/// `max_concurrent_requests`, `trusted_proxies`, `metrics_token`, `static_dir`.
#[derive(Clone, Debug)]
pub(super) struct HttpSettings {
    pub(super) body_limit: usize,
    pub(super) timeout: forge_core::config::Duration,
    pub(super) cors_origins: Vec<String>,
    pub(super) max_concurrent_requests: usize,
    pub(super) trusted_proxies: Vec<forge_core::config::IpRange>,
    pub(super) metrics_token: Option<String>,
    /// Whether this node runs functions (`function` role): without it `/rpc` answers 404.
    pub(super) functions: bool,
    /// `[gateway] static_dir`, served for unrouted `GET`s.
    pub(super) static_dir: Option<std::path::PathBuf>,
}

impl GatewayState {
    /// State over `pool` with the default configuration, `migrator` naming the migrations
    /// `/ready` expects, serving every registered function.
    pub fn new(pool: PgPool, migrator: Migrator) -> Self {
        Self::with_config(pool, migrator, &ForgeConfig::default())
    }

    /// State over `pool` with `[gateway]` and `[auth]` from `config`.
    pub fn with_config(pool: PgPool, migrator: Migrator, config: &ForgeConfig) -> Self {
        let read_pool = read_only_pool(&pool);
        let obs = &config.observability;
        let telemetry = Telemetry::new("gateway", obs.buffer_size.get());
        telemetry.set_request_spans(obs.request_spans, obs.slow_request.as_std());
        Self::assemble(pool, read_pool, migrator, config, None, telemetry)
    }

    pub(crate) fn assemble(
        pool: PgPool,
        read_pool: PgPool,
        migrator: Migrator,
        config: &ForgeConfig,
        dispatcher: Option<BatchedDispatcher>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let gw = &config.gateway;
        let parts = CallParts::new(pool.clone(), read_pool)
            .with_notifier(dispatcher.as_ref().and_then(|d| d.dispatch_notifier()).cloned())
            .with_dispatcher(dispatcher.clone());
        Self {
            inner: Arc::new(Inner {
                parts,
                auth: Authenticator::new(&config.auth, pool.clone()),
                pool,
                migrator,
                functions: FunctionRegistry::collect(),
                telemetry,
                dispatcher,
                http: HttpSettings {
                    body_limit: usize::try_from(gw.body_limit.bytes()).unwrap_or(usize::MAX),
                    timeout: gw.request_timeout,
                    cors_origins: gw.cors_origins.clone(),
                    max_concurrent_requests: gw.max_concurrent_requests.get(),
                    trusted_proxies: gw.trusted_proxies.clone(),
                    metrics_token: gw.metrics_token.clone().filter(|t| !t.is_empty()),
                    functions: config.node.roles.contains(forge_core::config::Role::Function),
                    static_dir: gw.static_dir.clone(),
                },
                depth_sampled: std::sync::Mutex::new(None),
                writes: Arc::default(),
            }),
        }
    }

    /// The node's debounced worker wake-up, when it has one.
    pub(crate) fn notifier(&self) -> Option<&Notifier> {
        self.inner.dispatcher.as_ref().and_then(|d| d.dispatch_notifier())
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(super) fn migrator(&self) -> &Migrator {
        &self.inner.migrator
    }

    pub(super) fn http_settings(&self) -> &HttpSettings {
        &self.inner.http
    }

    /// Whether `/metrics` should count the queues now: not within `every` of the last count
    /// (which this call then claims, so concurrent scrapes count once).
    pub(super) fn depth_sample_due(&self, every: Duration) -> bool {
        let mut last = self.inner.depth_sampled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// `[gateway] trusted_proxies`.
    pub(super) fn trusted_proxies(&self) -> &[forge_core::config::IpRange] {
        &self.inner.http.trusted_proxies
    }

    /// Woken after every mutation or action that succeeds on this node.
    pub(crate) fn writes(&self) -> &Arc<tokio::sync::Notify> {
        &self.inner.writes
    }

    /// The functions this gateway serves.
    pub(crate) fn functions(&self) -> &FunctionRegistry {
        &self.inner.functions
    }

    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }

    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The node's metrics, as `/metrics` shows them.
    pub fn metrics(&self) -> &Metrics {
        self.inner.telemetry.metrics()
    }

    /// The parts of a call by `auth` made by an HTTP request with id `request_id` in trace
    /// `trace_id`.
    pub(crate) fn request_parts(&self, request_id: String, trace_id: TraceId, auth: Auth) -> CallParts {
        self.inner.parts.for_call(request_id, trace_id, auth)
    }

    /// A call's parts, before the caller is known, with fresh request and trace ids.
    pub(crate) fn call_parts(&self) -> CallParts {
        self.request_parts(new_uuid().to_string(), TraceId::new(), Auth::anonymous())
    }

    /// Runs a function and counts it in the metrics.
    pub(crate) async fn call(
        &self,
        function: &str,
        parts: CallParts,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ForgeError> {
        let started = std::time::Instant::now();
        // Looked up once: for the call, then for its metric label and its kind.
        let functions = &self.inner.functions;
        let found = functions.find(function);
        let info = found.map(|(info, _)| info);
        // Boxed: the call's future is large (kilobytes), and every future holding it inline is
        // copied whole each time it moves (into axum's boxed handler future, among others).
        let result = Box::pin(functions.call_found(function, found, parts, args)).await;
        metrics::record_call(self.metrics(), info.map(|f| f.name), &result, started.elapsed());
        if result.is_ok() && info.is_some_and(|f| f.kind != FunctionKind::Query) {
            self.inner.writes.notify_one();
        }
        result
    }
}
