//! [`Tx`]: a context's open transaction (a mutation's, a transactional job's), usable as an
//! executor as it is: `.execute(&mut ctx.tx().await?)`.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgConnection, Postgres, Transaction};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

/// The transaction slot a context shares with its runner, which commits or rolls it back.
pub(crate) type TxSlot = Option<Transaction<'static, Postgres>>;

/// A context's transaction, locked for the caller until dropped. Queries run on it with
/// `&mut tx` (it is an [`Executor`]); it also dereferences to the [`PgConnection`].
///
/// ```no_run
/// # async fn demo(ctx: &forge_runtime::functions::MutationContext) -> Result<(), forge_runtime::functions::ForgeError> {
/// sqlx::query("insert into notes (body) values ($1)").bind("hi").execute(&mut ctx.tx().await?).await?;
/// # Ok(()) }
/// ```
pub struct Tx {
    guard: OwnedMappedMutexGuard<TxSlot, Transaction<'static, Postgres>>,
}

impl Tx {
    /// Waits for the slot and locks it; `None` if its transaction was already committed or
    /// rolled back.
    pub(crate) async fn lock(slot: Arc<Mutex<TxSlot>>) -> Option<Self> {
        let guard = slot.lock_owned().await;
        OwnedMutexGuard::try_map(guard, Option::as_mut).ok().map(|guard| Self { guard })
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

impl Deref for Tx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.guard
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.guard
    }
}

impl<'c> Executor<'c> for &'c mut Tx {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        (&mut **self).fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        (&mut **self).fetch_optional(query)
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut **self).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut **self).describe(sql)
    }
}
