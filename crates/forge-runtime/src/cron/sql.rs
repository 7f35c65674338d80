//! The cron component's statements.

/// The latest tick recorded for a cron (manual triggers are not ticks).
pub(crate) const LAST_TICK: &str =
    r#"select max(scheduled_at) from forge_cron_runs where cron_name = $1 and status <> 'triggered'"#;

/// Records a tick; returns nothing when it was already recorded (by this or another node).
pub(crate) const RECORD_TICK: &str = r#"
insert into forge_cron_runs (cron_name, scheduled_at, status, catch_up, fired_by)
values ($1, $2, $3, $4, $5)
on conflict do nothing
returning scheduled_at
"#;

pub(crate) const SET_JOB: &str = r#"update forge_cron_runs set job_id = $3 where cron_name = $1 and scheduled_at = $2"#;

/// Whether the cron's last fired run is still live.
pub(crate) const PREVIOUS_LIVE: &str = r#"
select exists (
    select 1 from forge_cron_runs r join forge_jobs j on j.id = r.job_id
    where r.cron_name = $1 and r.status in ('fired', 'triggered')
      and j.state in ('scheduled', 'available', 'running', 'retryable')
)
"#;

/// Records a manual trigger at the database's clock; returns that time.
pub(crate) const RECORD_TRIGGER: &str = r#"
insert into forge_cron_runs (cron_name, scheduled_at, status, catch_up, fired_by)
values ($1, clock_timestamp(), 'triggered', false, $2)
returning scheduled_at
"#;

/// Pausing and resuming a cron.
pub(crate) const CRON_PAUSES: crate::db::Pauses = crate::db::pauses!("forge_cron_state", "cron_name");

/// The paused crons.
pub(crate) const PAUSED: &str = r#"select cron_name, paused_at from forge_cron_state where paused_at is not null"#;

/// A cron's latest runs with their jobs' outcomes, newest first.
pub(crate) const RECENT_RUNS: &str = r#"
select r.scheduled_at, r.status, r.catch_up, r.fired_at, r.fired_by, r.job_id,
       j.state as job_state, j.errors -> -1 ->> 'message' as job_error
from forge_cron_runs r
left join forge_jobs j on j.id = r.job_id
where r.cron_name = $1
order by r.scheduled_at desc
limit $2
"#;

/// What a scheduler pass starts from: the database's clock and the paused crons' names.
pub(crate) const PASS_STATE: &str = r#"
select clock_timestamp(), array(select cron_name from forge_cron_state where paused_at is not null)
"#;

/// Deletes runs older than `$1` seconds, except each cron's latest tick (catch-up starts from
/// it) and runs whose job is not finished (the overlap check reads them).
pub(crate) const PRUNE_RUNS: &str = r#"
delete from forge_cron_runs r
where r.scheduled_at < now() - make_interval(secs => $1)
  and r.scheduled_at < (
      select max(l.scheduled_at) from forge_cron_runs l
      where l.cron_name = r.cron_name and l.status <> 'triggered')
  and not exists (
      select 1 from forge_jobs j
      where j.id = r.job_id and j.state in ('scheduled', 'available', 'running', 'retryable'))
"#;
