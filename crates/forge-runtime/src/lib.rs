//! Forge's runtime: everything that touches PostgreSQL or the network.
//!
//! Applications use it through the `forge` facade. One folder per component, lowest first (a
//! folder imports only those before it; `crates/forge/tests/structure.rs` checks it):
//!
//! - [`db`]: choosing the server (a `DATABASE_URL` or the embedded cluster), the pool,
//!   migrations, and [`db::Tx`], a context's transaction usable as an executor;
//! - [`observability`]: logs, traces and metrics stored in Postgres, trace context
//!   ([`observability::TraceId`], `traceparent`), and reading them back;
//! - [`jobs`]: the job engine: dispatch, the worker (claim, execute, outcome policy, leases),
//!   batched completion, rescue, operator actions and listings;
//! - [`cron`]: `#[forge::cron]` schedules fired exactly once by the leader;
//! - [`workflows`]: durable workflows: a run is a job, its steps checkpointed rows;
//! - [`functions`]: queries, mutations and actions, and the one path every call takes (access,
//!   rate limit, cache, timeout);
//! - [`cluster`]: the node's row and heartbeat, leader election and the leader's duties, the
//!   dead-node sweep, shutdown signals;
//! - [`gateway`]: the HTTP server (`/rpc`, JWT and API keys, `/metrics`, RFC 7807 problems);
//! - `dashboard`: the built-in dashboard, with its own state and router, merged into the
//!   gateway's;
//! - [`Forge`]: one node, starting the components its roles name;
//! - `testing` (feature `testing`): a fresh, migrated database per test, and job helpers that run
//!   the worker's own code.
//!
//! The website's "Architecture" page draws how a job and a request flow through them.
//!
//! ```no_run
//! use forge_runtime::{Forge, ForgeConfig};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), forge_runtime::Error> {
//!     let config = ForgeConfig::load_or_default("forge.toml")?;
//!     Forge::builder().config(config).build()?.run().await
//! }
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod cluster;
pub mod cron;
mod dashboard;
pub mod db;
mod error;
mod forge;
pub mod functions;
pub mod gateway;
pub mod jobs;
pub mod observability;
pub mod realtime;
#[cfg(feature = "testing")]
pub mod testing;
pub mod workflows;

pub use error::{Error, Result};

/// Re-exports for `forge`'s macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;

    /// Implemented only by the structs `#[forge::job]` and `#[forge::cron]` generate: a job's
    /// name that resolves to another type means the user's type hides the generated one.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is your own type, and it hides the struct `#[forge::job]` (or `#[forge::cron]`) generates under the same name",
        label = "the job's struct would be named `{Self}`",
        note = "rename your type, or give the job's struct another name: #[forge::job(type_name = \"{Self}Job\")] (or #[forge::cron(..., type_name = \"{Self}Cron\")])"
    )]
    pub trait GeneratedJob {}

    /// Compiles only when `T` is a struct the macros generated (see [`GeneratedJob`]).
    pub const fn assert_generated_job<T: GeneratedJob>() {}
}
pub use forge::{Forge, ForgeBuilder, RunningForge, init_tracing};
pub use forge_core::{ConfigError, ForgeConfig, config, text};
