//! The leader's cron scheduler.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_core::schedule::CronSchedule;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::CronArgs;
use super::{CronRegistration, Overlap, sql};
use crate::jobs::{NewJob, insert_jobs};
use crate::observability::TraceId;

/// How often the scheduler looks for due ticks.
const TICK: Duration = Duration::from_millis(200);

/// Every registered cron with its parsed schedule.
#[derive(Clone, Debug, Default)]
pub(crate) struct Crons {
    pub(super) entries: Arc<Vec<(&'static CronRegistration, CronSchedule)>>,
}

impl Crons {
    /// Every `#[forge::cron]` in the binary; a bad expression or zone is an error naming the cron.
    pub(crate) fn collect() -> Result<Self, String> {
        let mut entries = Vec::new();
        for reg in inventory::iter::<CronRegistration> {
            let schedule =
                CronSchedule::parse(reg.expression, reg.timezone).map_err(|e| format!("cron {}: {e}", reg.name))?;
            entries.push((reg, schedule));
        }
        entries.sort_by_key(|(reg, _)| reg.name);
        Ok(Self { entries: Arc::new(entries) })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The crons' names.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|(reg, _)| reg.name).collect()
    }
}

/// Fires due ticks until its term ends.
#[derive(Debug)]
pub(crate) struct CronScheduler;

impl CronScheduler {
    /// Runs for one leadership term.
    pub(crate) async fn run(pool: PgPool, crons: Crons, node_id: String, stop: CancellationToken) {
        let mut last: Vec<Option<DateTime<Utc>>> = vec![None; crons.entries.len()];
        loop {
            if let Err(e) = Self::pass(&pool, &crons, &node_id, &mut last).await {
                tracing::warn!(error = %e, "cron scheduling failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn pass(
        pool: &PgPool,
        crons: &Crons,
        node_id: &str,
        last: &mut [Option<DateTime<Utc>>],
    ) -> Result<(), sqlx::Error> {
        // The database's clock, so every node agrees on what is due; and the paused crons.
        let (now, paused): (DateTime<Utc>, Vec<String>) = sqlx::query_as(sql::PASS_STATE).fetch_one(pool).await?;
        for (i, (reg, schedule)) in crons.entries.iter().enumerate() {
            let since = match last[i] {
                Some(t) => t,
                None => {
                    // A new term: continue from the last recorded tick, or from now if the cron
                    // never fired (a new cron does not catch up on its past).
                    let recorded: Option<DateTime<Utc>> =
                        sqlx::query_scalar(sql::LAST_TICK).bind(reg.name).fetch_one(pool).await?;
                    recorded.unwrap_or(now)
                }
            };
            let due = schedule.fires_between(since, now);
            let Some(&latest) = due.last() else {
                last[i] = Some(since);
                continue;
            };
            if paused.iter().any(|name| name == reg.name) {
                // Recorded, so that a new term does not catch up on what was missed while paused.
                sqlx::query(sql::RECORD_TICK)
                    .bind(reg.name)
                    .bind(latest)
                    .bind("paused")
                    .bind(false)
                    .bind(node_id)
                    .execute(pool)
                    .await?;
                last[i] = Some(latest);
                continue;
            }
            let picks: Vec<(DateTime<Utc>, bool)> = if reg.catch_up {
                let keep = usize::try_from(reg.catch_up_limit.max(1)).unwrap_or(usize::MAX);
                due[due.len().saturating_sub(keep)..].iter().map(|t| (*t, *t != latest)).collect()
            } else {
                vec![(latest, false)]
            };
            // Overlap is judged once per pass, against runs fired before it: the ticks of one
            // catch-up are fired together.
            let busy = reg.overlap == Overlap::Skip
                && sqlx::query_scalar::<_, bool>(sql::PREVIOUS_LIVE).bind(reg.name).fetch_one(pool).await?;
            for (at, catch_up) in picks {
                let span = tracing::info_span!(
                    "forge.cron",
                    node_id,
                    span_kind = "producer",
                    trace_id = %TraceId::new(),
                    cron = reg.name,
                    scheduled_at = %at,
                    catch_up,
                    skipped = busy,
                );
                fire(pool, reg, node_id, at, catch_up, busy).instrument(span).await?;
            }
            last[i] = Some(latest);
        }
        Ok(())
    }
}

/// Records the tick and (unless `busy`, when it is recorded as skipped) dispatches its job, in
/// one transaction; does nothing if the tick is already recorded.
async fn fire(
    pool: &PgPool,
    reg: &CronRegistration,
    node_id: &str,
    at: DateTime<Utc>,
    catch_up: bool,
    busy: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let status = if busy { "skipped" } else { "fired" };
    let recorded: Option<DateTime<Utc>> = sqlx::query_scalar(sql::RECORD_TICK)
        .bind(reg.name)
        .bind(at)
        .bind(status)
        .bind(catch_up)
        .bind(node_id)
        .fetch_optional(&mut *tx)
        .await?;
    if recorded.is_none() {
        return tx.commit().await;
    }
    if !busy {
        let args = serde_json::to_value(CronArgs { scheduled_at: at, catch_up }).unwrap_or_default();
        let mut job = NewJob::with_options(reg.job_kind, args, &(reg.job_options)());
        job.metadata.insert("cron".to_owned(), reg.name.into());
        let ids = insert_jobs(&mut tx, std::slice::from_ref(&job), true).await.map_err(|e| match e {
            crate::jobs::JobsError::Database(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
        if let Some(id) = ids.first() {
            sqlx::query(sql::SET_JOB).bind(reg.name).bind(at).bind(id.0).execute(&mut *tx).await?;
        }
    } else {
        tracing::info!(cron = reg.name, %at, "previous run still live; tick skipped");
    }
    tx.commit().await
}
