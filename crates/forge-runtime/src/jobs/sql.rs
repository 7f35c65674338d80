//! The job engine's statements. The claim query exists here once.
//!
//! `TRANSITIONS` lists every state change these statements make, and a unit test checks each
//! against `JobState::can_transition`. An integration test
//! (`the_sql_makes_only_transitions_the_table_allows`) also records, with a test-only trigger,
//! every transition the running engine actually makes and checks those.

#[cfg(test)]
use forge_core::jobs::JobState;

/// The channel on which dispatches announce a queue with available work (payload: the queue).
pub(crate) const JOBS_CHANNEL: &str = "forge_jobs";
/// The channel on which cancellation of a running job is announced (payload: the job id).
pub(crate) const CANCEL_CHANNEL: &str = "forge_job_cancel";

/// Every (from, to) state change made by the statements below.
#[cfg(test)]
pub(crate) const TRANSITIONS: &[(JobState, JobState)] = {
    use JobState::*;
    &[
        // CLAIM, and SETTLE for an attempt still running when its claim window ends
        (Available, Running),
        // SETTLE: an attempt that ended inside its claim window
        (Available, Completed),
        (Available, Retryable),
        (Available, Discarded),
        (Available, Cancelled),
        (Available, Scheduled),
        // FINISH
        (Running, Completed),
        (Running, Retryable),
        (Running, Discarded),
        (Running, Cancelled),
        (Running, Scheduled),
        (Running, Available),
        // PROMOTE
        (Scheduled, Available),
        (Retryable, Available),
        // SLOT_RECOVER
        (Available, Running),
        // RESCUE
        (Running, Retryable),
        (Running, Discarded),
        (Running, Cancelled),
        // CANCEL
        (Scheduled, Cancelled),
        (Available, Cancelled),
        (Retryable, Cancelled),
        // RETRY, RETRY_TARGETS
        (Discarded, Available),
        (Cancelled, Available),
        // RUN_NOW
        (Scheduled, Available),
        (Retryable, Available),
        // CANCEL_TARGETS
        (Scheduled, Cancelled),
        (Available, Cancelled),
        (Retryable, Cancelled),
    ]
};

/// Inserts a batch (one element arrays for a single job) in one statement. Rows that hit a
/// unique index are skipped; `$12` says whether to NOTIFY the queues that got available work
/// (used when inserting inside a caller's transaction, where the notice waits for its commit).
/// `$13` is each job's API client (null for the application's own): a client's job gets its
/// `job.created` event in the same statement.
pub(crate) const INSERT: &str = r#"
with input as (
    select *
    from unnest($1::text[], $2::text[], $3::jsonb[], $4::smallint[], $5::int[], $6::timestamptz[],
                $7::text[], $8::bool[], $9::text[], $10::jsonb[], $11::jsonb[], $13::uuid[])
         with ordinality as t(kind, queue, args, priority, max_attempts, run_at,
                              unique_key, unique_period, capability, tags, metadata, client_id, ord)
),
ins as (
    insert into forge_jobs (kind, queue, args, state, priority, max_attempts, run_at,
                            unique_key, unique_period, capability, tags, metadata, client_id)
    select kind, queue, args,
           case when run_at > now() then 'scheduled' else 'available' end,
           priority, max_attempts, coalesce(run_at, now()),
           unique_key, unique_period, capability,
           array(select jsonb_array_elements_text(tags)), metadata, client_id
    from input
    order by ord
    on conflict do nothing
    returning id, kind, unique_key, queue, state, run_at, client_id
),
events as (
    insert into forge_job_events (job_id, client_id, type, data)
    select id, client_id, 'job.created', jsonb_build_object('state', state, 'run_at', run_at)
    from ins
    where client_id is not null
    order by id
),
notified as (
    select count(pg_notify('forge_jobs', q.queue)) as n
    from (select distinct queue from ins where state = 'available') q
    where $12::bool
)
select i.id, i.kind, i.unique_key, i.queue, (select n from notified) as notified
from ins i
order by i.id
"#;

/// [`INSERT`] for a batch without unique keys: nothing can conflict, and a plain insert costs
/// about 40% less than one that must be ready to skip conflicting rows (`forge-bench jobs`,
/// `enqueue_per_s`).
pub(crate) static INSERT_WITHOUT_KEYS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| INSERT.replace("    on conflict do nothing\n", ""));

/// [`INSERT`] for one job of the application's own (no API client): one row of values, no
/// arrays to unnest and no statements around it, so a single `dispatch` commits faster
/// (pgbench, one connection, fsync on: 5,185–5,347 statements/s against 4,187–4,389 for
/// [`INSERT`] with one-element arrays). The same parameters as scalars (`$10` the tags as a
/// text array); `$12` asks for the NOTIFY, sent when the job is available now.
pub(crate) const INSERT_ONE: &str = r#"
insert into forge_jobs (kind, queue, args, state, priority, max_attempts, run_at,
                        unique_key, unique_period, capability, tags, metadata)
values ($1, $2, $3, case when $6::timestamptz > now() then 'scheduled' else 'available' end,
        $4, $5, coalesce($6::timestamptz, now()), $7, $8, $9, $10::text[], $11)
on conflict do nothing
returning id, kind, unique_key, queue,
          case when $12::bool and state = 'available' then pg_notify('forge_jobs', queue) is null end as notified
"#;

/// [`INSERT_ONE`] for a job without a unique key: a plain insert, not a speculative one.
pub(crate) static INSERT_ONE_WITHOUT_KEY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| INSERT_ONE.replace("on conflict do nothing\n", ""));

/// The live (or same-period) jobs holding the given (kind, unique_key) pairs.
pub(crate) const FIND_UNIQUE: &str = r#"
select id, kind, unique_key
from forge_jobs
where (kind, unique_key) in (select * from unnest($1::text[], $2::text[]))
  and (unique_period or state in ('scheduled', 'available', 'running', 'retryable'))
"#;

/// The claim: as many available jobs of a queue as the producer has free slots, in priority,
/// run_at, id order, skipping rows other producers hold, for this node's capabilities, leaving
/// the jobs `$5` (those with an attempt still running on this node, whose lease it lost);
/// nothing while the queue is paused. Only the kinds `$7` the node can run are claimed (in a
/// rolling deploy, old nodes leave new kinds to new nodes). The lease lasts `$6` seconds (the
/// node's own setting). An API client's job gets its `job.started` event in the same statement.
pub(crate) const CLAIM: &str = r#"
with claimed as (
    select id
    from forge_jobs
    where state = 'available'
      and queue = $1
      and run_at <= now()
      and (capability is null or capability = any($3::text[]))
      and id not in (select unnest($5::bigint[]))
      and id not in (select unnest(job_ids) from forge_claim_slots)
      and cancel_requested_at is null
      and kind = any($7::text[])
      and not exists (select 1 from forge_queues p where p.name = $1 and p.paused_at is not null)
    order by priority, run_at, id
    limit $2
    for update skip locked
),
updated as (
    update forge_jobs j
    set state = 'running',
        attempt = j.attempt + 1,
        attempted_at = now(),
        heartbeat_at = now(),
        lease_until = now() + make_interval(secs => $6::float8),
        attempted_by = $4
    from claimed
    where j.id = claimed.id
    returning j.id, j.priority, j.kind, j.args, j.attempt, j.max_attempts, j.queue, j.run_at, j.metadata, j.client_id
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, 'job.started', attempt, jsonb_build_object('node', $4::text)
    from updated
    where client_id is not null
)
select id, priority, kind, args, attempt, max_attempts, queue, run_at, metadata
from updated
"#;

/// [`CLAIM`] past a point of the claim order (`$8` priority, `$9` run_at, `$10` id): while a
/// queue's backlog is deep, a producer's next claim starts where its last one ended instead of
/// stepping again over the head of the claim index (the entries of jobs finished since the last
/// vacuum, and the rows its own windows hold). See `worker/producer.rs`.
pub(crate) static CLAIM_AFTER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    CLAIM.replacen(
        "      and run_at <= now()\n",
        "      and run_at <= now()\n      and (priority, run_at, id) > ($8::smallint, $9::timestamptz, $10::bigint)\n",
        1,
    )
});

/// The claim of a claim window (see `worker/window.rs`): the same jobs as [`CLAIM`], locked
/// (`FOR NO KEY UPDATE SKIP LOCKED`, inside the window's transaction) instead of written. The row
/// lock is the lease until [`SETTLE`] writes each job once, with its outcome or as `running`.
/// Each row comes with the attempt it starts (one more than stored) and where it is stored (its
/// `ctid`, as text), which stays put while the window holds its lock: [`SETTLE`] finds it there.
pub(crate) const CLAIM_HELD: &str = r#"
select id, priority, kind, args, attempt + 1 as attempt, max_attempts, queue, run_at, metadata, ctid::text as tid
from forge_jobs
where state = 'available'
  and queue = $1
  and run_at <= now()
  and (capability is null or capability = any($3::text[]))
  and id not in (select unnest($4::bigint[]))
  and id not in (select unnest(job_ids) from forge_claim_slots)
  and cancel_requested_at is null
  and kind = any($5::text[])
  and not exists (select 1 from forge_queues p where p.name = $1 and p.paused_at is not null)
order by priority, run_at, id
limit $2
for no key update skip locked
"#;

/// [`CLAIM_HELD`] past a point of the claim order (`$6` priority, `$7` run_at, `$8` id), as
/// [`CLAIM_AFTER`] is [`CLAIM`].
pub(crate) static CLAIM_HELD_AFTER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    CLAIM_HELD.replacen(
        "  and run_at <= now()\n",
        "  and run_at <= now()\n  and (priority, run_at, id) > ($6::smallint, $7::timestamptz, $8::bigint)\n",
        1,
    )
});

/// Ends a claim window: one write per job it holds. A job whose attempt ended inside the window
/// gets its outcome (as [`FINISH`] would write it: the attempt counted unless `uncount`); one
/// still running gets `running` with its lease of `$8` seconds, as [`CLAIM`] would. `attempted_at`
/// is the window's start (the transaction's `now()`). Only rows still `available` at the attempt
/// before `$9`'s change: inside the window its transaction holds their locks, so every one does;
/// after a failed window (see `fall_back`) a job claimed elsewhere meanwhile is left alone. An
/// API client's job gets its `job.started` event and, if it ended, its outcome's, in order. The
/// window's slot (node `$7`, slot `$10`, see [`SLOT_OPEN`]) is emptied in the same statement.
///
/// The jobs are found where [`CLAIM_HELD`] read them (`$11`, their `ctid`s: a row's version does
/// not move while its lock is held), and the fence compares `state` with a column of the input
/// (`was`, `available` for every job), not with a constant. Written `j.id = u.id and j.state =
/// 'available'`, the statement matched the claim index's predicate, and on a table whose
/// statistics say few jobs are available (never analyzed, or analyzed while the queue was empty,
/// before a burst) Postgres planned a scan of every available job, hashed, for each window:
/// 13 ms instead of 2 for 200 jobs of 50,000, and growing with the backlog. Found by their
/// `ctid`, the jobs are read one by one whatever the statistics say (on a table of fewer than
/// about 30,000 rows Postgres reads the table through instead, which costs it less than that).
/// After a failed window (see `fall_back`) a job changed meanwhile has moved, and is left alone
/// as a job claimed elsewhere is.
pub(crate) const SETTLE: &str = r#"
with updated as (
update forge_jobs j
set state = u.state,
    attempt = j.attempt + 1 - u.uncount,
    attempted_at = now(),
    attempted_by = $7,
    output = coalesce(u.output, j.output),
    errors = case when u.error is null then j.errors else j.errors || jsonb_build_array(u.error) end,
    run_at = coalesce(u.run_at, j.run_at),
    finalized_at = case when u.state in ('completed', 'discarded', 'cancelled') then clock_timestamp() end,
    heartbeat_at = case when u.state = 'running' then clock_timestamp() end,
    lease_until = case when u.state = 'running' then clock_timestamp() + make_interval(secs => $8::float8) end
from unnest($1::bigint[], $2::text[], $3::jsonb[], $4::jsonb[], $5::timestamptz[], $6::int[], $9::int[],
            array_fill('available'::text, array[cardinality($1::bigint[])]))
     as u(id, state, output, error, run_at, uncount, attempt, was)
where j.ctid = any($11::text[]::tid[]) and j.id = u.id and j.state = u.was and j.attempt + 1 = u.attempt
returning j.id, j.state, j.queue, j.client_id, j.attempt, j.attempt + u.uncount as started, j.run_at, u.error
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select job_id, client_id, type, attempt, data
    from (
        select id as job_id, client_id, 'job.started' as type, started as attempt,
               jsonb_build_object('node', $7::text) as data, 0 as step
        from updated
        where client_id is not null
        union all
        select id, client_id,
               case state when 'completed' then 'job.succeeded' when 'discarded' then 'job.failed'
                          when 'cancelled' then 'job.cancelled' else 'job.retried' end,
               attempt,
               case when state = 'retryable' then jsonb_build_object('error', error -> 'message', 'run_at', run_at)
                    when error is not null then jsonb_build_object('error', error -> 'message')
                    else '{}' end,
               1
        from updated
        where client_id is not null and state in ('completed', 'discarded', 'cancelled', 'retryable')
    ) e
    order by job_id, step
),
emptied as (
    update forge_claim_slots set job_ids = '{}', attempts = '{}' where node_id = $7 and slot = $10
)
select id, state, queue from updated
"#;

/// Records the attempts a claim window is about to start (in a statement of its own, so that
/// the window's rollback cannot undo it): node `$1`'s window slot `$2` names jobs `$3` at
/// attempts `$4`. [`SETTLE`] empties the slot in the window's transaction.
pub(crate) const SLOT_OPEN: &str = r#"
insert into forge_claim_slots (node_id, slot, job_ids, attempts, opened_at)
values ($1, $2, $3, $4, now())
on conflict (node_id, slot) do update
set job_ids = excluded.job_ids, attempts = excluded.attempts, opened_at = excluded.opened_at
"#;

/// Empties node `$1`'s window slot `$2`: its window failed and nothing it started runs any more
/// (its jobs are `available` as the window's rollback left them), so claims may take them again.
pub(crate) const SLOT_EMPTY: &str = r#"
update forge_claim_slots set job_ids = '{}', attempts = '{}' where node_id = $1 and slot = $2
"#;

/// Window slots still naming attempts `$1` seconds after their window opened (at most `$2`),
/// locked: their windows' transactions are gone, unless a job they name is still locked.
pub(crate) const SLOTS_LEFT: &str = r#"
select node_id, slot, job_ids, attempts, opened_at
from forge_claim_slots
where cardinality(job_ids) > 0 and opened_at < now() - make_interval(secs => $1)
order by opened_at
limit $2
for update skip locked
"#;

/// How many of jobs `$1` are still `available` at the attempt before `$2`'s: the attempts a
/// left slot names that were never written.
pub(crate) const SLOT_UNWRITTEN: &str = r#"
select count(*)
from forge_jobs j join unnest($1::bigint[], $2::int[]) as u(id, attempt) on j.id = u.id
where j.state = 'available' and j.attempt + 1 = u.attempt
"#;

/// Locks those of [`SLOT_UNWRITTEN`]'s jobs no transaction holds (a live window holds its own).
pub(crate) const SLOT_LOCK: &str = r#"
select j.id
from forge_jobs j join unnest($1::bigint[], $2::int[]) as u(id, attempt) on j.id = u.id
where j.state = 'available' and j.attempt + 1 = u.attempt
for update of j skip locked
"#;

/// Writes the attempts of a dead window as the classic claim would have (`running` by node
/// `$3` from `$4`), with their lease ended at `$4`: [`RESCUE`], run next in the same
/// transaction, records each as lost (retryable, or discarded once out of attempts).
pub(crate) const SLOT_RECOVER: &str = r#"
with updated as (
update forge_jobs j
set state = 'running',
    attempt = u.attempt,
    attempted_at = $4,
    attempted_by = $3,
    heartbeat_at = $4,
    lease_until = $4
from unnest($1::bigint[], $2::int[]) as u(id, attempt)
where j.id = u.id and j.state = 'available' and j.attempt + 1 = u.attempt
returning j.id, j.client_id, j.attempt
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, 'job.started', attempt, jsonb_build_object('node', $3::text)
    from updated
    where client_id is not null
    order by id
),
emptied as (
    delete from forge_claim_slots where node_id = $3 and slot = $5
)
select count(*) from updated
"#;

/// Deletes node `$1`'s empty window slots (at its shutdown).
pub(crate) const SLOTS_FORGET: &str = r#"
delete from forge_claim_slots where node_id = $1 and cardinality(job_ids) = 0
"#;

/// Deletes window slots left empty for a day (their nodes are gone; a live node writes its
/// slot again when it needs it).
pub(crate) const PRUNE_SLOTS: &str = r#"
delete from forge_claim_slots where cardinality(job_ids) = 0 and opened_at < now() - interval '1 day'
"#;

/// Writes a batch of attempt outcomes in one statement. Fenced: a row changes only while it is
/// still `running` the same attempt, so a result arriving after a rescue is ignored. `uncount`
/// is 1 for an attempt that does not count (released at shutdown, snoozed). Cancel wins: an
/// outcome that would run the job again (retryable, snoozed, released) ends it `cancelled` when
/// its cancellation was requested meanwhile; a success keeps its success. An API client's job
/// gets its event (`job.succeeded`, `job.failed`, `job.cancelled`, `job.retried`) in the same
/// statement.
pub(crate) const FINISH: &str = r#"
with updated as (
update forge_jobs j
set state = case when j.cancel_requested_at is not null and u.state in ('retryable', 'scheduled', 'available')
                 then 'cancelled' else u.state end,
    attempt = j.attempt - u.uncount,
    output = coalesce(u.output, j.output),
    errors = case when u.error is null then j.errors else j.errors || jsonb_build_array(u.error) end,
    run_at = coalesce(u.run_at, j.run_at),
    finalized_at = case when u.state in ('completed', 'discarded', 'cancelled') or j.cancel_requested_at is not null
                        then now() end,
    heartbeat_at = null,
    lease_until = null
from unnest($1::bigint[], $2::int[], $3::text[], $4::jsonb[], $5::jsonb[], $6::timestamptz[], $7::int[])
     as u(id, attempt, state, output, error, run_at, uncount)
where j.id = u.id and j.attempt = u.attempt and j.state = 'running'
returning j.id, j.state, j.queue, j.client_id, j.attempt, j.run_at, u.error
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, case state when 'completed' then 'job.succeeded' when 'discarded' then 'job.failed'
                                     when 'cancelled' then 'job.cancelled' else 'job.retried' end,
           attempt,
           case when state = 'retryable' then jsonb_build_object('error', error -> 'message', 'run_at', run_at)
                when error is not null then jsonb_build_object('error', error -> 'message')
                else '{}' end
    from updated
    where client_id is not null and state in ('completed', 'discarded', 'cancelled', 'retryable')
    order by id
)
select id, state, queue from updated
"#;

/// Renews the leases of this node's running jobs for `$3` seconds. Returns those still held,
/// and whether cancellation was requested for each.
pub(crate) const HEARTBEAT: &str = r#"
update forge_jobs
set heartbeat_at = now(), lease_until = now() + make_interval(secs => $3::float8)
where id = any($1::bigint[]) and state = 'running' and attempted_by = $2
returning id, attempt, cancel_requested_at is not null as cancel_requested
"#;

/// Records progress (and renews the lease, for `$4` seconds) of one attempt, with a
/// `job.progress` event for an API client's job.
pub(crate) const PROGRESS: &str = r#"
with updated as (
    update forge_jobs
    set progress = $3, heartbeat_at = now(), lease_until = now() + make_interval(secs => $4::float8)
    where id = $1 and attempt = $2 and state = 'running'
    returning id, client_id, attempt
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, 'job.progress', attempt, $3 from updated where client_id is not null
)
select count(*) from updated
"#;

/// Cancels a job that has not started, or flags a running one (its worker then stops it; its
/// `job.cancelled` event comes with that outcome).
pub(crate) const CANCEL: &str = r#"
with target as (
    select id, state from forge_jobs where id = $1 for update
),
updated as (
    update forge_jobs j
    set state = case when t.state = 'running' then 'running' else 'cancelled' end,
        cancel_requested_at = now(),
        finalized_at = case when t.state = 'running' then null else now() end
    from target t
    where j.id = t.id and t.state in ('scheduled', 'available', 'retryable', 'running')
    returning j.id, j.client_id, j.attempt, j.state, t.state as previous
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, 'job.cancelled', attempt, jsonb_build_object('previous', previous)
    from updated
    where client_id is not null and state = 'cancelled'
)
select previous from updated
"#;

/// Makes a discarded or cancelled job available again, with one more attempt allowed.
pub(crate) const RETRY: &str = r#"
with updated as (
    update forge_jobs
    set state = 'available', run_at = now(), finalized_at = null, cancel_requested_at = null,
        max_attempts = greatest(max_attempts, attempt + 1)
    where id = $1 and state in ('discarded', 'cancelled')
    returning id, queue, client_id, attempt
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, 'job.retried', attempt, '{"manual": true}' from updated where client_id is not null
)
select queue from updated
"#;

/// Makes a scheduled or retryable job available now (an operator's "run now").
pub(crate) const RUN_NOW: &str = r#"
update forge_jobs
set state = 'available', run_at = now()
where id = $1 and state in ('scheduled', 'retryable')
returning queue
"#;

/// Deletes a job unless it is running.
pub(crate) const DELETE: &str = r#"delete from forge_jobs where id = $1 and state <> 'running' returning id"#;

/// The tail of a bulk retry, after a `with target (id)` CTE of discarded or cancelled jobs.
pub(crate) const RETRY_TARGETS: &str = r#"
, updated as (
    update forge_jobs j
    set state = 'available', run_at = now(), finalized_at = null, cancel_requested_at = null,
        max_attempts = greatest(j.max_attempts, j.attempt + 1)
    from target
    where j.id = target.id
    returning j.id, j.queue, j.client_id, j.attempt
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, 'job.retried', attempt, '{"manual": true}' from updated where client_id is not null
)
select queue from updated
"#;

/// The tail of a bulk cancel, after a `target (id, state)` CTE of unfinished jobs: waiting jobs
/// are cancelled, running ones flagged. Returns each id and whether it was running.
pub(crate) const CANCEL_TARGETS: &str = r#"
, updated as (
    update forge_jobs j
    set state = case when t.state = 'running' then 'running' else 'cancelled' end,
        cancel_requested_at = now(),
        finalized_at = case when t.state = 'running' then null else now() end
    from target t
    where j.id = t.id
    returning j.id, j.client_id, j.attempt, j.state, t.state as previous
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, 'job.cancelled', attempt, jsonb_build_object('previous', previous)
    from updated
    where client_id is not null and state = 'cancelled'
)
select id, previous = 'running' from updated
"#;

/// Tells the workers running these jobs to stop them.
pub(crate) const NOTIFY_CANCELS: &str =
    r#"select count(pg_notify('forge_job_cancel', id::text)) from unnest($1::bigint[]) id"#;

/// Pausing and resuming a queue.
pub(crate) const QUEUE_PAUSES: crate::db::Pauses = crate::db::pauses!("forge_queues", "name");

pub(crate) const PAUSED_QUEUES: &str =
    r#"select name, paused_at, paused_by from forge_queues where paused_at is not null order by name"#;

/// Failed attempts since `$1` (from the jobs attempted since), and the discarded among them.
pub(crate) const FAILURES_SINCE: &str = r#"
select count(*) filter (where (e ->> 'at')::timestamptz >= $1),
       count(distinct j.id) filter (where j.state = 'discarded' and j.finalized_at >= $1)
from forge_jobs j
cross join lateral jsonb_array_elements(j.errors) e
where j.attempted_at >= $1
"#;

/// Records the kinds a node runs.
pub(crate) const RECORD_KINDS: &str = r#"
insert into forge_job_kinds (kind, queue, max_attempts, priority, unique_by, unique_period_ms, capability, seen_at, seen_by)
select kind, queue, max_attempts, priority, unique_by, unique_period_ms, capability, now(), $4
from unnest($1::text[], $2::text[], $3::int[], $5::smallint[], $6::text[], $7::bigint[], $8::text[])
    as k(kind, queue, max_attempts, priority, unique_by, unique_period_ms, capability)
on conflict (kind) do update
set queue = excluded.queue, max_attempts = excluded.max_attempts, priority = excluded.priority,
    unique_by = excluded.unique_by, unique_period_ms = excluded.unique_period_ms,
    capability = excluded.capability, seen_at = excluded.seen_at, seen_by = excluded.seen_by
"#;

/// Makes due scheduled and retryable jobs available, in bounded batches.
pub(crate) const PROMOTE: &str = r#"
with due as (
    select id
    from forge_jobs
    where state in ('scheduled', 'retryable') and run_at <= now()
    order by run_at
    limit $1
    for update skip locked
)
update forge_jobs j
set state = 'available'
from due
where j.id = due.id
returning j.queue
"#;

/// Rescues running attempts that are lost: those whose lease has ended (`lease_until`, or for rows
/// without one a `heartbeat_at` older than `$1` seconds; `$1` null: none by age) and those run by
/// the nodes in `$2` (declared dead). Each becomes cancelled if its
/// cancellation was requested, else retryable if attempts are left (after 2^attempt seconds, at
/// most an hour: a job that kills its node every time backs off like any failure), else
/// discarded, and the lost attempt is recorded as an
/// [`AttemptError`](forge_core::jobs::AttemptError) of kind `lease` (the object's keys are
/// checked against the type by a test). The lease sweep and the dead-node sweep both use it.
pub(crate) const RESCUE: &str = r#"
with lost as (
    select id,
           -- A lost last attempt may have succeeded (its node stopped before its outcome was
           -- written): unless the job already lost an attempt before (a poison job), it gets
           -- one more attempt instead of being discarded.
           (attempt >= max_attempts
            and jsonb_path_exists(errors, '$[*] ? (@.kind == "lease")')) as out_of_attempts,
           attempt >= max_attempts as last_attempt
    from forge_jobs
    where state = 'running'
      and (($1::float8 is not null
            and (lease_until < now()
                 or (lease_until is null and heartbeat_at < now() - make_interval(secs => $1::float8))))
           or attempted_by = any($2::text[]))
    order by lease_until
    limit $3
    for update skip locked
),
updated as (
update forge_jobs j
set state = case when j.cancel_requested_at is not null then 'cancelled'
                 when lost.out_of_attempts then 'discarded'
                 else 'retryable' end,
    finalized_at = case when j.cancel_requested_at is not null or lost.out_of_attempts then now() end,
    max_attempts = case when lost.last_attempt and not lost.out_of_attempts and j.cancel_requested_at is null
                        then j.attempt + 1 else j.max_attempts end,
    run_at = now() + make_interval(secs => least(power(2, least(j.attempt, 12)), 3600)),
    heartbeat_at = null,
    lease_until = null,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt,
        'at', now(),
        'message', case when j.attempted_by = any($2::text[])
                        then 'node ' || j.attempted_by || ' died (no heartbeat)'
                        else 'lease expired: node ' || coalesce(j.attempted_by, '?') || ' stopped heartbeating'
                   end,
        'kind', 'lease',
        'started_at', j.attempted_at,
        'node', j.attempted_by))
from lost
where j.id = lost.id
returning j.id, j.state, j.client_id, j.attempt, j.run_at, j.errors -> -1 ->> 'message' as message
),
events as (
    insert into forge_job_events (job_id, client_id, type, attempt, data)
    select id, client_id, case state when 'discarded' then 'job.failed' when 'cancelled' then 'job.cancelled'
                                     else 'job.retried' end,
           attempt,
           case when state = 'retryable' then jsonb_build_object('error', message, 'run_at', run_at)
                else jsonb_build_object('error', message) end
    from updated
    where client_id is not null
    order by id
)
select id, state from updated
"#;

/// Deletes finished jobs older than the retention, in bounded batches.
pub(crate) const PRUNE: &str = r#"
delete from forge_jobs
where id in (
    select id from forge_jobs
    where finalized_at < now() - make_interval(secs => $1)
    limit $2
)
"#;

/// Deletes at most `$2` job events older than `$1` seconds.
pub(crate) const PRUNE_EVENTS: &str = r#"
delete from forge_job_events
where id in (select id from forge_job_events where at < now() - make_interval(secs => $1) order by at limit $2)
"#;

pub(crate) const NOTIFY: &str = r#"select pg_notify($1, $2)"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounded_claims_are_the_claims_with_one_line_more() {
        for (bounded, claim, first) in [(&*CLAIM_AFTER, CLAIM, "$8"), (&*CLAIM_HELD_AFTER, CLAIM_HELD, "$6")] {
            let added: Vec<&str> = bounded.lines().filter(|line| !claim.lines().any(|l| l == *line)).collect();
            assert_eq!(added.len(), 1, "{bounded}");
            assert!(
                added[0].trim().starts_with(&format!("and (priority, run_at, id) > ({first}::smallint")),
                "{added:?}"
            );
            assert_eq!(bounded.lines().count(), claim.lines().count() + 1);
        }
    }

    /// Both bounded claims run as the producer binds them and take only the jobs past the
    /// bound, in the claim order (a higher priority first, whatever its id).
    #[tokio::test]
    async fn the_bounded_claims_take_only_the_jobs_past_the_bound() {
        let db = crate::testing::TestDatabase::new().await.expect("db");
        let insert = "insert into forge_jobs (kind, args, priority, run_at)
                      select 'k', 'null', p, now() - interval '1 minute' from unnest(array[2, 2, 2, 1]::smallint[]) p
                      returning id, priority, run_at";
        let rows: Vec<(i64, i16, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as(insert).fetch_all(db.pool()).await.expect("jobs");
        // In the claim order: the priority-1 job, then the three others by id.
        let mut order = rows.clone();
        order.sort_by_key(|(id, priority, run_at)| (*priority, *run_at, *id));
        let (id, priority, run_at) = order[1];
        // The rest share priority and run_at: past the bound means a greater id.
        let expected: Vec<i64> = order[2..].iter().map(|row| row.0).collect();
        let kinds = vec!["k".to_owned()];
        let none: Vec<i64> = Vec::new();
        let caps: Vec<String> = Vec::new();

        let mut tx = db.pool().begin().await.expect("begin");
        let mut held: Vec<i64> = sqlx::query_scalar(&CLAIM_HELD_AFTER)
            .bind("default")
            .bind(10_i64)
            .bind(&caps)
            .bind(&none)
            .bind(&kinds)
            .bind(priority)
            .bind(run_at)
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .expect("held claim");
        held.sort_unstable();
        assert_eq!(held, expected);
        tx.rollback().await.expect("rollback");

        let mut claimed: Vec<i64> = sqlx::query_scalar(&CLAIM_AFTER)
            .bind("default")
            .bind(10_i64)
            .bind(&caps)
            .bind("node")
            .bind(&none)
            .bind(30.0_f64)
            .bind(&kinds)
            .bind(priority)
            .bind(run_at)
            .bind(id)
            .fetch_all(db.pool())
            .await
            .expect("claim");
        claimed.sort_unstable();
        assert_eq!(claimed, expected);
    }

    /// `ClaimedJob` reads a claim's columns by position: both claims return them in the order
    /// it reads (a swap of two columns of one type, `kind` and `queue` say, would otherwise
    /// go unnoticed).
    #[tokio::test]
    async fn the_claims_return_their_columns_in_the_order_they_are_read() {
        use sqlx::{Column, Executor};

        use crate::jobs::worker::CLAIMED_COLUMNS;

        let db = crate::testing::TestDatabase::new().await.expect("db");
        for (sql, columns) in [(CLAIM, &CLAIMED_COLUMNS[..9]), (CLAIM_HELD, &CLAIMED_COLUMNS[..])] {
            let described = db.pool().describe(sql).await.expect("describe");
            let names: Vec<&str> = described.columns().iter().map(Column::name).collect();
            assert_eq!(names, columns, "{sql}");
        }
    }

    /// Both claims leave the jobs whose attempts still run on this node (`busy`), given as an
    /// array that Postgres hashes once per claim rather than scanning it for every candidate row.
    #[tokio::test]
    async fn the_claims_leave_the_jobs_still_running_here() {
        let db = crate::testing::TestDatabase::new().await.expect("db");
        let ids: Vec<i64> = sqlx::query_scalar(
            "insert into forge_jobs (kind, args, run_at) select 'k', 'null', now() - interval '1 minute'
             from generate_series(1, 4) returning id",
        )
        .fetch_all(db.pool())
        .await
        .expect("jobs");
        let busy = vec![ids[0], ids[2]];
        let kinds = vec!["k".to_owned()];
        let caps: Vec<String> = Vec::new();

        let mut tx = db.pool().begin().await.expect("begin");
        let mut held: Vec<i64> = sqlx::query_scalar(CLAIM_HELD)
            .bind("default")
            .bind(10_i64)
            .bind(&caps)
            .bind(&busy)
            .bind(&kinds)
            .fetch_all(&mut *tx)
            .await
            .expect("held claim");
        held.sort_unstable();
        assert_eq!(held, vec![ids[1], ids[3]]);
        tx.rollback().await.expect("rollback");

        let mut claimed: Vec<i64> = sqlx::query_scalar(CLAIM)
            .bind("default")
            .bind(10_i64)
            .bind(&caps)
            .bind("node")
            .bind(&busy)
            .bind(30.0_f64)
            .bind(&kinds)
            .fetch_all(db.pool())
            .await
            .expect("claim");
        claimed.sort_unstable();
        assert_eq!(claimed, vec![ids[1], ids[3]]);
    }

    /// [`CLAIM_HELD`] of up to 200 jobs of kind `k`: (id, attempt, tid) each.
    async fn claim_held(conn: &mut sqlx::PgConnection) -> Vec<(i64, i32, String)> {
        let (none, caps): (Vec<i64>, Vec<String>) = (Vec::new(), Vec::new());
        sqlx::query_as(&format!("select id, attempt, tid from ({CLAIM_HELD}) c"))
            .bind("default")
            .bind(200_i64)
            .bind(&caps)
            .bind(&none)
            .bind(vec!["k".to_owned()])
            .fetch_all(conn)
            .await
            .expect("claim")
    }

    /// [`SETTLE`] (or `sql`, a variant of it) for `jobs` (id, attempt, tid), each completed.
    fn settle<'q>(
        sql: &'q str,
        jobs: &'q [(i64, i32, String)],
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments> {
        let n = jobs.len();
        sqlx::query_scalar(sql)
            .bind(jobs.iter().map(|j| j.0).collect::<Vec<_>>())
            .bind(vec!["completed"; n])
            .bind(vec![None::<serde_json::Value>; n])
            .bind(vec![None::<serde_json::Value>; n])
            .bind(vec![None::<chrono::DateTime<chrono::Utc>>; n])
            .bind(vec![0_i32; n])
            .bind("node")
            .bind(30.0_f64)
            .bind(jobs.iter().map(|j| j.1).collect::<Vec<_>>())
            .bind(0_i32)
            .bind(jobs.iter().map(|j| j.2.as_str()).collect::<Vec<_>>())
    }

    /// A window's jobs are written where its claim read them, whatever the table's statistics
    /// say: here they were taken while the queue was empty, before a burst of 60,000 jobs, and
    /// the statement written with `state = 'available'` was planned as a scan of every available
    /// job. A job changed after a failed window (here: moved by an update of its own) is left
    /// alone, as one claimed elsewhere is.
    #[tokio::test]
    async fn a_window_is_written_where_its_claim_read_whatever_the_statistics_say() {
        let db = crate::testing::TestDatabase::new().await.expect("db");
        sqlx::query("analyze forge_jobs").execute(db.pool()).await.expect("analyze");
        sqlx::query("insert into forge_jobs (kind, args) select 'k', 'null' from generate_series(1, 60000)")
            .execute(db.pool())
            .await
            .expect("jobs");
        let explain = format!("explain (costs off) {SETTLE}");
        let states = SETTLE.replace("select id, state, queue from updated", "select state from updated");
        let ids = SETTLE.replace("select id, state, queue from updated", "select id::text from updated");

        let mut tx = db.pool().begin().await.expect("begin");
        let jobs = claim_held(&mut tx).await;
        assert_eq!(jobs.len(), 200);
        let plan: Vec<String> = settle(&explain, &jobs).fetch_all(&mut *tx).await.expect("plan");
        let plan = plan.join("\n");
        assert!(plan.contains("Tid Scan on forge_jobs"), "{plan}");
        assert!(!plan.contains("Bitmap Heap Scan on forge_jobs") && !plan.contains("Seq Scan on forge_jobs"), "{plan}");
        let written = settle(&states, &jobs).fetch_all(&mut *tx).await.expect("settle");
        assert_eq!(written, vec!["completed".to_owned(); 200]);
        tx.commit().await.expect("commit");

        // A failed window: its transaction rolled back; one of its jobs was changed meanwhile.
        let mut tx = db.pool().begin().await.expect("begin");
        let jobs = claim_held(&mut tx).await;
        tx.rollback().await.expect("rollback");
        sqlx::query("update forge_jobs set metadata = '{\"moved\": true}' where id = $1")
            .bind(jobs[0].0)
            .execute(db.pool())
            .await
            .expect("move");
        let written = settle(&ids, &jobs).fetch_all(db.pool()).await.expect("settle again");
        assert_eq!(written.len(), 199);
        assert!(!written.contains(&jobs[0].0.to_string()));
        let state: String = sqlx::query_scalar("select state from forge_jobs where id = $1")
            .bind(jobs[0].0)
            .fetch_one(db.pool())
            .await
            .expect("state");
        assert_eq!(state, "available");
    }

    #[test]
    fn every_sql_transition_is_allowed_by_the_table() {
        for (from, to) in TRANSITIONS {
            assert!(from.can_transition(*to), "SQL makes the forbidden transition {from} -> {to}");
        }
    }

    #[test]
    fn the_rescue_writes_every_key_of_an_attempt_error() {
        for key in forge_core::jobs::AttemptError::KEYS {
            assert!(RESCUE.contains(&format!("'{key}',")), "RESCUE does not write {key:?}");
        }
    }

    #[test]
    fn the_insert_without_keys_only_drops_the_conflict_clause() {
        assert!(!INSERT_WITHOUT_KEYS.contains("on conflict"));
        assert_eq!(INSERT_WITHOUT_KEYS.len(), INSERT.len() - "    on conflict do nothing\n".len());
        assert_eq!(INSERT_ONE_WITHOUT_KEY.len(), INSERT_ONE.len() - "on conflict do nothing\n".len());
    }

    /// A claim window takes exactly the jobs a classic claim would (its parameters numbered
    /// differently: busy ids `$4` for `$5`, kinds `$5` for `$7`).
    #[test]
    fn a_claim_window_selects_as_the_classic_claim_does() {
        let filter = |sql: &str| -> String {
            let from = sql.find("where state = 'available'").expect("filter start");
            let to = sql[from..].find("limit $2").expect("filter end") + from;
            sql[from..to].split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let held = filter(CLAIM_HELD).replace("$5::text[]", "$7::text[]").replace("$4::bigint[]", "$5::bigint[]");
        assert_eq!(held, filter(CLAIM));
    }

    #[test]
    fn the_claim_query_exists_once() {
        assert_eq!(CLAIM.matches("for update skip locked").count(), 1);
    }
}
