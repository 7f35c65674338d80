//! The router, its shared state and its probes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use forge_core::ForgeConfig;
use sqlx::PgPool;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use super::auth::Authenticator;
use super::problem::Problem;
use super::{metrics, request, rpc};

use crate::db::{Migrator, read_only_pool, sql};
use crate::functions::{CallParts, ForgeError, FunctionRegistry};
use crate::jobs::Notifier;
use crate::observability::{Metrics, Telemetry};

/// How long `/ready` waits for the database before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the gateway's handlers share.
#[derive(Clone, Debug)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    read_pool: PgPool,
    migrator: Migrator,
    functions: FunctionRegistry,
    auth: Authenticator,
    telemetry: Arc<Telemetry>,
    notifier: Option<Notifier>,
    body_limit: usize,
    timeout: Duration,
    cors_origins: Vec<String>,
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
        let telemetry = Telemetry::new("gateway", config.observability.buffer_size.get());
        Self::assemble(pool, read_pool, migrator, config, None, telemetry)
    }

    pub(crate) fn assemble(
        pool: PgPool,
        read_pool: PgPool,
        migrator: Migrator,
        config: &ForgeConfig,
        notifier: Option<Notifier>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let gw = &config.gateway;
        Self {
            inner: Arc::new(Inner {
                read_pool,
                auth: Authenticator::new(&config.auth, pool.clone()),
                pool,
                migrator,
                functions: FunctionRegistry::collect(),
                telemetry,
                notifier,
                body_limit: usize::try_from(gw.body_limit.bytes()).unwrap_or(usize::MAX),
                timeout: gw.request_timeout.as_std(),
                cors_origins: gw.cors_origins.clone(),
            }),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

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

    /// A call's parts, before the caller is known.
    pub(crate) fn call_parts(&self) -> CallParts {
        CallParts::new(self.inner.pool.clone(), self.inner.read_pool.clone()).with_notifier(self.inner.notifier.clone())
    }

    /// Runs a function and counts it in the metrics.
    pub(crate) async fn call(
        &self,
        function: &str,
        parts: CallParts,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ForgeError> {
        let started = std::time::Instant::now();
        let result = self.inner.functions.call(function, parts, args).await;
        metrics::record_call(self, function, &result, started.elapsed());
        result
    }
}

/// The gateway's router: `/health`, `/ready`, `/rpc`, `/rpc/{function}` and `/metrics`, with
/// request ids, trace context, access logs, the body limit (413), the request timeout (408)
/// and CORS as configured.
pub fn router(state: GatewayState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes (the dashboard's) served beside the gateway's, under the same
/// layers.
pub fn router_with(state: GatewayState, extra: Router) -> Router {
    let inner = &state.inner;
    let gateway: Router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics::serve))
        .route("/rpc", post(rpc::call_jsonrpc))
        .route("/rpc/{function}", post(rpc::call_rest))
        .with_state(state.clone());
    let mut router = gateway
        .merge(extra)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(inner.body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, inner.timeout));
    if let Some(cors) = cors_layer(&inner.cors_origins) {
        router = router.layer(cors);
    }
    router.layer(middleware::from_fn_with_state(state, request::observe))
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-api-key"),
                header::HeaderName::from_static("x-request-id"),
                header::HeaderName::from_static("traceparent"),
            ])
            .expose_headers([header::HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

async fn not_found(uri: axum::http::Uri) -> Response {
    Problem::new(StatusCode::NOT_FOUND, format!("no route for {}", uri.path()))
        .with_instance(uri.path().to_owned())
        .into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(state): State<GatewayState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, not_ready_reason(&state)).await {
        Ok(None) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Ok(Some(reason)) => not_ready(reason),
        Err(_) => not_ready(format!("database unreachable: no answer within {}s", READY_TIMEOUT.as_secs())),
    }
}

async fn not_ready_reason(state: &GatewayState) -> Option<String> {
    let pool = &state.inner.pool;
    if let Err(e) = sqlx::query(sql::PING).execute(pool).await {
        return Some(format!("database unreachable: {e}"));
    }
    match state.inner.migrator.pending_reason(pool).await {
        Ok(reason) => reason,
        Err(e) => Some(format!("cannot read the migration ledger: {e}")),
    }
}

fn not_ready(reason: String) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, reason)
        .with_type("urn:forge:problem:not-ready")
        .with_instance("/ready")
        .into_response()
}
