//! [`KeyCache`]: verified API keys remembered by a node, so a request with a key costs no
//! round trip to Postgres.
//!
//! An entry is trusted only while the cache can hear about changes:
//!
//! - every change to a key's validity (revoked, expiry, roles, scopes, client, hash) or to a
//!   client's (disabled, deleted) notifies `forge_api_keys` from a statement trigger (migration
//!   `0014`), whoever makes it: a node, `forge keys revoke`, SQL by hand. Each node's cache
//!   listens and forgets everything on a notice;
//! - a change made in this process clears it at once after the change commits
//!   ([`key_changed`]), so the answer to a revocation is never followed by a request the
//!   revoked key gets through on the same node;
//! - while the listener is not connected (it starts, or lost its connection) nothing is
//!   cached or read from the cache;
//! - an entry is used for at most [`MAX_AGE`], and never past its key's `revoked_at` (a
//!   rotation's grace) or `expires_at`.
//!
//! Unknown or refused keys are never cached: each costs a lookup, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::db::announce::{Announced, listen};
use crate::functions::Auth;

/// The channel key and client changes are announced on.
pub(crate) const CHANNEL: &str = "forge_api_keys";

/// How long an entry is used before the key is read again, whatever the notices said.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);

/// Entries kept at most; past this the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// One cache per database a process authenticates against (a process may serve several nodes
/// in tests), shared by the node's gateway, job API and dashboard.
static CACHES: LazyLock<Mutex<HashMap<String, Weak<KeyCache>>>> = LazyLock::new(Mutex::default);

/// Tells this process's cache of the database `pool` connects to that a key or client changed
/// (call after the change commits).
pub(crate) fn key_changed(pool: &PgPool) {
    let cache =
        CACHES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&identity(pool)).and_then(Weak::upgrade);
    if let Some(cache) = cache {
        cache.forget();
    }
}

/// The database a pool connects to, as the key of [`CACHES`].
fn identity(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "{}:{}/{}@{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(""),
        options.get_username()
    )
}

/// A verified key: who it stands for, and until when at most.
#[derive(Clone)]
struct Entry {
    auth: Auth,
    id: uuid::Uuid,
    /// The earliest of the key's `revoked_at` and `expires_at`.
    until: Option<DateTime<Utc>>,
    last_used: Option<DateTime<Utc>>,
    cached_at: Instant,
}

/// A verified key read from the database, to remember.
pub(crate) struct Verified {
    /// The caller it stands for.
    pub(crate) auth: Auth,
    /// The key's id.
    pub(crate) id: uuid::Uuid,
    /// The earliest of its `revoked_at` and `expires_at`.
    pub(crate) until: Option<DateTime<Utc>>,
    /// When it was last used, as stored.
    pub(crate) last_used: Option<DateTime<Utc>>,
}

/// The point in the cache's history a lookup started at: an entry read before a change is not
/// stored after it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch(u64);

/// Verified keys of one database, by the SHA-256 of the presented key.
#[derive(Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    /// Whether the listener is subscribed to [`CHANNEL`].
    listening: AtomicBool,
    /// Bumped whenever the entries are forgotten.
    generation: AtomicU64,
}

impl KeyCache {
    /// The cache of the database `pool` connects to, its listener started on first use
    /// (inside a Tokio runtime; `None` outside one).
    pub(crate) fn shared(pool: &PgPool) -> Option<Arc<Self>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let identity = identity(pool);
        let mut caches = CACHES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        caches.retain(|_, cache| cache.strong_count() > 0);
        if let Some(cache) = caches.get(&identity).and_then(Weak::upgrade) {
            return Some(cache);
        }
        let cache = Arc::new(Self::default());
        caches.insert(identity, Arc::downgrade(&cache));
        handle.spawn(listen(pool.clone(), CHANNEL, Arc::downgrade(&cache)));
        Some(cache)
    }

    /// Where the cache's history stands now.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch(self.generation.load(Ordering::SeqCst))
    }

    /// The caller the key hashing to `hash` stands for, if remembered and still trusted, and
    /// whether its use should be recorded (the stored last use is a minute old).
    pub(crate) fn get(&self, hash: &[u8; 32]) -> Option<(Auth, Option<uuid::Uuid>)> {
        if !self.listening.load(Ordering::SeqCst) {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Utc::now();
        let entry = entries.get_mut(hash)?;
        if entry.cached_at.elapsed() >= MAX_AGE || entry.until.is_some_and(|until| until <= now) {
            entries.remove(hash);
            return None;
        }
        let touch = entry.last_used.is_none_or(|t| now - t > chrono::Duration::minutes(1));
        if touch {
            entry.last_used = Some(now);
        }
        Some((entry.auth.clone(), touch.then_some(entry.id)))
    }

    /// Remembers a key verified in a lookup that started at `epoch`, unless anything changed
    /// since (the lookup may have read the key before a revocation).
    pub(crate) fn put(&self, hash: [u8; 32], verified: Verified, epoch: Epoch) {
        if !self.listening.load(Ordering::SeqCst) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.epoch() != epoch {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let Verified { auth, id, until, last_used } = verified;
        entries.insert(hash, Entry { auth, id, until, last_used, cached_at: Instant::now() });
    }

    /// Forgets every entry (a notice, or the listener's connection lost or found).
    fn forget(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

impl Announced for KeyCache {
    fn forget(&self) {
        KeyCache::forget(self);
    }

    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::gateway::{ApiKeys, Authenticator, NewApiKey};
    use crate::testing::TestDatabase;

    fn bearer(key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {key}")).expect("header"));
        headers
    }

    /// Waits (at most `within`) until the cache's listener is subscribed.
    async fn listening(cache: &KeyCache, within: Duration) {
        let deadline = Instant::now() + within;
        while !cache.listening.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the cache's listener never subscribed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_verified_key_is_remembered_until_a_change_is_announced() {
        let db = TestDatabase::new().await.expect("db");
        let auth = Authenticator::new(&db.config().auth, db.pool().clone());
        let cache = auth.cache().cloned().expect("a cache inside a runtime");
        listening(&cache, Duration::from_secs(10)).await;
        let key = ApiKeys::new(db.pool().clone()).create(NewApiKey::named("first")).await.expect("key");
        let first = auth.authenticate(&bearer(&key.key)).await.expect("accepted");
        // A column whose change is not announced (nothing about validity): the answer comes
        // from the cache, name and all.
        sqlx::query("update forge_api_keys set name = 'renamed'").execute(db.pool()).await.expect("rename");
        assert_eq!(auth.authenticate(&bearer(&key.key)).await.expect("accepted"), first, "remembered");
        // A revocation by another process (SQL here; no in-process signal): the notice makes
        // every node forget, well within the entries' age limit.
        sqlx::query("update forge_api_keys set revoked_at = now()").execute(db.pool()).await.expect("revoke");
        let deadline = Instant::now() + MAX_AGE / 2;
        while auth.authenticate(&bearer(&key.key)).await.is_ok() {
            assert!(Instant::now() < deadline, "the revoked key still works");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_change_in_this_process_is_seen_at_once_and_a_disabled_client_ends_its_keys() {
        let db = TestDatabase::new().await.expect("db");
        let auth = Authenticator::new(&db.config().auth, db.pool().clone());
        let cache = auth.cache().cloned().expect("a cache inside a runtime");
        listening(&cache, Duration::from_secs(10)).await;
        let keys = ApiKeys::new(db.pool().clone());
        let key = keys.create(NewApiKey::named("k")).await.expect("key");
        auth.authenticate(&bearer(&key.key)).await.expect("accepted");
        keys.revoke(key.record.id).await.expect("revoke");
        assert!(auth.authenticate(&bearer(&key.key)).await.is_err(), "refused the moment revoke returns");

        let client = uuid::Uuid::new_v4();
        sqlx::query("insert into forge_api_clients (id, name) values ($1, 'c')")
            .bind(client)
            .execute(db.pool())
            .await
            .expect("client");
        let mut new = NewApiKey::named("client key");
        new.client_id = Some(client);
        let key = keys.create(new).await.expect("key");
        auth.authenticate(&bearer(&key.key)).await.expect("accepted");
        sqlx::query("update forge_api_clients set disabled_at = now()").execute(db.pool()).await.expect("disable");
        let deadline = Instant::now() + MAX_AGE / 2;
        while auth.authenticate(&bearer(&key.key)).await.is_ok() {
            assert!(Instant::now() < deadline, "a disabled client's key still works");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
