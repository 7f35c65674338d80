-- Cron ticks: one row per (cron, scheduled time), inserted in the same transaction as the job the
-- tick dispatches, so each tick fires exactly once across the cluster.

-- @up
create table forge_cron_runs (
    cron_name    text        not null,
    scheduled_at timestamptz not null,
    job_id       bigint,
    status       text        not null,
    catch_up     boolean     not null default false,
    fired_at     timestamptz not null default now(),
    fired_by     text        not null,
    primary key (cron_name, scheduled_at),
    constraint forge_cron_runs_status_check check (status in ('fired', 'skipped'))
);

-- @down
drop table forge_cron_runs;
