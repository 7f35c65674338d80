//! [`Endpoints`]: the endpoints deliveries are about to use, read in batches.

use std::collections::HashMap;

use uuid::Uuid;

use super::sql;
use crate::db::batch::Batcher;
use crate::jobs::JobError;

/// The most endpoints one statement reads.
const MAX_LOOKUPS: usize = 256;

/// An endpoint as a delivery reads it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(super) struct Endpoint {
    /// The endpoint.
    pub(super) id: Uuid,
    /// Where deliveries go.
    pub(super) url: String,
    /// The live secret first; the previous one after it, while rotation keeps it.
    pub(super) secrets: Vec<String>,
    /// Whether the previous secret still signs.
    pub(super) previous_live: bool,
    /// When it was disabled, if it is.
    pub(super) disabled_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reads the endpoints of the node's deliveries in batches ([`sql::ENDPOINTS_FOR_DELIVERY`]):
/// one statement for whatever waits, instead of one round trip (and one wait for a pooled
/// connection) per delivery. Each delivery still reads its endpoint as it is when it starts.
#[derive(Debug)]
pub(super) struct Endpoints {
    batcher: Batcher<Uuid, Result<Option<Endpoint>, String>>,
}

impl Endpoints {
    /// Starts the reader's task over `pool`.
    pub(super) fn start(pool: sqlx::PgPool) -> Self {
        let batcher = Batcher::start(1, MAX_LOOKUPS, move |ids: Vec<Uuid>| {
            let pool = pool.clone();
            async move { read(&pool, ids).await }
        });
        Self { batcher }
    }

    /// The endpoint `id`, or none if it was deleted.
    pub(super) async fn get(&self, id: Uuid) -> Result<Option<Endpoint>, JobError> {
        match self.batcher.call(id).await {
            Some(Ok(endpoint)) => Ok(endpoint),
            Some(Err(e)) => Err(JobError::retry(format!("could not read the endpoint: {e}"))),
            None => Err(JobError::retry("could not read the endpoint: the reader stopped")),
        }
    }
}

/// Reads the endpoints `ids` in one statement, answering each id (repeats included).
async fn read(pool: &sqlx::PgPool, ids: Vec<Uuid>) -> Vec<Result<Option<Endpoint>, String>> {
    let rows: Result<Vec<Endpoint>, sqlx::Error> =
        sqlx::query_as(sql::ENDPOINTS_FOR_DELIVERY).bind(&ids).fetch_all(pool).await;
    match rows {
        Ok(rows) => {
            let found: HashMap<Uuid, Endpoint> = rows.into_iter().map(|e| (e.id, e)).collect();
            ids.iter().map(|id| Ok(found.get(id).cloned())).collect()
        }
        Err(e) => ids.iter().map(|_| Err(e.to_string())).collect(),
    }
}
