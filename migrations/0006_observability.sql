-- Observability: every node's log records, spans and metric samples (see DESIGN.md, "Data
-- model"). Written in batches by each node's flusher; old rows are deleted by the leader in
-- bounded batches (`[observability.retention]`).

-- @up
create table forge_logs (
    id       bigint      generated always as identity primary key,
    at       timestamptz not null,
    level    text        not null,
    target   text        not null,
    message  text        not null,
    fields   jsonb       not null default '{}',
    trace_id text,
    span_id  text,
    node_id  text        not null,
    job_id   bigint,
    cron     text,
    function text,
    constraint forge_logs_level_check check (level in ('error', 'warn', 'info', 'debug', 'trace'))
);

-- Newest first, by time range, and retention (oldest first).
create index forge_logs_at_idx on forge_logs (at, id);
-- A job's logs, a trace's logs.
create index forge_logs_job_idx on forge_logs (job_id, at) where job_id is not null;
create index forge_logs_trace_idx on forge_logs (trace_id, at) where trace_id is not null;

create table forge_traces (
    -- The 32 hex digits of a W3C trace id, stored in 16 bytes.
    trace_id       uuid        not null,
    span_id        text        not null,
    parent_span_id text,
    name           text        not null,
    kind           text        not null,
    started_at     timestamptz not null,
    duration_us    bigint      not null,
    status         text        not null,
    attributes     jsonb       not null default '{}',
    node_id        text        not null,
    job_id         bigint,
    function       text,
    constraint forge_traces_status_check check (status in ('ok', 'error'))
);

-- A trace's spans (a job's trace id comes from its row: `observability::trace_of_job`).
create index forge_traces_trace_idx on forge_traces (trace_id);
-- Recent traces, and retention: rows arrive in time order, so a BRIN index serves time ranges
-- at almost no cost per insert (a job attempt is a span: this table takes every attempt).
create index forge_traces_started_idx on forge_traces using brin (started_at);

create table forge_metrics (
    at       timestamptz      not null,
    node_id  text             not null,
    name     text             not null,
    kind     text             not null,
    labels   jsonb            not null default '{}',
    -- Counter: the increase over the interval; gauge: the value; histogram: the count.
    value    double precision not null,
    -- Histogram: the sum of the interval's observations.
    sum      double precision,
    -- Histogram: {"le": [bounds], "counts": [cumulative counts over the interval]}.
    buckets  jsonb,
    -- The interval's length.
    seconds  double precision not null,
    constraint forge_metrics_kind_check check (kind in ('counter', 'gauge', 'histogram'))
);

-- A metric's series over a time range.
create index forge_metrics_name_idx on forge_metrics (name, at);
-- Retention.
create index forge_metrics_at_idx on forge_metrics (at);

-- @down
drop table forge_metrics;
drop table forge_traces;
drop table forge_logs;
