-- A job's limits (its state, priority and attempts, the lengths of its kind and queue) can live
-- in domains on its columns instead of the table's check constraints: the same rules, refused
-- with the same SQLSTATE (23514, check_violation).
--
-- Why: Postgres prepares a table's check constraints anew for every statement that writes it
-- (it reads the five expressions back from their stored form and plans them each time), which
-- cost a one-row INSERT into forge_jobs about an eighth of its rate; a single dispatch is one
-- such statement. A domain's check is planned once per session, and a statement pays only for
-- the domains of the columns it writes. `pgbench -c 1` of the single-dispatch INSERT, five
-- alternating rounds: 3,249-3,794 statements/s with the table's checks, 4,064-4,455 with the
-- domains (see the performance page, "Enqueue").
--
-- When: at once on a database no process has used yet (no job, no node: a new installation, a
-- test database). Not on one in use: changing a column's type makes Postgres refuse every
-- statement prepared before the change that returns that column ("cached plan must not change
-- result type", SQLSTATE 0A000), and a client keeps its prepared statements as long as its
-- connections live (sqlx 0.8: up to 30 minutes). Nodes of the previous version in a rolling
-- deploy, and any program dispatching through its own pool, would fail to claim and dispatch
-- until then. There the table keeps its checks (a WARNING in the node's log says so), and
-- `select forge_jobs_use_domains()` makes the move when the operator chooses: it bumps
-- forge_schema_epoch, and every node of this version or later replaces the connections it had
-- opened before within a heartbeat (`[node] heartbeat_interval`, 5 s), its statements failing
-- meanwhile; older nodes, and programs dispatching through their own pool, need a restart.
--
-- How: the columns move while their domains have no checks, which keeps the table's rows where
-- they are (no rewrite; the five partial indexes whose predicates name these columns are
-- rebuilt), and the checks are added back after, which only reads the table. An object of the
-- application's that reads these columns (a view, a rule, a trigger's WHEN, a row-level policy)
-- blocks the move, as Postgres does not change the type of a column such an object depends on:
-- then the table keeps its checks, with a WARNING naming the object, and the function answers
-- false. It answers true once the columns are domains.

-- @up
-- Bumped by a change that leaves statements prepared before it refusing to run: each node reads
-- it with its heartbeat and, when it has moved, replaces the connections it opened before.
create sequence forge_schema_epoch;

create domain forge_job_state as text check (value in
    ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled'));
create domain forge_job_kind as text check (char_length(value) between 1 and 255);
create domain forge_queue_name as text check (char_length(value) between 1 and 64);
create domain forge_job_priority as smallint check (value between 0 and 4);
create domain forge_job_attempt as integer check (value >= 0);
create domain forge_job_max_attempts as integer check (value > 0);

create function forge_jobs_use_domains() returns boolean
language plpgsql as $$
declare
    moved boolean := true;
    detail text;
begin
    if (select atttypid from pg_attribute where attrelid = 'forge_jobs'::regclass and attname = 'state')
        = 'forge_job_state'::regtype then
        return true;
    end if;
    begin
        -- No column uses the domains yet: their checks can go while the columns move, so that
        -- the move rewrites nothing. (Inside this block: a DDL statement before it, in this
        -- function, would keep Postgres from starting the block's subtransaction.)
        alter domain forge_job_state drop constraint forge_job_state_check;
        alter domain forge_job_kind drop constraint forge_job_kind_check;
        alter domain forge_queue_name drop constraint forge_queue_name_check;
        alter domain forge_job_priority drop constraint forge_job_priority_check;
        alter domain forge_job_attempt drop constraint forge_job_attempt_check;
        alter domain forge_job_max_attempts drop constraint forge_job_max_attempts_check;
        alter table forge_jobs
            alter column state type forge_job_state,
            alter column kind type forge_job_kind,
            alter column queue type forge_queue_name,
            alter column priority type forge_job_priority,
            alter column attempt type forge_job_attempt,
            alter column max_attempts type forge_job_max_attempts;
        alter table forge_jobs
            drop constraint forge_jobs_state_check,
            drop constraint forge_jobs_priority_check,
            drop constraint forge_jobs_attempts_check,
            drop constraint forge_jobs_kind_check,
            drop constraint forge_jobs_queue_check;
        alter domain forge_job_state add constraint forge_job_state_check check (value in
            ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled'));
        alter domain forge_job_kind add constraint forge_job_kind_check
            check (char_length(value) between 1 and 255);
        alter domain forge_queue_name add constraint forge_queue_name_check
            check (char_length(value) between 1 and 64);
        alter domain forge_job_priority add constraint forge_job_priority_check check (value between 0 and 4);
        alter domain forge_job_attempt add constraint forge_job_attempt_check check (value >= 0);
        alter domain forge_job_max_attempts add constraint forge_job_max_attempts_check check (value > 0);
        perform nextval('forge_schema_epoch');
    exception when feature_not_supported then
        -- "cannot alter type of a column used by a view or rule" (or in a trigger's or policy's
        -- definition): this block's changes are undone, the table and the domains stay as they were.
        get stacked diagnostics detail = pg_exception_detail;
        raise warning 'forge_jobs keeps its check constraints (%: %); for faster one-row writes, '
            'drop that, run "select forge_jobs_use_domains()", then create it again', sqlerrm, detail;
        moved := false;
    end;
    return moved;
end $$;

do $$
begin
    if exists (select 1 from forge_jobs) or exists (select 1 from forge_nodes) then
        raise warning 'forge_jobs keeps its check constraints for now: this database is in use, and '
            'processes started before this migration would fail their prepared statements if its '
            'columns changed type; run "select forge_jobs_use_domains()" for faster one-row writes '
            'when every process that uses the database can be restarted just after (see the '
            'migrations page, "Forge''s migrations and your database")';
    else
        perform forge_jobs_use_domains();
    end if;
end $$;

-- @down
do $$
begin
    if (select atttypid from pg_attribute where attrelid = 'forge_jobs'::regclass and attname = 'state')
        = 'forge_job_state'::regtype then
        alter table forge_jobs
            alter column state type text,
            alter column kind type text,
            alter column queue type text,
            alter column priority type smallint,
            alter column attempt type integer,
            alter column max_attempts type integer;
        alter table forge_jobs
            add constraint forge_jobs_state_check check (state in
                ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled')),
            add constraint forge_jobs_priority_check check (priority between 0 and 4),
            add constraint forge_jobs_attempts_check check (max_attempts > 0 and attempt >= 0),
            add constraint forge_jobs_kind_check check (char_length(kind) between 1 and 255),
            add constraint forge_jobs_queue_check check (char_length(queue) between 1 and 64);
    end if;
end $$;

drop function forge_jobs_use_domains();
drop sequence forge_schema_epoch;
drop domain forge_job_state, forge_job_kind, forge_queue_name, forge_job_priority,
    forge_job_attempt, forge_job_max_attempts;
