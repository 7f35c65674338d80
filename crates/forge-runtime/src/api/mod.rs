//! The job API for outside clients: `/v1`, switched on by `[api] enabled`.
//!
//! Other programs (a client, holding an API key of its own) submit jobs of the kinds the
//! application exposes (`#[forge::job(api)]` or `[api] kinds`), read them, cancel and retry them,
//! fetch a report, and follow their events as JSON pages or Server-Sent Events. An operator
//! (`[api] operator_role`) creates clients and their keys.
//!
//! | route | who | answer |
//! |-------|-----|--------|
//! | `POST /v1/jobs` | client (`jobs:write`) | 201, the job |
//! | `GET /v1/jobs` | client (`jobs:read`) | the client's jobs, newest first, by keyset pages |
//! | `GET /v1/jobs/{id}` | client | the job (404 for another client's) |
//! | `POST /v1/jobs/{id}/cancel` | client | the job; 409 when it has finished |
//! | `POST /v1/jobs/{id}/retry` | client | the job; 409 unless it failed or was cancelled |
//! | `GET /v1/jobs/{id}/report` | client | state, outcome, output, attempts, timings, events |
//! | `GET /v1/jobs/{id}/events` | client | a page of events; SSE with `Accept: text/event-stream` |
//! | `POST /v1/clients`, `GET /v1/clients[/{id}]` | operator | clients |
//! | `POST /v1/clients/{id}/keys`, `GET …/keys` | operator | a client's keys (the key shown once) |
//! | `POST …/keys/{key_id}/rotate`, `…/revoke` | operator | a new key (the old one works for the grace period), a revoked key |
//!
//! ## Guarantees
//!
//! - **Idempotency** ([`idempotency`]): a POST with an `Idempotency-Key` runs once per client and
//!   key. The key, a fingerprint of the request and the first response are stored in the
//!   transaction that makes the change; a repeat gets the first response, a different request
//!   with the same key a 422, a repeat while the first is in flight a 409.
//! - **The event feed**: every state change of a client's job is one row in `forge_job_events`,
//!   written by the statement that makes the change (the engine's insert, claim, completer,
//!   rescue, progress, cancel and retry statements), never by a trigger.
//! - **Isolation**: a client sees and touches only its own jobs; another client's job is a 404.
//!
//! ## Files
//!
//! `routes.rs` (the router and who may call what), `jobs.rs`, `reports.rs` and `events.rs` (the
//! job routes), `clients.rs` (clients and keys), `idempotency.rs`, `submit.rs` and
//! `batch.rs` (a submission in one statement, concurrent ones batched), `body.rs` (reading
//! requests), `error.rs` ([`ApiError`], RFC 7807), `types.rs` (what the routes read and
//! write), `sql.rs`.

mod batch;
pub(crate) mod body;
mod clients;
pub(crate) mod error;
mod events;
pub mod idempotency;
pub(crate) mod jobs;
mod limits;
pub mod openapi;
mod reports;
mod routes;
mod sql;
pub(crate) mod state;
mod submit;
pub mod types;
pub mod webhooks;

pub use error::ApiError;
pub use routes::router;
pub use state::ApiState;
