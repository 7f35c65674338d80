//! The producer of one queue: claims as many jobs as it has free slots, starts each in a task
//! of its own, and waits for a wake-up (or the poll interval) only when a claim comes back empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::shared::{ClaimedJob, Shared};
use super::{executor, window};
use crate::jobs::completer::MAX_BACKLOG;
use crate::jobs::sql;
use crate::observability::{JOB_SPAN, in_task_context};

/// How long a busy producer waits for more free slots before claiming.
const GATHER: Duration = Duration::from_millis(1);

pub(super) async fn produce(shared: Arc<Shared>, queue: String, concurrency: usize, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let waker = shared.wakers.get(&queue).cloned().unwrap_or_default();
    let poll = shared.settings.poll_interval;
    let mut busy = false;
    let mut windows: Vec<JoinHandle<()>> = Vec::new();
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
        if shared.completer.backlog() >= MAX_BACKLOG {
            // Outcomes are waiting for the database: claim nothing more until they are written.
            drop(permits);
            tokio::select! {
                () = tokio::time::sleep(poll) => continue,
                () = stop.cancelled() => break,
            }
        }
        windows.retain(|w| !w.is_finished());
        let open = shared.settings.claim_window.zip(shared.open_windows.clone().try_acquire_owned().ok());
        let claimed = match open {
            Some((open_for, window)) => {
                window::open(&shared, &queue, &mut permits, open_for, window, start, &stop).await.map(|(n, task)| {
                    windows.extend(task);
                    n
                })
            }
            None => claim(&shared, &queue, wanted).await.map(|jobs| {
                let n = jobs.len();
                for job in jobs {
                    let Some(permit) = permits.pop() else { break };
                    start(&shared, job, permit);
                }
                n
            }),
        };
        drop(permits);
        match claimed {
            Ok(n) => {
                let full = n == wanted;
                busy = full;
                if full {
                    // More work may be waiting: claim again as soon as a slot is free.
                    continue;
                }
            }
            Err(e) => {
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
    // Drain: every slot back means every job of this producer has finished; then its windows
    // are written.
    let _ = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX)).await;
    for w in windows {
        let _ = w.await;
    }
}

/// Runs one claimed attempt in a task of its own, holding `permit` until it has ended.
fn start(shared: &Arc<Shared>, job: ClaimedJob, permit: OwnedSemaphorePermit) {
    // For printed logs only: stored records take the attempt's task context.
    let span = tracing::info_span!(JOB_SPAN, job_id = job.id, kind = %job.kind, attempt = job.attempt);
    if shared.telemetry.is_attached() {
        let context = executor::task_context(shared, &job);
        let attempt = executor::execute(shared.clone(), job, permit).instrument(span);
        tokio::spawn(in_task_context(context, attempt));
    } else {
        tokio::spawn(executor::execute(shared.clone(), job, permit).instrument(span));
    }
}

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

async fn claim(shared: &Shared, queue: &str, n: usize) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    // A job whose lease this node lost while its attempt still runs here may be available again
    // (rescued elsewhere): it is not claimed back until that attempt has stopped.
    let busy = shared.running_ids();
    // The leases start no earlier than this: fencing counts from here.
    let sent = Instant::now();
    let jobs: Vec<ClaimedJob> = sqlx::query_as(sql::CLAIM)
        .bind(queue)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(&shared.settings.capabilities)
        .bind(&shared.settings.node_id)
        .bind(&busy)
        .bind(shared.settings.lease.as_secs_f64())
        .bind(&shared.kinds)
        .fetch_all(&shared.pool)
        .await?;
    shared.count_claim(queue);
    shared.register(queue, &jobs, sent, None);
    Ok(jobs)
}
