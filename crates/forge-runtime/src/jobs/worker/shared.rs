//! What the worker's parts share: its settings, the table of running attempts, and the claimed
//! row an attempt starts from.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use forge_core::jobs::JobId;

use crate::jobs::BatchedDispatcher;
use crate::jobs::completer::{Completer, Outcome};
use crate::jobs::context::Hold;
use crate::jobs::job::JobRegistry;
use crate::jobs::notifier::Notifier;
use crate::observability::{DURATION_BUCKETS, Telemetry};

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
    /// How long a claim window stays open; none claims the classic way (see `window.rs`).
    pub(crate) claim_window: Option<Duration>,
    /// What the node hands its jobs ([`JobContext::extension`](crate::jobs::JobContext::extension)).
    pub(crate) extensions: crate::jobs::Extensions,
}

/// Why a running attempt was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancelled,
    LeaseLost,
    Released,
}

/// Every attempt of job `id`, as a range of the running table's keys.
pub(super) fn attempts_of(id: i64) -> std::ops::RangeInclusive<AttemptKey> {
    (id, i32::MIN)..=(id, i32::MAX)
}

/// One attempt of one job: `(id, attempt)`. The running table is keyed by it, so a stale
/// attempt of a job can never touch the entry of a newer one.
pub(super) type AttemptKey = (i64, i32);

/// An attempt running on this node.
#[derive(Debug)]
pub(super) struct Running {
    pub(super) token: CancellationToken,
    pub(super) reason: Option<StopReason>,
    /// When its lease was last known renewed (claimed, or a renewal sent that then held).
    pub(super) renewed: Instant,
    /// Past this, an attempt still here has ignored its timeout (a handler that never yields):
    /// its lease is no longer renewed.
    pub(super) abandon_at: Instant,
    /// Whether it was abandoned.
    pub(super) abandoned: bool,
    /// Whether it has ended and its outcome waits for the completer (its lease is still renewed).
    pub(super) finished: bool,
    /// While its claim window is open: where its outcome goes (the window writes it), and why
    /// its lease is not renewed (the window's row lock holds the job).
    pub(super) window: Option<mpsc::UnboundedSender<Outcome>>,
    /// The window's hold, handed to the attempt's context.
    pub(super) hold: Option<Hold>,
}

/// The timeout of a kind this node cannot run (its attempt fails at once anyway).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long past its timeout an attempt may still be running before it is abandoned.
const ABANDON_AFTER: Duration = Duration::from_secs(1);

/// What the worker's parts share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) pool: sqlx::PgPool,
    /// The control plane's pool: lease renewals (and the completer) use it.
    pub(super) control: sqlx::PgPool,
    /// Transactions transactional jobs may hold at once (half the pool).
    pub(super) tx_slots: Arc<tokio::sync::Semaphore>,
    /// Claim windows the node's producers may keep open at once (each holds a connection of the
    /// pool while open: half the pool). Past them, a producer claims the classic way.
    pub(super) open_windows: Arc<tokio::sync::Semaphore>,
    pub(super) registry: JobRegistry,
    /// The kinds in the registry: the only ones this node claims.
    pub(super) kinds: Vec<&'static str>,
    pub(super) notifier: Notifier,
    /// How the node's jobs dispatch theirs.
    pub(super) dispatcher: BatchedDispatcher,
    pub(super) completer: Completer,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) settings: WorkerSettings,
    /// The attempts running on this node, in order of job and attempt (a job's attempts are a
    /// range: see [`attempts_of`]).
    pub(super) running: Mutex<BTreeMap<AttemptKey, Running>>,
    /// One per queue: wakes its producer.
    pub(super) wakers: HashMap<String, Arc<Notify>>,
    /// The claim-window slots of this node (rows of `forge_claim_slots`) not in use.
    pub(super) slots: Mutex<Slots>,
}

/// The numbers of a node's claim-window slots: those free, and the next never used.
#[derive(Debug, Default)]
pub(super) struct Slots {
    free: Vec<i32>,
    next: i32,
}

impl Slots {
    /// A slot no open window uses.
    pub(super) fn take(&mut self) -> i32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next
        })
    }

    /// Gives a slot back once its window is written (or given up).
    pub(super) fn give_back(&mut self, slot: i32) {
        self.free.push(slot);
    }
}

impl Shared {
    /// Records a claim: its metrics, and each attempt in the running table (held by a claim
    /// window when `window` says where its outcome goes). `sent` is when the claim was sent: the
    /// leases count from then.
    pub(super) fn register(
        &self,
        queue: &str,
        jobs: &[ClaimedJob],
        sent: Instant,
        window: Option<(&mpsc::UnboundedSender<Outcome>, &Hold)>,
    ) {
        let metrics = self.telemetry.metrics();
        let now = Utc::now();
        metrics.observe_each(
            "forge_job_pickup_seconds",
            "Time from a job being due to a worker claiming it, by queue.",
            DURATION_BUCKETS,
            &[("queue", queue)],
            jobs.iter().map(|job| (now - job.run_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6),
        );
        if let Ok(mut running) = self.running.lock() {
            for job in jobs {
                // Never two attempts of one job at once: an older one still here is stopped first.
                for (_, stale) in
                    running.range_mut(attempts_of(job.id)).filter(|((_, attempt), _)| *attempt != job.attempt)
                {
                    stale.reason.get_or_insert(StopReason::LeaseLost);
                    stale.token.cancel();
                }
                let timeout = self.registry.options(&job.kind).map_or(DEFAULT_TIMEOUT, |o| o.timeout);
                let entry = Running {
                    window: window.map(|(w, _)| w.clone()),
                    hold: window.map(|(_, h)| h.clone()),
                    token: CancellationToken::new(),
                    reason: None,
                    renewed: sent,
                    abandon_at: sent
                        .checked_add(timeout.saturating_add(ABANDON_AFTER))
                        .unwrap_or(sent + Duration::from_secs(365 * 86_400)),
                    abandoned: false,
                    finished: false,
                };
                running.insert((job.id, job.attempt), entry);
            }
        }
    }

    /// Counts a claim statement, whatever it found.
    pub(super) fn count_claim(&self, queue: &str) {
        let metrics = self.telemetry.metrics();
        metrics.count("forge_worker_claims_total", "Claim statements run, by queue.", &[("queue", queue)], 1);
    }

    /// Stops one attempt.
    pub(super) fn stop(&self, key: AttemptKey, reason: StopReason) {
        if let Ok(mut running) = self.running.lock()
            && let Some(r) = running.get_mut(&key)
        {
            r.reason.get_or_insert(reason);
            r.token.cancel();
        }
    }

    /// Stops every attempt of job `id` running here (a cancellation names the job only).
    pub(super) fn stop_job(&self, id: i64, reason: StopReason) {
        if let Ok(mut running) = self.running.lock() {
            for (_, r) in running.range_mut(attempts_of(id)) {
                r.reason.get_or_insert(reason);
                r.token.cancel();
            }
        }
    }

    /// Sends an attempt's outcome to be written: to its claim window while that is open, else to
    /// the completer. Decided under the running table's lock, which the window takes to close.
    pub(super) fn send_outcome(&self, key: AttemptKey, outcome: Outcome) {
        let outcome = match self.running.lock() {
            Ok(running) => match running.get(&key).and_then(|r| r.window.as_ref()) {
                Some(window) => match window.send(outcome) {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(outcome)) => outcome,
                },
                None => outcome,
            },
            Err(_) => outcome,
        };
        self.completer.send(outcome);
    }

    /// Forgets the attempts whose outcomes the completer has written.
    pub(super) fn release(&self, attempts: &[(JobId, i32)]) {
        if let Ok(mut running) = self.running.lock() {
            for (id, attempt) in attempts {
                running.remove(&(id.0, *attempt));
            }
        }
    }

    /// The attempts still running (not those whose outcomes wait for the completer).
    pub(super) fn busy(&self) -> usize {
        self.running.lock().map(|r| r.values().filter(|r| !r.finished).count()).unwrap_or(0)
    }

    /// The jobs with an attempt running here: a claim must not take them again while one runs.
    /// (An attempt that has ended and waits for its outcome to be written runs nothing: should
    /// its job be claimed again, that outcome is fenced off. Not so one a claim window still
    /// holds: its job is `available` until the outcome is written, and would run again.)
    pub(super) fn running_ids(&self) -> Vec<i64> {
        self.running
            .lock()
            .map(|r| r.iter().filter(|(_, r)| !r.finished || r.window.is_some()).map(|((id, _), _)| *id).collect())
            .unwrap_or_default()
    }

    pub(super) fn stop_all(&self, reason: StopReason) {
        if let Ok(mut running) = self.running.lock() {
            for r in running.values_mut() {
                r.reason.get_or_insert(reason);
                r.token.cancel();
            }
        }
    }
}

/// What a claimed job holds until its attempt ends (see the producer: claiming ahead).
pub(super) enum Slot {
    /// One of the queue's `concurrency` slots: it runs at once.
    Run(tokio::sync::OwnedSemaphorePermit),
    /// A place in line (claimed ahead): it runs once one of `slots` frees up.
    Ahead { place: tokio::sync::OwnedSemaphorePermit, slots: Arc<tokio::sync::Semaphore> },
}

/// Where a claimed row sits in the claim order (`priority, run_at, id`, the claim index's).
pub(super) type ClaimKey = (i16, DateTime<Utc>, i64);

/// A claimed row: what an attempt starts from.
#[derive(Debug)]
pub(crate) struct ClaimedJob {
    pub(crate) id: i64,
    pub(crate) priority: i16,
    pub(crate) kind: String,
    pub(crate) args: serde_json::Value,
    pub(crate) attempt: i32,
    pub(crate) max_attempts: i32,
    pub(crate) queue: String,
    pub(crate) run_at: DateTime<Utc>,
    pub(crate) metadata: serde_json::Value,
    /// Where a claim window's row is stored (its `ctid`, as text), for [`crate::jobs::sql::SETTLE`];
    /// none from a classic claim, which writes the row at once.
    pub(crate) tid: Option<String>,
}

/// The columns a claim ([`crate::jobs::sql::CLAIM`], [`crate::jobs::sql::CLAIM_HELD`]) returns,
/// in this order (`tid` from the second only); a test holds both statements to it.
pub(crate) const CLAIMED_COLUMNS: [&str; 10] =
    ["id", "priority", "kind", "args", "attempt", "max_attempts", "queue", "run_at", "metadata", "tid"];

/// Read by position: looking each column up by name cost a hash of its name per column per job,
/// more than decoding most of them.
impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for ClaimedJob {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::{Column, Row};
        // Every claim in a debug build (the test suite) checks the names as well.
        debug_assert!(
            row.columns().iter().zip(CLAIMED_COLUMNS).all(|(column, name)| column.name() == name),
            "a claim's columns are not in the order ClaimedJob reads them"
        );
        Ok(Self {
            id: row.try_get(0)?,
            priority: row.try_get(1)?,
            kind: row.try_get(2)?,
            args: row.try_get(3)?,
            attempt: row.try_get(4)?,
            max_attempts: row.try_get(5)?,
            queue: row.try_get(6)?,
            run_at: row.try_get(7)?,
            metadata: row.try_get(8)?,
            tid: if row.len() > 9 { row.try_get(9)? } else { None },
        })
    }
}

impl ClaimedJob {
    /// Where the row sits in the claim order.
    pub(super) fn claim_key(&self) -> ClaimKey {
        (self.priority, self.run_at, self.id)
    }
}
