//! [`Endpoints`]: the endpoints deliveries are about to use, remembered by the node and read in
//! batches when not.
//!
//! Every change a delivery depends on (`url`, `secrets`, `previous_until`, `disabled_at`, a
//! deletion) announces itself on [`CHANNEL`] from a statement trigger (migration `0016`),
//! whoever makes it, and every node forgets the endpoints it remembered (see
//! `db::announce`); a disable made by this node's deliveries forgets at once. While the
//! listener is not subscribed nothing is remembered, and an entry is used for at most
//! [`MAX_AGE`]. Remembering saves each delivery a wait for the batch read (about 9 ms of its
//! 24 under `forge-bench api`), so more deliveries end inside their claim window and their job
//! is written once instead of twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sql;
use crate::db::announce::{Announced, listen};
use crate::db::batch::Batcher;
use crate::jobs::JobError;

/// The most endpoints one statement reads.
const MAX_LOOKUPS: usize = 256;

/// The channel endpoint changes are announced on.
pub(super) const CHANNEL: &str = "forge_webhook_endpoints";

/// How long an endpoint is used before it is read again, whatever the notices said.
pub(super) const MAX_AGE: Duration = Duration::from_secs(10);

/// Endpoints remembered at most; past this the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// An endpoint as a delivery reads it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(super) struct Endpoint {
    /// The endpoint.
    pub(super) id: Uuid,
    /// Where deliveries go.
    pub(super) url: String,
    /// The live secret first; the previous one after it, while rotation keeps it.
    pub(super) secrets: Vec<String>,
    /// Until when the previous secret signs too.
    pub(super) previous_until: Option<DateTime<Utc>>,
    /// When it was disabled, if it is.
    pub(super) disabled_at: Option<DateTime<Utc>>,
}

impl Endpoint {
    /// Whether the previous secret still signs (by this node's clock).
    pub(super) fn previous_live(&self) -> bool {
        self.previous_until.is_some_and(|until| until > Utc::now())
    }
}

/// The endpoints a node remembers, kept true by the notices of [`CHANNEL`].
#[derive(Debug, Default)]
struct Remembered {
    entries: Mutex<HashMap<Uuid, (Endpoint, Instant)>>,
    /// Whether the listener is subscribed.
    listening: AtomicBool,
    /// Bumped whenever the entries are forgotten: a read that started before is not stored.
    generation: AtomicU64,
}

impl Remembered {
    fn get(&self, id: Uuid) -> Option<Endpoint> {
        if !self.listening.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(&id).filter(|(_, at)| at.elapsed() < MAX_AGE).map(|(endpoint, _)| endpoint.clone())
    }

    fn put(&self, found: &HashMap<Uuid, Endpoint>, generation: u64) {
        if !self.listening.load(Ordering::SeqCst) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() + found.len() > MAX_ENTRIES {
            entries.clear();
        }
        let now = Instant::now();
        entries.extend(found.iter().map(|(id, endpoint)| (*id, (endpoint.clone(), now))));
    }
}

impl Announced for Remembered {
    fn forget(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }
}

/// Reads the endpoints of the node's deliveries: remembered ones from memory, the others in
/// batches ([`sql::ENDPOINTS_FOR_DELIVERY`]: one statement for whatever waits). Each delivery
/// reads its endpoint as it is when it starts, or as it was when last read, no change having
/// been announced since.
#[derive(Debug)]
pub(super) struct Endpoints {
    batcher: Batcher<Uuid, Result<Option<Endpoint>, String>>,
    remembered: Arc<Remembered>,
}

impl Endpoints {
    /// Starts the reader's task and the listener over `pool` (inside a Tokio runtime).
    pub(super) fn start(pool: sqlx::PgPool) -> Self {
        let remembered = Arc::new(Remembered::default());
        tokio::spawn(listen(pool.clone(), CHANNEL, Arc::downgrade(&remembered)));
        let store = remembered.clone();
        let batcher = Batcher::start(1, MAX_LOOKUPS, move |ids: Vec<Uuid>| {
            let (pool, store) = (pool.clone(), store.clone());
            async move { read(&pool, &store, ids).await }
        });
        Self { batcher, remembered }
    }

    /// The endpoint `id`, or none if it was deleted.
    pub(super) async fn get(&self, id: Uuid) -> Result<Option<Endpoint>, JobError> {
        if let Some(endpoint) = self.remembered.get(id) {
            return Ok(Some(endpoint));
        }
        match self.batcher.call(id).await {
            Some(Ok(endpoint)) => Ok(endpoint),
            Some(Err(e)) => Err(JobError::retry(format!("could not read the endpoint: {e}"))),
            None => Err(JobError::retry("could not read the endpoint: the reader stopped")),
        }
    }

    /// Forgets every endpoint remembered (after this node changed one).
    pub(super) fn forget(&self) {
        self.remembered.forget();
    }
}

/// Reads the endpoints `ids` in one statement, answering each id (repeats included), and
/// remembers those found unless a change was announced meanwhile.
async fn read(pool: &sqlx::PgPool, remembered: &Remembered, ids: Vec<Uuid>) -> Vec<Result<Option<Endpoint>, String>> {
    let generation = remembered.generation.load(Ordering::SeqCst);
    let rows: Result<Vec<Endpoint>, sqlx::Error> =
        sqlx::query_as(sql::ENDPOINTS_FOR_DELIVERY).bind(&ids).fetch_all(pool).await;
    match rows {
        Ok(rows) => {
            let found: HashMap<Uuid, Endpoint> = rows.into_iter().map(|e| (e.id, e)).collect();
            remembered.put(&found, generation);
            ids.iter().map(|id| Ok(found.get(id).cloned())).collect()
        }
        Err(e) => ids.iter().map(|_| Err(e.to_string())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    /// Waits (at most `within`) until `check` holds.
    async fn until(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !check().await {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn an_endpoint_is_remembered_until_a_change_a_delivery_depends_on_is_announced() {
        let db = TestDatabase::new().await.expect("db");
        let pool = db.pool().clone();
        let (client, id) = (Uuid::new_v4(), Uuid::new_v4());
        sqlx::query("insert into forge_api_clients (id, name) values ($1, 'c')")
            .bind(client)
            .execute(&pool)
            .await
            .expect("client");
        sqlx::query("insert into forge_webhook_endpoints (id, client_id, url, secrets) values ($1, $2, 'http://a.test/', array['whsec_one'])")
            .bind(id)
            .bind(client)
            .execute(&pool)
            .await
            .expect("endpoint");
        let endpoints = Endpoints::start(pool.clone());
        until(Duration::from_secs(10), "the listener never subscribed", async || {
            endpoints.remembered.listening.load(Ordering::SeqCst)
        })
        .await;
        let first = endpoints.get(id).await.expect("read").expect("found");
        assert_eq!(first.url, "http://a.test/");
        assert!(endpoints.remembered.get(id).is_some(), "remembered once read");

        // A delivery's record changes the streak, which announces nothing: still remembered.
        sqlx::query("update forge_webhook_endpoints set failing_since = now(), description = 'x'")
            .execute(&pool)
            .await
            .expect("streak");
        // Nor does a delete that deletes nothing (the housekeeping's prune, every tick).
        sqlx::query("delete from forge_webhook_endpoints where false").execute(&pool).await.expect("prune");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(endpoints.remembered.get(id).is_some(), "a streak's change or an empty delete is not announced");

        // A rotation made by SQL (no in-process signal): the notice makes the node forget, and
        // the next read sees both secrets.
        sqlx::query("update forge_webhook_endpoints set secrets = array['whsec_two', secrets[1]], previous_until = now() + interval '1 hour'")
            .execute(&pool)
            .await
            .expect("rotate");
        until(MAX_AGE / 2, "the rotated endpoint is still remembered", async || {
            endpoints.get(id).await.expect("read").expect("found").secrets.len() == 2
        })
        .await;
        assert!(endpoints.get(id).await.expect("read").expect("found").previous_live());

        // Disabled, then deleted: each seen by the next read.
        sqlx::query("update forge_webhook_endpoints set disabled_at = now()").execute(&pool).await.expect("disable");
        until(MAX_AGE / 2, "the disabled endpoint is still remembered enabled", async || {
            endpoints.get(id).await.expect("read").expect("found").disabled_at.is_some()
        })
        .await;
        sqlx::query("delete from forge_webhook_endpoints").execute(&pool).await.expect("delete");
        until(MAX_AGE / 2, "the deleted endpoint is still remembered", async || {
            endpoints.get(id).await.expect("read").is_none()
        })
        .await;
    }
}
