//! [`WebhookSettings`]: `[api.webhooks]` as deliveries use it, with the HTTP client they share.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use forge_core::config::WebhookConfig;

use super::guard::{AddressPolicy, GuardedClient};
use super::lookup::Endpoints;
use super::record::Recorder;

/// How a node delivers webhooks: handed to the delivery job through the node's job extensions.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub(super) schedule: Vec<Duration>,
    pub(super) disable_after: Duration,
    pub(super) poll_interval: Duration,
    pub(super) client: GuardedClient,
    /// Records the deliveries' attempts in batches; started by the first delivery.
    recorder: Arc<OnceLock<Recorder>>,
    /// Reads the deliveries' endpoints in batches; started by the first delivery.
    endpoints: Arc<OnceLock<Endpoints>>,
}

impl WebhookSettings {
    /// The settings of `[api.webhooks]`.
    pub fn new(config: &WebhookConfig) -> Self {
        let policy = AddressPolicy { allow_private: config.allow_private, allowed: config.allowed_ranges.clone() };
        let client =
            GuardedClient::new(policy, config.timeout.as_std(), concat!("forge-webhooks/", env!("CARGO_PKG_VERSION")));
        let schedule: Vec<Duration> = config.schedule.iter().map(|d| d.as_std()).collect();
        Self {
            schedule,
            disable_after: config.disable_after.as_std(),
            poll_interval: config.poll_interval.as_std(),
            client,
            recorder: Arc::default(),
            endpoints: Arc::default(),
        }
    }

    /// The recorder of delivery attempts, started over `pool` if it was not.
    pub(super) fn recorder(&self, pool: &sqlx::PgPool) -> &Recorder {
        self.recorder.get_or_init(|| Recorder::start(pool.clone(), self.disable_after))
    }

    /// The reader of the deliveries' endpoints, started over `pool` if it was not.
    pub(super) fn endpoints(&self, pool: &sqlx::PgPool) -> &Endpoints {
        self.endpoints.get_or_init(|| Endpoints::start(pool.clone()))
    }

    /// The address policy deliveries follow.
    pub(crate) fn policy(&self) -> &AddressPolicy {
        self.client.policy()
    }

    /// Attempts a delivery gets: the first, and one after each delay of the schedule.
    pub(super) fn attempts(&self) -> u32 {
        u32::try_from(self.schedule.len() + 1).unwrap_or(u32::MAX)
    }

    /// The delay after failed attempt `attempt` (from 1), with up to 10% jitter (`unit` in
    /// 0..1); a `Retry-After` replaces it, capped at the schedule's longest delay.
    pub(super) fn delay_after(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let longest = self.schedule.iter().copied().max().unwrap_or_default();
        if let Some(asked) = retry_after {
            return asked.min(longest);
        }
        let base = self.schedule.get((attempt as usize).saturating_sub(1)).copied().unwrap_or(longest);
        base + base.mul_f64(0.1 * unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_the_published_one_with_jitter_and_retry_after_capped() {
        let settings = WebhookSettings::new(&WebhookConfig::default());
        assert_eq!(settings.attempts(), 8);
        assert_eq!(settings.delay_after(1, None, 0.0), Duration::from_secs(5));
        assert_eq!(settings.delay_after(2, None, 0.0), Duration::from_secs(300));
        assert_eq!(settings.delay_after(2, None, 1.0), Duration::from_secs(330));
        assert_eq!(settings.delay_after(7, None, 0.0), Duration::from_secs(36_000));
        assert_eq!(settings.delay_after(1, Some(Duration::from_secs(60)), 0.5), Duration::from_secs(60));
        assert_eq!(settings.delay_after(1, Some(Duration::from_secs(999_999)), 0.5), Duration::from_secs(36_000));
    }
}
