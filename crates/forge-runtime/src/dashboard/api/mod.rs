//! The `/_api` handlers, one file per resource, behind one access check.
//!
//! - `jobs.rs`: listings, one job (its logs and trace), dispatch, the operator actions;
//! - `queues.rs`, `crons.rs`: their listings and controls;
//! - `telemetry.rs`: logs, traces and metrics;
//! - `workflows.rs`: workflow runs, a run's timeline, cancel / send-event / resume / retry;
//! - `cluster.rs`: the overview, nodes and functions;
//! - `clients.rs`: the job API's clients and keys, webhook endpoints and their deliveries;
//! - `live.rs`: the overview, the jobs list and a job as live sources of `/ws`;
//! - `extract.rs`: path and query parameters through serde, with 400s naming the parameter;
//! - `error.rs`: [`ApiError`], every answer that is not a success, as RFC 7807 problems.

mod clients;
mod cluster;
mod crons;
mod error;
mod extract;
mod jobs;
mod live;
mod queues;
mod telemetry;
mod workflows;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use self::error::problem;
use super::DashboardState;
use crate::gateway::is_local_request;

pub(crate) use self::live::sources as live_sources;

/// The `/_api` routes, behind the access check.
pub(crate) fn router(state: DashboardState) -> Router<DashboardState> {
    Router::new()
        .route("/_api/overview", get(cluster::overview))
        .route("/_api/nodes", get(cluster::nodes))
        .route("/_api/live", get(cluster::live))
        .route("/_api/functions", get(cluster::functions))
        .route("/_api/jobs", get(jobs::list).post(jobs::dispatch))
        .route("/_api/jobs/retry", post(jobs::retry_all))
        .route("/_api/jobs/cancel", post(jobs::cancel_all))
        .route("/_api/jobs/{id}", get(jobs::one))
        .route("/_api/jobs/{id}/logs", get(jobs::logs))
        .route("/_api/jobs/{id}/trace", get(jobs::trace))
        .route("/_api/jobs/{id}/retry", post(jobs::retry))
        .route("/_api/jobs/{id}/cancel", post(jobs::cancel))
        .route("/_api/jobs/{id}/run", post(jobs::run_now))
        .route("/_api/jobs/{id}/delete", post(jobs::delete))
        .route("/_api/job-kinds", get(jobs::kinds))
        .route("/_api/queues", get(queues::list))
        .route("/_api/queues/{name}/pause", post(queues::pause))
        .route("/_api/queues/{name}/resume", post(queues::resume))
        .route("/_api/crons", get(crons::list))
        .route("/_api/crons/{name}/trigger", post(crons::trigger))
        .route("/_api/crons/{name}/pause", post(crons::pause))
        .route("/_api/crons/{name}/resume", post(crons::resume))
        .route("/_api/workflows", get(workflows::list))
        .route("/_api/workflows/{id}", get(workflows::one))
        .route("/_api/workflows/{id}/cancel", post(workflows::cancel))
        .route("/_api/workflows/{id}/events", post(workflows::send_event))
        .route("/_api/workflows/{id}/resume", post(workflows::resume))
        .route("/_api/workflows/{id}/retry", post(workflows::retry))
        .route("/_api/clients", get(clients::list))
        .route("/_api/webhooks", get(clients::endpoints))
        .route("/_api/webhooks/{id}", get(clients::endpoint))
        .route("/_api/webhooks/{id}/enable", post(clients::enable))
        .route("/_api/webhooks/{id}/disable", post(clients::disable))
        .route("/_api/webhooks/{id}/recover", post(clients::recover))
        .route("/_api/webhooks/{id}/resend", post(clients::resend))
        .route("/_api/logs", get(telemetry::logs))
        .route("/_api/traces/{trace_id}", get(telemetry::trace))
        .route("/_api/metrics", get(telemetry::metric_names))
        .route("/_api/metrics/{name}", get(telemetry::metric))
        .layer(middleware::from_fn_with_state(state, admin_only))
}

/// The header every state-changing call carries. A page on another site can neither add it to
/// a form post nor send it with `fetch` without a CORS preflight this gateway refuses, so a
/// browser that has the dashboard open cannot be made to act by another site.
pub(crate) const CSRF_HEADER: &str = "x-forge-csrf";

/// Open to a local request in development mode ([`is_local_request`]); otherwise the
/// dashboard's role (`[dashboard] role`, `forge:admin` by default). State-changing calls (POST)
/// also need [`CSRF_HEADER`].
async fn admin_only(State(state): State<DashboardState>, request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST && !request.headers().contains_key(CSRF_HEADER) {
        let detail = format!("state-changing calls need the `{CSRF_HEADER}` header");
        return problem(StatusCode::FORBIDDEN, "csrf", detail, request.uri().path());
    }
    if state.opens_locally() && is_local_request(&request) {
        return next.run(request).await;
    }
    let instance = request.uri().path().to_owned();
    let role = state.role();
    match state.authenticator().authenticate(request.headers()).await {
        Ok(auth) if auth.has_role(role) => next.run(request).await,
        Ok(auth) if auth.is_authenticated() => {
            problem(StatusCode::FORBIDDEN, "forbidden", format!("the dashboard needs the `{role}` role"), &instance)
        }
        Ok(_) | Err(_) => {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("the dashboard needs credentials with the `{role}` role (a bearer JWT or an API key)"),
                &instance,
            );
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}
