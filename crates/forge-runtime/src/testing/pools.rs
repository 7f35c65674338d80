//! Pools for the crate's own tests: one that counts its connections' returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::TestDatabase;

/// A pool of one connection over `db` that counts its connections' returns.
pub(crate) async fn counted_pool(db: &TestDatabase) -> (PgPool, Arc<AtomicUsize>) {
    counted_pool_of(db, 1).await
}

/// A pool of up to `size` connections over `db` (one open at first) that counts its
/// connections' returns, and pings a connection only when it was idle for a second, as the
/// node's pools do.
pub(crate) async fn counted_pool_of(db: &TestDatabase, size: u32) -> (PgPool, Arc<AtomicUsize>) {
    let returns = Arc::new(AtomicUsize::new(0));
    let counted = returns.clone();
    let pool = crate::db::pool_options()
        .max_connections(size)
        .after_release(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(true) })
        })
        .connect(db.url())
        .await
        .expect("pool");
    // `connect` opened the connection and returned it: counted from here.
    wait_for("the first connection in the pool", || pool.num_idle() == 1).await;
    returns.store(0, Ordering::SeqCst);
    (pool, returns)
}

/// Waits, up to 10 s, until `done`; fails with `what` if it never is.
pub(crate) async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
