//! The worker: per queue, one producer claims as many jobs as it has free slots; each job runs
//! in its own task under a semaphore; outcomes go to the completer; one heartbeater renews the
//! leases of everything running on the node; one listener turns NOTIFYs into wake-ups and
//! cancellations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_core::jobs::{JobError, JobId, JobState};
use futures_util::FutureExt;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::completer::{Completer, Outcome};
use super::context::{Claimed, JobContext};
use super::dispatch::Notifier;
use super::job::JobRegistry;
use super::sql;
use crate::gateway::parse_traceparent;
use crate::observability::{
    DURATION_BUCKETS, JOB_SPAN, Metrics, SpanContext, Telemetry, attempt_span_id, in_task_context, job_trace_id,
};

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
enum StopReason {
    Cancelled,
    LeaseLost,
    Released,
}

#[derive(Debug)]
struct Running {
    attempt: i32,
    token: CancellationToken,
    reason: Option<StopReason>,
}

#[derive(Debug)]
struct Shared {
    pool: PgPool,
    registry: JobRegistry,
    notifier: Notifier,
    completer: Completer,
    telemetry: Arc<Telemetry>,
    settings: WorkerSettings,
    running: Mutex<HashMap<i64, Running>>,
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
        pool: PgPool,
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
                tokio::spawn(produce(shared.clone(), queue.clone(), *concurrency, stop_claiming.clone()))
            })
            .collect();
        let mut background = vec![tokio::spawn(heartbeat(shared.clone()))];
        if settings.listen {
            background.push(tokio::spawn(listen(shared.clone(), stop_claiming.clone())));
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

async fn produce(shared: Arc<Shared>, queue: String, concurrency: usize, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let waker = shared.wakers.get(&queue).cloned().unwrap_or_default();
    let poll = shared.settings.poll_interval;
    let mut busy = false;
    loop {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            () = stop.cancelled() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        if busy {
            // Work is waiting: give running jobs a moment to free more slots, so that one claim
            // serves many jobs instead of one round trip per freed slot.
            gather(&slots, &mut permits, concurrency, GATHER).await;
        }
        let wanted = permits.len();
        match claim(&shared, &queue, wanted).await {
            Ok(jobs) => {
                let full = jobs.len() == wanted;
                busy = full;
                for job in jobs {
                    let Some(permit) = permits.pop() else { break };
                    // For printed logs only: stored records take the attempt's task context.
                    let span = tracing::info_span!(JOB_SPAN, job_id = job.id, kind = %job.kind, attempt = job.attempt);
                    if shared.telemetry.is_attached() {
                        let context = job_context(&shared, &job);
                        let attempt = execute(shared.clone(), job, permit).instrument(span);
                        tokio::spawn(in_task_context(context, attempt));
                    } else {
                        tokio::spawn(execute(shared.clone(), job, permit).instrument(span));
                    }
                }
                drop(permits);
                if full {
                    // More work may be waiting: claim again as soon as a slot is free.
                    continue;
                }
            }
            Err(e) => {
                drop(permits);
                busy = false;
                tracing::warn!(error = %e, queue, "claim failed; retrying after the poll interval");
            }
        }
        tokio::select! {
            () = waker.notified() => {}
            () = tokio::time::sleep(poll) => {}
            () = stop.cancelled() => break,
        }
    }
    // Drain: every slot back means every job of this producer has finished.
    let _ = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX)).await;
}

/// How long a busy producer waits for more free slots before claiming.
const GATHER: Duration = Duration::from_millis(1);

/// Adds permits to `permits` as they free up, until there are `target` or `wait` has passed.
async fn gather(slots: &Arc<Semaphore>, permits: &mut Vec<OwnedSemaphorePermit>, target: usize, wait: Duration) {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    while permits.len() < target {
        tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => permits.push(p),
                Err(_) => return,
            },
            () = &mut deadline => return,
        }
    }
}

/// A claimed row.
#[derive(Debug)]
struct ClaimedJob {
    id: i64,
    kind: String,
    args: serde_json::Value,
    attempt: i32,
    max_attempts: i32,
    queue: String,
    run_at: DateTime<Utc>,
    metadata: serde_json::Value,
}

/// The attempt's context: it continues the trace of whatever dispatched the job (its
/// `traceparent`), or the job's own trace, derived from its id (see
/// [`crate::observability::trace_of_job`]).
fn job_context(shared: &Shared, job: &ClaimedJob) -> SpanContext {
    let parent = job.metadata.get("traceparent").and_then(|v| v.as_str()).and_then(parse_traceparent);
    let (trace_id, parent_span_id) = match parent {
        Some(p) => (p.trace_id, Some(p.parent_id)),
        None => (job_trace_id(job.id), None),
    };
    SpanContext {
        node: Some(shared.telemetry.clone()),
        trace_id: Some(trace_id),
        span_id: attempt_span_id(job.id, job.attempt),
        parent_span_id,
        job_id: Some(job.id),
        cron: job.metadata.get("cron").and_then(|v| v.as_str()).map(str::to_owned),
        function: None,
    }
}

async fn claim(shared: &Shared, queue: &str, n: usize) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let rows = sqlx::query(sql::CLAIM)
        .bind(queue)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(&shared.settings.capabilities)
        .bind(&shared.settings.node_id)
        .fetch_all(&shared.pool)
        .await?;
    let jobs = rows.iter().map(claimed_job).collect::<Result<Vec<_>, _>>()?;
    let now = Utc::now();
    for job in &jobs {
        let waited = (now - job.run_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
        shared.telemetry.metrics().observe(
            "forge_job_pickup_seconds",
            "Time from a job being due to a worker claiming it, by queue.",
            DURATION_BUCKETS,
            &[("queue", queue)],
            waited,
        );
    }
    if let Ok(mut running) = shared.running.lock() {
        for job in &jobs {
            running.insert(job.id, Running { attempt: job.attempt, token: CancellationToken::new(), reason: None });
        }
    }
    Ok(jobs)
}

fn claimed_job(row: &PgRow) -> Result<ClaimedJob, sqlx::Error> {
    Ok(ClaimedJob {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        args: row.try_get("args")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        queue: row.try_get("queue")?,
        run_at: row.try_get("run_at")?,
        metadata: row.try_get("metadata")?,
    })
}

/// How an attempt ended, before it becomes a row update.
enum Ended {
    Ok(serde_json::Value),
    Failed(JobError, &'static str),
    Stopped(StopReason),
    /// Completed and written inside the job's own transaction: nothing left to send.
    Written,
}

async fn execute(shared: Arc<Shared>, job: ClaimedJob, permit: OwnedSemaphorePermit) {
    let started = std::time::Instant::now();
    let started_at = Utc::now();
    let token = shared.running.lock().ok().and_then(|r| r.get(&job.id).map(|r| r.token.clone())).unwrap_or_default();
    let registered = shared.registry.get(&job.kind).cloned();
    let ended = match &registered {
        None => Ended::Failed(
            JobError::retry(format!("no handler for job kind {:?} on node {}", job.kind, shared.settings.node_id)),
            "error",
        ),
        Some(registered) => run_attempt(&shared, &job, registered, token).await,
    };
    let reason = shared.running.lock().ok().and_then(|mut r| r.remove(&job.id)).and_then(|r| r.reason);
    let ended = match (ended, reason) {
        (Ended::Written, _) => Ended::Written,
        // Another node owns the job now: this attempt's result would be fenced off anyway.
        (_, Some(StopReason::LeaseLost)) => Ended::Stopped(StopReason::LeaseLost),
        // A requested cancellation wins, even over a handler that returned when it saw it.
        (_, Some(StopReason::Cancelled)) => Ended::Stopped(StopReason::Cancelled),
        (Ended::Stopped(_), Some(reason)) => Ended::Stopped(reason),
        // Released at shutdown, but the handler finished first: its result stands.
        (ended, _) => ended,
    };
    if let Ended::Failed(e, _) = &ended
        && !matches!(e, JobError::Snooze(_))
    {
        tracing::warn!(error = %e.message(), "attempt failed");
    }
    // Completed inside the job's own transaction: no outcome left to send, but completed.
    let written = matches!(ended, Ended::Written);
    let outcome = outcome(&job, ended, registered.as_ref().map(|r| &r.options), started_at, &shared.settings.node_id);
    let state = outcome.as_ref().map(|o| o.state).or(written.then_some(JobState::Completed));
    let failed = outcome.as_ref().is_some_and(|o| o.error.is_some() && o.state != JobState::Cancelled);
    record_attempt(shared.telemetry.metrics(), &job, state, failed, started.elapsed());
    if let Some(outcome) = outcome {
        shared.completer.send(outcome);
    }
    drop(permit);
}

async fn run_attempt(
    shared: &Arc<Shared>,
    job: &ClaimedJob,
    registered: &super::job::RegisteredJob,
    token: CancellationToken,
) -> Ended {
    let tx = if registered.options.transactional {
        match shared.pool.begin().await {
            Ok(tx) => Some(tx),
            Err(e) => {
                return Ended::Failed(JobError::retry(format!("cannot open the job's transaction: {e}")), "error");
            }
        }
    } else {
        None
    };
    let ctx = JobContext::new(
        Claimed {
            id: JobId(job.id),
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            attempt: u32::try_from(job.attempt).unwrap_or(0),
            max_attempts: u32::try_from(job.max_attempts).unwrap_or(0),
            scheduled_at: job.run_at,
        },
        shared.settings.node_id.clone(),
        shared.pool.clone(),
        Some(shared.notifier.clone()),
        token.clone(),
        tx,
    );
    // The handler runs in this task; a panic is caught, and losing the race to the timeout or a
    // cancellation drops (and so aborts) it.
    let handler = std::panic::AssertUnwindSafe((registered.handler)(ctx.clone(), job.args.clone())).catch_unwind();
    let timeout = registered.options.timeout;
    let ended = tokio::select! {
        finished = handler => match finished {
            Ok(Ok(output)) => Ended::Ok(output),
            Ok(Err(e)) => Ended::Failed(e, "error"),
            Err(panic) => Ended::Failed(JobError::retry(format!("panicked: {}", panic_message(panic))), "panic"),
        },
        () = tokio::time::sleep(timeout) => {
            Ended::Failed(JobError::retry(format!("timed out after {timeout:?}")), "timeout")
        }
        () = token.cancelled() => Ended::Stopped(StopReason::Cancelled),
    };
    // A transactional job's work commits in the same transaction as its completion, fenced like
    // every other completion; on any other ending it rolls back (dropping it rolls back).
    if let Some(mut tx) = ctx.take_tx().await
        && let Ended::Ok(output) = &ended
    {
        let finished = sqlx::query(sql::FINISH)
            .bind(vec![job.id])
            .bind(vec![job.attempt])
            .bind(vec![JobState::Completed.as_str()])
            .bind(vec![Some(output.clone())])
            .bind(vec![None::<serde_json::Value>])
            .bind(vec![None::<DateTime<Utc>>])
            .bind(vec![0i32])
            .fetch_all(&mut *tx)
            .await;
        return match finished {
            Ok(rows) if rows.len() == 1 => match tx.commit().await {
                Ok(()) => Ended::Written,
                Err(e) => Ended::Failed(JobError::retry(format!("commit failed: {e}")), "error"),
            },
            Ok(_) => Ended::Stopped(StopReason::LeaseLost),
            Err(e) => Ended::Failed(JobError::retry(format!("cannot complete in the job's transaction: {e}")), "error"),
        };
    }
    ended
}

/// Counts the attempt by how it ended. (Its span is not recorded: the job's row holds it, see
/// [`crate::observability::trace`].)
fn record_attempt(metrics: &Metrics, job: &ClaimedJob, state: Option<JobState>, failed: bool, took: Duration) {
    let labels = [("kind", job.kind.as_str()), ("queue", job.queue.as_str())];
    metrics.observe(
        "forge_job_duration_seconds",
        "Time a job attempt ran, by kind and queue.",
        DURATION_BUCKETS,
        &labels,
        took.as_secs_f64(),
    );
    let Some(state) = state else { return };
    if failed {
        metrics.count("forge_jobs_failed_total", "Job attempts that failed, by kind and queue.", &labels, 1);
    }
    match state {
        JobState::Completed => {
            metrics.count("forge_jobs_completed_total", "Jobs completed, by kind and queue.", &labels, 1);
        }
        JobState::Discarded => {
            metrics.count("forge_jobs_discarded_total", "Jobs discarded, by kind and queue.", &labels, 1);
        }
        JobState::Cancelled => {
            metrics.count("forge_jobs_cancelled_total", "Jobs cancelled, by kind and queue.", &labels, 1);
        }
        _ => {}
    }
}

/// What the attempt's row update says. A failure's entry in `errors` also keeps when the attempt
/// started and where it ran: with it, the row is the attempt's span.
fn outcome(
    job: &ClaimedJob,
    ended: Ended,
    options: Option<&forge_core::jobs::JobOptions>,
    started_at: DateTime<Utc>,
    node_id: &str,
) -> Option<Outcome> {
    let now = Utc::now();
    let error = |message: String, kind: &str| {
        Some(serde_json::json!({
            "attempt": job.attempt,
            "at": now,
            "message": message,
            "kind": kind,
            "started_at": started_at,
            "node": node_id,
        }))
    };
    let base = |state: JobState| Outcome {
        id: JobId(job.id),
        attempt: job.attempt,
        state,
        output: None,
        error: None,
        run_at: None,
        uncount: false,
    };
    Some(match ended {
        Ended::Written => return None,
        Ended::Ok(output) => Outcome { output: Some(output), ..base(JobState::Completed) },
        Ended::Stopped(StopReason::LeaseLost) => return None,
        Ended::Stopped(StopReason::Cancelled) => {
            Outcome { error: error("cancelled".to_owned(), "cancel"), ..base(JobState::Cancelled) }
        }
        Ended::Stopped(StopReason::Released) => {
            Outcome { uncount: true, run_at: Some(now), ..base(JobState::Available) }
        }
        Ended::Failed(JobError::Snooze(delay), _) => Outcome {
            uncount: true,
            run_at: Some(now + chrono::Duration::from_std(delay).unwrap_or_default()),
            ..base(JobState::Scheduled)
        },
        Ended::Failed(JobError::Cancel(message), _) => {
            Outcome { error: error(message, "cancel"), ..base(JobState::Cancelled) }
        }
        Ended::Failed(JobError::Fatal(message), kind) => {
            Outcome { error: error(message, kind), ..base(JobState::Discarded) }
        }
        Ended::Failed(e, kind) => {
            if job.attempt >= job.max_attempts {
                Outcome { error: error(e.message(), kind), ..base(JobState::Discarded) }
            } else {
                let backoff = options.map(|o| o.backoff).unwrap_or_default();
                let delay = backoff.delay(u32::try_from(job.attempt).unwrap_or(1), random_unit());
                let run_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                Outcome { error: error(e.message(), kind), run_at: Some(run_at), ..base(JobState::Retryable) }
            }
        }
    })
}

/// Renews the leases of every job running on this node, every third of the lease; stops jobs
/// whose cancellation was requested or whose lease was lost.
/// It keeps renewing while the worker drains; [`Worker::stop`] ends it last.
async fn heartbeat(shared: Arc<Shared>) {
    let every = (shared.settings.lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<(i64, i32)> =
            shared.running.lock().map(|r| r.iter().map(|(id, r)| (*id, r.attempt)).collect()).unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        let list: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
        let rows = match sqlx::query(sql::HEARTBEAT)
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
        let mut held = HashMap::new();
        for row in rows {
            let id: i64 = row.try_get("id").unwrap_or_default();
            let attempt: i32 = row.try_get("attempt").unwrap_or_default();
            let cancel: bool = row.try_get("cancel_requested").unwrap_or_default();
            held.insert(id, (attempt, cancel));
        }
        for (id, attempt) in ids {
            match held.get(&id) {
                Some((a, true)) if *a == attempt => shared.stop(id, StopReason::Cancelled),
                Some((a, _)) if *a == attempt => {}
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

/// LISTENs for dispatches (waking the queue's producer) and cancellations.
async fn listen(shared: Arc<Shared>, stop: CancellationToken) {
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
                        shared.stop(id, StopReason::Cancelled);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "listener lost its connection; reconnecting");
                    // Notifications may have been missed meanwhile: wake every producer.
                    for waker in shared.wakers.values() {
                        waker.notify_one();
                    }
                    break;
                }
            }
        }
    }
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic".to_owned()
    }
}

/// A number in 0.0..1.0 for backoff jitter.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
