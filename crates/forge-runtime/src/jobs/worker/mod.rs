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
//! - [`listener`]: turns NOTIFYs into wake-ups (new work) and cancellations;
//! - [`window`]: claim windows, which lock claimed jobs in a transaction and write each once,
//!   with its outcome when its attempt ends within the window.
//!
//! Outcomes go to the completer, which writes them in batches. Running attempts are kept in
//! `shared.rs`'s table, the one the parts share.

mod executor;
mod heartbeat;
mod listener;
pub(crate) mod outcome;
mod producer;
mod shared;
mod window;

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use executor::panic_message;
#[cfg(test)]
pub(crate) use shared::CLAIMED_COLUMNS;
pub(crate) use shared::WorkerSettings;
#[cfg(feature = "testing")]
pub(crate) use {executor::Attempt, shared::ClaimedJob};

use self::shared::{Shared, StopReason};
use super::completer::{Completer, Written};
use super::dispatch::BatchedDispatcher;
use super::job::JobRegistry;
use super::notifier::Notifier;
use crate::observability::Telemetry;

/// How long released attempts get to stop at shutdown before they are abandoned.
pub(crate) const HARD_STOP: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Starts a worker claiming and running on `pool`, renewing leases and writing outcomes on
    /// `control` (the control plane's pool, which its handlers cannot exhaust), waking idle
    /// workers with `notifier`; its jobs dispatch theirs through `dispatcher`.
    pub(crate) fn spawn(
        pool: sqlx::PgPool,
        control: sqlx::PgPool,
        registry: JobRegistry,
        notifier: Notifier,
        dispatcher: BatchedDispatcher,
        telemetry: Arc<Telemetry>,
        settings: WorkerSettings,
    ) -> Self {
        let wakers = settings.queues.iter().map(|(q, _)| (q.clone(), Arc::new(Notify::new()))).collect();
        let mut completer_task = None;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            // Weak: the completer stops only once every `Shared` is gone.
            let weak = weak.clone();
            let written: Written = Arc::new(move |attempts| {
                if let Some(shared) = weak.upgrade() {
                    shared.release(attempts);
                }
            });
            let (completer, task) = Completer::spawn(control.clone(), notifier.clone(), written);
            completer_task = Some(task);
            // Transactional jobs may hold at most half the pool, so claims and the handlers'
            // own queries always find a connection.
            let pool_size = usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX);
            Shared {
                tx_slots: Arc::new(tokio::sync::Semaphore::new((pool_size / 2).max(1))),
                open_windows: Arc::new(tokio::sync::Semaphore::new((pool_size / 2).max(1))),
                pool,
                control,
                kinds: registry.names(),
                registry,
                notifier,
                dispatcher,
                completer,
                telemetry,
                settings: settings.clone(),
                running: Mutex::default(),
                wakers,
                slots: Mutex::default(),
            }
        });
        let completer_task = completer_task.unwrap_or_else(|| tokio::spawn(async {}));
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
            // Jobs claimed ahead wait in the running table too, but hold no slot yet.
            let busy = shared.upgrade().map(|s| s.busy()).unwrap_or(0);
            (busy.min(total), total)
        })
    }

    /// Stops claiming, waits up to the shutdown timeout for running jobs, releases the rest to
    /// `available` (their attempt not counted), and writes every outcome. Attempts that do not
    /// stop within [`HARD_STOP`] of being released (a handler that never yields) are abandoned:
    /// their leases are no longer renewed, and the leader rescues them. When `force` fires
    /// (a second Ctrl-C) during the wait, the running jobs are released at once.
    pub(crate) async fn stop(self, force: Option<ForceStop>) {
        self.stop_claiming.cancel();
        let timeout = self.shared.settings.shutdown_timeout;
        let busy = self.shared.busy();
        if busy > 0 {
            let hint = if force.is_some() { "; press Ctrl-C again to release them now" } else { "" };
            tracing::info!("waiting up to {} for {}{hint}", human_duration(timeout), jobs_phrase(busy));
        }
        let mut producers = self.producers;
        let all_stopped = wait_for(&mut producers);
        let forced = async {
            match &force {
                Some(force) => force.forced().await,
                None => std::future::pending().await,
            }
        };
        let drained = tokio::select! {
            drained = tokio::time::timeout(timeout, all_stopped) => drained.map_err(|_| Stop::TimedOut),
            () = forced => Err(Stop::Forced),
        };
        let mut abandoned = false;
        if let Err(why) = drained {
            let n = self.shared.busy();
            match why {
                _ if n == 0 => {}
                Stop::Forced => tracing::info!("second signal: releasing {} to other nodes", jobs_phrase(n)),
                Stop::TimedOut => tracing::warn!(
                    "shutdown timeout ({}): releasing {} to other nodes",
                    human_duration(timeout),
                    jobs_phrase(n)
                ),
            }
            self.shared.stop_all(StopReason::Released);
            let stopped = tokio::time::timeout(HARD_STOP, wait_for(&mut producers)).await;
            if stopped.is_err() {
                let n = self.shared.running.lock().map(|r| r.len()).unwrap_or(0);
                tracing::error!(
                    jobs = n,
                    "attempts did not stop within {HARD_STOP:?} of being released: abandoning them to the leader's rescue"
                );
                for p in producers {
                    p.abort();
                }
                abandoned = true;
            }
        }
        for task in self.background {
            task.abort();
        }
        // Outcomes waiting out a database outage get the shutdown timeout; those still unwritten
        // then are left to the leader's rescue.
        let flushed = tokio::time::timeout(timeout, self.shared.completer.flush()).await.is_ok();
        if !flushed {
            tracing::error!(
                outcomes = self.shared.completer.backlog(),
                "job outcomes not written before shutdown: their jobs will be rescued"
            );
            abandoned = true;
        }
        if !abandoned && self.shared.settings.claim_window.is_some() {
            // Every window is written: this node's slots are empty, and no longer needed.
            let forgot = sqlx::query(crate::jobs::sql::SLOTS_FORGET)
                .bind(&self.shared.settings.node_id)
                .execute(&self.shared.control)
                .await;
            if let Err(e) = forgot {
                tracing::debug!(error = %e, "could not delete this node's claim-window slots (the leader prunes them)");
            }
        }
        drop(self.shared);
        // An abandoned attempt still holds the worker's state, so the completer (which ends with
        // it) is not waited for: everything sent so far was flushed above.
        if !abandoned {
            let _ = self.completer_task.await;
        }
    }
}

/// Fires when an operator asks a stopping node to stop *now* (a second Ctrl-C or SIGTERM).
#[derive(Clone, Debug, Default)]
pub struct ForceStop {
    token: CancellationToken,
}

impl ForceStop {
    /// A handle that has not fired; [`ForceStop::fire`] fires it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires it, as a second signal would.
    pub fn fire(&self) {
        self.token.cancel();
    }

    /// Completes once it has fired.
    pub async fn forced(&self) {
        self.token.cancelled().await;
    }
}

/// Waits for every producer still running. One whose handle a previous, interrupted wait
/// already saw finish is skipped: a `JoinHandle` must not be polled after it completed.
async fn wait_for(producers: &mut [JoinHandle<()>]) {
    for p in producers.iter_mut() {
        if !p.is_finished() {
            let _ = p.await;
        }
    }
}

/// Why a stopping worker releases its running jobs.
enum Stop {
    /// They outlived `[worker] shutdown_timeout`.
    TimedOut,
    /// A second signal asked for it.
    Forced,
}

/// `30 s`, `1.5 s`, `250 ms`: a duration as a person writes it.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `1 job`, `3 jobs`.
fn jobs_phrase(n: usize) -> String {
    if n == 1 { "1 job".to_owned() } else { format!("{n} jobs") }
}
