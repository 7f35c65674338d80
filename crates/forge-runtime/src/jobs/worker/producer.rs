//! The producer of one queue: claims as many jobs as it has free slots, starts each in a task
//! of its own, and waits for a wake-up (or the poll interval) only when a claim comes back empty.
//!
//! While its jobs are short (the last claim window saw every attempt end inside it) and work is
//! waiting, a producer with claim windows also claims *ahead*: up to [`LINE`] × `concurrency`
//! more jobs than it has free slots, each waiting in line for a slot. The next claims' round
//! trips then overlap the current jobs instead of following them, and each claim serves more
//! jobs. No more than `concurrency` attempts ever run at once; a job claimed ahead is held as any
//! window's job is (locked, its attempt recorded) for the few milliseconds it waits. Long jobs
//! turn it off: their windows end with attempts still running (or not yet started), and jobs
//! claimed ahead would wait for them while another node could run them.
//!
//! While a queue's backlog is deep (its last claim was full), a producer's next claim starts
//! where the last one ended in the claim order (`priority, run_at, id`), instead of stepping
//! again over the head of the claim index: the rows its windows still hold, and the entries of
//! jobs finished since the last vacuum, which over a long drain grow to most of the index (each
//! claim read a thousand pages of them after 150,000 jobs). A claim that is not full, and one
//! claim every [`FROM_HEAD_EVERY`], start from the head again, so a job that belongs before that
//! point (a higher priority dispatched meanwhile, a job given back) waits at most that long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::shared::{ClaimKey, ClaimedJob, Shared, Slot};
use super::{executor, window};
use crate::jobs::completer::MAX_BACKLOG;
use crate::jobs::sql;
use crate::observability::{JOB_SPAN, in_task_context};

/// How long a busy producer waits for more free slots before claiming.
const GATHER: Duration = Duration::from_millis(1);
/// How many jobs per slot a producer whose jobs are short may hold in line, claimed ahead.
///
/// A claim, its slot record and its window's write each cost about the same whatever the number
/// of jobs they serve, and a producer claims one batch at a time: the deeper the line, the more
/// jobs each round trip serves (one job per slot until 2026-12-06; four drain 50,000 no-op jobs
/// 12% faster, see the performance page's "A deeper line"). A window must see its line through:
/// with the default `claim_window` of 50 ms, jobs of up to about 8 ms keep claiming ahead (4 ms
/// with the 20 ms default before 2026-12-06), and a window whose attempts have not all ended
/// turns it off.
const LINE: usize = 4;
/// How often a busy producer claims from the head of the claim order all the same.
const FROM_HEAD_EVERY: Duration = Duration::from_millis(100);

pub(super) async fn produce(shared: Arc<Shared>, queue: String, concurrency: usize, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(concurrency));
    // Places in line for jobs claimed ahead, and whether the queue's jobs are short.
    let line = concurrency.saturating_mul(LINE).min(Semaphore::MAX_PERMITS);
    let ahead = Arc::new(Semaphore::new(line));
    let short = Arc::new(AtomicBool::new(false));
    let waker = shared.wakers.get(&queue).cloned().unwrap_or_default();
    let poll = shared.settings.poll_interval;
    let mut busy = false;
    let mut windows: Vec<JoinHandle<()>> = Vec::new();
    // The next window, its transaction begun while this one's jobs run.
    let mut prepared: Option<window::Prepared> = None;
    // Where the last full claim ended, and when a claim last started from the head.
    let mut after: Option<ClaimKey> = None;
    let mut from_head = Instant::now();
    loop {
        let claim_ahead = busy && shared.settings.claim_window.is_some() && short.load(Ordering::Relaxed);
        let (mut runs, mut places) = (Vec::new(), Vec::new());
        tokio::select! {
            biased;
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => runs.push(p), Err(_) => break },
            permit = ahead.clone().acquire_owned(), if claim_ahead => match permit {
                Ok(p) => places.push(p),
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        }
        // A claim takes at most `concurrency` jobs to run now, and `LINE` times as many to run next.
        let most = if claim_ahead { concurrency.saturating_add(line) } else { concurrency };
        while runs.len() + places.len() < most {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                runs.push(p);
            } else if let Some(p) = claim_ahead.then(|| ahead.clone().try_acquire_owned().ok()).flatten() {
                places.push(p);
            } else {
                break;
            }
        }
        if busy {
            // Work is waiting: give running jobs a moment to free more slots (and jobs in line
            // their places), so that one claim serves many jobs instead of one round trip per
            // freed slot.
            let places_from = claim_ahead.then_some(&ahead);
            gather((&slots, &mut runs), (places_from, &mut places), most, GATHER).await;
        }
        // Places first: a claim that finds fewer jobs than wanted takes slots from the end.
        let mut permits: Vec<Slot> =
            places.into_iter().map(|place| Slot::Ahead { place, slots: slots.clone() }).collect();
        permits.extend(runs.into_iter().map(Slot::Run));
        let wanted = permits.len();
        if shared.completer.backlog() >= MAX_BACKLOG {
            // Outcomes are waiting for the database: claim nothing more until they are written
            // (nor keep a transaction begun meanwhile).
            drop(permits);
            prepared = None;
            tokio::select! {
                () = tokio::time::sleep(poll) => continue,
                () = stop.cancelled() => break,
            }
        }
        windows.retain(|w| !w.is_finished());
        let ready = match prepared.take() {
            Some(p) => p.ready().await,
            None => None,
        };
        let open = shared.settings.claim_window.and_then(|open_for| match ready {
            Some((tx, window)) => Some((open_for, window, Some(tx))),
            None => shared.open_windows.clone().try_acquire_owned().ok().map(|window| (open_for, window, None)),
        });
        let bound = after.take().filter(|_| from_head.elapsed() < FROM_HEAD_EVERY);
        if bound.is_none() {
            from_head = Instant::now();
        }
        let claimed = match open {
            Some((open_for, window, tx)) => {
                let how = window::Opening { open_for, window, start, short: short.clone(), tx };
                window::open(&shared, &queue, &mut permits, (how, bound), &stop).await.map(|(n, last, task)| {
                    windows.extend(task);
                    (n, last)
                })
            }
            None => claim(&shared, &queue, wanted, bound).await.map(|jobs| {
                let (n, last) = (jobs.len(), jobs.iter().map(ClaimedJob::claim_key).max());
                for job in jobs {
                    let Some(slot) = permits.pop() else { break };
                    start(&shared, job, slot);
                }
                (n, last)
            }),
        };
        drop(permits);
        match claimed {
            Ok((n, last)) => {
                let full = n == wanted;
                busy = full;
                after = if full { last } else { None };
                if full {
                    // More work may be waiting: claim again as soon as a slot is free (and, jobs
                    // being short, with the next window's transaction begun meanwhile).
                    if shared.settings.claim_window.is_some() && short.load(Ordering::Relaxed) {
                        prepared = window::prepare(&shared);
                    }
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
    // Drain: every place back means every job claimed ahead has started, every slot back that
    // every job of this producer has finished; then its windows are written.
    let _ = ahead.acquire_many(u32::try_from(line).unwrap_or(u32::MAX)).await;
    let _ = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX)).await;
    for w in windows {
        let _ = w.await;
    }
}

/// Runs one claimed attempt in a task of its own, holding its slot until it has ended: at once,
/// or (claimed ahead) once a slot is free, in the task that waited for it (one task per job,
/// not a second spawned when the wait is over).
fn start(shared: &Arc<Shared>, job: ClaimedJob, slot: Slot) {
    match slot {
        Slot::Run(permit) => {
            tokio::spawn(attempt(shared, job, permit));
        }
        Slot::Ahead { place, slots } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                // The queue's semaphore is never closed: the wait ends with a slot.
                if let Ok(permit) = slots.acquire_owned().await {
                    drop(place);
                    attempt(&shared, job, permit).await;
                }
            });
        }
    }
}

/// One attempt, holding `permit` until it has ended, in its span (for printed logs only:
/// stored records take the attempt's task context).
fn attempt(
    shared: &Arc<Shared>,
    job: ClaimedJob,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static {
    use futures_util::future::Either;

    let span = tracing::info_span!(JOB_SPAN, job_id = job.id, kind = %job.kind, attempt = job.attempt);
    let context = shared.telemetry.is_attached().then(|| executor::task_context(shared, &job));
    let attempt = executor::execute(shared.clone(), job, permit).instrument(span);
    // One of two futures, not an `async` block holding both (it would be twice the size, and a
    // task's future is copied whole when it is spawned).
    match context {
        Some(context) => Either::Left(in_task_context(context, attempt)),
        None => Either::Right(attempt),
    }
}

/// Adds slots to `runs` (at most `concurrency`: a slot is only ever taken from `slots`) and,
/// given a line, places in it to `places`, as they free up, until there are `most` in all or
/// `wait` has passed.
async fn gather(
    (slots, runs): (&Arc<Semaphore>, &mut Vec<OwnedSemaphorePermit>),
    (line, places): (Option<&Arc<Semaphore>>, &mut Vec<OwnedSemaphorePermit>),
    most: usize,
    wait: Duration,
) {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    while runs.len() + places.len() < most {
        let place = async {
            match line {
                Some(line) => line.clone().acquire_owned().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => runs.push(p),
                Err(_) => return,
            },
            permit = place => match permit {
                Ok(p) => places.push(p),
                Err(_) => return,
            },
            () = &mut deadline => return,
        }
    }
}

/// Claims up to `n` jobs of `queue` the classic way (past `after` in the claim order, if given).
async fn claim(
    shared: &Shared,
    queue: &str,
    n: usize,
    after: Option<ClaimKey>,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    // A job whose lease this node lost while its attempt still runs here may be available again
    // (rescued elsewhere): it is not claimed back until that attempt has stopped.
    let busy = shared.running_ids();
    // The leases start no earlier than this: fencing counts from here.
    let sent = Instant::now();
    let statement = if after.is_some() { sql::CLAIM_AFTER.as_str() } else { sql::CLAIM };
    let mut claim = sqlx::query_as(statement)
        .bind(queue)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(&shared.settings.capabilities)
        .bind(&shared.settings.node_id)
        .bind(&busy)
        .bind(shared.settings.lease.as_secs_f64())
        .bind(&shared.kinds);
    if let Some((priority, run_at, id)) = after {
        claim = claim.bind(priority).bind(run_at).bind(id);
    }
    let jobs: Vec<ClaimedJob> = claim.fetch_all(&shared.pool).await?;
    shared.count_claim(queue);
    shared.register(queue, &jobs, sent, None);
    Ok(jobs)
}
