//! Pure types shared by every part of Forge: configuration, errors and (from later
//! components) the traits the runtime implements.
//!
//! Nothing here touches a socket or a database. Most applications reach these types through
//! the `forge` facade (`use forge::prelude::*`).
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

pub use config::{ConfigError, ForgeConfig};
