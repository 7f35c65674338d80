//! The HTTP gateway (axum).
//!
//! | route         | answer                                                                  |
//! |---------------|-------------------------------------------------------------------------|
//! | `GET /health` | 200 `{"status":"ok"}` while the process lives                           |
//! | `GET /ready`  | 200 when the database answers and every migration is applied, else 503 with the reason as `application/problem+json` |
//!
//! | `POST /rpc`   | JSON-RPC 2.0: single calls, batches (up to 100), notifications        |
//! | `POST /rpc/{function}` | the body is the arguments; `200 {"data": …}` or a problem     |
//!
//! Requests larger than `gateway.body_limit` get 413, as a problem. Auth, rate limits, the
//! dashboard and metrics join this router as their components arrive.

mod problem;
mod routes;
mod rpc;

pub use problem::{PROBLEM_JSON, Problem};
pub use routes::{GatewayState, router};
