-- Forge's job table: the heart of the job engine (see DESIGN.md, "Data model" and "Job lifecycle").
-- The only indexes are the ones the hot path and maintenance need; each one is paid on every
-- state change.

-- @up
create table forge_jobs (
    id                  bigint generated always as identity primary key,
    kind                text        not null,
    queue               text        not null default 'default',
    args                jsonb       not null default '{}',
    state               text        not null default 'available',
    -- 0 critical, 1 high, 2 normal, 3 low, 4 background: lower runs first.
    priority            smallint    not null default 2,
    attempt             integer     not null default 0,
    max_attempts        integer     not null default 20,
    run_at              timestamptz not null default now(),
    created_at          timestamptz not null default now(),
    attempted_at        timestamptz,
    finalized_at        timestamptz,
    -- The lease: a running job whose heartbeat is older than the lease is rescued.
    heartbeat_at        timestamptz,
    attempted_by        text,
    unique_key          text,
    capability          text,
    progress            jsonb,
    output              jsonb,
    -- One entry per failed attempt: {attempt, at, message, trace}.
    errors              jsonb       not null default '[]',
    cancel_requested_at timestamptz,
    tags                text[]      not null default '{}',
    metadata            jsonb       not null default '{}',
    constraint forge_jobs_state_check check (state in
        ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled')),
    constraint forge_jobs_priority_check check (priority between 0 and 4),
    constraint forge_jobs_attempts_check check (max_attempts > 0 and attempt >= 0),
    constraint forge_jobs_kind_check check (char_length(kind) between 1 and 255),
    constraint forge_jobs_queue_check check (char_length(queue) between 1 and 64)
);

-- The claim query: available jobs of a queue in priority, run_at, id order.
create index forge_jobs_claim_idx on forge_jobs (queue, priority, run_at, id)
    where state = 'available';

-- Promotion of scheduled and retryable jobs whose time has come.
create index forge_jobs_due_idx on forge_jobs (run_at)
    where state in ('scheduled', 'retryable');

-- Rescue of running jobs whose lease expired.
create index forge_jobs_lease_idx on forge_jobs (heartbeat_at)
    where state = 'running';

-- Pruning of finished jobs.
create index forge_jobs_finalized_idx on forge_jobs (finalized_at)
    where finalized_at is not null;

-- At most one live job per (kind, unique_key).
create unique index forge_jobs_unique_live_idx on forge_jobs (kind, unique_key)
    where unique_key is not null and state in ('scheduled', 'available', 'running', 'retryable');

-- @down
drop table forge_jobs;
