//! [`Notifier`]: debounced wake-ups for idle workers.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sql;

/// After a notice for a queue, further requests for it wait this long and go out as one.
///
/// A notice only matters to an idle worker: a busy one claims again as soon as a slot frees.
/// The first request after a quiet spell is sent at once (an idle node's pickup latency is
/// unchanged); under a stream of submissions a queue costs at most one NOTIFY per window
/// instead of one per job (each a round trip, and a turn at Postgres's global notify lock
/// at commit).
const WINDOW: Duration = Duration::from_millis(3);

/// Wakes idle workers of a queue through `NOTIFY forge_jobs`, debounced per queue: the first
/// request is sent at once, the requests that follow within a short window (3 ms) go out
/// together at its end, so a burst of dispatches costs a handful of NOTIFYs, not one per job.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<String>,
}

/// One queue's debounce: until when a notice is held back, and whether one is owed then.
struct Quiet {
    until: Instant,
    owed: bool,
}

impl Notifier {
    /// A notifier sending through `pool`; its task ends when every clone is dropped.
    pub fn spawn(pool: PgPool) -> Self {
        Self::with_window(pool, WINDOW)
    }

    fn with_window(pool: PgPool, window: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(run(pool, rx, window));
        Self { tx }
    }

    /// Asks for the workers of `queue` to be woken.
    pub fn notify(&self, queue: &str) {
        let _ = self.tx.send(queue.to_owned());
    }
}

/// The notifier's task: sends what is due, holds back what is not.
async fn run(pool: PgPool, mut rx: mpsc::UnboundedReceiver<String>, window: Duration) {
    let mut queues: HashMap<String, Quiet> = HashMap::new();
    loop {
        let next = queues.values().filter(|q| q.owed).map(|q| q.until).min();
        let request = match next {
            Some(at) => tokio::select! {
                request = rx.recv() => request,
                () = tokio::time::sleep_until(at) => None,
            },
            None => match rx.recv().await {
                Some(request) => Some(request),
                None => return,
            },
        };
        let now = Instant::now();
        let mut due: Vec<String> = Vec::new();
        let mut take = |queue: String, queues: &mut HashMap<String, Quiet>| match queues.get_mut(&queue) {
            Some(quiet) if quiet.until > now => quiet.owed = true,
            _ => {
                queues.insert(queue.clone(), Quiet { until: now + window, owed: false });
                due.push(queue);
            }
        };
        if let Some(queue) = request {
            take(queue, &mut queues);
            while let Ok(more) = rx.try_recv() {
                take(more, &mut queues);
            }
        }
        // Windows that ended with a notice owed: it goes out now, and opens a new window.
        for (queue, quiet) in queues.iter_mut() {
            if quiet.owed && quiet.until <= now {
                *quiet = Quiet { until: now + window, owed: false };
                due.push(queue.clone());
            }
        }
        // Queues quiet for a whole window are forgotten.
        queues.retain(|_, quiet| quiet.owed || quiet.until > now);
        for queue in due {
            if let Err(e) = sqlx::query(sql::NOTIFY).bind(sql::JOBS_CHANNEL).bind(&queue).execute(&pool).await {
                tracing::debug!(error = %e, queue, "could not notify workers; they will poll");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    /// Notices received on `forge_jobs` within `wait`.
    async fn received(listener: &mut sqlx::postgres::PgListener, wait: Duration) -> Vec<String> {
        let mut got = Vec::new();
        let deadline = Instant::now() + wait;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, listener.recv()).await {
            got.push(n.payload().to_owned());
        }
        got
    }

    #[tokio::test]
    async fn the_first_request_goes_at_once_and_the_rest_of_its_window_as_one() {
        let db = TestDatabase::new().await.expect("db");
        let mut listener = sqlx::postgres::PgListener::connect_with(db.pool()).await.expect("listener");
        listener.listen(sql::JOBS_CHANNEL).await.expect("listen");
        let notifier = Notifier::with_window(db.pool().clone(), Duration::from_millis(600));
        let sent = Instant::now();
        notifier.notify("a");
        assert_eq!(received(&mut listener, Duration::from_millis(200)).await, ["a"], "the first at once");
        assert!(sent.elapsed() < Duration::from_millis(600));
        // Within the window: held back, then sent once; another queue is not held back.
        for _ in 0..5 {
            notifier.notify("a");
        }
        notifier.notify("b");
        assert_eq!(received(&mut listener, Duration::from_millis(100)).await, ["b"]);
        let late = received(&mut listener, Duration::from_millis(1500)).await;
        assert_eq!(late, ["a"], "five requests in the window are one notice at its end");
        assert!(sent.elapsed() >= Duration::from_millis(600));
    }
}
