//! Every statement of the workflow engine. A run's job row moves only along transitions the
//! job engine's table allows: `running → scheduled` (a suspension, written with the job's
//! fenced finish) and `scheduled/retryable → available` (an event or an operator waking it).

/// A run's row and its recorded steps (as one JSON array, in order), in one round trip.
pub(crate) const LOAD: &str = r#"
select r.workflow, r.version, r.deadline, r.blocked_reason, r.cancel_requested_at is not null as cancelling, r.parent_id,
       coalesce((select json_agg(json_build_object(
                    'name', s.name, 'seq', s.seq, 'kind', s.kind, 'status', s.status, 'output', s.output,
                    'error', s.error, 'attempts', s.attempts, 'wake_at', s.wake_at,
                    'compensated', s.compensated_at is not null) order by s.seq)
                 from forge_workflow_steps s where s.run_id = r.id), '[]'::json) as steps
from forge_workflow_runs r
where r.id = $1
"#;

/// The row of a run started without one (dispatched as a plain job), returned as [`LOAD`]
/// returns a run (no steps yet).
pub(crate) const INSERT_RUN: &str = r#"
insert into forge_workflow_runs (id, workflow, version, deadline)
values ($1, $2, $3, now() + make_interval(secs => $4))
on conflict do nothing
returning workflow, version, deadline, blocked_reason, false as cancelling, parent_id, '[]'::json as steps
"#;

/// The run holding a key.
pub(crate) const RUN_BY_KEY: &str = r#"select id from forge_workflow_runs where run_key = $1"#;

/// Clears a block when an execution starts (the code may have been fixed meanwhile).
pub(crate) const UNBLOCK: &str = r#"
update forge_workflow_runs set blocked_reason = null, blocked_seq = null where id = $1 and blocked_reason is not null
"#;

/// Records a step's end (or its retry), unless another execution completed it first; returns
/// whether cancellation of the run was requested meanwhile.
pub(crate) const RECORD: &str = r#"
with written as (
    insert into forge_workflow_steps as s
        (run_id, name, seq, kind, status, output, error, attempts, wake_at, started_at, finished_at)
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
            case when $5 in ('completed', 'failed') then now() end)
    on conflict (run_id, seq) do update
        set status = excluded.status, output = excluded.output, error = excluded.error,
            attempts = excluded.attempts, wake_at = excluded.wake_at, finished_at = excluded.finished_at
        where s.status not in ('completed', 'failed')
    returning 1
)
select exists (select 1 from written) as written,
       (select cancel_requested_at is not null from forge_workflow_runs where id = $1) as cancelling
"#;

/// A step as recorded, when another execution recorded it first.
pub(crate) const RECORDED: &str = r#"
select status, output, error from forge_workflow_steps where run_id = $1 and seq = $2
"#;

/// Locks the run's job row if this attempt still holds it (the fence), and says whether the run
/// was asked to cancel; the lock orders a suspension against an event or a cancel request.
pub(crate) const LOCK_ATTEMPT: &str = r#"
select r.cancel_requested_at is not null
from forge_jobs j
join forge_workflow_runs r on r.id = j.id
where j.id = $1 and j.attempt = $2 and j.state = 'running'
for update of j
"#;

/// The payload of an event sent to a run.
pub(crate) const EVENT: &str = r#"select payload from forge_workflow_events where run_id = $1 and name = $2"#;

/// Says what a suspended run waits for (an event's name, or none).
pub(crate) const WAITING_FOR: &str = r#"update forge_workflow_runs set waiting_for = $2 where id = $1"#;

/// The run no longer waits for this event.
pub(crate) const NOT_WAITING: &str =
    r#"update forge_workflow_runs set waiting_for = null where id = $1 and waiting_for = $2"#;

/// Parks a run whose code diverged from its recorded steps.
pub(crate) const BLOCK: &str = r#"
update forge_workflow_runs set blocked_reason = $2, blocked_seq = $3 where id = $1
"#;

/// Marks a step's compensation done (or failed, with its error).
pub(crate) const COMPENSATED: &str = r#"
update forge_workflow_steps
set compensated_at = case when $3::text is null then now() end, compensation_error = $3
where run_id = $1 and seq = $2
"#;

/// Starts a run's row next to its job (and counts it as an open child of its parent).
pub(crate) const START: &str = r#"
with run as (
    insert into forge_workflow_runs (id, workflow, version, run_key, deadline, parent_id)
    values ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)
    on conflict (run_key) do nothing
    returning id, parent_id
), parent as (
    update forge_workflow_runs p set open_children = p.open_children + 1
    from run where p.id = run.parent_id
)
select id from run
"#;

/// Many runs' rows next to their jobs (no keys).
pub(crate) const START_MANY: &str = r#"
insert into forge_workflow_runs (id, workflow, version, deadline, parent_id)
select id, $2, $3, now() + make_interval(secs => $4), $5 from unnest($1::bigint[]) as t(id)
"#;

/// A child run has finished: one fewer open child.
pub(crate) const CHILD_CLOSED: &str = r#"
update forge_workflow_runs set open_children = open_children - 1 where id = $1
"#;

/// The run an event is for, its job row locked first (the lock order every wake-up follows).
pub(crate) const EVENT_TARGET: &str = r#"
select r.id, j.state, j.queue
from forge_workflow_runs r
join forge_jobs j on j.id = r.id
where (r.id = $1 or ($1 is null and r.run_key = $2))
for update of j
"#;

/// Stores an event; the first of a name wins.
pub(crate) const INSERT_EVENT: &str = r#"
insert into forge_workflow_events (run_id, name, payload) values ($1, $2, $3)
on conflict do nothing
returning 1
"#;

/// Wakes a run suspended waiting for this event.
pub(crate) const WAKE_FOR_EVENT: &str = r#"
update forge_jobs j
set state = 'available', run_at = now()
from forge_workflow_runs r
where j.id = $1 and r.id = j.id and j.state = 'scheduled' and r.waiting_for = $2
returning j.queue
"#;

/// Locks a run's job row (the first lock every change to a run takes); its state and queue.
pub(crate) const LOCK_RUN: &str = r#"
select j.state, j.queue from forge_jobs j join forge_workflow_runs r on r.id = j.id where j.id = $1 for update of j
"#;

/// Asks a run to cancel (its job row locked first): the next execution runs its
/// compensations. A run waiting is woken for it.
pub(crate) const REQUEST_CANCEL: &str = r#"
update forge_workflow_runs set cancel_requested_at = coalesce(cancel_requested_at, now()) where id = $1
"#;

/// Wakes a waiting run now (to cancel it).
pub(crate) const WAKE: &str = r#"
update forge_jobs set state = 'available', run_at = now() where id = $1 and state in ('scheduled', 'retryable')
"#;

/// Resumes a blocked run, forgetting its recorded steps from position `$2` on (none: keep all).
pub(crate) const FORGET_FROM: &str = r#"
delete from forge_workflow_steps where run_id = $1 and $2::int is not null and seq >= $2
"#;

/// Wakes a blocked run.
pub(crate) const RESUME: &str = r#"
with run as (
    update forge_workflow_runs set blocked_reason = null, blocked_seq = null
    where id = $1 and blocked_reason is not null
    returning id
)
update forge_jobs j
set state = 'available', run_at = now()
from run
where j.id = run.id and j.state in ('scheduled', 'retryable')
returning j.queue
"#;

/// One run as operators see it.
pub(crate) const RUN: &str = r#"
select r.id, r.workflow, r.version, r.run_key, j.state, r.waiting_for, r.blocked_reason, r.blocked_seq,
       r.cancel_requested_at, r.deadline, r.parent_id, r.open_children, r.created_at, j.run_at, j.finalized_at,
       j.output, j.errors, j.args
from forge_workflow_runs r
join forge_jobs j on j.id = r.id
where r.id = $1
"#;

/// A run's steps, in order.
pub(crate) const STEPS: &str = r#"
select name, seq, kind, status, output, error, attempts, wake_at, started_at, finished_at, compensated_at,
       compensation_error
from forge_workflow_steps
where run_id = $1
order by seq
"#;

/// A run's events, oldest first.
pub(crate) const EVENTS: &str = r#"
select name, payload, sent_at from forge_workflow_events where run_id = $1 order by sent_at, name
"#;

/// Runs, newest first, filtered by workflow, status and key.
pub(crate) const LIST: &str = r#"
select r.id, r.workflow, r.version, r.run_key, j.state, r.waiting_for, r.blocked_reason, r.blocked_seq,
       r.cancel_requested_at, r.deadline, r.parent_id, r.open_children, r.created_at, j.run_at, j.finalized_at,
       j.output, j.errors, j.args
from forge_workflow_runs r
join forge_jobs j on j.id = r.id
where ($1::text is null or r.workflow = $1)
  and ($2::text is null or r.run_key = $2)
  and ($3::bigint is null or r.id < $3)
order by r.id desc
limit $4
"#;

/// Locks a run's job row for an operator's retry; its state.
pub(crate) const LOCK_FOR_RETRY: &str = r#"select state from forge_jobs where id = $1 for update"#;

/// Where a retry resumes: the first step that failed or whose effects were compensated.
pub(crate) const RETRY_FROM: &str = r#"
select min(seq) from forge_workflow_steps
where run_id = $1 and (status = 'failed' or compensated_at is not null or compensation_error is not null)
"#;

/// Makes a failed or cancelled run's job available again, with one more attempt if it needs it.
pub(crate) const RETRY: &str = r#"
with run as (
    update forge_workflow_runs set cancel_requested_at = null, blocked_reason = null, blocked_seq = null,
                                   waiting_for = null
    where id = $1
    returning id
)
update forge_jobs j
set state = 'available', run_at = now(), finalized_at = null, cancel_requested_at = null,
    max_attempts = greatest(j.max_attempts, j.attempt + 1)
from run
where j.id = run.id and j.state in ('discarded', 'cancelled')
returning j.queue
"#;
