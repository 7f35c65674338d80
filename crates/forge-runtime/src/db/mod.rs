//! Everything between Forge and PostgreSQL: choosing the server (a `DATABASE_URL` or the
//! embedded cluster), the connection pool, and migrations.

pub(crate) mod announce;
pub(crate) mod batch;
mod embedded;
mod fault;
mod kept;
mod migrations;
mod pauses;
mod pool;
pub(crate) mod spares;
pub(crate) mod sql;
mod tx;

pub use embedded::{EMBEDDED_USER, EmbeddedError, EmbeddedPostgres, find_binaries};
pub(crate) use fault::refused_data;
pub use kept::Db;
pub use migrations::{
    AppliedMigration, Migration, MigrationError, MigrationSource, MigrationState, MigrationStatus, Migrator,
    SchemaCheck,
};
pub(crate) use pauses::{Pauses, pauses};
#[cfg(test)]
pub(crate) use pool::pool_options;
#[cfg(feature = "testing")]
pub(crate) use pool::quote_ident;
pub(crate) use pool::replace_connections_opened_before_now;
pub use pool::{Database, DbError, EMBEDDED_DATABASE, ensure_database, read_only_pool, redact_url};
pub use tx::Tx;
pub(crate) use tx::TxSlot;
