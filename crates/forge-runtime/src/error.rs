//! The runtime's error type.

use crate::db::{DbError, MigrationError};

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `forge.toml` or the environment holds a bad value.
    #[error(transparent)]
    Config(#[from] forge_core::ConfigError),
    /// A setting is well-formed TOML but cannot be used (a bad log filter, an unknown host).
    #[error("`{key}`: {message}")]
    Setting {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The database could not be reached.
    #[error(transparent)]
    Database(#[from] DbError),
    /// Migrations could not be read or applied.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The gateway could not listen.
    #[error("cannot listen on {addr}: {source} (change [gateway] port or set FORGE_PORT)")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gateway failed while serving.
    #[error("gateway failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Waiting for a signal failed.
    #[error("cannot install signal handlers: {0}")]
    Signal(#[source] std::io::Error),
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
