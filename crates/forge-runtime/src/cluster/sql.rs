//! The cluster component's statements.

/// Registers the node; answers the schema epoch (`forge_schema_epoch`) it starts with. (A
/// sequence's `last_value` is its start value both before and after its first `nextval`:
/// `is_called` tells the two apart.)
pub(crate) const REGISTER: &str = r#"
insert into forge_nodes (id, hostname, pid, roles, capabilities, version)
values ($1, $2, $3, $4, $5, $6)
returning (select case when is_called then last_value else 0 end from forge_schema_epoch)
"#;

/// The node's heartbeat; answers the schema epoch: how many times a change (such as
/// `forge_jobs_use_domains()`) has left statements prepared before it refusing to run.
pub(crate) const HEARTBEAT: &str = r#"
update forge_nodes set last_heartbeat = now(),
    status = case when status = 'dead' then 'running' else status end
where id = $1
returning (select case when is_called then last_value else 0 end from forge_schema_epoch)
"#;

pub(crate) const SET_STATUS: &str = r#"update forge_nodes set status = $2, last_heartbeat = now() where id = $1"#;

/// The advisory lock of a leader role: `hashtext('forge_leader:' || role)`.
pub(crate) const TRY_LOCK: &str = r#"select pg_try_advisory_lock(hashtext('forge_leader:' || $1))"#;

pub(crate) const UNLOCK: &str = r#"select pg_advisory_unlock(hashtext('forge_leader:' || $1))"#;

/// Starts the lock holder's term. Run on the lock's own connection.
pub(crate) const BEGIN_TERM: &str = r#"
insert into forge_leaders (role, node_id, acquired_at, lease_until)
values ($1, $2, now(), now() + make_interval(secs => $3))
on conflict (role) do update
set node_id = excluded.node_id, acquired_at = excluded.acquired_at, lease_until = excluded.lease_until
"#;

/// Extends the term, on the lock's own connection: a failure means the lock (held by that
/// session) may be gone too.
pub(crate) const RENEW_TERM: &str = r#"
update forge_leaders set lease_until = now() + make_interval(secs => $3)
where role = $1 and node_id = $2
"#;

pub(crate) const RESIGN: &str = r#"delete from forge_leaders where role = $1 and node_id = $2"#;

/// Declares dead the nodes silent for longer than the threshold.
pub(crate) const MARK_DEAD: &str = r#"
update forge_nodes set status = 'dead'
where status in ('running', 'draining') and last_heartbeat < now() - make_interval(secs => $1)
returning id
"#;

/// Nodes, newest heartbeat first, with the scheduler's leader and their load: jobs running on
/// each, and the process's latest CPU and memory samples (from the last five minutes).
pub(crate) const NODES: &str = r#"
select n.id, n.hostname, n.roles, n.capabilities, n.version, n.status, n.started_at, n.last_heartbeat,
       extract(epoch from now() - n.last_heartbeat)::float8 as heartbeat_age_s,
       coalesce(l.node_id = n.id, false) as leader,
       (select count(*) from forge_jobs j where j.state = 'running' and j.attempted_by = n.id) as running_jobs,
       (select m.value from forge_metrics m
        where m.name = 'forge_process_cpu_percent' and m.node_id = n.id and m.at > now() - interval '5 minutes'
        order by m.at desc limit 1) as cpu_percent,
       (select m.value from forge_metrics m
        where m.name = 'forge_process_memory_bytes' and m.node_id = n.id and m.at > now() - interval '5 minutes'
        order by m.at desc limit 1) as memory_bytes
from forge_nodes n
left join forge_leaders l on l.role = 'scheduler' and l.lease_until > now()
order by n.last_heartbeat desc
limit 500
"#;

/// Deletes the rows of nodes stopped or dead for longer than `$1` seconds.
pub(crate) const PRUNE_NODES: &str = r#"
delete from forge_nodes
where status in ('stopped', 'dead') and last_heartbeat < now() - make_interval(secs => $1)
"#;

/// Deletes at most `$1` expired idempotency keys of the job API.
pub(crate) const PRUNE_IDEMPOTENCY_KEYS: &str = r#"
delete from forge_idempotency_keys
where (owner, key) in (select owner, key from forge_idempotency_keys where expires_at <= now() limit $1)
"#;

/// Deletes at most `$2` webhook delivery records older than `$1` seconds.
pub(crate) const PRUNE_WEBHOOK_DELIVERIES: &str = r#"
delete from forge_webhook_deliveries
where id in (select id from forge_webhook_deliveries where at < now() - make_interval(secs => $1) limit $2)
"#;

/// Deletes at most `$1` webhook endpoints given with a job that is gone (retention).
pub(crate) const PRUNE_JOB_ENDPOINTS: &str = r#"
delete from forge_webhook_endpoints
where id in (
    select w.id from forge_webhook_endpoints w
    where w.job_id is not null and w.created_at < now() - interval '1 hour'
      and not exists (select 1 from forge_jobs j where j.id = w.job_id)
    limit $1
)
"#;

/// Sets a setting for the rest of the session.
pub(crate) const SET_SESSION: &str = r#"select set_config($1, $2, false)"#;
