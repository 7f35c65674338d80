//! Token-bucket rate limits kept in Postgres, so every gateway node draws from the same bucket.
//!
//! A bucket holds up to `requests` tokens and refills continuously at `requests / per`. A call
//! takes one token with a single atomic upsert on `forge_rate_limits` (no read-then-write race
//! between nodes); with none left the call fails with 429 and `Retry-After` says when the next
//! token arrives. The table is unlogged: a crash forgets the buckets, which only forgives.

use std::time::Duration;

use sqlx::PgPool;

use super::sql;
use serde::{Serialize, Serializer};

use super::{CallParts, ForgeError};

/// What a rate limit counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// Each caller (user or API key); anonymous callers by IP address.
    User,
    /// Each API key; other callers by user, then IP address.
    ApiKey,
    /// Each client IP address.
    Ip,
    /// All callers together.
    Global,
}

/// A token bucket: `requests` calls per `per`, refilled continuously.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// The bucket's size: calls allowed in a burst, and per `per`.
    pub requests: u32,
    /// The period over which `requests` calls are allowed.
    #[serde(rename = "per_ms", serialize_with = "as_millis")]
    pub per: Duration,
    /// What the bucket is kept per.
    pub key: RateLimitKey,
}

impl RateLimit {
    /// The bucket a call of `function` draws from.
    pub(crate) fn bucket(&self, function: &str, parts: &CallParts) -> String {
        let ip = || parts.client_ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{}", ip_bucket(ip)));
        let who = match self.key {
            RateLimitKey::Global => "global".to_owned(),
            RateLimitKey::Ip => ip(),
            RateLimitKey::User | RateLimitKey::ApiKey => parts.auth.subject().unwrap_or_else(ip),
        };
        format!("fn:{function}:{who}")
    }
}

/// The address a per-IP bucket is kept for: an IPv4 address as it is, an IPv6 address by its
/// /64 (one subscriber's network: anyone holding one has 2^64 addresses to rotate through).
fn ip_bucket(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let network = std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1));
            format!("{network}/64")
        }
    }
}

fn as_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What drawing a token from a bucket found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Draw {
    /// Whether a token was taken.
    pub allowed: bool,
    /// Whole tokens left.
    pub remaining: u32,
    /// When the bucket is full again (refused: when the next token arrives).
    pub reset: Duration,
}

/// Draws one token from bucket `key`: one atomic upsert.
pub(crate) async fn draw(pool: &PgPool, key: &str, limit: &RateLimit) -> Result<Draw, sqlx::Error> {
    let capacity = f64::from(limit.requests.max(1));
    let per_second = capacity / limit.per.as_secs_f64().max(0.001);
    let (allowed, tokens): (bool, f64) =
        sqlx::query_as(sql::TAKE_TOKEN).bind(key).bind(capacity).bind(per_second).fetch_one(pool).await?;
    let reset = if allowed { (capacity - tokens).max(0.0) / per_second } else { (1.0 - tokens).max(0.0) / per_second };
    Ok(Draw {
        allowed,
        remaining: tokens.max(0.0).floor() as u32,
        reset: Duration::from_secs_f64(reset.ceil().max(if allowed { 0.0 } else { 1.0 })),
    })
}

/// Takes one token from bucket `key`, or fails with [`ForgeError::RateLimited`].
pub(crate) async fn take(pool: &PgPool, key: &str, limit: &RateLimit) -> Result<(), ForgeError> {
    let draw = draw(pool, key, limit).await?;
    if draw.allowed {
        return Ok(());
    }
    Err(ForgeError::RateLimited { retry_after: draw.reset })
}

/// Deletes buckets idle for `idle` (a full bucket is the same as none).
pub(crate) async fn prune(pool: &PgPool, idle: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(sql::PRUNE_BUCKETS).bind(idle.as_secs_f64()).execute(pool).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_callers_share_a_bucket_per_64() {
        let a = ip_bucket("2001:db8:1:2:aaaa::1".parse().expect("ip"));
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, ip_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("ip")));
        assert_ne!(a, ip_bucket("2001:db8:1:3::1".parse().expect("ip")));
        assert_eq!(ip_bucket("::ffff:192.0.2.7".parse().expect("ip")), "192.0.2.7");
    }
    use crate::functions::RateLimitKey;
    use crate::testing::TestDatabase;

    #[tokio::test]
    async fn buckets_refill_and_idle_ones_are_pruned() {
        let db = TestDatabase::new().await.expect("db");
        let limit = RateLimit { requests: 1, per: Duration::from_secs(3600), key: RateLimitKey::Global };
        take(db.pool(), "a", &limit).await.expect("first token");
        assert!(matches!(take(db.pool(), "a", &limit).await, Err(ForgeError::RateLimited { .. })));
        // An hour later the bucket is full again.
        sqlx::query("update forge_rate_limits set updated_at = updated_at - interval '1 hour'")
            .execute(db.pool())
            .await
            .expect("age");
        take(db.pool(), "a", &limit).await.expect("refilled");
        take(db.pool(), "b", &limit).await.expect("another bucket");
        sqlx::query("update forge_rate_limits set updated_at = now() - interval '2 days' where key = 'a'")
            .execute(db.pool())
            .await
            .expect("age");
        assert_eq!(prune(db.pool(), Duration::from_secs(86_400)).await.expect("prune"), 1);
        let left: Vec<String> =
            sqlx::query_scalar("select key from forge_rate_limits").fetch_all(db.pool()).await.expect("keys");
        assert_eq!(left, vec!["b".to_owned()]);
    }
}
