-- Durable workflows. A run is a forge_jobs row (kind = the workflow, args = its arguments,
-- output = its result); this migration adds what a run has beyond a job: its own row (version,
-- idempotent run key, what it waits for, why it is blocked, a cancel request), its checkpointed
-- steps keyed by (run, position), each also unique by (run, kind, step name with occurrence), and the events sent to it (the first of a
-- name wins). Deleting the job (retention) deletes the rest.

-- @up
create table forge_workflow_runs (
    id                  bigint      primary key references forge_jobs (id) on delete cascade,
    workflow            text        not null,
    version             int         not null,
    run_key             text        unique,
    deadline            timestamptz,
    waiting_for         text,
    blocked_reason      text,
    blocked_seq         int,
    cancel_requested_at timestamptz,
    parent_id           bigint,
    open_children       int         not null default 0,
    created_at          timestamptz not null default now()
);

create index forge_workflow_runs_workflow on forge_workflow_runs (workflow, id desc);
create index forge_workflow_runs_parent on forge_workflow_runs (parent_id) where parent_id is not null;

create table forge_workflow_steps (
    run_id         bigint      not null references forge_workflow_runs (id) on delete cascade,
    name           text        not null,
    seq            int         not null,
    kind           text        not null,
    status         text        not null,
    output         jsonb,
    error          text,
    attempts       int         not null default 0,
    wake_at        timestamptz,
    started_at     timestamptz not null default now(),
    finished_at    timestamptz,
    compensated_at timestamptz,
    compensation_error text,
    primary key (run_id, seq),
    constraint forge_workflow_steps_name_key unique (run_id, kind, name),
    constraint forge_workflow_steps_kind_check check (kind in ('step', 'tx_step', 'sleep', 'event', 'patch', 'time', 'child')),
    constraint forge_workflow_steps_status_check check (status in ('completed', 'failed', 'retrying', 'waiting'))
);

create table forge_workflow_events (
    run_id  bigint      not null references forge_workflow_runs (id) on delete cascade,
    name    text        not null,
    payload jsonb       not null,
    sent_at timestamptz not null default now(),
    primary key (run_id, name)
);

-- @down
drop table forge_workflow_events;
drop table forge_workflow_steps;
drop table forge_workflow_runs;
