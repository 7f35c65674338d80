//! The job API's statements. The engine's own writes (and the events they append) stay in
//! `jobs/`; these read a client's jobs and keep clients, keys and idempotency keys. One
//! exception: [`SUBMIT`], a client's submission with its idempotency record in one statement
//! (one round trip instead of a transaction's five).

/// A job's priority by name, as `/v1` writes it.
macro_rules! priority_name {
    () => {
        "case priority when 0 then 'critical' when 1 then 'high' when 2 then 'normal' when 3 then 'low' \
         else 'background' end"
    };
}

/// A job's columns as [`ApiJob`](super::types::ApiJob) reads them.
macro_rules! job_columns {
    () => {
        concat!(
            "id, kind, queue, state, ",
            priority_name!(),
            r" as priority,
       attempt, max_attempts, args, tags, created_at, run_at, attempted_at, finalized_at, progress, output,
       cancel_requested_at is not null as cancel_requested"
        )
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

/// Takes the lock of an idempotency key (`$1`: owner and key) for this transaction, if no one
/// holds it, and then reads the key's stored response, if any has not expired: one round trip.
///
/// The read's snapshot is the statement's, taken before the lock: a request that held the
/// lock and committed in between is not seen here. [`STORE_IDEMPOTENCY_KEY`] then finds its
/// row and stores nothing, and the caller rolls back and answers from the stored response.
pub(crate) const LOCK_AND_FIND_IDEMPOTENCY_KEY: &str = r"
select l.locked, k.method, k.path, k.fingerprint, k.status, k.body as stored
from (select pg_try_advisory_xact_lock(hashtextextended($1, 7211)) as locked offset 0) l
left join forge_idempotency_keys k
  on l.locked and k.owner = $2 and k.key = $3 and k.expires_at > now()
";

/// A stored idempotency key that has not expired.
pub(crate) const FIND_IDEMPOTENCY_KEY: &str = r"
select method, path, fingerprint, status, body
from forge_idempotency_keys
where owner = $1 and key = $2 and expires_at > now()
";

/// Stores an idempotency key with its response (replacing an expired one). Nothing is stored
/// (no row is affected) when a live record of the key exists.
pub(crate) const STORE_IDEMPOTENCY_KEY: &str = r"
insert into forge_idempotency_keys (owner, key, method, path, fingerprint, status, body, expires_at)
values ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
on conflict (owner, key) do update
set method = excluded.method, path = excluded.path, fingerprint = excluded.fingerprint,
    status = excluded.status, body = excluded.body, created_at = now(), expires_at = excluded.expires_at
where forge_idempotency_keys.expires_at <= now()
";

/// A timestamp as `/v1` writes it: UTC, microseconds, `Z` (as [`ApiJob`](super::types::ApiJob)
/// serializes its own).
macro_rules! api_time {
    ($column:literal) => {
        concat!("to_char(", $column, r#" at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#)
    };
}

/// A submission in one statement, committed on its own: the idempotency key's lock (`$1`,
/// none without a key) and stored answer (owner `$2`, key `$3`), then, unless the key is held
/// or answered, the job (`$4`…`$13`), its `job.created` event, its answer (built here, so the
/// stored answer and the one sent are the same) and the key's record (path `$14`, fingerprint
/// `$15`, kept `$16` seconds).
///
/// The stored answer is read in the statement's snapshot, taken before the lock: a request
/// with the same key that committed in between is not seen, and the record cannot be stored.
/// Then `recorded` divides by zero (SQLSTATE 22012) and the whole statement, job included,
/// is undone; the caller goes the transactional way, which finds the first request's answer.
/// A kind with unique keys and a submission with a webhook also go that way.
pub(crate) const SUBMIT: &str = concat!(
    r"
with lock as (
    select case when $3::text is null then true
                else pg_try_advisory_xact_lock(hashtextextended($1, 7211)) end as locked
    offset 0
),
found as (
    select k.method, k.path, k.fingerprint, k.status, k.body
    from lock, forge_idempotency_keys k
    where lock.locked and k.owner = $2 and k.key = $3 and k.expires_at > now()
),
ins as (
    insert into forge_jobs (kind, queue, args, state, priority, max_attempts, run_at, capability, tags,
                            metadata, client_id)
    select $4, $5, $6, case when $9::timestamptz > now() then 'scheduled' else 'available' end,
           $7, $8, coalesce($9::timestamptz, now()), $10, $11, $12, $13
    from lock
    where lock.locked and not exists (select 1 from found)
    returning id, kind, queue, state, priority, max_attempts, args, tags, created_at, run_at, client_id
),
events as (
    insert into forge_job_events (job_id, client_id, type, data)
    select id, client_id, 'job.created', jsonb_build_object('state', state, 'run_at', run_at)
    from ins
),
answer as (
    select jsonb_build_object(
        'id', id, 'kind', kind, 'queue', queue, 'state', state,
        'priority', ",
    priority_name!(),
    r",
        'attempt', 0, 'max_attempts', max_attempts, 'args', args, 'tags', to_jsonb(tags),
        'created_at', ",
    api_time!("created_at"),
    r", 'run_at', ",
    api_time!("run_at"),
    r",
        'attempted_at', null, 'finalized_at', null, 'progress', null, 'output', null,
        'cancel_requested', false
    ) as body
    from ins
),
stored as (
    insert into forge_idempotency_keys (owner, key, method, path, fingerprint, status, body, expires_at)
    select $2, $3, 'POST', $14, $15, 201, body, now() + make_interval(secs => $16)
    from answer
    where $3::text is not null
    on conflict (owner, key) do update
    set method = excluded.method, path = excluded.path, fingerprint = excluded.fingerprint,
        status = excluded.status, body = excluded.body, created_at = now(), expires_at = excluded.expires_at
    where forge_idempotency_keys.expires_at <= now()
    returning 1
)
select (select locked from lock) as locked,
       f.method, f.path, f.fingerprint, f.status, f.body as stored,
       (select body from answer) as body,
       case when $3::text is not null and exists (select 1 from answer)
            then 1 / (select count(*)::int from stored) else 1 end as recorded
from (select 1) one
left join found f on true
"
);
