//! What an operator does to crons by hand: pause, resume, trigger now, and read their state.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::context::CronArgs;
use super::{CronRegistration, Overlap, sql};
use crate::jobs::{JobId, JobState, JobsError, NewJob, insert_jobs};

/// Pauses a cron: its ticks are recorded as `paused` and fire nothing until it is resumed (a
/// resumed cron does not catch up on the ticks it missed while paused).
pub async fn pause_cron(pool: &PgPool, name: &str, by: &str) -> Result<(), sqlx::Error> {
    sql::CRON_PAUSES.pause(pool, name, by).await
}

/// Resumes a paused cron. Returns whether it was paused.
pub async fn resume_cron(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sql::CRON_PAUSES.resume(pool, name).await
}

/// Runs a cron now, outside its schedule: dispatches its job and records a `triggered` run in
/// one transaction. Works on a paused cron too.
pub(crate) async fn trigger(pool: &PgPool, reg: &CronRegistration, by: &str) -> Result<JobId, JobsError> {
    let mut tx = pool.begin().await?;
    let at: DateTime<Utc> = sqlx::query_scalar(sql::RECORD_TRIGGER).bind(reg.name).bind(by).fetch_one(&mut *tx).await?;
    let args = serde_json::to_value(CronArgs { scheduled_at: at, catch_up: false })?;
    let mut job = NewJob::with_options(reg.job_kind, args, &(reg.job_options)());
    job.metadata.insert("cron".to_owned(), reg.name.into());
    job.metadata.insert("triggered_by".to_owned(), by.into());
    let id = insert_jobs(&mut tx, std::slice::from_ref(&job), true).await?.into_iter().next();
    let id = id.ok_or(JobsError::NotInserted)?;
    sqlx::query(sql::SET_JOB).bind(reg.name).bind(at).bind(id.0).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(id)
}

/// One recorded run of a cron.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct CronRun {
    /// The tick (or, for a trigger, when it was triggered).
    pub scheduled_at: DateTime<Utc>,
    /// `fired`, `skipped` (the previous run was live), `paused` or `triggered`.
    pub status: String,
    /// Whether it was a missed tick fired after a gap.
    pub catch_up: bool,
    /// When it was recorded.
    pub fired_at: DateTime<Utc>,
    /// The node (or, for a trigger, the operator) that recorded it.
    pub fired_by: String,
    /// The job it dispatched.
    pub job_id: Option<JobId>,
    /// That job's state, while it is kept.
    pub job_state: Option<JobState>,
    /// That job's last error, if it failed.
    pub job_error: Option<String>,
}

/// A cron as an operator sees it.
#[derive(Clone, Debug, Serialize)]
pub struct CronStatus {
    /// Its name.
    pub name: &'static str,
    /// Its expression.
    pub expression: &'static str,
    /// Its time zone.
    pub timezone: &'static str,
    /// The job kind that runs it.
    pub job_kind: &'static str,
    /// Whether missed ticks fire after a gap.
    pub catch_up: bool,
    /// `skip` or `allow`.
    pub overlap: &'static str,
    /// Since when it is paused, if it is.
    pub paused_at: Option<DateTime<Utc>>,
    /// Its next ticks.
    pub next: Vec<DateTime<Utc>>,
    /// Its latest runs, newest first.
    pub runs: Vec<CronRun>,
}

impl super::Crons {
    /// The registration of the cron named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'static CronRegistration> {
        self.entries.iter().find(|(reg, _)| reg.name == name).map(|(reg, _)| *reg)
    }

    /// Every cron with its next `next` ticks and latest `runs` runs.
    pub(crate) async fn status(&self, pool: &PgPool, next: usize, runs: i64) -> Result<Vec<CronStatus>, sqlx::Error> {
        let now: DateTime<Utc> = sqlx::query_scalar("select now()").fetch_one(pool).await?;
        let paused: Vec<(String, DateTime<Utc>)> = sqlx::query_as(sql::PAUSED).fetch_all(pool).await?;
        let mut out = Vec::with_capacity(self.entries.len());
        for (reg, schedule) in self.entries.iter() {
            let mut ticks = Vec::with_capacity(next);
            let mut after = now;
            while ticks.len() < next {
                let Some(t) = schedule.next_after(after) else { break };
                ticks.push(t);
                after = t;
            }
            let recent: Vec<CronRun> =
                sqlx::query_as(sql::RECENT_RUNS).bind(reg.name).bind(runs).fetch_all(pool).await?;
            out.push(CronStatus {
                name: reg.name,
                expression: reg.expression,
                timezone: reg.timezone,
                job_kind: reg.job_kind,
                catch_up: reg.catch_up,
                overlap: match reg.overlap {
                    Overlap::Skip => "skip",
                    Overlap::Allow => "allow",
                },
                paused_at: paused.iter().find(|(n, _)| n == reg.name).map(|(_, at)| *at),
                next: ticks,
                runs: recent,
            });
        }
        Ok(out)
    }
}

/// Deletes cron runs older than `older_than`, keeping each cron's latest tick and the runs whose
/// job is not finished; returns how many went. The leader's housekeeping calls it.
pub(crate) async fn prune_runs(pool: &sqlx::PgPool, older_than: std::time::Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(super::sql::PRUNE_RUNS).bind(older_than.as_secs_f64()).execute(pool).await?.rows_affected())
}
