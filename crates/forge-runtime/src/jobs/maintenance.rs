//! Job maintenance: promote due scheduled and retryable jobs, rescue jobs whose lease expired,
//! prune finished jobs past their retention — each in bounded batches. One node at a time does
//! it, chosen per tick by a transaction-scoped advisory lock (leader election will take this
//! over).

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::dispatch::Notifier;
use super::sql;

/// Rows one statement touches at most.
const BATCH: i64 = 1000;
/// How often finished jobs are pruned: a tenth of the retention, between 100 ms and a minute.
fn prune_every(prune_after: Duration) -> Duration {
    (prune_after / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Maintenance timing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MaintenanceSettings {
    pub(crate) lease: Duration,
    pub(crate) prune_after: Duration,
}

/// What one tick did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tick {
    pub(crate) promoted: usize,
    pub(crate) rescued: usize,
    pub(crate) pruned: u64,
}

/// Runs maintenance until `stop`, every half lease (at most every second).
pub(crate) async fn run(pool: PgPool, notifier: Notifier, settings: MaintenanceSettings, stop: CancellationToken) {
    let every = (settings.lease / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut last_prune: Option<Instant> = None;
    loop {
        let prune = last_prune.is_none_or(|t| t.elapsed() >= prune_every(settings.prune_after));
        match tick(&pool, &notifier, settings, prune).await {
            Ok(Some(_)) if prune => last_prune = Some(Instant::now()),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "job maintenance failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One maintenance pass; `None` if another node holds the maintenance lock.
pub(crate) async fn tick(
    pool: &PgPool,
    notifier: &Notifier,
    settings: MaintenanceSettings,
    prune: bool,
) -> Result<Option<Tick>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar(sql::MAINTENANCE_LOCK).fetch_one(&mut *tx).await?;
    if !locked {
        return Ok(None);
    }
    let rescued =
        sqlx::query(sql::RESCUE).bind(settings.lease.as_secs_f64()).bind(BATCH).fetch_all(&mut *tx).await?.len();
    if rescued > 0 {
        tracing::warn!(rescued, "rescued jobs whose lease expired");
    }
    let queues: Vec<String> = sqlx::query_scalar(sql::PROMOTE).bind(BATCH).fetch_all(&mut *tx).await?;
    let pruned = if prune {
        sqlx::query(sql::PRUNE)
            .bind(settings.prune_after.as_secs_f64())
            .bind(BATCH)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        0
    };
    tx.commit().await?;
    let mut woken: Vec<&String> = Vec::new();
    for queue in &queues {
        if !woken.contains(&queue) {
            notifier.notify(queue);
            woken.push(queue);
        }
    }
    Ok(Some(Tick { promoted: queues.len(), rescued, pruned }))
}
