-- Webhook endpoints remembered by nodes: every change a delivery depends on (where it goes, the
-- secrets that sign it and how long the previous one still does, whether it is disabled, the
-- endpoint deleted) announces itself on `forge_webhook_endpoints`, and every node forgets the
-- endpoints it remembered. Statement triggers on a small table that changes rarely; a delivery's
-- record (`failing_since`, `last_success_at`) announces nothing, nor does the housekeeping's
-- prune of job endpoints when it deletes none.

-- @up
create function forge_webhook_endpoints_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('forge_webhook_endpoints', '');
    return null;
end
$$;

create function forge_webhook_endpoints_deleted() returns trigger language plpgsql as $$
begin
    if exists (select 1 from deleted) then
        perform pg_notify('forge_webhook_endpoints', '');
    end if;
    return null;
end
$$;

create trigger forge_webhook_endpoints_changed
    after update of url, secrets, previous_until, disabled_at
    on forge_webhook_endpoints
    for each statement execute function forge_webhook_endpoints_changed();

create trigger forge_webhook_endpoints_deleted
    after delete on forge_webhook_endpoints
    referencing old table as deleted
    for each statement execute function forge_webhook_endpoints_deleted();

-- @down
drop function forge_webhook_endpoints_deleted() cascade;
drop function forge_webhook_endpoints_changed() cascade;
