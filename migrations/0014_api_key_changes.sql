-- API keys remembered by nodes: every change that can make a key stop working (revoked,
-- expiry, roles, scopes, owner, hash) or a client's (disabled, deleted) announces itself on
-- `forge_api_keys`, and every node forgets the keys it remembered. Statement triggers on two
-- small tables that change rarely; a key's use (`last_used_at`) announces nothing.

-- @up
create function forge_api_keys_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('forge_api_keys', tg_table_name);
    return null;
end
$$;

create trigger forge_api_keys_changed
    after update of revoked_at, expires_at, roles, tenant, scopes, client_id, key_hash, prefix or delete
    on forge_api_keys
    for each statement execute function forge_api_keys_changed();

create trigger forge_api_clients_changed
    after update of disabled_at or delete
    on forge_api_clients
    for each statement execute function forge_api_keys_changed();

-- @down
drop function forge_api_keys_changed() cascade;
