-- The gateway: API keys and rate-limit buckets.

-- @up
-- An API key is `forge_<prefix>_<secret>`. Only the SHA-256 of the whole key is kept; the prefix
-- finds the row, and the hash is compared in constant time.
create table forge_api_keys (
    id           uuid        primary key,
    name         text        not null,
    prefix       text        not null unique,
    key_hash     bytea       not null,
    roles        text[]      not null default '{}',
    tenant       text,
    created_at   timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    expires_at   timestamptz,
    rotated_from uuid        references forge_api_keys (id) on delete set null
);

-- Token buckets, one row per limited key (function, and user, API key, IP or global). A check is
-- one atomic upsert. Unlogged: after a crash the buckets start full, which only forgives.
create unlogged table forge_rate_limits (
    key        text             primary key,
    tokens     double precision not null,
    allowed    boolean          not null,
    updated_at timestamptz      not null default now()
);

-- @down
drop table forge_rate_limits;
drop table forge_api_keys;
