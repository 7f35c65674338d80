-- The sample feature's table. Forge applies migrations at start-up (and with
-- `forge migrate up`); `forge migrate down` runs the `-- @down` part.

-- @up
create table signups (
    id             bigint generated always as identity primary key,
    email          text        not null unique,
    created_at     timestamptz not null default now(),
    welcomed_at    timestamptz,
    welcome_failed boolean not null default false
);

-- @down
drop table signups;
