//! The router, its layers and its probes (`/health`, `/ready`, `/metrics`).

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::problem::Problem;
use super::state::GatewayState;
use super::{metrics, request, rpc};
use crate::db::sql;
use crate::observability::sample_queue_depth;

/// How long `/ready` waits for the database before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The gateway's router: `/health`, `/ready`, `/rpc`, `/rpc/{function}`, `/metrics` and the
/// files of `[gateway] static_dir`, with
/// request ids, trace context, access logs, the body limit (413), the request timeout (408)
/// and CORS as configured.
pub fn router(state: GatewayState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes (the dashboard's) served beside the gateway's, under the same
/// layers.
pub fn router_with(state: GatewayState, extra: Router) -> Router {
    let settings = state.http_settings().clone();
    let gateway =
        Router::new().route("/health", get(health)).route("/ready", get(ready)).route("/metrics", get(serve_metrics));
    // Functions run where the `function` role is; elsewhere `/rpc` says so.
    let gateway: Router = if settings.functions {
        gateway.route("/rpc", post(rpc::call_jsonrpc)).route("/rpc/{function}", post(rpc::call_rest))
    } else {
        gateway.route("/rpc", post(no_functions)).route("/rpc/{function}", post(no_functions))
    }
    .with_state(state.clone());
    let routed = gateway.merge(extra);
    // Anything unrouted: a file of `[gateway] static_dir` for a GET, else a 404 problem.
    let routed = match &settings.static_dir {
        Some(dir) => routed.fallback_service(
            tower_http::services::ServeDir::new(dir)
                .append_index_html_on_directories(true)
                .call_fallback_on_method_not_allowed(true)
                .fallback(axum::handler::HandlerWithoutStateExt::into_service(not_found)),
        ),
        None => routed.fallback(not_found),
    };
    // One stack around every route (each `Router::layer` call boxes every route once more, and
    // each box is cloned per request): the request's observation, load shedding and timeout in
    // one middleware, then CORS, then the body limit.
    let layers = tower::ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(request::Gate::new(state, &settings), request::observe))
        .option_layer(cors_layer(&settings.cors_origins))
        .layer(DefaultBodyLimit::max(settings.body_limit));
    routed.layer(layers)
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

/// `/rpc` on a node without the `function` role.
async fn no_functions(uri: axum::http::Uri) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "this node does not run functions: give it the `function` role ([node] roles), or send /rpc to a node that has it",
    )
    .with_type("urn:forge:problem:no-functions")
    .with_instance(uri.path().to_owned())
    .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    Problem::new(StatusCode::NOT_FOUND, format!("no route for {}", uri.path()))
        .with_instance(uri.path().to_owned())
        .into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /metrics`: everything the node's registry holds, in the text format. The node's own
/// gauges are read off it (no database work); the queue depths are counted at most once per
/// [`DEPTH_EVERY`] however often the endpoint is scraped. With `[gateway] metrics_token` set,
/// the scraper must send `Authorization: Bearer <token>`.
async fn serve_metrics(State(state): State<GatewayState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.http_settings().metrics_token {
        let sent =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let matches =
            sent.is_some_and(|sent| bool::from(subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), token.as_bytes())));
        if !matches {
            let mut response =
                Problem::new(StatusCode::UNAUTHORIZED, "/metrics needs `Authorization: Bearer <metrics_token>`")
                    .with_instance("/metrics")
                    .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let telemetry = state.telemetry();
    telemetry.sample_gauges(state.pool());
    if state.depth_sample_due(DEPTH_EVERY)
        && let Err(e) = sample_queue_depth(telemetry.metrics(), state.pool()).await
    {
        tracing::warn!(error = %e, "/metrics could not count jobs");
    }
    let mut response = (StatusCode::OK, telemetry.metrics().render()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(metrics::TEXT_FORMAT));
    response
}

/// How stale `forge_queue_depth` may be on `/metrics`.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

async fn ready(State(state): State<GatewayState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, not_ready_reason(&state)).await {
        Ok(None) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Ok(Some(reason)) => not_ready(reason),
        Err(_) => not_ready(format!("database unreachable: no answer within {}s", READY_TIMEOUT.as_secs())),
    }
}

/// Why the node is not ready, in words safe to show anyone: the database's own error text
/// (which may name hosts, users or tables) goes to the node's log, not to the caller.
async fn not_ready_reason(state: &GatewayState) -> Option<String> {
    let pool = state.pool();
    if let Err(e) = sqlx::query(sql::PING).execute(pool).await {
        tracing::warn!(error = %e, "/ready: the database did not answer");
        return Some("database unreachable".to_owned());
    }
    match state.migrator().pending_reason(pool).await {
        Ok(reason) => reason,
        Err(e) => {
            tracing::warn!(error = %e, "/ready: cannot read the migration ledger");
            Some("cannot read the migration ledger".to_owned())
        }
    }
}

fn not_ready(reason: String) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, reason)
        .with_type("urn:forge:problem:not-ready")
        .with_instance("/ready")
        .into_response()
}
