//! The cron component's statements.

/// The latest tick recorded for a cron.
pub(crate) const LAST_TICK: &str = r#"select max(scheduled_at) from forge_cron_runs where cron_name = $1"#;

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
    where r.cron_name = $1 and r.status = 'fired'
      and j.state in ('scheduled', 'available', 'running', 'retryable')
)
"#;
