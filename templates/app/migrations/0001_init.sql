-- {{name}}'s first migration. Runs after Forge's own, once, at start-up.

-- @up
create table notes (
    id         bigint generated always as identity primary key,
    body       text        not null,
    created_at timestamptz not null default now()
);

-- @down
drop table notes;
