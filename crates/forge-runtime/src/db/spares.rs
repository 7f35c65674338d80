//! [`Spares`]: the connections kept between statements that follow each other closely.
//!
//! sqlx pings every connection going back to its pool (a round trip, and a wake-up of the
//! server's backend, on every release). A caller dispatching one job after another would pay
//! that ping for every job, and wait for it when the pool has no other connection. The
//! statements of a [`BatchedDispatcher`](crate::jobs::BatchedDispatcher), of the job API's
//! batched submissions and of its webhook delivery records keep their connection here instead,
//! and the next statement takes it back; a connection nobody took back for [`KEEP_IDLE`] goes
//! back to the pool.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::oneshot;

/// How long a connection is kept for the next statement: longer than the gap between the
/// statements of a caller dispatching one job after another, short enough that a pool shared
/// with workers gets it back at once for what they do.
pub(crate) const KEEP_IDLE: Duration = Duration::from_millis(10);

/// A connection first taken longer ago than this goes back to the pool after its statement
/// rather than being kept on: under a steady load, each kept connection still passes through the
/// pool about once a second, where sqlx checks it (its ping, its `max_lifetime`) and where
/// whoever waits for the pool directly gets a turn.
const KEEP_AT_MOST: Duration = Duration::from_secs(1);

/// A connection taken from [`Spares`]: the pool's, and when it was first taken.
pub(crate) struct Spare {
    conn: PoolConnection<Postgres>,
    since: Instant,
}

impl Spare {
    /// The pool's connection, to be handed back to the pool when dropped (a transaction begun
    /// on it, for one).
    pub(crate) fn into_inner(self) -> PoolConnection<Postgres> {
        self.conn
    }
}

impl std::ops::Deref for Spare {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Spare {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// The connections kept between statements, over one pool.
#[derive(Clone)]
pub(crate) struct Spares {
    pool: PgPool,
    kept: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    /// Each with when it was kept.
    spares: Vec<(Spare, Instant)>,
    /// Statements waiting while the pool has no connection left to open or hand out: the next
    /// connection kept goes to the first of them still waiting.
    waiting: VecDeque<oneshot::Sender<Spare>>,
    /// Whether a task is on its way to hand back what stays unused.
    reaper: bool,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares").field("kept", &self.lock().spares.len()).finish()
    }
}

impl Spares {
    /// None kept yet, over `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool, kept: Arc::default() }
    }

    /// The pool the connections are kept from.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A kept connection, or the pool's next one, whichever comes first. A statement that
    /// finds none kept asks the pool and waits in line for the next connection kept by another
    /// statement. When the pool may be opening a connection for it (it had room), a kept one
    /// handed over first does not throw that connection away: it is kept for the next statement
    /// when it opens.
    pub(crate) async fn take(&self) -> Result<Spare, sqlx::Error> {
        let (handed, full) = {
            let mut kept = self.lock();
            while let Some((spare, _)) = kept.spares.pop() {
                // One the pool no longer wants (it is closing) is dropped: it goes back.
                if !self.pool.is_closed() {
                    return Ok(spare);
                }
            }
            // Those that got one from the pool instead are forgotten.
            kept.waiting.retain(|w| !w.is_closed());
            let (tx, rx) = oneshot::channel();
            kept.waiting.push_back(tx);
            (rx, self.pool.num_idle() == 0 && self.pool.size() >= self.pool.options().get_max_connections())
        };
        if full {
            // The pool can only hand back a connection: waiting for it costs nothing to drop.
            return tokio::select! {
                biased;
                Ok(spare) = handed => Ok(spare),
                conn = self.pool.acquire() => Ok(Spare { conn: conn?, since: Instant::now() }),
            };
        }
        let pool = self.pool.clone();
        let mut acquiring = Box::pin(async move { pool.acquire().await });
        tokio::select! {
            biased;
            Ok(spare) = handed => {
                let spares = self.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = acquiring.await {
                        spares.keep(Spare { conn, since: Instant::now() });
                    }
                });
                Ok(spare)
            }
            conn = &mut acquiring => Ok(Spare { conn: conn?, since: Instant::now() }),
        }
    }

    /// Keeps `spare` for the next statement (after one that went well): handed to the first
    /// statement waiting for one, or kept until one comes. It goes back to the pool instead when
    /// the pool is closing or the connection was first taken [`KEEP_AT_MOST`] ago.
    pub(crate) fn keep(&self, mut spare: Spare) {
        if self.pool.is_closed() || spare.since.elapsed() >= KEEP_AT_MOST {
            return;
        }
        let mut kept = self.lock();
        while let Some(waiting) = kept.waiting.pop_front() {
            match waiting.send(spare) {
                Ok(()) => return,
                // That statement got one from the pool meanwhile.
                Err(back) => spare = back,
            }
        }
        kept.spares.push((spare, Instant::now()));
        if !std::mem::replace(&mut kept.reaper, true) {
            tokio::spawn(self.clone().reap());
        }
    }

    /// Every [`KEEP_IDLE`], hands back the connections kept for that long; ends when none is
    /// left.
    async fn reap(self) {
        loop {
            tokio::time::sleep(KEEP_IDLE).await;
            let mut kept = self.lock();
            let now = Instant::now();
            let unused: Vec<_> = kept.spares.extract_if(.., |(_, at)| now - *at >= KEEP_IDLE).collect();
            let done = kept.spares.is_empty();
            kept.reaper = !done;
            drop(kept);
            drop(unused);
            if done {
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::testing::{TestDatabase, counted_pool, wait_for};

    #[tokio::test]
    async fn statements_one_after_another_keep_one_connection_and_give_it_back_when_idle() {
        let db = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool(&db).await;
        let spares = Spares::new(pool.clone());
        let mut backends = Vec::new();
        for _ in 0..50 {
            let mut conn = spares.take().await.expect("connection");
            backends.push(
                sqlx::query_scalar::<_, i32>("select pg_backend_pid()").fetch_one(&mut *conn).await.expect("pid"),
            );
            spares.keep(conn);
        }
        assert!(backends.iter().all(|b| *b == backends[0]), "one connection throughout");
        assert_eq!(returns.load(Ordering::SeqCst), 0, "not returned (and pinged) after each statement");
        // Nobody takes it: it goes back to the pool, where others get it.
        wait_for("the kept connection goes back to the pool", || pool.num_idle() == 1).await;
        assert_eq!(returns.load(Ordering::SeqCst), 1);
        let mut other = pool.acquire().await.expect("the pool's connection");
        let pid: i32 = sqlx::query_scalar("select pg_backend_pid()").fetch_one(&mut *other).await.expect("pid");
        assert_eq!(pid, backends[0]);
    }

    #[tokio::test]
    async fn a_statement_waiting_for_the_pool_gets_the_connection_the_last_one_keeps() {
        let db = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool(&db).await;
        let spares = Spares::new(pool.clone());
        let first = spares.take().await.expect("the only connection");
        let waiting = tokio::spawn({
            let spares = spares.clone();
            async move { spares.take().await }
        });
        tokio::task::yield_now().await;
        let since = first.since;
        spares.keep(first);
        let taken = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("taken").expect("task");
        let taken = taken.expect("connection");
        assert_eq!(taken.since, since, "the kept connection itself");
        assert_eq!(returns.load(Ordering::SeqCst), 0, "handed over, not through the pool");
    }

    #[tokio::test]
    async fn a_connection_the_pool_opens_for_a_statement_handed_another_one_is_kept_not_thrown_away() {
        let db = TestDatabase::new().await.expect("db");
        // Room for a second connection, which takes the pool a while to open.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .after_connect(|_, _| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(())
                })
            })
            .connect(db.url())
            .await
            .expect("pool");
        let spares = Spares::new(pool.clone());
        let first = spares.take().await.expect("the open connection");
        let waiting = tokio::spawn({
            let spares = spares.clone();
            async move { spares.take().await }
        });
        // It waits for the pool, which opens the second connection.
        wait_for("a statement waiting", || spares.lock().waiting.iter().filter(|w| !w.is_closed()).count() == 1).await;
        let since = first.since;
        spares.keep(first);
        let taken = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("taken").expect("task");
        assert_eq!(taken.expect("connection").since, since, "handed the kept connection at once");
        // The second connection, once open, is kept for the next statement.
        wait_for("the opened connection kept", || spares.lock().spares.len() == 1).await;
        assert_eq!(pool.size(), 2);
    }

    #[tokio::test]
    async fn a_connection_in_steady_use_still_goes_back_through_the_pool_about_once_a_second() {
        let db = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool(&db).await;
        let spares = Spares::new(pool.clone());
        let started = Instant::now();
        while started.elapsed() < KEEP_AT_MOST + Duration::from_millis(500) {
            let mut conn = spares.take().await.expect("connection");
            sqlx::query("select 1").execute(&mut *conn).await.expect("statement");
            spares.keep(conn);
        }
        let back = returns.load(Ordering::SeqCst);
        assert!((1..=3).contains(&back), "through the pool {back} times in 1.5 s");
    }

    #[tokio::test]
    async fn a_closing_pool_gets_its_connections_back() {
        let db = TestDatabase::new().await.expect("db");
        let (pool, _) = counted_pool(&db).await;
        let spares = Spares::new(pool.clone());
        let conn = spares.take().await.expect("connection");
        spares.keep(conn);
        // `close` waits for every connection: the kept one comes back within KEEP_IDLE.
        tokio::time::timeout(Duration::from_secs(10), pool.close()).await.expect("closed");
        assert!(matches!(spares.take().await, Err(sqlx::Error::PoolClosed)));
    }
}
