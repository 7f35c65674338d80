//! [`LeaderDuties`]: what the leader does during its term, started when the term begins and
//! stopped (each task to its end) when it ends.
//!
//! | duty | every | what |
//! |------|-------|------|
//! | job maintenance | half a lease (≤ 1 s) | promote due jobs, rescue expired leases, prune finished jobs (`jobs`) |
//! | dead-node sweep | a heartbeat | declare silent nodes dead, rescue their running jobs at once |
//! | crons | each tick | fire the binary's crons, exactly once per tick (`cron`) |
//! | telemetry retention | a minute | delete logs, spans and metrics past `[observability.retention]` |
//! | housekeeping | a minute | delete rate-limit buckets idle for a day, cron runs older than a week (not the latest tick, not those of unfinished jobs), nodes stopped or dead for a day, expired idempotency keys, job events past `[api] event_retention` |
//!
//! Rescues (by lease or dead node) wait a grace of one lease plus one heartbeat after the term
//! starts and after any failed database call, so a database outage does not turn every running
//! job into a rescued one.

use std::time::Duration;

use forge_core::config::RetentionConfig;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::sweep::sweep_dead_nodes;
use crate::cron::{CronScheduler, Crons};
use crate::jobs::Notifier;
use crate::jobs::maintenance::{self, MaintenanceSettings};

/// Everything the leader's duties need; cheap to clone (pools and channels are handles).
#[derive(Clone, Debug)]
pub(crate) struct LeaderDuties {
    pub(crate) pool: PgPool,
    pub(crate) notifier: Notifier,
    pub(crate) node_id: String,
    pub(crate) maintenance: MaintenanceSettings,
    /// Silent this long, a node is declared dead.
    pub(crate) dead_after: Duration,
    /// How often the dead-node sweep runs.
    pub(crate) sweep_every: Duration,
    /// The crons to schedule (none on a node built without them).
    pub(crate) crons: Crons,
    /// Telemetry retention, when telemetry is stored.
    pub(crate) retention: Option<RetentionConfig>,
    /// How long job events are kept (`[api] event_retention`).
    pub(crate) event_retention: Duration,
}

impl LeaderDuties {
    /// Starts every duty for the term `term`; the returned task ends once all of them have
    /// stopped after `term` is cancelled.
    pub(crate) fn start(&self, term: CancellationToken) -> JoinHandle<()> {
        let duties = self.clone();
        tokio::spawn(async move {
            let pool = &duties.pool;
            let mut tasks = vec![
                tokio::spawn(sweep_dead_nodes(
                    pool.clone(),
                    duties.dead_after,
                    duties.sweep_every,
                    duties.maintenance.grace,
                    term.clone(),
                )),
                tokio::spawn(super::housekeeping::run(pool.clone(), duties.event_retention, term.clone())),
                tokio::spawn(maintenance::run(pool.clone(), duties.notifier, duties.maintenance, term.clone())),
            ];
            if let Some(retention) = duties.retention {
                tasks.push(tokio::spawn(crate::observability::retention_duty(pool.clone(), retention, term.clone())));
            }
            if !duties.crons.is_empty() {
                tasks.push(tokio::spawn(CronScheduler::run(pool.clone(), duties.crons, duties.node_id, term)));
            }
            for task in tasks {
                let _ = task.await;
            }
        })
    }
}
