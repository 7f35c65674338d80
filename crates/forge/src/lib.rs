//! **Forge**: a job platform in which PostgreSQL is the only infrastructure.
//!
//! An application is one binary. It reads `forge.toml`, calls [`Forge::run`], and becomes a
//! gateway, a worker, a scheduler or all of them, as `[node] roles` say. With no
//! `DATABASE_URL`, Forge starts its own PostgreSQL from the machine's server binaries.
//!
//! ```no_run
//! use forge::prelude::*;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), forge::Error> {
//!     let config = ForgeConfig::load_or_default("forge.toml")?;
//!     Forge::builder().config(config).build()?.run().await
//! }
//! ```
//!
//! Tests get a fresh, migrated database each with the `testing` feature:
//!
//! ```no_run
//! # async fn demo() -> Result<(), forge::Error> {
//! let db = forge::testing::TestDatabase::new().await?;
//! let node = forge::Forge::builder().config(db.config()).build()?.start().await?;
//! node.stop().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod app;

pub use app::AppArgs;
pub use forge_core as core;
pub use forge_macros::{action, cron, job, mutation, query, workflow};
pub use forge_runtime::{functions, jobs, observability, workflows};
/// The `metrics` facade, re-exported: `metrics::counter!` and friends land in the node's
/// metrics, `/metrics` and `forge_metrics`.
pub use metrics;
/// `schemars`, re-exported at the version Forge uses: a function's argument and result types that
/// `#[derive(JsonSchema)]` get precise types in the client `forge generate ts` writes (the derive
/// needs `schemars = "1"` among the application's own dependencies).
pub use schemars;
/// `sqlx`, re-exported at the version Forge uses: `forge::sqlx::query(...)` on a context's
/// `db()` or `tx()`.
pub use sqlx;
/// `tracing`, re-exported: events and spans inside jobs and functions are stored with them.
pub use tracing;

/// Crons: `#[forge::cron]`'s runtime side.
pub mod cron {
    pub use forge_runtime::cron::*;
}

/// Items the macros' generated code uses; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use forge_runtime::__private::{GeneratedJob, assert_generated_job, inventory};
    pub use serde_json;
}
pub use forge_runtime::{ConfigError, ForgeConfig};
pub use forge_runtime::{
    Error, Forge, ForgeBuilder, Result, RunningForge, api, cluster, config, db, gateway, init_tracing, text,
};

/// Per-test databases (cargo feature `testing`); see [`testing::TestDatabase`].
#[cfg(feature = "testing")]
pub mod testing {
    pub use forge_runtime::testing::*;
}

/// Everything an application usually needs: `use forge::prelude::*`.
pub mod prelude {
    pub use crate::cluster::Shutdown;
    pub use crate::config::{ForgeConfig, Role};
    pub use crate::cron::CronContext;
    pub use crate::functions::{ActionContext, Auth, ForgeError, MutationContext, QueryContext};
    pub use crate::jobs::{DispatchOptions, Dispatcher, Job, JobContext, JobError, JobId, JobState, Priority};
    pub use crate::workflows::{RetryPolicy, StartOptions, Workflow, WorkflowContext, WorkflowError};
    pub use crate::{Forge, ForgeBuilder, RunningForge};
    pub use schemars::JsonSchema;
}

/// README.md's example, compiled as a doctest so it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
