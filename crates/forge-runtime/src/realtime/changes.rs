//! The change feed: which tables changed since the last read, from `forge_changes`.
//!
//! Each read remembers the snapshot it ran in and next asks for the rows that became visible
//! since: a transaction that commits late (its row id lower than rows already read) is still
//! seen, once, when it commits. A transaction writes one row per table it changes (the
//! trigger's transaction-local flag), whatever the number of statements or rows.

use std::collections::BTreeSet;

use sqlx::PgPool;

use super::sql;

/// A node's position in the change feed.
#[derive(Debug)]
pub(super) struct ChangeFeed {
    pool: PgPool,
    snapshot: String,
}

impl ChangeFeed {
    /// A feed that reports what changes from now on.
    pub(super) async fn start(pool: PgPool) -> Result<Self, sqlx::Error> {
        let snapshot: String = sqlx::query_scalar(sql::SNAPSHOT).fetch_one(&pool).await?;
        Ok(Self { pool, snapshot })
    }

    /// The tables changed since the last read.
    pub(super) async fn read(&mut self) -> Result<BTreeSet<String>, sqlx::Error> {
        let (snapshot, tables): (String, Vec<String>) =
            sqlx::query_as(sql::READ_CHANGES).bind(&self.snapshot).fetch_one(&self.pool).await?;
        self.snapshot = snapshot;
        Ok(tables.into_iter().collect())
    }
}

/// Installs the change trigger on each of `tables` that exists and lacks it; returns the
/// tables that have it afterwards (by the name they were given). Tables that do not exist are
/// left out, with a warning: a query's `reads` may name a table its migrations create later.
pub(super) async fn install(pool: &PgPool, tables: &[String]) -> Result<Vec<String>, sqlx::Error> {
    let mut watched = Vec::new();
    let mut missing = Vec::new();
    for table in tables {
        let (name, installed): (Option<String>, bool) =
            sqlx::query_as(sql::TRIGGER_STATE).bind(table).fetch_one(pool).await?;
        match name {
            None => {
                tracing::warn!(table = %table, "a live query reads a table that does not exist; it is not watched");
            }
            Some(_) if installed => watched.push(table.clone()),
            Some(name) => missing.push((table.clone(), name)),
        }
    }
    if missing.is_empty() {
        return Ok(watched);
    }
    let mut tx = pool.begin().await?;
    // Never wait long behind a writer's lock: the next subscription tries again.
    sqlx::query("set local lock_timeout = '5s'").execute(&mut *tx).await?;
    sqlx::query(sql::INSTALL_LOCK).execute(&mut *tx).await?;
    for (table, name) in missing {
        // `name` is `to_regclass(..)::text`: quoted and qualified as Postgres prints it.
        let ddl = format!(
            "create or replace trigger forge_changes after insert or update or delete or truncate on {name} \
             for each statement execute function forge_record_change()"
        );
        sqlx::query(&ddl).execute(&mut *tx).await?;
        tracing::info!(table = %table, "live queries now follow this table's changes");
        watched.push(table);
    }
    tx.commit().await?;
    Ok(watched)
}

/// The application's tables (not Forge's own): what a query without `reads` may read.
pub(super) async fn user_tables(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(sql::USER_TABLES).fetch_all(pool).await
}

/// Tells other nodes' feeds to read now.
pub(super) async fn hint(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(sql::HINT).execute(pool).await.map(|_| ())
}

/// Deletes changes older than `keep`.
pub(super) async fn prune(pool: &PgPool, keep: std::time::Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(sql::PRUNE).bind(keep.as_secs_f64()).execute(pool).await?.rows_affected())
}
