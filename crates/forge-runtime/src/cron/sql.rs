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

/// Records a node's crons (names, expressions, zones, job kinds, catch-up, overlap; `$7` the node).
pub(crate) const RECORD_CRONS: &str = r#"
insert into forge_crons (name, expression, timezone, job_kind, catch_up, overlap, seen_at, seen_by)
select name, expression, timezone, job_kind, catch_up, overlap, now(), $7
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[])
    as c(name, expression, timezone, job_kind, catch_up, overlap)
on conflict (name) do update
set expression = excluded.expression, timezone = excluded.timezone, job_kind = excluded.job_kind,
    catch_up = excluded.catch_up, overlap = excluded.overlap, seen_at = excluded.seen_at, seen_by = excluded.seen_by
"#;

/// The recorded crons with their pause and latest run.
pub(crate) const KNOWN_CRONS: &str = r#"
select c.name, c.expression, c.timezone, c.job_kind, c.catch_up, c.overlap, s.paused_at,
       r.scheduled_at as last_run_at, r.status as last_status, r.job_id as last_job_id, c.seen_at
from forge_crons c
left join forge_cron_state s on s.cron_name = c.name and s.paused_at is not null
left join lateral (
    select scheduled_at, status, job_id from forge_cron_runs
    where cron_name = c.name order by scheduled_at desc limit 1
) r on true
order by c.name
"#;
