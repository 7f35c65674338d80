//! The job API's statements. The engine's own writes (and the events they append) stay in
//! `jobs/`; these read a client's jobs and keep clients, keys and idempotency keys.

/// A job's columns as [`ApiJob`](super::types::ApiJob) reads them.
macro_rules! job_columns {
    () => {
        r"id, kind, queue, state,
       case priority when 0 then 'critical' when 1 then 'high' when 2 then 'normal' when 3 then 'low'
                     else 'background' end as priority,
       attempt, max_attempts, args, tags, created_at, run_at, attempted_at, finalized_at, progress, output,
       cancel_requested_at is not null as cancel_requested"
    };
}

/// One job of a client.
pub(crate) const GET_JOB: &str =
    concat!("select ", job_columns!(), " from forge_jobs where id = $1 and client_id = $2");

/// The start of a listing of a client's jobs (`$1`); conditions and the order follow.
pub(crate) const LIST_JOBS: &str = concat!("select ", job_columns!(), " from forge_jobs where client_id = ");

/// A job's errors (one entry per failed attempt) and what a report needs beyond [`GET_JOB`].
pub(crate) const JOB_ATTEMPTS: &str = r"select errors, attempted_by from forge_jobs where id = $1 and client_id = $2";

/// A job's events after a cursor, oldest first.
pub(crate) const EVENTS_AFTER: &str = r"
select id, type, job_id, attempt, at, data
from forge_job_events
where job_id = $1 and id > $2
order by id
limit $3
";

/// Whether a job is finished (its event stream may end).
pub(crate) const JOB_FINISHED: &str =
    r"select finalized_at is not null from forge_jobs where id = $1 and client_id = $2";

/// Creates a client.
pub(crate) const INSERT_CLIENT: &str = r"
insert into forge_api_clients (id, name) values ($1, $2)
on conflict (name) do nothing
returning id, name, created_at, disabled_at
";

/// Every client, by name.
pub(crate) const LIST_CLIENTS: &str =
    r"select id, name, created_at, disabled_at from forge_api_clients order by name limit 1000";

/// One client.
pub(crate) const GET_CLIENT: &str = r"select id, name, created_at, disabled_at from forge_api_clients where id = $1";

/// Whether key `$1` belongs to client `$2`.
pub(crate) const KEY_OF_CLIENT: &str = r"select exists (select 1 from forge_api_keys where id = $1 and client_id = $2)";

/// A client's keys, oldest first.
pub(crate) const CLIENT_KEYS: &str = r"
select id, name, prefix, roles, tenant, created_at, last_used_at, revoked_at, expires_at, client_id, scopes
from forge_api_keys
where client_id = $1
order by created_at, id
";

/// Takes the lock of an idempotency key for this transaction, if no one holds it.
pub(crate) const LOCK_IDEMPOTENCY_KEY: &str = r"select pg_try_advisory_xact_lock(hashtextextended($1, 7211))";

/// A stored idempotency key that has not expired.
pub(crate) const FIND_IDEMPOTENCY_KEY: &str = r"
select method, path, fingerprint, status, body
from forge_idempotency_keys
where owner = $1 and key = $2 and expires_at > now()
";

/// Stores an idempotency key with its response (replacing an expired one).
pub(crate) const STORE_IDEMPOTENCY_KEY: &str = r"
insert into forge_idempotency_keys (owner, key, method, path, fingerprint, status, body, expires_at)
values ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
on conflict (owner, key) do update
set method = excluded.method, path = excluded.path, fingerprint = excluded.fingerprint,
    status = excluded.status, body = excluded.body, created_at = now(), expires_at = excluded.expires_at
where forge_idempotency_keys.expires_at <= now()
";
