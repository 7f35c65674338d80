//! Forge's runtime: everything that touches PostgreSQL or the network.
//!
//! Applications use it through the `forge` facade. The pieces, one folder each:
//!
//! - [`db`]: choosing the server (a `DATABASE_URL` or the embedded cluster), the pool, migrations;
//! - [`functions`]: queries, mutations and actions, and the one path every call takes;
//! - [`gateway`]: the HTTP server (`/rpc`, auth, rate limits, `/metrics`, RFC 7807 problems);
//! - [`observability`]: the node's metrics;
//! - [`cluster`]: how a node lives among others (for now, shutdown);
//! - `testing` (feature `testing`): a fresh, migrated database per test.
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
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};

/// Re-exports for `forge`'s macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
pub use forge::{Forge, ForgeBuilder, RunningForge, init_tracing};
pub use forge_core::{ConfigError, ForgeConfig, config};
