//! Claim windows: one write per short job.
//!
//! The classic claim writes each job `running` (a new row version, new index entries) and its
//! outcome writes it again. A claim window claims inside a transaction instead: the jobs are
//! locked (`FOR NO KEY UPDATE SKIP LOCKED`), not written, and their attempts start at once. The
//! window ends when every attempt has ended, when `[worker] claim_window` has passed, when an
//! attempt needs its row written (progress, a lease renewal, a transactional job's own
//! transaction, a workflow's records: [`Hold`]) or when the worker stops. Then one statement
//! ([`sql::SETTLE`]) writes each job once: with its outcome if its attempt ended, else `running`
//! with its lease, as the classic claim would; and the transaction commits.
//!
//! Until then the row lock is the lease: no other node can claim the jobs (they skip locked
//! rows). A node that dies loses its connection, so the transaction rolls back; a node that
//! stops answering (paused, cut off) holds the locks no longer than `[worker] lease`, the
//! transaction's `idle_in_transaction_session_timeout`, after which Postgres ends the session,
//! and its attempts are fenced as with a lost lease. Either way the window's slot (below) still
//! names its jobs, so they wait for the leader's sweep as a classic claim's would for its lease
//! to expire. A window that cannot be written (its commit failed) is written again the classic
//! way at once, fenced by state and attempt; if that fails too, its still-running attempts stop
//! and the outcomes it held are written when the database answers, unless the sweep recorded
//! their attempts lost meanwhile (then they run again: at least once). A window with no outcome
//! to write has its slot emptied by its node once its attempts have stopped, and its jobs are
//! claimed again without waiting for the sweep.
//!
//! A rollback would also undo the attempts' count, so a job that kills its node inside a window
//! would never run out of attempts. Before they start, a window's attempts are recorded in a row
//! of `forge_claim_slots` (the node's window slot, written in a statement of its own, updated in
//! place), which [`sql::SETTLE`] empties in the window's transaction. Claims skip the jobs a slot
//! names; a slot still full a lease after its window opened, its jobs unlocked, belonged to a
//! window that died, and the leader's lease sweep writes its attempts as lost (see
//! `maintenance::recover_windows`): retried, or discarded once out of attempts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use forge_core::jobs::{JobId, JobState};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::shared::{AttemptKey, ClaimKey, ClaimedJob, Shared, Slot, StopReason};
use crate::jobs::completer::Outcome;
use crate::jobs::context::Hold;
use crate::jobs::sql;

/// How a window starts one attempt, holding one of its producer's slots until it ends.
pub(super) type Start = fn(&Arc<Shared>, ClaimedJob, Slot);

/// How a producer opens a window.
pub(super) struct Opening {
    /// How long it stays open.
    pub(super) open_for: Duration,
    /// One of the node's open windows, held until it is written.
    pub(super) window: OwnedSemaphorePermit,
    /// Starts each attempt.
    pub(super) start: Start,
    /// Set when the window is written: whether every attempt ended inside it.
    pub(super) short: Arc<AtomicBool>,
    /// Its transaction, if [`prepare`] began it already.
    pub(super) tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

/// A window's transaction being begun ahead of its claim, and the open window it will be.
pub(super) struct Prepared {
    tx: JoinHandle<Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>>,
    window: OwnedSemaphorePermit,
}

impl Prepared {
    /// The transaction and open window, or none if the transaction could not begin (the claim
    /// then begins one itself).
    pub(super) async fn ready(self) -> Option<(sqlx::Transaction<'static, sqlx::Postgres>, OwnedSemaphorePermit)> {
        match self.tx.await {
            Ok(Ok(tx)) => Some((tx, self.window)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not begin a claim window ahead of its claim");
                None
            }
            Err(_) => None,
        }
    }
}

/// Begins the next window's transaction while the producer waits for slots, so that its claim
/// is one round trip, not two; none if the node's windows are all open. Used only while jobs
/// are short, so the transaction is not left idle for long (and never beyond a lease: see
/// [`begin`]).
pub(super) fn prepare(shared: &Arc<Shared>) -> Option<Prepared> {
    let window = shared.open_windows.clone().try_acquire_owned().ok()?;
    let shared = shared.clone();
    Some(Prepared { tx: tokio::spawn(async move { begin(&shared).await }), window })
}

/// Begins a window's transaction. A session idle inside it for a whole lease (its node paused
/// or cut off) is ended by Postgres, and its locks with it.
async fn begin(shared: &Shared) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let lease_ms = shared.settings.lease.as_millis().max(1);
    shared.pool.begin_with(format!("begin; set local idle_in_transaction_session_timeout = {lease_ms}")).await
}

/// What [`open`] did: how many jobs it claimed, where the last sits in the claim order, and the
/// window's task.
pub(super) type Opened = (usize, Option<ClaimKey>, Option<JoinHandle<()>>);

/// Opens a claim window of up to `permits.len()` jobs of `queue` (past `after` in the claim
/// order, if given), as `how` says. Returns how many jobs it claimed (it takes as many of
/// `permits`, from the end), the last one's place in the claim order, and the window's task,
/// which records the attempts in the window's slot, starts them and ends once the window is
/// written. The producer claims again meanwhile.
pub(super) async fn open(
    shared: &Arc<Shared>,
    queue: &str,
    permits: &mut Vec<Slot>,
    (how, after): (Opening, Option<ClaimKey>),
    stop: &CancellationToken,
) -> Result<Opened, sqlx::Error> {
    let Opening { open_for, window, start, short, tx } = how;
    let busy = shared.running_ids();
    let sent = Instant::now();
    let mut tx = match tx {
        Some(tx) => tx,
        None => begin(shared).await?,
    };
    let statement = if after.is_some() { sql::CLAIM_HELD_AFTER.as_str() } else { sql::CLAIM_HELD };
    let mut claim = sqlx::query_as(statement)
        .bind(queue)
        .bind(i64::try_from(permits.len()).unwrap_or(i64::MAX))
        .bind(&shared.settings.capabilities)
        .bind(&busy)
        .bind(&shared.kinds);
    if let Some((priority, run_at, id)) = after {
        claim = claim.bind(priority).bind(run_at).bind(id);
    }
    let jobs: Vec<ClaimedJob> = claim.fetch_all(&mut *tx).await?;
    shared.count_claim(queue);
    let Some(last) = jobs.iter().map(ClaimedJob::claim_key).max() else {
        tx.commit().await?;
        return Ok((0, None, None));
    };
    let claimed = jobs.len();
    let held: Vec<Slot> = permits.drain(permits.len().saturating_sub(claimed)..).collect();
    let (shared, queue, stop) = (shared.clone(), queue.to_owned(), stop.clone());
    let task = tokio::spawn(async move {
        match record(&shared, &jobs).await {
            Ok(slot) => {
                let deadline = tokio::time::Instant::now() + open_for;
                let window = Window::start(shared, slot, &queue, jobs, held, start, sent, short);
                window.run(tx, deadline, stop).await;
            }
            Err((slot, e)) => {
                // Nothing started: the rollback (dropping `tx`) gives the jobs back as they were.
                // The slot may name them all the same (the statement committed, its answer was
                // lost): emptied before it is used again.
                tracing::warn!(error = %e, queue, "could not record a claim window's attempts; its jobs are given back");
                drop(tx);
                if empty_slot(&shared, slot, &stop).await {
                    shared.slots.lock().unwrap_or_else(PoisonError::into_inner).give_back(slot);
                }
            }
        }
        drop(window);
    });
    Ok((claimed, Some(last), Some(task)))
}

/// Records the attempts of `jobs` in a free slot of the node, where the window's rollback
/// cannot undo them, before they start (on a control connection: the window holds one of the
/// worker pool's). Returns the slot; or, if the statement failed, the slot it was writing (not
/// free again: the statement may have committed).
async fn record(shared: &Shared, jobs: &[ClaimedJob]) -> Result<i32, (i32, sqlx::Error)> {
    let slot = shared.slots.lock().unwrap_or_else(PoisonError::into_inner).take();
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.attempt).collect();
    let recorded = sqlx::query(sql::SLOT_OPEN)
        .bind(&shared.settings.node_id)
        .bind(slot)
        .bind(&ids)
        .bind(&attempts)
        .execute(&shared.control)
        .await;
    recorded.map(|_| slot).map_err(|error| (slot, error))
}

/// Empties the node's window `slot` (see [`sql::SLOT_EMPTY`]), trying again until the database
/// answers; gives up when the worker stops, leaving the slot to the leader's sweep. Returns
/// whether it was emptied (and so may be used again).
async fn empty_slot(shared: &Shared, slot: i32, stop: &CancellationToken) -> bool {
    let mut pause = Duration::from_millis(100);
    loop {
        let emptied =
            sqlx::query(sql::SLOT_EMPTY).bind(&shared.settings.node_id).bind(slot).execute(&shared.control).await;
        if emptied.is_ok() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return false,
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// An open window: its attempts, and where their outcomes arrive.
struct Window {
    shared: Arc<Shared>,
    /// Its row of `forge_claim_slots`, naming its attempts until it is written.
    slot: i32,
    keys: Vec<AttemptKey>,
    /// Where each of `keys`' jobs is stored (see [`ClaimedJob::tid`]).
    tids: Vec<String>,
    ask: Arc<Notify>,
    settled: watch::Sender<Option<bool>>,
    received: mpsc::UnboundedReceiver<Outcome>,
    /// Set when it is written: whether every attempt ended inside it.
    short: Arc<AtomicBool>,
}

/// One job's write at the window's end.
struct Settle {
    key: AttemptKey,
    /// Where its row is stored.
    tid: String,
    outcome: Option<Outcome>,
}

impl Window {
    /// Registers the attempts of `jobs` (held by this window, recorded in `slot`) in the running
    /// table and starts each with one of `permits`. `sent` is when the claim was sent.
    #[allow(clippy::too_many_arguments, reason = "the parts of one claim, each used once, here only")]
    fn start(
        shared: Arc<Shared>,
        slot: i32,
        queue: &str,
        mut jobs: Vec<ClaimedJob>,
        permits: Vec<Slot>,
        start: Start,
        sent: Instant,
        short: Arc<AtomicBool>,
    ) -> Self {
        let (outcomes, received) = mpsc::unbounded_channel();
        let ask = Arc::new(Notify::new());
        let (settled, settled_rx) = watch::channel(None);
        let hold = Hold { ask: ask.clone(), settled: settled_rx };
        shared.register(queue, &jobs, sent, Some((&outcomes, &hold)));
        drop(outcomes);
        let keys = jobs.iter().map(|j| (j.id, j.attempt)).collect();
        let tids = jobs.iter_mut().map(|j| j.tid.take().unwrap_or_default()).collect();
        for (job, permit) in jobs.into_iter().zip(permits) {
            start(&shared, job, permit);
        }
        Self { shared, slot, keys, tids, ask, settled, received, short }
    }

    async fn run(
        mut self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        deadline: tokio::time::Instant,
        stop: CancellationToken,
    ) {
        let mut ended: HashMap<AttemptKey, Outcome> = HashMap::new();
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        while ended.len() < self.keys.len() {
            tokio::select! {
                biased;
                outcome = self.received.recv() => match outcome {
                    Some(o) => { ended.insert((o.id.0, o.attempt), o); }
                    None => break,
                },
                () = &mut timer => break,
                () = self.ask.notified() => break,
                () = stop.cancelled() => break,
            }
        }
        while let Ok(o) = self.received.try_recv() {
            ended.insert((o.id.0, o.attempt), o);
        }
        self.short.store(ended.len() == self.keys.len(), Ordering::Relaxed);
        // An attempt gone from the running table without an outcome (stopped, its lease lost)
        // writes nothing: its job stays available, and the commit unlocks it.
        let present: HashSet<AttemptKey> = match self.shared.running.lock() {
            Ok(running) => self.keys.iter().filter(|k| running.contains_key(k)).copied().collect(),
            Err(_) => HashSet::new(),
        };
        let writes: Vec<Settle> = self
            .keys
            .iter()
            .zip(&self.tids)
            .filter_map(|(key, tid)| match ended.remove(key) {
                // Released (at shutdown): not counted, so nothing to write; the job stays
                // `available` and the commit unlocks it.
                Some(outcome) if outcome.state == JobState::Available => None,
                Some(outcome) => Some(Settle { key: *key, tid: tid.clone(), outcome: Some(outcome) }),
                None if present.contains(key) => Some(Settle { key: *key, tid: tid.clone(), outcome: None }),
                None => None,
            })
            .collect();
        let sent = Instant::now();
        let written = match settle(&mut *tx, &self.shared, self.slot, &writes).await {
            Ok(rows) => tx.commit().await.map(|()| rows),
            Err(e) => Err(e),
        };
        let shared = self.shared.clone();
        let slot = self.slot;
        let emptied = match written {
            Ok(rows) => {
                self.written(writes, &rows, sent);
                true
            }
            Err(e) if crate::db::refused_data(&e) => {
                tracing::warn!(error = %e, jobs = writes.len(), "the database refused a claim window's outcomes; writing its jobs running and their outcomes one batch at a time");
                self.write_claimed(writes, stop).await
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = writes.len(), "a claim window could not be written; writing its jobs the classic way");
                self.fall_back(writes, stop).await
            }
        };
        // A slot still naming its jobs (a window given up at shutdown, or whose attempts did not
        // stop) is left for the leader's sweep, and never used again by this node.
        if emptied {
            shared.slots.lock().unwrap_or_else(PoisonError::into_inner).give_back(slot);
        }
    }

    /// The window is written: its ended attempts are done, the others run on under a lease
    /// renewed from `sent`, and outcomes that arrived meanwhile go to the completer.
    fn written(mut self, writes: Vec<Settle>, rows: &[(JobId, JobState, String)], sent: Instant) {
        let wrote: HashSet<i64> = rows.iter().map(|(id, _, _)| id.0).collect();
        let mut again: Vec<String> = Vec::new();
        for (_, state, queue) in rows {
            if *state == JobState::Available && !again.contains(queue) {
                again.push(queue.clone());
            }
        }
        if let Ok(mut running) = self.shared.running.lock() {
            for write in &writes {
                let Some(entry) = running.get_mut(&write.key) else { continue };
                entry.window = None;
                if write.outcome.is_some() || !wrote.contains(&write.key.0) {
                    running.remove(&write.key);
                } else {
                    entry.renewed = sent;
                }
            }
            // Attempts that wrote nothing (gone from the table, or released) are not in `writes`.
            for key in &self.keys {
                if running.get(key).is_some_and(|entry| entry.finished && entry.window.is_some()) {
                    running.remove(key);
                } else if let Some(entry) = running.get_mut(key) {
                    entry.window = None;
                }
            }
        }
        let _ = self.settled.send(Some(true));
        while let Ok(outcome) = self.received.try_recv() {
            self.shared.completer.send(outcome);
        }
        for queue in again {
            self.shared.notifier.notify(&queue);
        }
    }

    /// The database refused the window's statement for its data (an outcome it cannot store):
    /// writes its jobs `running` as a classic claim would and hands their outcomes to the
    /// completer, which writes each batch it can and an outcome it cannot with a note. Returns
    /// whether the window's slot was emptied (see [`Window::fall_back`]).
    async fn write_claimed(self, mut writes: Vec<Settle>, stop: CancellationToken) -> bool {
        let sent = Instant::now();
        let outcomes: Vec<Option<Outcome>> = writes.iter_mut().map(|w| w.outcome.take()).collect();
        match settle_once_more(&self.shared, self.slot, &writes).await {
            Ok(rows) => {
                let shared = self.shared.clone();
                self.written(writes, &rows, sent);
                for outcome in outcomes.into_iter().flatten() {
                    shared.completer.send(outcome);
                }
                true
            }
            Err(_) => {
                for (write, outcome) in writes.iter_mut().zip(outcomes) {
                    write.outcome = outcome;
                }
                self.fall_back(writes, stop).await
            }
        }
    }

    /// The window's transaction failed (and rolled back: its jobs are `available` again, as
    /// they were). Writes them at once the classic way, fenced ([`sql::SETTLE`] changes a job
    /// only if it is still `available` at the attempt before this one). If that fails too, its
    /// still-running attempts stop (nothing holds their jobs any more; another node may claim
    /// them) and the outcomes it held are written again and again until the database answers or
    /// the worker stops; a job claimed elsewhere meanwhile runs again (at least once).
    ///
    /// Writing them empties the window's slot. With nothing to write (every attempt stopped),
    /// the node empties the slot itself once the attempts have stopped, when the database
    /// answers: their jobs go back to the queue as the rollback left them (the stopped attempts
    /// not counted), without waiting for the leader's sweep, which a database restarting more
    /// often than its grace would hold off for as long as the restarts go on. Returns whether
    /// the slot was emptied; if not (the worker stopped, or an attempt would not stop within a
    /// lease) the sweep records its attempts as lost.
    async fn fall_back(mut self, writes: Vec<Settle>, stop: CancellationToken) -> bool {
        let sent = Instant::now();
        if let Ok(rows) = settle_once_more(&self.shared, self.slot, &writes).await {
            self.written(writes, &rows, sent);
            return true;
        }
        let mut pending: Vec<Settle> = writes.into_iter().filter(|w| w.outcome.is_some()).collect();
        if let Ok(mut running) = self.shared.running.lock() {
            for key in &self.keys {
                let Some(entry) = running.get_mut(key) else { continue };
                if pending.iter().any(|w| w.key == *key) {
                    // Its outcome waits here; the window's mark keeps its lease from being renewed.
                    continue;
                }
                if entry.finished {
                    // Released: nothing to write.
                    running.remove(key);
                    continue;
                }
                entry.window = None;
                entry.reason.get_or_insert(StopReason::LeaseLost);
                entry.token.cancel();
            }
        }
        let _ = self.settled.send(Some(false));
        tracing::warn!(
            jobs = self.keys.len(),
            outcomes = pending.len(),
            "a claim window could not be written: its running attempts stop, its outcomes are written when the database answers"
        );
        let mut pause = Duration::from_millis(100);
        let emptied = loop {
            while let Ok(outcome) = self.received.try_recv() {
                if outcome.state != JobState::Available {
                    let key = (outcome.id.0, outcome.attempt);
                    let Some(tid) = self.tid_of(key) else { continue };
                    pending.push(Settle { key, tid, outcome: Some(outcome) });
                }
            }
            if pending.is_empty() {
                break false;
            }
            if settle_once_more(&self.shared, self.slot, &pending).await.is_ok() {
                break true;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => break false,
            }
            pause = (pause * 2).min(Duration::from_secs(1));
        };
        if let Ok(mut running) = self.shared.running.lock() {
            for key in &self.keys {
                if running.get(key).is_some_and(|entry| entry.window.is_some()) {
                    running.remove(key);
                }
            }
        }
        if emptied || stop.is_cancelled() {
            return emptied;
        }
        self.stopped(&stop).await && empty_slot(&self.shared, self.slot, &stop).await
    }

    /// Where the job of one of the window's attempts is stored.
    fn tid_of(&self, key: AttemptKey) -> Option<String> {
        self.keys.iter().position(|k| *k == key).map(|i| self.tids[i].clone())
    }

    /// Waits, up to a lease, until none of the window's attempts runs (their handlers dropped);
    /// returns whether none does.
    async fn stopped(&self, stop: &CancellationToken) -> bool {
        let deadline = Instant::now() + self.shared.settings.lease;
        loop {
            let running = match self.shared.running.lock() {
                Ok(running) => self.keys.iter().any(|key| running.get(key).is_some_and(|entry| !entry.finished)),
                Err(_) => false,
            };
            if !running {
                return true;
            }
            if Instant::now() >= deadline || stop.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs [`sql::SETTLE`] for `writes` on a control connection after a window failed, closing
/// the connection if it broke: a pooled connection cut with the window's is reused without a
/// ping for a while (see `db::pool::PING_AFTER_IDLE`), and would fail each retry.
async fn settle_once_more(
    shared: &Shared,
    slot: i32,
    writes: &[Settle],
) -> Result<Vec<(JobId, JobState, String)>, sqlx::Error> {
    let mut conn = shared.control.acquire().await?;
    let rows = settle(&mut *conn, shared, slot, writes).await;
    if matches!(rows, Err(sqlx::Error::Io(_) | sqlx::Error::Protocol(_))) {
        let _ = conn.close().await;
    }
    rows
}

/// Runs [`sql::SETTLE`] for `writes`: each job with its outcome, or `running` under a lease;
/// and empties the window's `slot`.
async fn settle<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    shared: &Shared,
    slot: i32,
    writes: &[Settle],
) -> Result<Vec<(JobId, JobState, String)>, sqlx::Error> {
    let ids: Vec<i64> = writes.iter().map(|w| w.key.0).collect();
    let tids: Vec<&str> = writes.iter().map(|w| w.tid.as_str()).collect();
    let states: Vec<JobState> =
        writes.iter().map(|w| w.outcome.as_ref().map_or(JobState::Running, |o| o.state)).collect();
    let outputs: Vec<Option<&serde_json::Value>> =
        writes.iter().map(|w| w.outcome.as_ref().and_then(|o| o.output.as_ref())).collect();
    let errors: Vec<Option<serde_json::Value>> = writes
        .iter()
        .map(|w| w.outcome.as_ref().and_then(|o| o.error.as_ref()).map(serde_json::to_value).transpose())
        .collect::<Result<_, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let run_ats: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        writes.iter().map(|w| w.outcome.as_ref().and_then(|o| o.run_at)).collect();
    let uncount: Vec<i32> = writes.iter().map(|w| i32::from(w.outcome.as_ref().is_some_and(|o| o.uncount))).collect();
    sqlx::query_as(sql::SETTLE)
        .bind(&ids)
        .bind(&states)
        .bind(&outputs)
        .bind(&errors)
        .bind(&run_ats)
        .bind(&uncount)
        .bind(&shared.settings.node_id)
        .bind(shared.settings.lease.as_secs_f64())
        .bind(writes.iter().map(|w| w.key.1).collect::<Vec<i32>>())
        .bind(slot)
        .bind(&tids)
        .fetch_all(executor)
        .await
}
