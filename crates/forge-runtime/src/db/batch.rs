//! [`Batcher`]: many callers' small statements as one, with one commit (the group commit River's
//! and Oban's inserters do for their callers). Each caller hands its item over and waits for
//! its answer; the batcher's tasks take everything waiting when they are free (up to a most)
//! and run it as one batch. Alone, an item goes at once, as a batch of one; under load, batches
//! grow with the queue, so the database's work per item falls as the load rises.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

/// Runs the items handed to it in batches; its tasks end when it is dropped.
pub(crate) struct Batcher<T, R> {
    queue: mpsc::Sender<(T, oneshot::Sender<R>)>,
}

impl<T, R> std::fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("waiting", &(self.queue.max_capacity() - self.queue.capacity())).finish()
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts `tasks` tasks, each running up to `max_batch` waiting items at a time with `run`,
    /// which answers each item of its batch, in order.
    pub(crate) fn start<F, Fut>(tasks: usize, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (queue, waiting) = mpsc::channel(max_batch * tasks.max(1) * 4);
        let waiting = Arc::new(Mutex::new(waiting));
        let run = Arc::new(run);
        for _ in 0..tasks.max(1) {
            tokio::spawn(work(waiting.clone(), max_batch.max(1), run.clone()));
        }
        Self { queue }
    }

    /// Runs `item` with whatever else waits: its answer, or `None` if the batcher's tasks are
    /// gone or its batch gave no answer for it.
    pub(crate) async fn call(&self, item: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).await.ok()?;
        answer.await.ok()
    }
}

/// The items waiting, each with where its answer goes; shared by the batcher's tasks.
type Waiting<T, R> = Arc<Mutex<mpsc::Receiver<(T, oneshot::Sender<R>)>>>;

/// One task: takes what waits, runs it, answers each item; ends when no sender is left.
async fn work<T, R, F, Fut>(waiting: Waiting<T, R>, max_batch: usize, run: Arc<F>)
where
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < max_batch
                && let Ok(next) = waiting.try_recv()
            {
                batch.push(next);
            }
            batch
        };
        let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
        for (reply, answer) in replies.into_iter().zip(run(items).await) {
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_waiting_together_run_as_one_batch_and_each_gets_its_own_answer() {
        let (seen, mut batches) = mpsc::unbounded_channel();
        let batcher = Arc::new(Batcher::start(1, 8, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                let _ = seen.send(items.len());
                tokio::task::yield_now().await;
                items.into_iter().map(|n| n * 10).collect()
            }
        }));
        let calls: Vec<_> = (0..20u32)
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(n).await })
            })
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.expect("call"), Some(n as u32 * 10));
        }
        drop(batcher);
        let mut sizes = Vec::new();
        while let Some(size) = batches.recv().await {
            sizes.push(size);
        }
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.iter().all(|s| *s <= 8), "no batch above the most: {sizes:?}");
        assert!(sizes.len() < 20, "callers waiting together share a batch: {sizes:?}");
    }
}
