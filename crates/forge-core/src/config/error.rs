//! [`ConfigError`]: why a configuration could not be read or used, naming the key (and the line,
//! for a file).

use std::path::PathBuf;

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is not valid TOML, or a value in it is not allowed.
    #[error("{file}:{line}:{column}: {}{message}", key_prefix(key))]
    File {
        /// The file, as given.
        file: PathBuf,
        /// The dotted key, such as `gateway.port`; empty for a syntax error.
        key: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An environment variable holds a value that is not allowed.
    #[error("environment variable {var}: {}{message}", key_prefix(key))]
    Env {
        /// The variable, such as `FORGE_GATEWAY_PORT`.
        var: String,
        /// The dotted key it sets.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value parses but cannot be used, alone or with another (see
    /// [`ForgeConfig::validate`](super::ForgeConfig::validate)).
    #[error("`{key}`: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read {}: {source}", file.display())]
    Io {
        /// The file, as given.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() { String::new() } else { format!("`{key}`: ") }
}

impl ConfigError {
    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::File { key, .. } | ConfigError::Env { key, .. } | ConfigError::Invalid { key, .. }
                if !key.is_empty() =>
            {
                Some(key)
            }
            _ => None,
        }
    }

    /// The 1-based line in the file, for errors found in a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::File { line, .. } => Some(*line),
            _ => None,
        }
    }
}
