-- Operator controls used by the dashboard and the CLI: paused queues (their jobs are not
-- claimed) and paused crons (their ticks are recorded as `paused` instead of firing), plus
-- manual cron triggers, recorded as `triggered` runs.

-- @up
create table forge_queues (
    name      text        primary key,
    paused_at timestamptz,
    paused_by text
);

create table forge_cron_state (
    cron_name text        primary key,
    paused_at timestamptz,
    paused_by text
);

alter table forge_cron_runs drop constraint forge_cron_runs_status_check;
alter table forge_cron_runs add constraint forge_cron_runs_status_check
    check (status in ('fired', 'skipped', 'paused', 'triggered'));

-- @down
delete from forge_cron_runs where status in ('paused', 'triggered');
alter table forge_cron_runs drop constraint forge_cron_runs_status_check;
alter table forge_cron_runs add constraint forge_cron_runs_status_check check (status in ('fired', 'skipped'));
drop table forge_cron_state;
drop table forge_queues;
