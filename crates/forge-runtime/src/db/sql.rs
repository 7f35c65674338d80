//! The statements of the `db` component.

/// Serialises migration runs across nodes for the rest of the transaction. The key is
/// `hashtext('forge_migrations')`, fixed so every Forge version agrees on it.
pub(crate) const MIGRATION_LOCK: &str = r#"select pg_advisory_xact_lock(hashtext('forge_migrations'))"#;

/// Bounds, for the rest of the transaction, how long any statement waits for a lock.
pub(crate) const SET_LOCK_TIMEOUT: &str = r#"select set_config('lock_timeout', $1, true)"#;

/// For the rest of the transaction, the server sends no notices below warnings.
pub(crate) const QUIET_NOTICES: &str = r#"select set_config('client_min_messages', 'warning', true)"#;

/// The migration ledger; created by the migrator itself, before any migration.
pub(crate) const CREATE_LEDGER: &str = r#"
create table if not exists forge_migrations (
    source      text        not null,
    version     bigint      not null,
    name        text        not null,
    checksum    text        not null,
    applied_at  timestamptz not null default now(),
    duration_ms bigint      not null,
    primary key (source, version)
)
"#;

pub(crate) const LEDGER_EXISTS: &str = r#"select to_regclass('forge_migrations') is not null"#;

pub(crate) const APPLIED_MIGRATIONS: &str = r#"
select source, version, name, checksum, applied_at
from forge_migrations
order by case source when 'forge' then 0 else 1 end, version
"#;

pub(crate) const RECORD_MIGRATION: &str = r#"
insert into forge_migrations (source, version, name, checksum, duration_ms)
values ($1, $2, $3, $4, $5)
"#;

pub(crate) const FORGET_MIGRATION: &str = r#"delete from forge_migrations where source = $1 and version = $2"#;

/// The readiness probe's round trip.
pub(crate) const PING: &str = r#"select 1"#;

pub(crate) const DATABASE_EXISTS: &str = r#"select exists (select 1 from pg_database where datname = $1)"#;
