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
