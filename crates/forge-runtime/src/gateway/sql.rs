//! The gateway's SQL: API keys.

/// Creates a key.
pub(crate) const INSERT_KEY: &str = r"
insert into forge_api_keys (id, name, prefix, key_hash, roles, tenant, expires_at, rotated_from, client_id, scopes)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
returning id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at, client_id, scopes
";

/// The columns a listing shows.
pub(crate) const LIST_KEYS: &str = r"
select id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at, client_id, scopes
from forge_api_keys
order by created_at, id
";

/// One key by id.
pub(crate) const GET_KEY: &str = r"
select id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at, client_id, scopes
from forge_api_keys
where id = $1
";

/// One key by id, locked (a rotation).
pub(crate) const GET_KEY_FOR_UPDATE: &str = r"
select id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at, client_id, scopes
from forge_api_keys
where id = $1
for update
";

/// The key behind a prefix, with its hash, if it is live.
pub(crate) const FIND_KEY: &str = r"
select k.id, k.name, k.key_hash, k.roles, k.tenant, k.last_used_at, k.client_id, k.scopes, k.revoked_at, k.expires_at
from forge_api_keys k
left join forge_api_clients c on c.id = k.client_id
where k.prefix = $1 and c.disabled_at is null and (k.revoked_at is null or k.revoked_at > now()) and (k.expires_at is null or k.expires_at > now())
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
