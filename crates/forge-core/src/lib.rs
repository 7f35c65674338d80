//! Pure types shared by every part of Forge:
//!
//! - [`config`]: `forge.toml` as typed sections, read with errors that name the key and line,
//!   and [`ForgeConfig::validate`] for what parsing alone cannot check;
//! - [`jobs`]: the job state machine and its transition table, a job's record and its failed
//!   attempts ([`jobs::JobRecord`], [`jobs::AttemptError`]), priorities, backoff, per-kind options
//!   and the outcomes a handler returns ([`jobs::JobError`]);
//! - [`schedule`]: cron expressions with time zones;
//! - [`text`]: text and JSON made storable (no NUL) within documented size caps;
//! - [`workflows`]: what a durable workflow returns, step retry policies and step names.
//!
//! Nothing here opens a socket or a database connection. The optional `sqlx` feature (which
//! `forge-runtime` turns on) only maps these types to columns. Most applications reach them
//! through the `forge` facade (`use forge::prelude::*`).
//!
//! ```
//! use forge_core::config::{ForgeConfig, Role};
//!
//! let config = ForgeConfig::parse_toml("[gateway]\nport = 9000\n")?;
//! assert_eq!(config.gateway.port.get(), 9000);
//! assert!(config.node.roles.contains(Role::Worker));
//! # Ok::<(), forge_core::config::ConfigError>(())
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod jobs;
pub mod schedule;
pub mod text;
pub mod workflows;

pub use config::{ConfigError, ForgeConfig};
