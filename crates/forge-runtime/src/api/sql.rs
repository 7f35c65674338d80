//! The job API's statements. The engine's own writes (and the events they append) stay in
//! `jobs/`; these read a client's jobs and keep clients, keys and idempotency keys. One
//! exception: [`SUBMIT`], clients' submissions with their idempotency records in one statement
//! (one round trip instead of a transaction's five).

/// A job's priority by name, as `/v1` writes it.
macro_rules! priority_name {
    () => {
        priority_name!("priority")
    };
    ($column:literal) => {
        concat!(
            "case ",
            $column,
            " when 0 then 'critical' when 1 then 'high' when 2 then 'normal' when 3 then 'low' \
             else 'background' end"
        )
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

/// Submissions in one statement, committed on its own: for each input row `n` (of the arrays
/// `$1`…`$15`), the idempotency key's lock (`$1`, none without a key `$3`) and stored answer
/// (owner `$2`, key `$3`), then, unless the key is held or answered, the job (`$4`…`$13`,
/// its id drawn here so that rows and jobs pair up), its `job.created` event, its answer
/// (built here, so the stored answer and the one sent are the same) and the key's record
/// (path `$14`, fingerprint `$15`, kept `$16` seconds). One row per input row, in their
/// order. No two input rows may carry the same owner and key: the lock is re-entrant within
/// the statement and would let both through.
///
/// A stored answer is read in the statement's snapshot, taken before the lock: a request
/// with the same key that committed in between is not seen, and the record cannot be stored.
/// Then `recorded` divides by zero (SQLSTATE 22012) and the whole statement, jobs included,
/// is undone; the callers go the transactional way, which finds the first request's answer.
/// A kind with unique keys and a submission with a webhook also go that way.
pub(crate) const SUBMIT: &str = concat!(
    r"
with input as materialized (
    select *
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::smallint[],
                $8::int[], $9::timestamptz[], $10::text[], $11::jsonb[], $12::jsonb[], $13::uuid[],
                $14::text[], $15::bytea[])
         with ordinality as t(lock_key, owner, key, kind, queue, args, priority, max_attempts, run_at,
                              capability, tags, metadata, client_id, path, fingerprint, n)
),
lock as materialized (
    select n, case when key is null then true
                   else pg_try_advisory_xact_lock(hashtextextended(lock_key, 7211)) end as locked
    from input
),
found as (
    select i.n, k.method, k.path, k.fingerprint, k.status, k.body
    from input i
    join lock l on l.n = i.n and l.locked
    cross join lateral (
        -- `limit` keeps this a lookup by key per row: joined (hashed) it scans every record.
        select method, path, fingerprint, status, body
        from forge_idempotency_keys k
        where k.owner = i.owner and k.key = i.key and k.expires_at > now()
        limit 1
    ) k
),
todo as materialized (
    select i.*, nextval((select pg_get_serial_sequence('forge_jobs', 'id'))::regclass) as id
    from input i
    join lock l on l.n = i.n and l.locked
    where not exists (select 1 from found f where f.n = i.n)
),
ins as (
    insert into forge_jobs (id, kind, queue, args, state, priority, max_attempts, run_at, capability, tags,
                            metadata, client_id)
    overriding system value
    select id, kind, queue, args, case when run_at > now() then 'scheduled' else 'available' end,
           priority, max_attempts, coalesce(run_at, now()), capability,
           array(select jsonb_array_elements_text(tags)), metadata, client_id
    from todo
    order by id
    returning id, kind, queue, state, priority, max_attempts, args, tags, created_at, run_at, client_id
),
events as (
    insert into forge_job_events (job_id, client_id, type, data)
    select id, client_id, 'job.created', jsonb_build_object('state', state, 'run_at', run_at)
    from ins
    order by id
),
answer as (
    select t.n, t.owner, t.key, t.path, t.fingerprint, jsonb_build_object(
        'id', j.id, 'kind', j.kind, 'queue', j.queue, 'state', j.state,
        'priority', ",
    priority_name!("j.priority"),
    r",
        'attempt', 0, 'max_attempts', j.max_attempts, 'args', j.args, 'tags', to_jsonb(j.tags),
        'created_at', ",
    api_time!("j.created_at"),
    r", 'run_at', ",
    api_time!("j.run_at"),
    r",
        'attempted_at', null, 'finalized_at', null, 'progress', null, 'output', null,
        'cancel_requested', false
    ) as body
    from ins j
    join todo t on t.id = j.id
),
stored as (
    insert into forge_idempotency_keys (owner, key, method, path, fingerprint, status, body, expires_at)
    select owner, key, 'POST', path, fingerprint, 201, body, now() + make_interval(secs => $16)
    from answer
    where key is not null
    on conflict (owner, key) do update
    set method = excluded.method, path = excluded.path, fingerprint = excluded.fingerprint,
        status = excluded.status, body = excluded.body, created_at = now(), expires_at = excluded.expires_at
    where forge_idempotency_keys.expires_at <= now()
    returning owner, key
)
select l.locked, f.method, f.path, f.fingerprint, f.status, f.body as stored, a.body,
       case when a.key is not null
            then 1 / (select count(*)::int from stored s where s.owner = a.owner and s.key = a.key)
            else 1 end as recorded
from lock l
left join found f on f.n = l.n
left join answer a on a.n = l.n
order by l.n
"
);
