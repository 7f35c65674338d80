//! The gateway's SQL: API keys.

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
