//! `[api]`: the job API for outside clients (`/v1`).

use serde::{Deserialize, Serialize};

use super::{Duration, IpRange};

/// `[api]`: the job API under `/v1` (clients, their keys, their jobs, events and webhooks).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Whether `/v1` is served. Default `false`.
    pub enabled: bool,
    /// Job kinds clients may submit, besides those declared `#[forge::job(api)]`. Default: none.
    pub kinds: Vec<String>,
    /// The role that manages clients and their keys (`/v1/clients`). Default `"forge:admin"`.
    pub operator_role: String,
    /// How long an `Idempotency-Key` is remembered. Default `"24h"`.
    pub idempotency_ttl: Duration,
    /// How long a job's events are kept. Default `"7d"`.
    pub event_retention: Duration,
    /// `[api.rate_limit]`: each client's token bucket.
    pub rate_limit: ClientRateLimit,
    /// `[api.webhooks]`: how events are delivered to clients' endpoints.
    pub webhooks: WebhookConfig,
}

/// `[api.rate_limit]`: every client draws its `/v1` requests from a token bucket of its own,
/// kept in Postgres (shared by every gateway node): `requests` in a burst, refilled at
/// `requests` per `per`. A request with the bucket empty gets 429 with `Retry-After`; every
/// answer to a client carries `RateLimit-Policy` and `RateLimit` headers.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientRateLimit {
    /// The bucket's size; `0` turns the limit off. Default 100.
    pub requests: u32,
    /// The period over which `requests` are refilled. Default `"1s"`.
    pub per: Duration,
}

impl Default for ClientRateLimit {
    fn default() -> Self {
        Self { requests: 100, per: Duration::from_secs(1) }
    }
}

/// `[api.webhooks]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Longest a delivery may take (connect, send, answer). Default `"10s"`.
    pub timeout: Duration,
    /// The delays between a delivery's attempts: the first attempt is made at once, the next
    /// after the first delay, and so on; a delivery gives up after the last. Each delay gets up
    /// to 10% of jitter; a `Retry-After` answer replaces the next delay (at most the largest
    /// one here). Default `["5s", "5m", "30m", "2h", "5h", "10h", "10h"]` (8 attempts over
    /// about 28 hours).
    pub schedule: Vec<Duration>,
    /// An endpoint whose deliveries have failed without a success for this long is disabled
    /// (visibly: a reason on the endpoint, a warning in the log, a banner in the dashboard).
    /// Default `"5d"`.
    pub disable_after: Duration,
    /// Whether endpoints may be private, loopback or link-local addresses (checked on the
    /// address a name resolves to, at each delivery). Default `false`: such deliveries are
    /// refused (SSRF).
    pub allow_private: bool,
    /// Private ranges allowed even when `allow_private` is false (e.g. `"10.1.2.0/24"`).
    pub allowed_ranges: Vec<IpRange>,
    /// How often a node looks for new events to deliver. Default `"250ms"`.
    pub poll_interval: Duration,
    /// Deliveries a node makes at once (the `forge_webhooks` queue's concurrency). Default 128: deliveries wait on the network, not the CPU.
    pub concurrency: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let schedule = [5, 300, 1800, 7200, 18_000, 36_000, 36_000].map(Duration::from_secs).to_vec();
        Self {
            timeout: Duration::from_secs(10),
            schedule,
            disable_after: Duration::from_secs(5 * 86_400),
            allow_private: false,
            allowed_ranges: Vec::new(),
            poll_interval: Duration::from_millis(250),
            concurrency: 128,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            kinds: Vec::new(),
            operator_role: "forge:admin".to_owned(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            event_retention: Duration::from_secs(7 * 86_400),
            rate_limit: ClientRateLimit::default(),
            webhooks: WebhookConfig::default(),
        }
    }
}
