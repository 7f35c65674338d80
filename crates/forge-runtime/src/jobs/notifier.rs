//! [`Notifier`]: debounced wake-ups for idle workers.

use sqlx::PgPool;
use tokio::sync::mpsc;

use super::sql;

/// Wakes idle workers of a queue through `NOTIFY forge_jobs`, coalescing: while one notice is
/// being sent, requests for the same queues pile up and go out together in the next one, so a
/// burst of dispatches costs a handful of NOTIFYs, not one per job.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<String>,
}

impl Notifier {
    /// A notifier sending through `pool`; its task ends when every clone is dropped.
    pub fn spawn(pool: PgPool) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut queues = vec![first];
                while let Ok(more) = rx.try_recv() {
                    if !queues.contains(&more) {
                        queues.push(more);
                    }
                }
                for queue in queues {
                    if let Err(e) = sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(&queue).execute(&pool).await {
                        tracing::debug!(error = %e, queue, "could not notify workers; they will poll");
                    }
                }
            }
        });
        Self { tx }
    }

    /// Asks for the workers of `queue` to be woken.
    pub fn notify(&self, queue: &str) {
        let _ = self.tx.send(queue.to_owned());
    }
}
