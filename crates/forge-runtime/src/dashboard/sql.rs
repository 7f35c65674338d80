//! The dashboard API's SQL.

/// Jobs by state, over the whole table.
pub(crate) const STATE_COUNTS: &str = r#"select state, count(*) from forge_jobs group by state"#;

/// The latest failed attempts' jobs (retryable or discarded), newest first.
pub(crate) const RECENT_FAILURES: &str = r#"
select id, kind, queue, state, attempt, max_attempts, errors -> -1 ->> 'message' as error,
       coalesce(finalized_at, attempted_at) as at
from forge_jobs
where state in ('retryable', 'discarded')
order by id desc
limit 10
"#;

/// The stored metrics' names: a skip scan over `forge_metrics (name, at)`, one index probe per
/// name however many rows there are.
pub(crate) const METRIC_NAMES: &str = r#"
with recursive names(name) as (
    (select name from forge_metrics order by name limit 1)
    union all
    select (select m.name from forge_metrics m where m.name > n.name order by m.name limit 1)
    from names n
    where n.name is not null
)
select name from names where name is not null
"#;

/// The job API's clients with their counts, by name.
pub(crate) const API_CLIENTS: &str = r"
select c.id, c.name, c.created_at, c.disabled_at,
       (select count(*) from forge_jobs j where j.client_id = c.id) as jobs,
       (select count(*) from forge_webhook_endpoints w where w.client_id = c.id and w.job_id is null) as endpoints
from forge_api_clients c
order by c.name
limit 1000
";

/// Every client key (never its hash), oldest first.
pub(crate) const API_CLIENT_KEYS: &str = r"
select id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at, client_id, scopes
from forge_api_keys
where client_id is not null
order by created_at, id
limit 10000
";

/// Every webhook endpoint (not those of single jobs) with its client and the last day's
/// delivery attempts (counted among its latest 10,000, newest first by the endpoint's index,
/// so a busy endpoint costs no more than that).
pub(crate) const WEBHOOK_ENDPOINTS: &str = r"
select w.id, w.client_id, c.name as client, w.url, w.events, w.description, w.created_at, w.disabled_at,
       w.disabled_reason, w.failing_since, w.last_success_at,
       coalesce(d.ok, 0) as ok_24h, coalesce(d.failed, 0) as failed_24h
from forge_webhook_endpoints w
join forge_api_clients c on c.id = w.client_id
left join lateral (
    select count(*) filter (where r.status between 200 and 299) as ok,
           count(*) filter (where r.status is null or r.status not between 200 and 299) as failed
    from (select status, at from forge_webhook_deliveries
          where endpoint_id = w.id order by id desc limit 10000) r
    where r.at > now() - interval '1 day'
) d on true
where w.job_id is null
order by w.disabled_at is null, c.name, w.created_at
limit 1000
";

/// Endpoints disabled by Forge itself (a 410, failing too long), for the overview's banner.
pub(crate) const WEBHOOKS_DISABLED: &str = r"
select w.id, c.name as client, w.url, w.disabled_reason, w.disabled_at
from forge_webhook_endpoints w
join forge_api_clients c on c.id = w.client_id
where w.disabled_at is not null and w.disabled_reason not like 'disabled by %'
order by w.disabled_at desc
limit 20
";
