-- What the `forge` CLI needs to act like the application without its code: each job kind's
-- priority, uniqueness rule and capability (so a dispatch from the CLI follows the kind's rules),
-- and the crons the application's nodes schedule (so the CLI can list, pause and trigger them).
-- Nodes record both at start-up.

-- @up
alter table forge_job_kinds
    add column priority         smallint not null default 2,
    add column unique_by        text,
    add column unique_period_ms bigint,
    add column capability       text,
    add constraint forge_job_kinds_unique_by_check check (unique_by in ('args', 'key'));

create table forge_crons (
    name       text        primary key,
    expression text        not null,
    timezone   text        not null,
    job_kind   text        not null,
    catch_up   boolean     not null,
    overlap    text        not null,
    seen_at    timestamptz not null default now(),
    seen_by    text        not null
);

-- @down
drop table forge_crons;
alter table forge_job_kinds
    drop constraint forge_job_kinds_unique_by_check,
    drop column capability,
    drop column unique_period_ms,
    drop column unique_by,
    drop column priority;
