//! The worker: runs the jobs of the node's queues.
//!
//! - [`producer`]: per queue, one producer claims as many jobs as it has free slots (one
//!   `UPDATE … FOR UPDATE SKIP LOCKED`) and starts each in its own task;
//! - [`executor`]: one attempt, from claimed row to outcome: the handler under its timeout and
//!   cancellation, a transactional job's completion in its own transaction, metrics;
//! - [`outcome`]: the policy that turns how an attempt ended into the row's next state (retry
//!   with backoff, discard, snooze, cancel, release);
//! - [`heartbeat`]: renews the leases of everything running on the node and stops attempts
//!   whose lease was lost or whose cancellation was requested;
//! - [`listener`]: turns NOTIFYs into wake-ups (new work) and cancellations.
//!
//! Outcomes go to the [`Completer`], which writes them in batches. Running attempts are kept
//! in [`Shared::running`], the one table the parts share.

mod executor;
mod heartbeat;
mod listener;
pub(crate) mod outcome;
mod producer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use executor::panic_message;
#[cfg(feature = "testing")]
pub(crate) use {executor::Attempt, producer::ClaimedJob};

use super::completer::Completer;
use super::job::JobRegistry;
use super::notifier::Notifier;
use crate::observability::Telemetry;

/// What a worker needs to know.
#[derive(Clone, Debug)]
pub(crate) struct WorkerSettings {
    pub(crate) node_id: String,
    pub(crate) queues: Vec<(String, usize)>,
    pub(crate) capabilities: Vec<String>,
    pub(crate) poll_interval: Duration,
    pub(crate) lease: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// Whether to LISTEN for wake-ups and cancellations (else poll only).
    pub(crate) listen: bool,
}

/// Why a running attempt was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancelled,
    LeaseLost,
    Released,
}

/// An attempt running on this node.
#[derive(Debug)]
struct Running {
    attempt: i32,
    token: CancellationToken,
    reason: Option<StopReason>,
}

/// What the worker's parts share.
#[derive(Debug)]
struct Shared {
    pool: sqlx::PgPool,
    registry: JobRegistry,
    notifier: Notifier,
    completer: Completer,
    telemetry: Arc<Telemetry>,
    settings: WorkerSettings,
    /// The attempts running on this node, by job id.
    running: Mutex<HashMap<i64, Running>>,
    /// One per queue: wakes its producer.
    wakers: HashMap<String, Arc<Notify>>,
}

impl Shared {
    fn stop(&self, id: i64, reason: StopReason) {
        if let Ok(mut running) = self.running.lock()
            && let Some(r) = running.get_mut(&id)
        {
            r.reason.get_or_insert(reason);
            r.token.cancel();
        }
    }

    fn stop_all(&self, reason: StopReason) {
        if let Ok(mut running) = self.running.lock() {
            for r in running.values_mut() {
                r.reason.get_or_insert(reason);
                r.token.cancel();
            }
        }
    }
}

/// A running worker. [`Worker::stop`] drains it.
#[derive(Debug)]
pub(crate) struct Worker {
    shared: Arc<Shared>,
    producers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    completer_task: JoinHandle<()>,
    stop_claiming: CancellationToken,
}

impl Worker {
    pub(crate) fn spawn(
        pool: sqlx::PgPool,
        registry: JobRegistry,
        notifier: Notifier,
        telemetry: Arc<Telemetry>,
        settings: WorkerSettings,
    ) -> Self {
        let (completer, completer_task) = Completer::spawn(pool.clone(), notifier.clone());
        let wakers = settings.queues.iter().map(|(q, _)| (q.clone(), Arc::new(Notify::new()))).collect();
        let shared = Arc::new(Shared {
            pool,
            registry,
            notifier,
            completer,
            telemetry,
            settings: settings.clone(),
            running: Mutex::new(HashMap::new()),
            wakers,
        });
        let stop_claiming = CancellationToken::new();
        let producers = settings
            .queues
            .iter()
            .map(|(queue, concurrency)| {
                tokio::spawn(producer::produce(shared.clone(), queue.clone(), *concurrency, stop_claiming.clone()))
            })
            .collect();
        let mut background = vec![tokio::spawn(heartbeat::heartbeat(shared.clone()))];
        if settings.listen {
            background.push(tokio::spawn(listener::listen(shared.clone(), stop_claiming.clone())));
        }
        Self { shared, producers, background, completer_task, stop_claiming }
    }

    /// A reading of (busy slots, all slots) across the node's queues, for `/metrics`.
    pub(crate) fn slots_probe(&self) -> Box<dyn Fn() -> (usize, usize) + Send + Sync> {
        // Weak: the completer stops only once every `Shared` is gone, so a probe must not keep one.
        let shared = Arc::downgrade(&self.shared);
        let total = self.shared.settings.queues.iter().map(|(_, n)| n).sum();
        Box::new(move || {
            let busy = shared.upgrade().and_then(|s| s.running.lock().ok().map(|r| r.len())).unwrap_or(0);
            (busy, total)
        })
    }

    /// Stops claiming, waits up to the shutdown timeout for running jobs, releases the rest to
    /// `available` (their attempt not counted), and writes every outcome.
    pub(crate) async fn stop(self) {
        self.stop_claiming.cancel();
        let timeout = self.shared.settings.shutdown_timeout;
        let mut producers = self.producers;
        let drained = tokio::time::timeout(timeout, async {
            for p in producers.iter_mut() {
                let _ = p.await;
            }
        })
        .await;
        if drained.is_err() {
            let n = self.shared.running.lock().map(|r| r.len()).unwrap_or(0);
            tracing::warn!(jobs = n, "shutdown timeout: releasing running jobs");
            self.shared.stop_all(StopReason::Released);
            for p in producers {
                let _ = p.await;
            }
        }
        for task in self.background {
            task.abort();
        }
        self.shared.completer.flush().await;
        drop(self.shared);
        let _ = self.completer_task.await;
    }
}
