//! [`Db`]: the pool a query's statements run on, keeping a connection for the next statement.

use std::ops::Deref;

use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres, Transaction};

use super::spares::Spares;

/// A pool for a function's statements: an sqlx [`Executor`] (`.fetch_one(ctx.db())`), and a
/// [`PgPool`] by [`Deref`] for everything else.
///
/// A statement run on a plain `&PgPool` takes a connection and hands it back, and sqlx pings
/// every connection handed back (one more round trip, and one more wake-up of the server's
/// backend, for every statement). A statement run on `&Db` that goes well keeps its connection
/// for the next one instead: taken at once by a statement waiting for a connection, or handed
/// back to the pool after 10 ms unused. A statement that fails, or whose future is dropped before
/// it ends, hands its connection back to the pool, which checks it; each kept connection also
/// goes back through the pool about once a second under a steady load.
///
/// [`Db::acquire`] and [`Db::begin`] take a kept connection too (it goes back to the pool when
/// dropped, or when the transaction ends).
///
/// ```no_run
/// # async fn demo(db: &forge_runtime::db::Db) -> Result<(), sqlx::Error> {
/// let n: i64 = sqlx::query_scalar("select count(*) from notes").fetch_one(db).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Db {
    spares: Spares,
}

impl Db {
    /// Statements over `pool`, none kept yet.
    pub fn new(pool: PgPool) -> Self {
        Self { spares: Spares::new(pool) }
    }

    /// The pool itself.
    pub fn pool(&self) -> &PgPool {
        self.spares.pool()
    }

    /// A connection of the pool's: a kept one if there is one.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        Ok(self.spares.take().await?.into_inner())
    }

    /// Begins a transaction on a connection of the pool's (a kept one if there is one).
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        Transaction::begin(self.acquire().await?, None).await
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("pool", self.pool()).field("spares", &self.spares).finish()
    }
}

impl Deref for Db {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        self.pool()
    }
}

impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Self::new(pool)
    }
}

impl<'p> Executor<'p> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let spares = self.spares.clone();
        Box::pin(async_stream::try_stream! {
            let mut spare = spares.take().await?;
            let mut results = (&mut *spare).fetch_many(query);
            while let Some(result) = results.try_next().await? {
                yield result;
            }
            drop(results);
            // Every result was read: the connection is ready for the next statement.
            spares.keep(spare);
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let spares = self.spares.clone();
        Box::pin(async move {
            let mut spare = spares.take().await?;
            let row = (&mut *spare).fetch_optional(query).await?;
            spares.keep(spare);
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>> {
        let spares = self.spares.clone();
        Box::pin(async move {
            let mut spare = spares.take().await?;
            let statement = (&mut *spare).prepare_with(sql, parameters).await?;
            spares.keep(spare);
            Ok(statement)
        })
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>> {
        let spares = self.spares.clone();
        Box::pin(async move {
            let mut spare = spares.take().await?;
            let description = (&mut *spare).describe(sql).await?;
            spares.keep(spare);
            Ok(description)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;
    use crate::testing::{TestDatabase, counted_pool, counted_pool_of, wait_for};

    async fn backend(db: &Db) -> i32 {
        sqlx::query_scalar("select pg_backend_pid()").fetch_one(db).await.expect("pid")
    }

    #[tokio::test]
    async fn statements_keep_their_connection_and_a_failed_one_hands_it_back() {
        let test = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool(&test).await;
        let db = Db::new(pool.clone());
        let first = backend(&db).await;
        for _ in 0..50 {
            assert_eq!(backend(&db).await, first);
            sqlx::query("select 1").execute(&db).await.expect("execute");
            let rows: Vec<i32> = sqlx::query_scalar("select generate_series(1, 3)").fetch_all(&db).await.expect("all");
            assert_eq!(rows, [1, 2, 3]);
        }
        assert_eq!(returns.load(Ordering::SeqCst), 0, "kept, not handed back (and pinged) after each statement");
        let failed = sqlx::query_scalar::<_, i32>("select 1 / 0").fetch_one(&db).await;
        assert!(failed.is_err());
        wait_for("a failed statement's connection goes back to the pool", || returns.load(Ordering::SeqCst) == 1).await;
        assert_eq!(backend(&db).await, first, "and comes from it again");
        // Unused, it goes back to the pool.
        wait_for("the kept connection goes back to the pool", || pool.num_idle() == 1).await;
    }

    #[tokio::test]
    async fn a_stream_dropped_before_its_end_hands_its_connection_back() {
        let test = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool(&test).await;
        let db = Db::new(pool.clone());
        let mut rows = sqlx::query_scalar::<_, i32>("select generate_series(1, 100000)").fetch(&db);
        assert_eq!(rows.next().await.expect("a row").expect("row"), 1);
        drop(rows);
        wait_for("the connection goes back to the pool", || returns.load(Ordering::SeqCst) == 1).await;
        let all: Vec<i32> = sqlx::query_scalar("select generate_series(1, 100000)").fetch_all(&db).await.expect("all");
        assert_eq!(all.len(), 100_000, "read to its end, the next statement runs on a clean connection");
        assert_eq!(returns.load(Ordering::SeqCst), 1, "and keeps it");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statements_at_once_share_a_full_pool_by_handing_connections_over() {
        let test = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool_of(&test, 10).await;
        let db = Db::new(pool.clone());
        let tasks: Vec<_> = (0..64)
            .map(|task| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut backends = Vec::new();
                    for i in 0..25 {
                        let n: i32 = sqlx::query_scalar("select $1 from pg_sleep(0.002)")
                            .bind(task * 100 + i)
                            .fetch_one(&db)
                            .await
                            .expect("one");
                        assert_eq!(n, task * 100 + i);
                        backends.push(backend(&db).await);
                    }
                    backends
                })
            })
            .collect();
        let mut backends = std::collections::HashSet::new();
        for task in tasks {
            let done = tokio::time::timeout(Duration::from_secs(30), task).await.expect("in time").expect("task");
            backends.extend(done);
        }
        assert!(backends.len() <= 10, "the pool's connections only: {backends:?}");
        // 3,200 statements: a connection handed back for each would be 3,200 returns. Each kept
        // one goes back when first taken a second ago, so a run of a second or two sees some.
        let back = returns.load(Ordering::SeqCst);
        assert!(back <= 40, "{back} connections handed back to the pool");
        wait_for("all four back in the pool once unused", || pool.num_idle() == pool.size() as usize).await;
    }

    #[tokio::test]
    async fn a_transaction_begins_on_a_kept_connection() {
        let test = TestDatabase::new().await.expect("db");
        let (pool, _) = counted_pool(&test).await;
        let db = Db::new(pool.clone());
        let kept = backend(&db).await;
        let mut tx = db.begin().await.expect("begin");
        let pid: i32 = sqlx::query_scalar("select pg_backend_pid()").fetch_one(&mut *tx).await.expect("pid");
        assert_eq!(pid, kept);
        sqlx::query("create table kept_tx (n int)").execute(&mut *tx).await.expect("create");
        tx.commit().await.expect("commit");
        let n: i64 = sqlx::query_scalar("select count(*) from kept_tx").fetch_one(&db).await.expect("count");
        assert_eq!(n, 0);
    }
}
