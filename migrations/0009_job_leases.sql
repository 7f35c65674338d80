-- Each running job's lease ends at `lease_until`, set at claim and at every renewal by the node
-- running it, from that node's own `[worker] lease`. The leader's rescue reads it, so nodes with
-- different leases can share a cluster; rows claimed before this column existed fall back to
-- `heartbeat_at` and the leader's lease.

-- @up
alter table forge_jobs add column lease_until timestamptz;

drop index forge_jobs_lease_idx;

create index forge_jobs_lease_idx on forge_jobs (lease_until) where state = 'running';

-- @down
drop index forge_jobs_lease_idx;

create index forge_jobs_lease_idx on forge_jobs (heartbeat_at) where state = 'running';

alter table forge_jobs drop column lease_until;
