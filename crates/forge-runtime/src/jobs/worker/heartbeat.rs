//! The heartbeat: renews the lease of every attempt running on the node, every third of the
//! lease, stops attempts whose cancellation was requested or whose lease was lost, and fences
//! itself: an attempt whose lease it has not managed to renew for 0.8 of a lease is stopped
//! here (reason: lease), so that by the time anyone may rescue it, it no longer runs. It keeps
//! renewing while the worker drains; `Worker::stop` ends it last.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::{AttemptKey, Shared, StopReason};
use crate::jobs::sql;

/// The share of a lease after which an attempt not renewed since is stopped by its own node.
const FENCE_AT: f64 = 0.8;

/// A lease still held: the attempt holding it, and whether its cancellation was requested.
#[derive(Debug, sqlx::FromRow)]
struct Held {
    id: i64,
    attempt: i32,
    cancel_requested: bool,
}

pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let lease = shared.settings.lease;
    let renew_every = (lease / 3).max(Duration::from_millis(50));
    let fence_after = lease.mul_f64(FENCE_AT);
    // Fencing is checked often enough to stop an attempt well before its lease ends, and apart
    // from the renewals, which may hang while the database is unreachable.
    let tick = (lease / 20).clamp(Duration::from_millis(10), renew_every);
    let renewals = async {
        loop {
            tokio::time::sleep(renew_every).await;
            // A renewal that does not answer in time counts as failed (the database may be gone).
            let _ = tokio::time::timeout(renew_every, renew(&shared)).await;
        }
    };
    let fencing = async {
        loop {
            tokio::time::sleep(tick).await;
            fence(&shared, fence_after);
        }
    };
    tokio::join!(renewals, fencing);
}

/// One renewal of every running attempt's lease (not of those a claim window holds: its row
/// lock is their lease).
async fn renew(shared: &Shared) {
    let keys: Vec<AttemptKey> = shared
        .running
        .lock()
        .map(|r| r.iter().filter(|(_, r)| !r.abandoned && r.window.is_none()).map(|(key, _)| *key).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        return;
    }
    let sent = Instant::now();
    let ids: Vec<i64> = keys.iter().map(|(id, _)| *id).collect();
    let rows: Vec<Held> = match sqlx::query_as(sql::HEARTBEAT)
        .bind(&ids)
        .bind(&shared.settings.node_id)
        .bind(shared.settings.lease.as_secs_f64())
        .fetch_all(&shared.control)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat failed");
            return;
        }
    };
    let held: HashMap<AttemptKey, bool> = rows.iter().map(|h| ((h.id, h.attempt), h.cancel_requested)).collect();
    for key in keys {
        match held.get(&key) {
            Some(true) => shared.stop(key, StopReason::Cancelled),
            Some(false) => {
                if let Ok(mut running) = shared.running.lock()
                    && let Some(r) = running.get_mut(&key)
                {
                    r.renewed = sent;
                }
            }
            // Finished meanwhile (then it is gone from the table), or rescued: another attempt
            // owns the job now.
            None => shared.stop(key, StopReason::LeaseLost),
        }
    }
}

/// Stops the attempts whose lease has not been renewed for `after`, and abandons those still
/// running well past their timeout (their handler does not yield: it cannot be stopped, so its
/// lease is left to expire and the job to be rescued).
fn fence(shared: &Shared, after: Duration) {
    let Ok(mut running) = shared.running.lock() else { return };
    let now = Instant::now();
    for ((id, attempt), r) in running.iter_mut() {
        if r.finished {
            // Ended: its outcome waits for the completer, and its lease must hold until then.
            continue;
        }
        if !r.abandoned && now >= r.abandon_at {
            tracing::error!(
                job_id = id,
                attempt,
                "attempt still running past its timeout (its handler does not yield): abandoned, its lease is no longer renewed"
            );
            r.abandoned = true;
            r.reason.get_or_insert(StopReason::LeaseLost);
            r.token.cancel();
        }
        if r.reason.is_none() && r.renewed.elapsed() >= after {
            tracing::warn!(
                job_id = id,
                attempt,
                unrenewed_ms = u64::try_from(r.renewed.elapsed().as_millis()).unwrap_or(u64::MAX),
                "lease not renewed for most of a lease: stopping the attempt before it can be rescued"
            );
            r.reason = Some(StopReason::LeaseLost);
            r.token.cancel();
        }
    }
}
