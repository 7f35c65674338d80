//! The webhooks' statements: endpoints, deliveries and the dispatcher's cursor.

/// An endpoint's columns as [`WebhookEndpoint`](crate::api::types::WebhookEndpoint) reads them.
macro_rules! endpoint_columns {
    () => {
        r"id, client_id, job_id, url, events, description, created_at, disabled_at, disabled_reason, failing_since,
       last_success_at"
    };
}

/// The endpoints `$1` as deliveries read them (a deleted one is missing).
pub(super) const ENDPOINTS_FOR_DELIVERY: &str = r"
select id, url, secrets, previous_until, disabled_at
from forge_webhook_endpoints
where id = any($1::uuid[])
";

/// Records attempts of deliveries (`$1`..`$8`, one element each) and their endpoints' streaks,
/// in one statement (one commit for many: commits, each a WAL flush, are what deliveries cost;
/// see `record.rs`). An endpoint's streak follows its last attempt in the
/// batch: a success ends the failure streak (`last_success_at` is kept to the second, so a busy
/// endpoint's row is not rewritten by every delivery); a failure starts it if it had not (anew
/// after a success earlier in the batch). Each
/// attempt's row says whether its endpoint's streak is older than `$9` seconds, in the order given.
pub(super) const RECORD_DELIVERIES: &str = r"
with input as (
    select * from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::int[], $5::int[], $6::text[], $7::int[],
                         $8::bool[]) with ordinality
        as r(endpoint_id, event_id, job_id, attempt, status, error, latency_ms, succeeded, n)
),
recorded as (
    insert into forge_webhook_deliveries (endpoint_id, event_id, job_id, attempt, status, error, latency_ms)
    select endpoint_id, event_id, job_id, attempt, status, error, latency_ms from input order by n
),
last as (
    select endpoint_id, (array_agg(succeeded order by n desc))[1] as succeeded, bool_or(succeeded) as any_success
    from input group by endpoint_id
),
succeeded as (
    update forge_webhook_endpoints w set failing_since = null, last_success_at = now()
    from last
    where w.id = last.endpoint_id and last.succeeded
      and (w.failing_since is not null or w.last_success_at is null
           or w.last_success_at < now() - interval '1 second')
),
failed as (
    update forge_webhook_endpoints w
    set failing_since = case when last.any_success then now() else coalesce(w.failing_since, now()) end,
        last_success_at = case when last.any_success then now() else w.last_success_at end
    from last
    where w.id = last.endpoint_id and not last.succeeded
    returning w.id, w.failing_since < now() - make_interval(secs => $9) as overdue
)
select coalesce(f.overdue, false) as overdue
from input i left join failed f on f.id = i.endpoint_id
order by i.n
";

/// Disables an endpoint with a reason.
pub(super) const DISABLE_ENDPOINT: &str = r"
update forge_webhook_endpoints set disabled_at = now(), disabled_reason = $2
where id = $1 and disabled_at is null
";

/// Creates the dispatcher's cursor at the feed's present (a new endpoint gets what follows).
pub(super) const INIT_CURSOR: &str = r"
insert into forge_api_cursors (name, event_id)
select 'webhooks', coalesce(max(id), 0) from forge_job_events
on conflict (name) do nothing
";

/// The cursor, locked: one node dispatches at a time (the others skip their turn).
pub(super) const LOCK_CURSOR: &str = r"
select event_id, holes, hole_seen from forge_api_cursors where name = 'webhooks' for update skip locked
";

/// Events after `$2` (at most `$3`) and those among the holes `$1`, each with the live
/// endpoints that want it, or with none (a row with a null endpoint, so the cursor moves past).
/// (A job's kind is looked up per event by its id: a join let the planner scan all of
/// `forge_jobs` for a large batch.)
pub(super) const PENDING: &str = r"
with e as (
    (select id, job_id, client_id, type, attempt, data, at
     from forge_job_events where id > $2 order by id limit $3)
    union all
    (select id, job_id, client_id, type, attempt, data, at
     from forge_job_events where id = any($1::bigint[]))
)
select e.id, e.job_id, e.type, e.attempt, e.data, e.at,
       (select j.kind from forge_jobs j where j.id = e.job_id) as kind, w.id as endpoint
from e
left join forge_webhook_endpoints w
       on w.client_id = e.client_id and w.disabled_at is null and w.created_at <= e.at
      and (w.job_id is null or w.job_id = e.job_id)
      and (cardinality(w.events) = 0 or e.type = any(w.events))
order by e.id
";

/// Moves the cursor.
pub(super) const ADVANCE_CURSOR: &str = r"
update forge_api_cursors set event_id = $1, holes = $2, hole_seen = $3 where name = 'webhooks'
";

/// Creates an endpoint.
pub(super) const INSERT_ENDPOINT: &str = concat!(
    "insert into forge_webhook_endpoints (id, client_id, job_id, url, events, description, secrets) ",
    "values ($1, $2, $3, $4, $5, $6, array[$7]) returning ",
    endpoint_columns!()
);

/// A client's endpoints (not those of single jobs), oldest first.
pub(super) const LIST_ENDPOINTS: &str = concat!(
    "select ",
    endpoint_columns!(),
    " from forge_webhook_endpoints where client_id = $1 and job_id is null order by created_at, id limit 1000"
);

/// One endpoint of a client (`$2` null: of any client).
pub(crate) const GET_ENDPOINT: &str = concat!(
    "select ",
    endpoint_columns!(),
    " from forge_webhook_endpoints where id = $1 and ($2::uuid is null or client_id = $2)"
);

/// Deletes an endpoint of a client.
pub(super) const DELETE_ENDPOINT: &str =
    r"delete from forge_webhook_endpoints where id = $1 and client_id = $2 returning id";

/// A new secret first; the previous one signs too until `$3` seconds from now.
pub(super) const ROTATE_SECRET: &str = concat!(
    "update forge_webhook_endpoints set secrets = array[$2, secrets[1]], ",
    "previous_until = now() + make_interval(secs => $3) where id = $1 returning ",
    endpoint_columns!()
);

/// Enables (`$2` true: the failure streak forgotten) or disables (with reason `$3`) an endpoint.
pub(crate) const SET_ENABLED: &str = concat!(
    "update forge_webhook_endpoints set ",
    "disabled_at = case when $2 then null else coalesce(disabled_at, now()) end, ",
    "disabled_reason = case when $2 then null else coalesce(disabled_reason, $3) end, ",
    "failing_since = case when $2 then null else failing_since end ",
    "where id = $1 returning ",
    endpoint_columns!()
);

/// An endpoint's deliveries, newest first, before a cursor.
pub(crate) const DELIVERIES: &str = r"
select id, endpoint_id, event_id, job_id, attempt, status, error, latency_ms, at
from forge_webhook_deliveries
where endpoint_id = $1 and id < $2
order by id desc
limit $3
";

/// The events an endpoint wants since `$2` (at most `$3`): what a recovery replays.
pub(crate) const EVENTS_SINCE: &str = r"
select e.id, e.job_id, e.type, e.attempt, e.data, e.at,
       (select j.kind from forge_jobs j where j.id = e.job_id) as kind, w.id as endpoint
from forge_webhook_endpoints w
join forge_job_events e
  on e.client_id = w.client_id and e.at >= $2
 and (w.job_id is null or w.job_id = e.job_id)
 and (cardinality(w.events) = 0 or e.type = any(w.events))
where w.id = $1
order by e.id
limit $3
";

/// One event an endpoint wants (a resend).
pub(crate) const EVENT_FOR_ENDPOINT: &str = r"
select e.id, e.job_id, e.type, e.attempt, e.data, e.at,
       (select j.kind from forge_jobs j where j.id = e.job_id) as kind, w.id as endpoint
from forge_webhook_endpoints w
join forge_job_events e on e.client_id = w.client_id and e.id = $2
where w.id = $1
";
