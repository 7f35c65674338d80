//! The HTTP gateway (axum).
//!
//! | route | answer |
//! |-------|--------|
//! | `GET /health` | 200 `{"status":"ok"}` while the process lives |
//! | `GET /ready` | 200 when the database answers and every migration is applied, else 503 with the reason as `application/problem+json` |
//! | `GET /metrics` | the node's metrics in the Prometheus text format |
//! | `POST /rpc` | JSON-RPC 2.0: single calls, batches (up to 100), notifications |
//! | `POST /rpc/{function}` | the body is the arguments; `200 {"data": …}` or a problem |
//!
//! Every request gets an `X-Request-Id` (kept from the request or generated, and echoed), runs
//! in a `forge.http` span that continues an incoming W3C `traceparent`, and logs one
//! `forge::access` event. Callers authenticate with a bearer JWT or an API key ([`auth`]);
//! functions may be rate-limited (token buckets in Postgres, kept by `functions`). Bodies over
//! `[gateway] body_limit` get 413 and requests over `request_timeout` 408, as problems; CORS
//! follows `[gateway] cors_origins`.

pub mod api_keys;
pub mod auth;
mod key_cache;
mod local;
mod metrics;
mod problem;
mod request;
mod routes;
mod rpc;
mod serve;
mod sql;
mod state;

pub use api_keys::{ApiKey, ApiKeyError, ApiKeys, CreatedApiKey, NewApiKey};
pub use auth::{AuthError, Authenticator, TokenRequest, mint_token};
pub(crate) use local::{is_local, is_local_request};
pub use problem::{PROBLEM_JSON, Problem};
pub use routes::{router, router_with};
pub use serve::Connection;
pub(crate) use serve::{ServeSettings, serve};
pub use state::GatewayState;
