//! [`ForgeConfig::validate`]: the checks a value passes only together with others, or only once
//! parsed further than TOML does (a log filter). `forge config` and a node's build both run
//! them, so the two always agree about a configuration.

use super::ForgeConfig;
use super::error::ConfigError;

/// The shortest JWT secret accepted, in bytes.
const MIN_JWT_SECRET: usize = 32;

/// The shortest flush and metrics intervals: shorter ones would write more than they record.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

impl ForgeConfig {
    /// Checks what parsing alone cannot: the log filters are valid `tracing` directives, the
    /// telemetry intervals are at least 10 ms, a JWT secret has at least 32 bytes,
    /// `worker.claim_window` is less than half of `worker.lease`, and `node.dead_after` is at
    /// least twice `node.heartbeat_interval` (or live nodes would be declared dead).
    ///
    /// ```
    /// use forge_core::ForgeConfig;
    ///
    /// let config = ForgeConfig::parse_toml("[node]\nheartbeat_interval = \"5s\"\ndead_after = \"6s\"\n")?;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.key(), Some("node.dead_after"));
    /// # Ok::<(), forge_core::ConfigError>(())
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let obs = &self.observability;
        for (key, directives) in
            [("observability.log_level", &obs.log_level), ("observability.store_level", &obs.store_level)]
        {
            tracing_subscriber::EnvFilter::try_new(directives)
                .map_err(|e| invalid(key, format!("invalid filter {directives:?}: {e}")))?;
        }
        for (key, value) in [
            ("observability.flush_interval", obs.flush_interval),
            ("observability.metrics_interval", obs.metrics_interval),
        ] {
            if value.as_std() < MIN_INTERVAL {
                return Err(invalid(key, format!("{value} is too short: at least 10ms")));
            }
        }
        if let Some(secret) = self.auth.jwt_secret.as_deref().filter(|s| !s.is_empty())
            && secret.len() < MIN_JWT_SECRET
        {
            return Err(invalid(
                "auth.jwt_secret",
                format!(
                    "is {} bytes: use at least {MIN_JWT_SECRET} (an HMAC key shorter than its hash is guessable)",
                    secret.len()
                ),
            ));
        }
        let worker = &self.worker;
        if worker.claim_window.as_std() * 2 >= worker.lease.as_std() {
            return Err(invalid(
                "worker.claim_window",
                format!(
                    "{} is too long: it must be less than half of worker.lease ({})",
                    worker.claim_window, worker.lease
                ),
            ));
        }
        let node = &self.node;
        if node.dead_after.as_std() < node.heartbeat_interval.as_std() * 2 {
            return Err(invalid(
                "node.dead_after",
                format!(
                    "{} is too short: it must be at least twice node.heartbeat_interval ({}), or live nodes would be declared dead",
                    node.dead_after, node.heartbeat_interval
                ),
            ));
        }
        Ok(())
    }
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        ForgeConfig::default().validate().expect("defaults");
    }

    #[test]
    fn each_check_names_its_key() {
        let cases = [
            ("[observability]\nlog_level = \"info,[\"\n", "observability.log_level"),
            ("[observability]\nstore_level = \"=nope\"\n", "observability.store_level"),
            ("[observability]\nflush_interval = \"5ms\"\n", "observability.flush_interval"),
            ("[observability]\nmetrics_interval = \"1ms\"\n", "observability.metrics_interval"),
            ("[node]\nheartbeat_interval = \"5s\"\ndead_after = \"6s\"\n", "node.dead_after"),
            ("[auth]\njwt_secret = \"s3cret\"\n", "auth.jwt_secret"),
            ("[worker]\nlease = \"1s\"\nclaim_window = \"500ms\"\n", "worker.claim_window"),
        ];
        for (toml, key) in cases {
            let err = ForgeConfig::parse_toml(toml).expect("parses").validate().expect_err(key);
            assert_eq!(err.key(), Some(key), "{err}");
            assert!(err.to_string().starts_with(&format!("`{key}`: ")), "{err}");
        }
    }
}
