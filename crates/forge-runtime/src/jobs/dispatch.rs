//! Enqueueing: the [`Dispatcher`] trait (a pool, a running node, a job's context), and the
//! [`BatchedDispatcher`], through which the single dispatches of many concurrent callers
//! share one INSERT and one commit.
//!
//! A `dispatch` on its own is a statement and a commit, and a commit waits for the WAL to
//! reach the disk: one connection dispatching one job after another is held to the disk's
//! flush rate (`pgbench -c 1` of a bare one-row INSERT, on the machine of the performance
//! page). Callers dispatching at the same moment from different tasks (request handlers, jobs)
//! need not wait for each other's flushes: what waits when an inserter is free goes in its next
//! statement, so each commit carries many jobs. Alone, a dispatch goes at once, as a batch of
//! one, on the connection the last statement kept (`db::spares`): not one taken from the pool
//! and handed back (with sqlx's ping of it) for every job.

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use forge_core::jobs::JobId;
use sqlx::PgPool;

use super::error::JobsError;
use super::insert::{Count, Prepared, insert_jobs, insert_rows};
use super::new_job::NewJob;
use super::notifier::Notifier;
use crate::db::batch::Batcher;
use crate::db::spares::Spares;

/// Something jobs can be dispatched through: a pool, a running node, a job's context.
pub trait Dispatcher: Send + Sync {
    /// The pool to insert with.
    fn dispatch_pool(&self) -> &PgPool;

    /// The node's debounced notifier, if there is one; without it, the INSERT notifies.
    fn dispatch_notifier(&self) -> Option<&Notifier> {
        None
    }

    /// The span dispatches run in: a node names itself in it, so the jobs it inserts are counted
    /// in its metrics. None by default (the current span decides).
    fn dispatch_span(&self) -> tracing::Span {
        tracing::Span::none()
    }

    /// The node's [`BatchedDispatcher`], if there is one: a single job dispatched through it
    /// shares its INSERT and its commit with the other callers' waiting at the same moment.
    /// None by default (each dispatch is its own statement).
    fn dispatch_batched(&self) -> Option<&BatchedDispatcher> {
        None
    }

    /// Inserts `jobs` and wakes the workers of their queues.
    fn insert<'a>(&'a self, jobs: &'a [NewJob]) -> impl Future<Output = Result<Vec<JobId>, JobsError>> + Send + 'a {
        let span = self.dispatch_span();
        tracing::Instrument::instrument(
            async move {
                if let ([job], Some(batched)) = (jobs, self.dispatch_batched()) {
                    return Ok(vec![batched.insert_one(job).await?]);
                }
                let mut conn = self.dispatch_pool().acquire().await?;
                let notifier = self.dispatch_notifier();
                let ids = insert_jobs(&mut conn, jobs, notifier.is_none()).await?;
                if let Some(notifier) = notifier {
                    notify_queues(notifier, jobs);
                }
                Ok(ids)
            },
            span,
        )
    }
}

/// Asks `notifier` to wake the workers of the queues of `jobs` that can run now.
pub(super) fn notify_queues(notifier: &Notifier, jobs: &[NewJob]) {
    let now = Utc::now();
    let mut queues: Vec<&str> = Vec::new();
    for job in jobs.iter().filter(|j| j.run_at.is_none_or(|t| t <= now)) {
        if !queues.contains(&job.queue.as_str()) {
            queues.push(&job.queue);
        }
    }
    for queue in queues {
        notifier.notify(queue);
    }
}

impl Dispatcher for PgPool {
    fn dispatch_pool(&self) -> &PgPool {
        self
    }
}

/// The most jobs one statement carries.
const MAX_BATCH: usize = 128;
/// Statements in flight at once, each on a connection of its own while it runs: one is being
/// committed while the next fills.
const INSERTERS: usize = 2;

/// A [`Dispatcher`] whose single dispatches share statements: each `dispatch` waits for its own
/// job's commit, as with a pool, but jobs dispatched at the same moment by other tasks go in
/// the same INSERT. Under concurrent load this multiplies what one connection can enqueue
/// (see the performance page's "Enqueue"); a lone dispatch costs what it costs on a pool.
///
/// A running node dispatches this way ([`RunningForge`](crate::RunningForge), a job's and an
/// action's context); a program that only enqueues (a web server with its own pool) makes one
/// with [`BatchedDispatcher::new`]. `dispatch_many` is one statement already and goes straight
/// to the pool; `dispatch_in` is the caller's transaction and is never batched.
///
/// Each job is checked on its own before it joins a batch; a job the database refuses (a
/// value over a limit) fails only its own dispatch: the batch is undone and its other jobs are
/// inserted one by one. A job's `forge.dispatch` span and its count in
/// `forge_jobs_enqueued_total` stay the caller's.
///
/// While dispatches keep coming, its statements keep their connections (at most two of the
/// pool's) from one to the next instead of handing them back, and sqlx pinging them, after each;
/// they go back to the pool 10–20 ms after the last dispatch (a pool closing waits that long).
#[derive(Clone)]
pub struct BatchedDispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    notifier: Option<Notifier>,
    batcher: Batcher<NewJob, Result<JobId, JobsError>>,
}

impl std::fmt::Debug for BatchedDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedDispatcher").field("batcher", &self.inner.batcher).finish_non_exhaustive()
    }
}

impl BatchedDispatcher {
    /// Dispatches over `pool`; each INSERT wakes its queues' workers itself (`NOTIFY`). Starts
    /// its tasks on the current Tokio runtime (they end when the last clone is dropped).
    pub fn new(pool: PgPool) -> Self {
        Self::start(pool, None)
    }

    /// Dispatches over `pool`, waking workers through the node's debounced `notifier`.
    pub(crate) fn with_notifier(pool: PgPool, notifier: Notifier) -> Self {
        Self::start(pool, Some(notifier))
    }

    fn start(pool: PgPool, notifier: Option<Notifier>) -> Self {
        let batcher = {
            // A statement keeps its connection for the next one (see `Spares`).
            let (spares, notifier) = (Spares::new(pool.clone()), notifier.clone());
            Batcher::start(INSERTERS, MAX_BATCH, move |jobs| {
                let (spares, notifier) = (spares.clone(), notifier.clone());
                async move { insert_batch(&spares, notifier.as_ref(), jobs).await }
            })
        };
        Self { inner: Arc::new(Inner { pool, notifier, batcher }) }
    }

    /// Inserts `job` with whatever else waits; its id once committed.
    pub(crate) async fn insert_one(&self, job: &NewJob) -> Result<JobId, JobsError> {
        // Checked, traced and counted here, in the caller's span; only the INSERT is shared.
        let mut prepared = Prepared::new(job)?;
        let mut queued = job.clone();
        if let serde_json::Value::Object(metadata) = std::mem::take(&mut prepared.metadata) {
            queued.metadata = metadata;
        }
        let outcome = match self.inner.batcher.call(queued).await {
            Some(outcome) => outcome,
            None => Err(JobsError::Database(sqlx::Error::PoolClosed)),
        };
        prepared.finish(job, outcome.as_ref().ok().map(|id| id.0));
        outcome
    }
}

impl Dispatcher for BatchedDispatcher {
    fn dispatch_pool(&self) -> &PgPool {
        &self.inner.pool
    }

    fn dispatch_notifier(&self) -> Option<&Notifier> {
        self.inner.notifier.as_ref()
    }

    fn dispatch_batched(&self) -> Option<&BatchedDispatcher> {
        Some(self)
    }
}

/// One statement for `jobs`: an answer for each, in order.
async fn insert_batch(
    spares: &Spares,
    notifier: Option<&Notifier>,
    jobs: Vec<NewJob>,
) -> Vec<Result<JobId, JobsError>> {
    let mut conn = match spares.take().await {
        Ok(conn) => conn,
        Err(e) => return everyone(JobsError::Database(e), jobs.len()),
    };
    let notify = notifier.is_none();
    match insert_rows(&mut conn, &jobs, notify, None, Count::ByCallers).await {
        Ok(ids) => {
            // Kept only after a statement that went well: a connection that failed goes back
            // to the pool, which checks it.
            spares.keep(conn);
            if let Some(notifier) = notifier {
                notify_queues(notifier, &jobs);
            }
            ids.into_iter().map(Ok).collect()
        }
        Err(JobsError::Database(e)) if jobs.len() > 1 && crate::db::refused_data(&e) => {
            // The statement was refused for one job's data, so nothing was written: each job
            // goes alone, and only the refused one's caller hears of it.
            let mut answers = Vec::with_capacity(jobs.len());
            for job in &jobs {
                let one = std::slice::from_ref(job);
                let answer = insert_rows(&mut conn, one, notify, None, Count::ByCallers).await;
                if answer.is_ok()
                    && let Some(notifier) = notifier
                {
                    notify_queues(notifier, one);
                }
                answers.push(answer.and_then(|ids| ids.into_iter().next().ok_or(JobsError::NotInserted)));
            }
            answers
        }
        Err(e) => everyone(e, jobs.len()),
    }
}

/// `e` as the answer of `n` callers: the first gets it, the others its like.
fn everyone(e: JobsError, n: usize) -> Vec<Result<JobId, JobsError>> {
    let mut answers: Vec<Result<JobId, JobsError>> = (1..n).map(|_| Err(like(&e))).collect();
    answers.insert(0, Err(e));
    answers
}

/// An error saying what `e` says (errors are not `Clone`: a database error owns its details).
fn like(e: &JobsError) -> JobsError {
    match e {
        JobsError::Database(sqlx::Error::PoolTimedOut) => JobsError::Database(sqlx::Error::PoolTimedOut),
        JobsError::Database(sqlx::Error::PoolClosed) => JobsError::Database(sqlx::Error::PoolClosed),
        JobsError::Database(sqlx::Error::Io(io)) => {
            JobsError::Database(sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())))
        }
        JobsError::Database(other) => JobsError::Database(sqlx::Error::Io(std::io::Error::other(other.to_string()))),
        JobsError::NotInserted => JobsError::NotInserted,
        JobsError::InvalidArgs { kind, message } => {
            JobsError::InvalidArgs { kind: kind.clone(), message: message.clone() }
        }
        other => JobsError::InvalidOption(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    fn job(name: &str) -> NewJob {
        NewJob::raw("greet", "default", serde_json::json!({ "name": name }))
    }

    /// The transaction each job was inserted in.
    async fn transactions(pool: &PgPool, ids: &[i64]) -> Vec<String> {
        sqlx::query_scalar("select xmin::text from forge_jobs where id = any($1) order by id")
            .bind(ids)
            .fetch_all(pool)
            .await
            .expect("xmin")
    }

    #[tokio::test]
    async fn a_batch_is_one_statement_and_a_job_the_database_refuses_fails_alone() {
        let db = TestDatabase::new().await.expect("db");
        let jobs: Vec<NewJob> = ["a", "b", "c"].into_iter().map(job).collect();
        let answers = insert_batch(&Spares::new(db.pool().clone()), None, jobs).await;
        let ids: Vec<i64> = answers.into_iter().map(|a| a.expect("inserted").0).collect();
        let names: Vec<String> = sqlx::query_scalar(
            "select args->>'name' from forge_jobs where id = any($1) order by array_position($1, id)",
        )
        .bind(&ids)
        .fetch_all(db.pool())
        .await
        .expect("names");
        assert_eq!(names, ["a", "b", "c"], "each answer is its own job's id");
        let xmins = transactions(db.pool(), &ids).await;
        assert!(xmins.iter().all(|x| *x == xmins[0]), "one statement, one commit: {xmins:?}");

        // A queue name over 64 characters passes the checks made before a batch; the table's
        // constraint refuses it, which undoes the statement for every job in it.
        let mut jobs: Vec<NewJob> = ["d", "e", "f"].into_iter().map(job).collect();
        jobs[1] = job("e").with_queue("q".repeat(65));
        let answers = insert_batch(&Spares::new(db.pool().clone()), None, jobs).await;
        assert!(
            matches!(&answers[1], Err(JobsError::Database(e)) if crate::db::refused_data(e)),
            "the refused job's own answer: {:?}",
            answers[1]
        );
        let (d, f) = (answers[0].as_ref().expect("d inserted"), answers[2].as_ref().expect("f inserted"));
        let names: Vec<String> =
            sqlx::query_scalar("select args->>'name' from forge_jobs where id = any($1) order by id")
                .bind([d.0, f.0])
                .fetch_all(db.pool())
                .await
                .expect("names");
        assert_eq!(names, ["d", "f"]);
        let total: i64 =
            sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count");
        assert_eq!(total, 5, "the refused job is nowhere");

        // Two callers with the same unique key in one batch: one job, both get its id.
        let keyed = |name: &str| {
            let mut job = job(name);
            job.unique_key = Some("k".to_owned());
            job
        };
        let answers = insert_batch(&Spares::new(db.pool().clone()), None, vec![keyed("g"), keyed("h"), job("i")]).await;
        let ids: Vec<i64> = answers.into_iter().map(|a| a.expect("answered").0).collect();
        assert_eq!(ids[0], ids[1], "the key's holder for both: {ids:?}");
        assert_ne!(ids[0], ids[2]);
        let total: i64 =
            sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count");
        assert_eq!(total, 7);
    }

    #[tokio::test]
    async fn concurrent_callers_share_statements_over_one_connection_and_each_gets_its_own_job() {
        let db = TestDatabase::new().await.expect("db");
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(db.url()).await.expect("pool");
        let dispatcher = BatchedDispatcher::new(pool.clone());
        // Each caller dispatches once and waits for its answer; all run while the first
        // statement is in flight, so the rest queue up for the next ones.
        let callers: Vec<_> = (0..100)
            .map(|i| {
                let dispatcher = dispatcher.clone();
                tokio::spawn(async move { dispatcher.insert(&[job(&format!("n{i}"))]).await })
            })
            .collect();
        let mut ids = Vec::new();
        for (i, caller) in callers.into_iter().enumerate() {
            let id = caller.await.expect("task").expect("dispatched")[0].0;
            let name: String = sqlx::query_scalar("select args->>'name' from forge_jobs where id = $1")
                .bind(id)
                .fetch_one(db.pool())
                .await
                .expect("row");
            assert_eq!(name, format!("n{i}"), "caller {i} got its own job's id");
            ids.push(id);
        }
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 100);
        let mut xmins = transactions(db.pool(), &ids).await;
        xmins.dedup();
        // One at a time, they would be 100 statements and 100 commits.
        assert!(xmins.len() < 20, "100 dispatches waiting together took {} commits", xmins.len());
    }

    #[tokio::test]
    async fn dispatches_one_after_another_keep_their_connection_and_give_it_back_when_idle() {
        use std::sync::atomic::Ordering;

        use crate::testing::{counted_pool, wait_for};

        let db = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool(&db).await;
        let dispatcher = BatchedDispatcher::new(pool.clone());
        for i in 0..50 {
            dispatcher.insert(&[job(&format!("n{i}"))]).await.expect("dispatched");
        }
        // Returned to its pool after each, the connection would have been pinged 50 times.
        assert_eq!(returns.load(Ordering::SeqCst), 0, "kept from one dispatch to the next");
        let total: i64 =
            sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count");
        assert_eq!(total, 50);
        wait_for("the connection goes back to the pool once dispatches stop", || pool.num_idle() == 1).await;
        drop(dispatcher);
        tokio::time::timeout(std::time::Duration::from_secs(10), pool.close()).await.expect("the pool closes");
    }
}
