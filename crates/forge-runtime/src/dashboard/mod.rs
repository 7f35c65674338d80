//! The built-in dashboard: pages at `/_dashboard` (embedded assets, `pages`) over a JSON API at
//! `/_api` (`api/`, one file per resource). It owns its state ([`DashboardState`]) and router;
//! the node merges that router into the gateway's when `[dashboard] enabled`, so the gateway's
//! layers (request ids, traces, access logs, body limit, timeout, CORS) apply to it too.
//!
//! | route | answers |
//! |-------|---------|
//! | `GET /_api/overview` | jobs by state, nodes and the leader, the latest failures |
//! | `GET /_api/jobs` | jobs, newest first: `state`, `kind`, `queue`, `tag`, `args` (containment), `since`, `until` filters, `limit` (≤ 500), `before` (an id: the next page) |
//! | `GET /_api/jobs/{id}` | one job: arguments, output, every failed attempt's error, progress, timing, node, trace id |
//! | `GET /_api/jobs/{id}/logs` | that job's logs, newest first |
//! | `GET /_api/jobs/{id}/trace` | the trace that job runs in, its attempts included |
//! | `GET /_api/job-kinds` | the kinds `POST /_api/jobs` accepts |
//! | `GET /_api/logs` | logs: `level` (minimum), `q` (text), `job`, `trace`, `node`, `since`, `until`, `limit`, `before_at` + `before_id` |
//! | `GET /_api/traces/{trace_id}` | a trace as a span tree |
//! | `GET /_api/metrics`, `GET /_api/metrics/{name}` | metric names; a metric's series: `since`, `until`, `step` (`"1m"`), `label` (`key:value`, repeatable) |
//! | `GET /_api/queues`, `GET /_api/crons`, `GET /_api/nodes`, `GET /_api/functions` | what their pages show |
//! | `POST /_api/jobs` | dispatches a job, its arguments checked against the kind's type (422 if they do not fit) |
//! | `POST /_api/jobs/{id}/{retry,cancel,run,delete}` | one job (409 when its state does not allow it) |
//! | `POST /_api/jobs/{retry,cancel}` | every job a filter selects, 10,000 at most per call |
//! | `POST /_api/queues/{name}/{pause,resume}`, `POST /_api/crons/{name}/{trigger,pause,resume}` | operator controls |
//! | `GET /_api/clients` | the job API's clients, their counts and keys (prefixes only) |
//! | `GET /_api/webhooks`, `GET /_api/webhooks/{id}` | webhook endpoints with the last day's deliveries; one endpoint with its delivery attempts (`cursor`, `limit`) |
//! | `POST /_api/webhooks/{id}/{enable,disable}`, `…/recover` `{since}`, `…/resend` `{event_id}` | operator controls |
//!
//! State-changing calls need the `X-Forge-Csrf` header (any value): 403 without it.
//!
//! Errors are `application/problem+json`: 400 for a bad parameter (naming it), 401 without
//! valid credentials, 403 without the dashboard's role, 404 for what does not exist. Access is
//! decided per request: open in development mode (`[project] mode`, with `[dashboard]
//! open_on_loopback`) to a request from this machine (peer and listener address loopback, a
//! loopback `Host`, no proxy headers); every other request needs the `[dashboard] role`
//! (`forge:admin` by default). The pages themselves hold no data and are served to anyone.

mod api;
mod pages;
mod sql;
mod state;

use axum::Router;

pub(crate) use api::live_sources;
pub(crate) use state::DashboardState;

/// The dashboard's pages and its `/_api`, with their state.
pub(crate) fn router(state: DashboardState) -> Router {
    api::router(state.clone()).merge(pages::router()).with_state(state)
}
