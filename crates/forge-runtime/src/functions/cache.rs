//! The node-local result cache of queries declared with `cache = "30s"`.
//!
//! Entries are keyed by a SHA-256 of function, caller (user or key, roles and tenant: two
//! callers never share an answer) and arguments — so a huge argument costs 32 bytes of key —
//! and live for the function's TTL. The cache holds at most [`MAX_ENTRIES`] entries and
//! [`MAX_BYTES`] of results; a result larger than [`MAX_ENTRY_BYTES`] is not cached. When full,
//! expired entries go first and then the whole cache, so memory stays bounded whatever the
//! callers send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Auth;

/// Most entries held at once.
const MAX_ENTRIES: usize = 10_000;
/// Most bytes of results (as JSON text) held at once.
const MAX_BYTES: usize = 64 * 1024 * 1024;
/// The largest result cached.
const MAX_ENTRY_BYTES: usize = MAX_BYTES / 16;

/// A cache key: the SHA-256 of what identifies a call.
pub(crate) type CacheKey = [u8; 32];

#[derive(Debug)]
struct Entry {
    expires: Instant,
    value: serde_json::Value,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<CacheKey, Entry>,
    bytes: usize,
}

/// Cached query results.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueryCache {
    entries: Arc<Mutex<Entries>>,
}

impl QueryCache {
    /// The key for a call of `function` by `auth` with `args` (also what groups live
    /// subscriptions that can share one run).
    pub(crate) fn key(function: &str, auth: &Auth, args: &serde_json::Value) -> CacheKey {
        let caller = serde_json::json!([auth.subject(), auth.roles(), auth.tenant()]);
        let mut hash = Sha256::new();
        hash.update(function.as_bytes());
        hash.update([0]);
        hash.update(caller.to_string().as_bytes());
        hash.update([0]);
        hash.update(args.to_string().as_bytes());
        hash.finalize().into()
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A live entry.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<serde_json::Value> {
        let entries = self.lock();
        entries.map.get(key).filter(|e| e.expires > Instant::now()).map(|e| e.value.clone())
    }

    /// Stores `value` for `ttl` (unless it is larger than [`MAX_ENTRY_BYTES`]).
    pub(crate) fn put(&self, key: CacheKey, value: serde_json::Value, ttl: Duration) {
        let bytes = value.to_string().len();
        if bytes > MAX_ENTRY_BYTES {
            return;
        }
        let mut entries = self.lock();
        if entries.map.len() >= MAX_ENTRIES || entries.bytes + bytes > MAX_BYTES {
            let now = Instant::now();
            entries.map.retain(|_, e| e.expires > now);
            entries.bytes = entries.map.values().map(|e| e.bytes).sum();
            if entries.map.len() >= MAX_ENTRIES || entries.bytes + bytes > MAX_BYTES {
                entries.map.clear();
                entries.bytes = 0;
            }
        }
        let entry = Entry { expires: Instant::now() + ttl, value, bytes };
        if let Some(old) = entries.map.insert(key, entry) {
            entries.bytes -= old.bytes;
        }
        entries.bytes += bytes;
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
        cache.put(alice, serde_json::json!(1), Duration::from_secs(60));
        assert_eq!(cache.get(&alice), Some(serde_json::json!(1)));
        assert_eq!(cache.get(&bob), None);
        cache.put(bob, serde_json::json!(2), Duration::ZERO);
        assert_eq!(cache.get(&bob), None, "an expired entry is not served");
    }

    #[test]
    fn the_cache_stays_bounded_in_entries_and_bytes() {
        let cache = QueryCache::default();
        for i in 0..(MAX_ENTRIES + 10) {
            let key = QueryCache::key("f", &Auth::anonymous(), &serde_json::json!(i));
            cache.put(key, serde_json::json!(i), Duration::from_secs(60));
        }
        assert!(cache.lock().map.len() <= MAX_ENTRIES);
        let big = serde_json::json!("x".repeat(MAX_ENTRY_BYTES - 10));
        for i in 0..40 {
            let key = QueryCache::key("big", &Auth::anonymous(), &serde_json::json!(i));
            cache.put(key, big.clone(), Duration::from_secs(60));
            assert!(cache.lock().bytes <= MAX_BYTES);
        }
        let huge = QueryCache::key("huge", &Auth::anonymous(), &serde_json::json!(0));
        cache.put(huge, serde_json::json!("x".repeat(MAX_ENTRY_BYTES + 1)), Duration::from_secs(60));
        assert_eq!(cache.get(&huge), None, "too large to cache");
    }
}
