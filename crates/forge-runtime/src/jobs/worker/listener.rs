//! The listener: LISTENs for dispatches (waking the queue's producer) and cancellations
//! (stopping the attempt). A lost connection wakes every producer, since notices may have been
//! missed; in poll-only mode (`[worker] listen = false`) it does not run.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::shared::{Shared, StopReason};
use crate::jobs::sql;

pub(super) async fn listen(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let mut listener = match PgListener::connect_with(&shared.pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; polling only");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        if let Err(e) = listener.listen_all([sql::JOBS_CHANNEL, sql::CANCEL_CHANNEL]).await {
            tracing::warn!(error = %e, "cannot LISTEN; polling only");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            let notification = tokio::select! {
                n = listener.recv() => n,
                () = stop.cancelled() => return,
            };
            match notification {
                Ok(n) if n.channel() == sql::JOBS_CHANNEL => {
                    if let Some(waker) = shared.wakers.get(n.payload()) {
                        waker.notify_one();
                    }
                }
                Ok(n) => {
                    if let Ok(id) = n.payload().parse::<i64>() {
                        shared.stop_job(id, StopReason::Cancelled);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "listener lost its connection; reconnecting");
                    for waker in shared.wakers.values() {
                        waker.notify_one();
                    }
                    break;
                }
            }
        }
    }
}
