//! The dashboard API's SQL.

/// Columns of a job, as the API shows them.
pub(crate) const JOB_COLUMNS: &str = "id, kind, queue, state, priority, attempt, max_attempts, args, output, \
     errors, progress, tags, metadata, run_at, created_at, attempted_at, finalized_at, attempted_by, unique_key";

/// Nodes, newest heartbeat first, with the scheduler's leader.
pub(crate) const NODES: &str = r#"
select n.id, n.hostname, n.roles, n.capabilities, n.version, n.status, n.started_at, n.last_heartbeat,
       extract(epoch from now() - n.last_heartbeat)::float8 as heartbeat_age_s,
       coalesce(l.node_id = n.id, false) as leader
from forge_nodes n
left join forge_leaders l on l.role = 'scheduler' and l.lease_until > now()
order by n.last_heartbeat desc
limit 500
"#;

/// Jobs by state, over the whole table.
pub(crate) const STATE_COUNTS: &str = r#"select coalesce(jsonb_object_agg(state, n), '{}') from (select state, count(*) as n from forge_jobs group by state) c"#;

/// The latest failed attempts' jobs (retryable or discarded), newest first.
pub(crate) const RECENT_FAILURES: &str = r#"
select id, kind, queue, state, attempt, max_attempts, errors -> -1 ->> 'message' as error,
       coalesce(finalized_at, attempted_at) as at
from forge_jobs
where state in ('retryable', 'discarded')
order by id desc
limit 10
"#;

/// The stored metrics' names: a skip scan over `forge_metrics (name, at)`, one index probe per
/// name however many rows there are.
pub(crate) const METRIC_NAMES: &str = r#"
with recursive names(name) as (
    (select name from forge_metrics order by name limit 1)
    union all
    select (select m.name from forge_metrics m where m.name > n.name order by m.name limit 1)
    from names n
    where n.name is not null
)
select name from names where name is not null
"#;
