//! What an operator does to crons by hand: pause, resume, trigger now, and read their state.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::context::CronArgs;
use super::{CronRegistration, Overlap, sql};
use crate::jobs::{DispatchOptions, JobId, JobState, JobsError, KnownKind, NewJob, insert_jobs};

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
    let job = NewJob::with_options(reg.job_kind, serde_json::Value::Null, &(reg.job_options)());
    trigger_with(pool, reg.name, job, by).await
}

/// Runs a cron now, as the dashboard's trigger does, for a cron known from `forge_crons` (a
/// tool without the application's code), its job made with the options its kind recorded in
/// `forge_job_kinds`.
pub async fn trigger_known(pool: &PgPool, cron: &KnownCron, kind: &KnownKind, by: &str) -> Result<JobId, JobsError> {
    let job = NewJob::for_known(kind, serde_json::Value::Null, &DispatchOptions::default())?;
    trigger_with(pool, &cron.name, job, by).await
}

/// Records a `triggered` run of cron `name` and dispatches `job` (its arguments set to the
/// run's [`CronArgs`]) in one transaction.
async fn trigger_with(pool: &PgPool, name: &str, mut job: NewJob, by: &str) -> Result<JobId, JobsError> {
    let mut tx = pool.begin().await?;
    let at: DateTime<Utc> = sqlx::query_scalar(sql::RECORD_TRIGGER).bind(name).bind(by).fetch_one(&mut *tx).await?;
    job.args = serde_json::to_value(CronArgs { scheduled_at: at, catch_up: false })?;
    job.metadata.insert("cron".to_owned(), name.into());
    job.metadata.insert("triggered_by".to_owned(), by.into());
    let id = insert_jobs(&mut tx, std::slice::from_ref(&job), true).await?.into_iter().next();
    let id = id.ok_or(JobsError::NotInserted)?;
    sqlx::query(sql::SET_JOB).bind(name).bind(at).bind(id.0).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(id)
}

/// A cron the application's nodes schedule, as they record it in `forge_crons` at start-up, for
/// tools without the application's code (the `forge` CLI).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct KnownCron {
    /// Its name.
    pub name: String,
    /// Its expression.
    pub expression: String,
    /// Its time zone.
    pub timezone: String,
    /// The job kind that runs it.
    pub job_kind: String,
    /// Whether missed ticks fire after a gap.
    pub catch_up: bool,
    /// `skip` or `allow`.
    pub overlap: String,
    /// Since when it is paused, if it is.
    pub paused_at: Option<DateTime<Utc>>,
    /// Its latest run's tick, status and job.
    pub last_run_at: Option<DateTime<Utc>>,
    /// That run's status (`fired`, `skipped`, `paused`, `triggered`).
    pub last_status: Option<String>,
    /// That run's job.
    pub last_job_id: Option<JobId>,
    /// When a node last recorded it.
    pub seen_at: DateTime<Utc>,
}

/// Records the crons a node schedules in `forge_crons`.
pub(crate) async fn record_crons(pool: &PgPool, crons: &super::Crons, node_id: &str) -> Result<(), sqlx::Error> {
    let regs: Vec<&CronRegistration> = crons.entries.iter().map(|(reg, _)| *reg).collect();
    let names: Vec<&str> = regs.iter().map(|r| r.name).collect();
    let expressions: Vec<&str> = regs.iter().map(|r| r.expression).collect();
    let zones: Vec<&str> = regs.iter().map(|r| r.timezone).collect();
    let kinds: Vec<&str> = regs.iter().map(|r| r.job_kind).collect();
    let catch_up: Vec<bool> = regs.iter().map(|r| r.catch_up).collect();
    let overlap: Vec<&str> = regs
        .iter()
        .map(|r| match r.overlap {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        })
        .collect();
    sqlx::query(sql::RECORD_CRONS)
        .bind(&names)
        .bind(&expressions)
        .bind(&zones)
        .bind(&kinds)
        .bind(&catch_up)
        .bind(&overlap)
        .bind(node_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The crons the application's nodes have recorded, by name, with their pause and latest run.
pub async fn known_crons(pool: &PgPool) -> Result<Vec<KnownCron>, sqlx::Error> {
    sqlx::query_as(sql::KNOWN_CRONS).fetch_all(pool).await
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
