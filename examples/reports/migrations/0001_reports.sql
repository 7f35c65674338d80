-- The reports example: orders to report on, who wants which report, the requests, and an
-- outbox standing in for a mail server.

-- @up
create table orders (
    id           bigint generated always as identity primary key,
    amount_cents bigint      not null check (amount_cents >= 0),
    created_at   timestamptz not null default now()
);

create table report_subscriptions (
    email  text primary key,
    period text not null check (period in ('day', 'week'))
);

create table report_requests (
    id           bigint generated always as identity primary key,
    email        text        not null,
    period       text        not null check (period in ('day', 'week')),
    status       text        not null default 'requested'
                 check (status in ('requested', 'built', 'delivered')),
    orders       bigint,
    total_cents  bigint,
    created_at   timestamptz not null default now(),
    delivered_at timestamptz
);

create table outbox (
    id         bigint generated always as identity primary key,
    request_id bigint      not null references report_requests (id),
    to_email   text        not null,
    subject    text        not null,
    body       text        not null,
    sent_at    timestamptz not null default now(),
    unique (request_id)
);

-- @down
drop table outbox;
drop table report_requests;
drop table report_subscriptions;
drop table orders;
