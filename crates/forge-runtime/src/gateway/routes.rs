//! The router and its probes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sqlx::PgPool;
use tower_http::timeout::TimeoutLayer;

use super::problem::Problem;
use super::rpc;
use crate::db::{Migrator, sql};
use crate::functions::FunctionRegistry;

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
    migrator: Migrator,
    functions: FunctionRegistry,
}

impl GatewayState {
    /// State over `pool`, with `migrator` naming the migrations `/ready` expects, serving every
    /// registered function.
    pub fn new(pool: PgPool, migrator: Migrator) -> Self {
        Self { inner: Arc::new(Inner { pool, migrator, functions: FunctionRegistry::collect() }) }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(crate) fn functions(&self) -> &FunctionRegistry {
        &self.inner.functions
    }
}

/// The gateway's router, limiting request bodies to `body_limit` bytes and requests to
/// `timeout` (408 past it).
pub fn router(state: GatewayState, body_limit: usize, timeout: Duration) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/rpc", post(rpc::call_jsonrpc))
        .route("/rpc/{function}", post(rpc::call_rest))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .with_state(state)
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
