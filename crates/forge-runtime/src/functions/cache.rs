//! The node-local result cache of queries declared with `cache = "30s"`.
//!
//! Entries are keyed by function, caller (user or key, roles and tenant: two callers never share
//! an answer) and arguments, and live for the function's TTL. The cache holds at most
//! [`MAX_ENTRIES`]; when full, expired entries go first and then the whole cache, so memory
//! stays bounded whatever the callers send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Auth;

/// Most entries held at once.
const MAX_ENTRIES: usize = 10_000;

/// Cached query results.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueryCache {
    entries: Arc<Mutex<HashMap<String, (Instant, serde_json::Value)>>>,
}

impl QueryCache {
    /// The key for a call of `function` by `auth` with `args`.
    pub(crate) fn key(function: &str, auth: &Auth, args: &serde_json::Value) -> String {
        let caller = serde_json::json!([auth.subject(), auth.roles(), auth.tenant()]);
        format!("{function}\u{0}{caller}\u{0}{args}")
    }

    /// A live entry.
    pub(crate) fn get(&self, key: &str) -> Option<serde_json::Value> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(key).filter(|(expires, _)| *expires > Instant::now()).map(|(_, value)| value.clone())
    }

    /// Stores `value` for `ttl`.
    pub(crate) fn put(&self, key: String, value: serde_json::Value, ttl: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now() + ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_callers_do_not_share() {
        let cache = QueryCache::default();
        let args = serde_json::json!({"a": 1});
        let alice = QueryCache::key("f", &Auth::user("alice"), &args);
        let bob = QueryCache::key("f", &Auth::user("bob"), &args);
        cache.put(alice.clone(), serde_json::json!(1), Duration::from_secs(60));
        assert_eq!(cache.get(&alice), Some(serde_json::json!(1)));
        assert_eq!(cache.get(&bob), None);
        cache.put(bob.clone(), serde_json::json!(2), Duration::ZERO);
        assert_eq!(cache.get(&bob), None, "an expired entry is not served");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = QueryCache::default();
        for i in 0..(MAX_ENTRIES + 10) {
            cache.put(format!("k{i}"), serde_json::json!(i), Duration::from_secs(60));
        }
        assert!(cache.entries.lock().expect("lock").len() <= MAX_ENTRIES);
    }
}
