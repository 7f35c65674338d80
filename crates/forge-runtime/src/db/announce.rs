//! Caches a node keeps of rows that rarely change, forgotten whenever a change is announced:
//! a statement trigger sends a notice on a channel, whoever makes the change (a node, the
//! CLI, SQL by hand), and [`listen`] makes the cache forget everything on each one. A cache is
//! trusted only while its listener is subscribed: while it connects, or after it lost its
//! connection (notices may have been missed), nothing is read from it.

use std::sync::Weak;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// A cache kept true by the notices of one channel.
pub(crate) trait Announced: Send + Sync + 'static {
    /// Forgets every entry (a notice, or the listener's connection lost or found).
    fn forget(&self);
    /// Whether the listener is subscribed, so entries may be used.
    fn set_listening(&self, listening: bool);
}

/// The listener of `cache` on `channel`: forgets on every notice; trusts the cache only while
/// subscribed. Ends when the cache is dropped or the pool closed.
pub(crate) async fn listen<C: Announced>(pool: PgPool, channel: &'static str, cache: Weak<C>) {
    let mut retry = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match subscribed.await {
            Ok(listener) => listener,
            Err(e) => {
                if pool.is_closed() {
                    return;
                }
                tracing::debug!(error = %e, channel, "cannot listen for changes; reading every time");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(5));
                if cache.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        retry = Duration::from_millis(100);
        {
            let Some(cache) = cache.upgrade() else { return };
            cache.forget();
            cache.set_listening(true);
        }
        loop {
            // Woken now and then to see whether the cache is still used.
            let next = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
            let Some(cache) = cache.upgrade() else { return };
            match next {
                Err(_elapsed) => {}
                Ok(Ok(Some(_notice))) => cache.forget(),
                // The connection was lost (notices may have been missed) or failed.
                Ok(Ok(None) | Err(_)) => {
                    cache.set_listening(false);
                    cache.forget();
                    break;
                }
            }
        }
    }
}
