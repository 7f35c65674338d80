//! The HTTP gateway (axum).
//!
//! | route         | answer                                                                  |
//! |---------------|-------------------------------------------------------------------------|
//! | `GET /health` | 200 `{"status":"ok"}` while the process lives                           |
//! | `GET /ready`  | 200 when the database answers and every migration is applied, else 503 with the reason as `application/problem+json` |
//!
//! Requests larger than `gateway.body_limit` get 413. JSON-RPC, the dashboard and metrics join
//! this router as their components arrive.

mod problem;
mod routes;

pub use problem::{PROBLEM_JSON, Problem};
pub use routes::{GatewayState, router};
