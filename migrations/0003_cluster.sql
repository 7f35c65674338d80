-- The cluster: nodes and their heartbeats, and who leads.

-- @up
create table forge_nodes (
    id             text        primary key,
    hostname       text        not null,
    pid            integer     not null,
    roles          text[]      not null,
    capabilities   text[]      not null default '{}',
    version        text        not null,
    started_at     timestamptz not null default now(),
    last_heartbeat timestamptz not null default now(),
    status         text        not null default 'running',
    constraint forge_nodes_status_check check (status in ('running', 'draining', 'stopped', 'dead'))
);

-- The leader's sweep for nodes that stopped heartbeating.
create index forge_nodes_live_idx on forge_nodes (last_heartbeat) where status in ('running', 'draining');

-- One row per leader role, written by the node holding that role's advisory lock.
create table forge_leaders (
    role        text        primary key,
    node_id     text        not null,
    acquired_at timestamptz not null default now(),
    lease_until timestamptz not null
);

-- @down
drop table forge_leaders;
drop table forge_nodes;
