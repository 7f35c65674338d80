//! The gateway's SQL: API keys and rate-limit buckets.

/// Takes a token from bucket `$1` (capacity `$2`, refilled at `$3` tokens a second), creating it
/// full. One atomic upsert: `allowed` says whether a token was taken, `tokens` what is left.
pub(crate) const TAKE_TOKEN: &str = r"
insert into forge_rate_limits as b (key, tokens, allowed, updated_at)
values ($1, $2::float8 - 1, true, clock_timestamp())
on conflict (key) do update set
    tokens = case
        when least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8) >= 1
        then least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8) - 1
        else least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8)
    end,
    allowed = least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8) >= 1,
    updated_at = clock_timestamp()
returning allowed, tokens
";

/// Deletes buckets untouched for `$1` seconds (they would be full again anyway).
pub(crate) const PRUNE_BUCKETS: &str = r"
delete from forge_rate_limits where updated_at < now() - make_interval(secs => $1)
";

/// Creates a key.
pub(crate) const INSERT_KEY: &str = r"
insert into forge_api_keys (id, name, prefix, key_hash, roles, tenant, expires_at, rotated_from)
values ($1, $2, $3, $4, $5, $6, $7, $8)
returning id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at
";

/// The columns a listing shows.
pub(crate) const LIST_KEYS: &str = r"
select id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at
from forge_api_keys
order by created_at, id
";

/// One key by id.
pub(crate) const GET_KEY: &str = r"
select id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at
from forge_api_keys
where id = $1
";

/// The key behind a prefix, with its hash, if it is live.
pub(crate) const FIND_KEY: &str = r"
select id, name, key_hash, roles, tenant, last_used_at
from forge_api_keys
where prefix = $1 and (revoked_at is null or revoked_at > now()) and (expires_at is null or expires_at > now())
";

/// Records a key's use, at most once a minute.
pub(crate) const TOUCH_KEY: &str = r"
update forge_api_keys set last_used_at = now()
where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')
";

/// Revokes a key, at `$2` (now, or later for a rotation's grace period).
pub(crate) const REVOKE_KEY: &str = r"
update forge_api_keys set revoked_at = $2
where id = $1 and (revoked_at is null or revoked_at > $2)
";
