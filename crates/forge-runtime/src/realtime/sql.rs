//! The change feed's statements.

/// The snapshot the feed starts from.
pub(super) const SNAPSHOT: &str = r"select pg_current_snapshot()::text";

/// The tables changed by transactions that became visible since snapshot `$1`, and this
/// statement's snapshot (the next read's `$1`). A row is new if the previous snapshot did not
/// see its transaction; `pg_current_snapshot()` is the snapshot this statement reads with, so
/// every row it marks as seen is one it read.
pub(super) const READ_CHANGES: &str = r"
select pg_current_snapshot()::text as snapshot,
       coalesce(array_agg(distinct c.table_name), '{}') as tables
from forge_changes c
where c.xid >= pg_snapshot_xmin($1::pg_snapshot)
  and not pg_visible_in_snapshot(c.xid, $1::pg_snapshot)
";

/// Whether table `$1` (as `to_regclass` resolves it) exists and already has the trigger.
pub(super) const TRIGGER_STATE: &str = r"
select to_regclass($1)::text as name,
       exists (select 1 from pg_trigger where tgrelid = to_regclass($1) and tgname = 'forge_changes') as installed
";

/// The application's tables in the current schema (Forge's own are never watched).
pub(super) const USER_TABLES: &str = r"
select tablename::text from pg_tables
where schemaname = current_schema() and tablename not like 'forge\_%'
order by tablename
";

/// Serialises trigger installation across nodes (this transaction only).
pub(super) const INSTALL_LOCK: &str = r"select pg_advisory_xact_lock(hashtextextended('forge_changes', 7212))";

/// Wakes other nodes' feeds.
pub(super) const HINT: &str = r"select pg_notify('forge_changes', '')";

/// The channel of [`HINT`].
pub(super) const CHANNEL: &str = "forge_changes";

/// Deletes changes older than `$1` seconds.
pub(super) const PRUNE: &str = r"delete from forge_changes where at < now() - make_interval(secs => $1)";

/// Watched jobs: what a watch shows, the submitting client (for access) and the row version.
pub(super) const WATCHED_JOBS: &str = r"
select id, kind, queue, state, attempt, max_attempts, progress, output,
       errors -> -1 ->> 'message' as last_error, run_at, attempted_at, finalized_at,
       cancel_requested_at is not null as cancel_requested,
       client_id, xmin::text as version
from forge_jobs
where id = any($1)
";
