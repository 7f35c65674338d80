-- The sign-up example's tables: accounts, the mails it would send (an outbox), and the
-- workspaces provisioned for confirmed accounts.

-- @up
create table accounts (
    id         bigint generated always as identity primary key,
    email      text        not null unique,
    status     text        not null default 'pending',
    created_at timestamptz not null default now(),
    constraint accounts_status_check check (status in ('pending', 'active', 'closed'))
);

create table outbox (
    id      bigint generated always as identity primary key,
    email   text        not null,
    subject text        not null,
    sent_at timestamptz not null default now()
);

create table workspaces (
    account_id bigint      primary key references accounts (id),
    name       text        not null,
    removed_at timestamptz
);

-- @down
drop table workspaces;
drop table outbox;
drop table accounts;
