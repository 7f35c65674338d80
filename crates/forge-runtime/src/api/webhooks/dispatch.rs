//! The dispatcher: turns new events into deliveries, one job per (event, endpoint).
//!
//! Every node with the worker role and `[api] enabled` runs it; a tick locks the feed's cursor
//! row with `SKIP LOCKED`, so one node dispatches at a time and the others skip their turn. The
//! deliveries and the cursor's move commit together: an event gets its deliveries exactly once.
//!
//! Event ids are given when a row is inserted, not when it commits, so an event can appear
//! after a later one. The cursor keeps the highest id handled and the lower ids not seen yet
//! (holes); each tick reads what follows the highest id and looks for the holes again. A hole
//! is forgotten after [`HOLE_TTL`] (its insert was rolled back), and at most [`MAX_HOLES`] are
//! kept.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::deliver::{DeliverWebhook, Delivery};
use super::settings::WebhookSettings;
use super::sql;
use crate::jobs::{Job, JobsError, NewJob, insert_jobs};

/// Events read per tick at most.
const BATCH: i64 = 500;
/// How long an id not seen yet is looked for.
const HOLE_TTL: Duration = Duration::from_secs(3600);
/// Ids not seen yet kept at most (the oldest go first).
const MAX_HOLES: usize = 10_000;

/// An event and one endpoint that wants it (or none).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Wanted {
    pub(crate) id: i64,
    pub(crate) job_id: i64,
    #[sqlx(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) attempt: i32,
    pub(crate) data: serde_json::Value,
    pub(crate) at: DateTime<Utc>,
    pub(crate) kind: Option<String>,
    pub(crate) endpoint: Option<Uuid>,
}

impl Wanted {
    /// The delivery of this event to its endpoint.
    pub(crate) fn delivery(&self, settings: &WebhookSettings) -> Option<NewJob> {
        let endpoint = self.endpoint?;
        let payload = serde_json::json!({
            "type": self.event_type,
            "timestamp": self.at,
            "data": {
                "event_id": self.id,
                "job_id": self.job_id,
                "kind": self.kind,
                "attempt": self.attempt,
                "details": self.data,
            },
        });
        let delivery =
            Delivery { endpoint, event: self.id, job: self.job_id, msg_id: format!("msg_{}", self.id), payload };
        let args = serde_json::to_value(delivery).ok()?;
        Some(
            NewJob::with_options(DeliverWebhook::NAME, args, &DeliverWebhook::options())
                .with_max_attempts(settings.attempts()),
        )
    }
}

/// Dispatches until `stop`: a tick every `poll_interval`, at once again while there is more.
pub(crate) async fn run(pool: PgPool, settings: WebhookSettings, stop: CancellationToken) {
    if let Err(e) = sqlx::query(sql::INIT_CURSOR).execute(&pool).await {
        tracing::warn!(error = %e, "webhooks: cannot create the feed's cursor");
    }
    loop {
        let more = match tick(&pool, &settings).await {
            Ok(read) => read >= BATCH as usize,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: dispatching failed; retrying");
                false
            }
        };
        if !more {
            tokio::select! {
                () = tokio::time::sleep(settings.poll_interval) => {}
                () = stop.cancelled() => return,
            }
        } else if stop.is_cancelled() {
            return;
        }
    }
}

/// One tick: reads new events (and holes), inserts their deliveries, moves the cursor. Returns
/// how many events past the highest id it read.
pub(crate) async fn tick(pool: &PgPool, settings: &WebhookSettings) -> Result<usize, JobsError> {
    let mut tx = pool.begin().await?;
    let cursor: Option<(i64, Vec<i64>, Vec<DateTime<Utc>>)> =
        sqlx::query_as(sql::LOCK_CURSOR).fetch_optional(&mut *tx).await?;
    let Some((high, holes, hole_seen)) = cursor else {
        return Ok(0);
    };
    let rows: Vec<Wanted> =
        sqlx::query_as(sql::PENDING).bind(&holes).bind(high).bind(BATCH).fetch_all(&mut *tx).await?;
    let seen: BTreeSet<i64> = rows.iter().map(|r| r.id).collect();
    let read = seen.range(high + 1..).count();
    let jobs: Vec<NewJob> = rows.iter().filter_map(|r| r.delivery(settings)).collect();
    if !jobs.is_empty() {
        insert_jobs(&mut tx, &jobs, true).await?;
    }
    let new_high = seen.last().copied().unwrap_or(high).max(high);
    let (holes, hole_seen) = next_holes(high, new_high, &seen, holes, hole_seen, Utc::now());
    sqlx::query(sql::ADVANCE_CURSOR).bind(new_high).bind(&holes).bind(&hole_seen).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(read)
}

/// The holes after a tick that moved the highest id from `high` to `new_high` and saw `seen`:
/// the old holes not seen and not expired, plus the ids skipped between the two.
fn next_holes(
    high: i64,
    new_high: i64,
    seen: &BTreeSet<i64>,
    holes: Vec<i64>,
    hole_seen: Vec<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Vec<i64>, Vec<DateTime<Utc>>) {
    let ttl = chrono::Duration::from_std(HOLE_TTL).unwrap_or_default();
    let mut kept: Vec<(i64, DateTime<Utc>)> =
        holes.into_iter().zip(hole_seen).filter(|(id, at)| !seen.contains(id) && now - *at < ttl).collect();
    kept.extend((high + 1..new_high).filter(|id| !seen.contains(id)).map(|id| (id, now)));
    if kept.len() > MAX_HOLES {
        kept.drain(..kept.len() - MAX_HOLES);
    }
    kept.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_ids_become_holes_until_seen_or_expired() {
        let now = Utc::now();
        let seen: BTreeSet<i64> = [11, 13, 16].into();
        let (holes, at) = next_holes(10, 16, &seen, vec![], vec![], now);
        assert_eq!(holes, [12, 14, 15]);
        assert!(at.iter().all(|t| *t == now));
        // 14 appears later; 12 expires; 15 is still awaited.
        let later = now + chrono::Duration::minutes(30);
        let seen: BTreeSet<i64> = [14].into();
        let (holes, _) =
            next_holes(16, 16, &seen, vec![12, 14, 15], vec![now - chrono::Duration::hours(2), now, now], later);
        assert_eq!(holes, [15]);
    }
}
