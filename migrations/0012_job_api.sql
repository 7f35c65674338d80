-- The job API for outside clients (`/v1`): clients and their keys, the jobs they submit, the
-- idempotency keys of their requests, the event feed of their jobs' state changes, and their
-- webhook endpoints with the deliveries made to them.
--
-- The event feed is written by the statements that change a job (insert, claim, finish, rescue,
-- progress, cancel, retry), only for jobs with a client (`forge_jobs.client_id`), so jobs of the
-- application itself pay nothing: no trigger, no extra row.

-- @up
create table forge_api_clients (
    id          uuid        primary key,
    name        text        not null unique,
    created_at  timestamptz not null default now(),
    disabled_at timestamptz,
    constraint forge_api_clients_name_check check (char_length(name) between 1 and 100)
);

-- A client's keys: `client_id` scopes a key to its client; `scopes` limits what it may do
-- (empty: everything a client may do).
alter table forge_api_keys add column client_id uuid references forge_api_clients (id) on delete cascade;
alter table forge_api_keys add column scopes text[] not null default '{}';
create index forge_api_keys_client_idx on forge_api_keys (client_id) where client_id is not null;

-- The client that submitted a job through the API (null for the application's own jobs). It never
-- changes, so updates stay HOT-eligible; the index holds API jobs only.
alter table forge_jobs add column client_id uuid;
create index forge_jobs_client_idx on forge_jobs (client_id, id) where client_id is not null;

-- One row per state change of an API job, appended by the statement that makes the change. One
-- job's events are written under its row lock, so their ids follow commit order; across jobs a
-- reader keeps the ids it has not seen yet (a transaction still running, or rolled back) and
-- looks for them again (see forge_api_cursors).
create table forge_job_events (
    id        bigint      generated always as identity primary key,
    job_id    bigint      not null,
    client_id uuid        not null,
    type      text        not null,
    attempt   int         not null default 0,
    data      jsonb       not null default '{}',
    at        timestamptz not null default now()
);
create index forge_job_events_job_idx on forge_job_events (job_id, id);
create index forge_job_events_at_idx on forge_job_events (at);

-- Idempotency keys (the IETF httpapi draft): per owner (a client), the request's fingerprint and
-- the first response, stored in the transaction that made the change.
create table forge_idempotency_keys (
    owner       text        not null,
    key         text        not null,
    method      text        not null,
    path        text        not null,
    fingerprint bytea       not null,
    status      smallint    not null,
    body        jsonb       not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    primary key (owner, key)
);
create index forge_idempotency_keys_expiry_idx on forge_idempotency_keys (expires_at);

-- A client's webhook endpoints. `secrets` holds the current signing secret first and, during a
-- rotation, the previous one (both sign until `previous_until`). `failing_since` is the first
-- failure of the current streak; an endpoint failing too long is disabled with a reason. An
-- endpoint with a `job_id` was given with that job's submission and receives only its events.
create table forge_webhook_endpoints (
    id              uuid        primary key,
    client_id       uuid        not null references forge_api_clients (id) on delete cascade,
    job_id          bigint,
    url             text        not null,
    events          text[]      not null default '{}',
    secrets         text[]      not null,
    previous_until  timestamptz,
    description     text,
    created_at      timestamptz not null default now(),
    disabled_at     timestamptz,
    disabled_reason text,
    failing_since   timestamptz,
    last_success_at timestamptz
);
create index forge_webhook_endpoints_client_idx on forge_webhook_endpoints (client_id);
create index forge_webhook_endpoints_job_idx on forge_webhook_endpoints (job_id) where job_id is not null;

-- Every attempt to deliver an event to an endpoint.
create table forge_webhook_deliveries (
    id          bigint      generated always as identity primary key,
    endpoint_id uuid        not null references forge_webhook_endpoints (id) on delete cascade,
    event_id    bigint      not null,
    job_id      bigint,
    attempt     int         not null,
    status      int,
    error       text,
    latency_ms  int,
    at          timestamptz not null default now()
);
create index forge_webhook_deliveries_endpoint_idx on forge_webhook_deliveries (endpoint_id, id desc);

-- Where a reader of the event feed is: the highest event id it has handled, and the lower ids it
-- has not seen yet (`holes`, first noticed at `hole_seen`): an event whose transaction commits
-- after a later one is picked up when it appears; a hole older than an hour (a rolled-back
-- insert) is forgotten.
create table forge_api_cursors (
    name      text          primary key,
    event_id  bigint        not null,
    holes     bigint[]      not null default '{}',
    hole_seen timestamptz[] not null default '{}'
);

-- @down
drop table forge_api_cursors;
drop table forge_webhook_deliveries;
drop table forge_webhook_endpoints;
drop table forge_idempotency_keys;
drop table forge_job_events;
drop index forge_jobs_client_idx;
alter table forge_jobs drop column client_id;
drop index forge_api_keys_client_idx;
alter table forge_api_keys drop column scopes;
alter table forge_api_keys drop column client_id;
drop table forge_api_clients;
