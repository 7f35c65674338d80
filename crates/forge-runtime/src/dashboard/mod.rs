//! The dashboard's JSON API, served by the gateway under `/_api`.
//!
//! | route | answers |
//! |-------|---------|
//! | `GET /_api/jobs` | jobs, newest first: `state`, `kind`, `queue` filters, `limit` (≤ 500), `before` (an id: the next page) |
//! | `GET /_api/jobs/{id}` | one job: arguments, output, every failed attempt's error, progress, timing, node, trace id |
//! | `GET /_api/jobs/{id}/logs` | that job's logs, newest first |
//! | `GET /_api/logs` | logs: `level` (minimum), `q` (text), `job`, `trace`, `node`, `since`, `until`, `limit`, `before_at` + `before_id` |
//! | `GET /_api/traces/{trace_id}` | a trace as a span tree |
//! | `GET /_api/metrics/{name}` | a metric's series: `since`, `until`, `step` (`"1m"`), `label` (`key:value`, repeatable) |
//! | `GET /_api/queues` | unfinished jobs by queue and state |
//! | `GET /_api/nodes` | nodes, their roles, heartbeat age, and the leader |
//! | `GET /_api/functions` | registered queries, mutations and actions |
//! | `POST /_api/jobs/{id}/retry` | makes a discarded or cancelled job available again (409 otherwise) |
//! | `POST /_api/jobs/{id}/cancel` | cancels a job, through its worker if it is running (409 if finished) |
//!
//! State-changing calls need the `X-Forge-Csrf` header (any value): 403 without it.
//!
//! Errors are `application/problem+json`: 400 for a bad parameter (naming it), 401 without
//! valid credentials, 403 without the `admin` role, 404 for what does not exist. Access: open
//! when the gateway listens on loopback only and `[dashboard] open_on_loopback` (development);
//! otherwise callers need the `admin` role.

mod api;
mod pages;
mod sql;

use axum::Router;

use crate::gateway::GatewayState;

/// The dashboard's pages and its `/_api`.
pub(crate) fn router(state: GatewayState) -> Router<GatewayState> {
    api::router(state).merge(pages::router())
}
