-- The quickstart app's own table: applied after Forge's migrations.

-- @up
create table greetings (
    id         bigint generated always as identity primary key,
    name       text        not null,
    created_at timestamptz not null default now()
);

-- @down
drop table greetings;
