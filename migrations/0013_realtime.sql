-- Real-time: the change feed that live queries follow.
--
-- A table a subscribed query reads gets a statement-level trigger (installed by the gateway when
-- the first subscription needs it) that appends one row per writing transaction to
-- `forge_changes`: the table's name and the writer's transaction id. Readers never rely on ids
-- following commit order: each read remembers the snapshot it was taken in and next asks for
-- the rows that became visible since (`pg_visible_in_snapshot`), so a long transaction that
-- commits late is seen when it commits, and nothing is read twice. No NOTIFY is sent from the
-- trigger (a notifying commit takes Postgres's global notify lock); nodes poll the feed and
-- wake each other with a debounced hint.

-- @up
create table forge_changes (
    id         bigint      generated always as identity primary key,
    xid        xid8        not null default pg_current_xact_id(),
    table_name text        not null,
    at         timestamptz not null default now()
);

create index forge_changes_xid_idx on forge_changes (xid);
create index forge_changes_at_idx on forge_changes (at);

-- One row per transaction and table: later statements of the same transaction find the
-- transaction-local setting and add nothing.
create function forge_record_change() returns trigger
language plpgsql as $$
declare
    flag text := 'forge.changed_' || tg_relid::text;
begin
    if current_setting(flag, true) is distinct from pg_current_xact_id()::text then
        insert into forge_changes (table_name) values (tg_table_name);
        perform set_config(flag, pg_current_xact_id()::text, true);
    end if;
    return null;
end
$$;

-- @down
drop function forge_record_change() cascade;
drop table forge_changes;
