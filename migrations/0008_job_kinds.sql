-- The job kinds the application's nodes can run, recorded by each node at start-up, so that
-- tools without the application's code (the `forge` CLI) can refuse an unknown kind.

-- @up
create table forge_job_kinds (
    kind         text        primary key,
    queue        text        not null,
    max_attempts int         not null,
    seen_at      timestamptz not null default now(),
    seen_by      text        not null
);

-- @down
drop table forge_job_kinds;
