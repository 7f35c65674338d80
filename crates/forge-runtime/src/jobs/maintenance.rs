//! Job maintenance, a leader duty: promote due scheduled and retryable jobs, rescue attempts
//! whose lease expired, prune finished jobs past their retention, each in bounded batches. Only
//! the leader runs it (see `cluster`), so ticks need no lock of their own.
//!
//! **Grace.** A new term, and a term whose database calls just failed, rescues nothing for
//! `grace` (one lease plus one heartbeat): the nodes may have been unable to renew their leases
//! while the leader could not see them either (a database outage), and must get a chance to do
//! so before their running jobs are taken from them.

use std::time::{Duration, Instant};

use forge_core::jobs::{JobId, JobState};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::notifier::Notifier;
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
    /// How long after the term starts (or the database comes back) rescues wait.
    pub(crate) grace: Duration,
}

/// When rescues may run: `grace` after the start, and again after every failure.
#[derive(Debug)]
pub(crate) struct Grace {
    grace: Duration,
    armed_at: Instant,
}

impl Grace {
    /// Armed `grace` from now.
    pub(crate) fn new(grace: Duration) -> Self {
        Self { grace, armed_at: Instant::now() + grace }
    }

    /// Whether rescues may run now.
    pub(crate) fn armed(&self) -> bool {
        Instant::now() >= self.armed_at
    }

    /// A database call failed: wait a full grace again once it answers.
    pub(crate) fn failed(&mut self) {
        self.armed_at = Instant::now() + self.grace;
    }
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
    let mut grace = Grace::new(settings.grace);
    loop {
        let prune = last_prune.is_none_or(|t| t.elapsed() >= prune_every(settings.prune_after));
        match tick(&pool, &notifier, settings, prune, grace.armed()).await {
            Ok(_) if prune => last_prune = Some(Instant::now()),
            Ok(_) => {}
            Err(e) => {
                grace.failed();
                tracing::warn!(error = %e, "job maintenance failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// What the rescue of lost attempts looks for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lost<'a> {
    /// Attempts whose lease is older than this.
    LeaseOlderThan(Duration),
    /// Attempts running on these nodes (declared dead).
    OnNodes(&'a [String]),
}

/// Rescues lost attempts (at most `limit`): retryable if attempts are left, else discarded, each
/// recorded as an attempt error of kind `lease`. One statement serves both sweeps.
pub(crate) async fn rescue(
    conn: &mut PgConnection,
    lost: Lost<'_>,
    limit: i64,
) -> Result<Vec<(JobId, JobState)>, sqlx::Error> {
    let (older_than, nodes): (Option<f64>, &[String]) = match lost {
        Lost::LeaseOlderThan(lease) => (Some(lease.as_secs_f64()), &[]),
        Lost::OnNodes(nodes) => (None, nodes),
    };
    sqlx::query_as(sql::RESCUE).bind(older_than).bind(nodes).bind(limit).fetch_all(conn).await
}

/// Finds claim windows whose transactions are gone (their nodes died, or lost their
/// connections) and whose attempts were never written: slots of `forge_claim_slots` still full
/// `older_than` after their windows opened (a window's transaction lasts no longer than a lease:
/// an idle one is ended by the server), looked at `limit` at a time. Each such attempt is written
/// as the classic claim would have written it, with its lease already over, so that the
/// [`rescue`] after it in the same transaction records it as lost. A slot one of whose unwritten
/// jobs is still locked (its window lives on, its node paused) is left for a later tick. Returns
/// how many attempts were written.
pub(crate) async fn recover_windows(
    conn: &mut PgConnection,
    older_than: Duration,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    type Slot = (String, i32, Vec<i64>, Vec<i32>, chrono::DateTime<chrono::Utc>);
    let slots: Vec<Slot> =
        sqlx::query_as(sql::SLOTS_LEFT).bind(older_than.as_secs_f64()).bind(limit).fetch_all(&mut *conn).await?;
    let mut recovered = 0;
    for (node, slot, ids, attempts, opened_at) in slots {
        let unwritten: i64 =
            sqlx::query_scalar(sql::SLOT_UNWRITTEN).bind(&ids).bind(&attempts).fetch_one(&mut *conn).await?;
        let locked: Vec<i64> =
            sqlx::query_scalar(sql::SLOT_LOCK).bind(&ids).bind(&attempts).fetch_all(&mut *conn).await?;
        if (locked.len() as i64) < unwritten {
            continue;
        }
        // Only the rows this transaction holds.
        let (ids, attempts): (Vec<i64>, Vec<i32>) =
            ids.into_iter().zip(attempts).filter(|(id, _)| locked.contains(id)).unzip();
        let n: i64 = sqlx::query_scalar(sql::SLOT_RECOVER)
            .bind(&ids)
            .bind(&attempts)
            .bind(&node)
            .bind(opened_at)
            .bind(slot)
            .fetch_one(&mut *conn)
            .await?;
        recovered += u64::try_from(n).unwrap_or(0);
    }
    Ok(recovered)
}

/// Deletes at most `limit` job events (the API's feed) older than `older_than`; returns how many.
pub(crate) async fn prune_events(pool: &PgPool, older_than: Duration, limit: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(sql::PRUNE_EVENTS).bind(older_than.as_secs_f64()).bind(limit).execute(pool).await?;
    Ok(result.rows_affected())
}

/// One maintenance pass; it rescues only when `rescue` says so (see [`Grace`]).
pub(crate) async fn tick(
    pool: &PgPool,
    notifier: &Notifier,
    settings: MaintenanceSettings,
    prune: bool,
    rescue_lost: bool,
) -> Result<Tick, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rescued = if rescue_lost {
        let recovered = recover_windows(&mut tx, settings.lease, BATCH).await?;
        if recovered > 0 {
            tracing::warn!(recovered, "found attempts of claim windows whose transactions are gone");
        }
        rescue(&mut tx, Lost::LeaseOlderThan(settings.lease), BATCH).await?.len()
    } else {
        0
    };
    if rescued > 0 {
        tracing::warn!(rescued, "rescued jobs whose lease expired");
    }
    let queues: Vec<String> = sqlx::query_scalar(sql::PROMOTE).bind(BATCH).fetch_all(&mut *tx).await?;
    let pruned = if prune {
        sqlx::query(sql::PRUNE_SLOTS).execute(&mut *tx).await?;
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
    Ok(Tick { promoted: queues.len(), rescued, pruned })
}
