//! The heartbeat: renews the lease of every attempt running on the node, every third of the
//! lease, and stops attempts whose cancellation was requested or whose lease was lost. It keeps
//! renewing while the worker drains; `Worker::stop` ends it last.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::shared::{Shared, StopReason};
use crate::jobs::sql;

/// A lease still held: the attempt holding it, and whether its cancellation was requested.
#[derive(Debug, sqlx::FromRow)]
struct Held {
    id: i64,
    attempt: i32,
    cancel_requested: bool,
}

pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let every = (shared.settings.lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<(i64, i32)> =
            shared.running.lock().map(|r| r.iter().map(|(id, r)| (*id, r.attempt)).collect()).unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        let list: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
        let rows: Vec<Held> = match sqlx::query_as(sql::HEARTBEAT)
            .bind(&list)
            .bind(&shared.settings.node_id)
            .fetch_all(&shared.pool)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        };
        let held: HashMap<i64, &Held> = rows.iter().map(|h| (h.id, h)).collect();
        for (id, attempt) in ids {
            match held.get(&id) {
                Some(h) if h.attempt == attempt && h.cancel_requested => shared.stop(id, StopReason::Cancelled),
                Some(h) if h.attempt == attempt => {}
                _ => {
                    // Finished meanwhile (then it is gone from `running`), or rescued elsewhere.
                    let still_running = shared.running.lock().map(|r| r.contains_key(&id)).unwrap_or(false);
                    if still_running {
                        shared.stop(id, StopReason::LeaseLost);
                    }
                }
            }
        }
    }
}
