//! `forge::testing`'s job helpers: [`TestDatabase::assert_enqueued`],
//! [`TestDatabase::perform_job`] (through the worker's own executor and outcome policy) and
//! [`TestDatabase::drain_queue`] (the real worker).

use std::time::Duration;

use super::TestDatabase;
use crate::jobs::completer;
use crate::jobs::worker::outcome;
use crate::jobs::worker::{Attempt, ClaimedJob, Worker, WorkerSettings};
use crate::jobs::{Job, JobError, JobRegistry, JobState, Notifier};

/// What [`TestDatabase::drain_queue_with`] runs besides the jobs that are due.
///
/// ```
/// use forge_runtime::testing::DrainOptions;
///
/// let options = DrainOptions::default().with_scheduled().with_retries();
/// assert!(options.scheduled && options.retries);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainOptions {
    /// Run jobs scheduled for later (and snoozed ones) now, instead of leaving them.
    pub scheduled: bool,
    /// Run a failed job's retries at once instead of after its backoff, until it completes or
    /// runs out of attempts.
    pub retries: bool,
}

impl DrainOptions {
    /// Also run jobs scheduled for later.
    #[must_use]
    pub fn with_scheduled(mut self) -> Self {
        self.scheduled = true;
        self
    }

    /// Also run retries at once.
    #[must_use]
    pub fn with_retries(mut self) -> Self {
        self.retries = true;
        self
    }
}

/// How [`TestDatabase::drain_queue`] left the jobs it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Jobs that completed.
    pub completed: u64,
    /// Jobs that failed and wait for a retry.
    pub retryable: u64,
    /// Jobs that were discarded.
    pub discarded: u64,
    /// Jobs that were cancelled.
    pub cancelled: u64,
}

impl TestDatabase {
    /// Panics unless a live job (scheduled, available, running or retryable) of kind `J` exists
    /// whose arguments contain `args` (JSON containment: `{}` matches any).
    pub async fn assert_enqueued<J: Job>(&self, args: serde_json::Value) {
        let found = self.enqueued::<J>(&args).await;
        assert!(found > 0, "expected a live {} job with args containing {args}; found none", J::NAME);
    }

    /// Panics if a live job of kind `J` exists whose arguments contain `args`.
    pub async fn refute_enqueued<J: Job>(&self, args: serde_json::Value) {
        let found = self.enqueued::<J>(&args).await;
        assert!(found == 0, "expected no live {} job with args containing {args}; found {found}", J::NAME);
    }

    async fn enqueued<J: Job>(&self, args: &serde_json::Value) -> i64 {
        sqlx::query_scalar(
            "select count(*) from forge_jobs where kind = $1 and args @> $2 \
             and state in ('scheduled', 'available', 'running', 'retryable')",
        )
        .bind(J::NAME)
        .bind(args)
        .fetch_one(self.pool())
        .await
        .unwrap_or_else(|e| panic!("cannot look for {} jobs: {e}", J::NAME))
    }

    /// Runs `J`'s handler once, in this process, as attempt 1 of a job row inserted for it: see
    /// [`TestDatabase::perform_attempt`].
    pub async fn perform_job<J: Job>(&self, args: J::Args) -> std::result::Result<J::Output, JobError> {
        self.perform_attempt::<J>(args, 1).await
    }

    /// Fires cron `C`'s tick at `at` as its scheduler would — the tick recorded in
    /// `forge_cron_runs`, its job run once in this process through the worker's executor — and
    /// returns the handler's result. What the cron dispatched can then be checked with
    /// [`TestDatabase::assert_enqueued`].
    ///
    /// ```ignore
    /// db.perform_cron::<DailyDigest>("2026-01-05T08:00:00Z".parse()?).await?;
    /// db.assert_enqueued::<SendDigest>(json!({"day": "2026-01-05"})).await;
    /// ```
    pub async fn perform_cron<C: Job<Args = crate::cron::CronArgs>>(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> std::result::Result<C::Output, JobError> {
        let name = C::NAME.strip_prefix("cron:").unwrap_or(C::NAME);
        sqlx::query(
            "insert into forge_cron_runs (cron_name, scheduled_at, status, catch_up, fired_by) \
             values ($1, $2, 'fired', false, 'perform_cron') on conflict do nothing",
        )
        .bind(name)
        .bind(at)
        .execute(self.pool())
        .await
        .map_err(|e| JobError::permanent(format!("cannot record the tick: {e}")))?;
        self.perform_attempt::<C>(crate::cron::CronArgs { scheduled_at: at, catch_up: false }, 1).await
    }

    /// Runs `J`'s handler once, in this process, as attempt `attempt` of a job row inserted for
    /// it (so `ctx.is_last_attempt()` paths can be tested), through the worker's own executor and
    /// outcome policy, and returns the handler's result. The row ends as a worker would leave
    /// it: completed, retryable (with its backoff), discarded, cancelled, or scheduled when the
    /// handler snoozed. A transactional job's transaction commits only on success, with the
    /// job's completion.
    pub async fn perform_attempt<J: Job>(
        &self,
        args: J::Args,
        attempt: u32,
    ) -> std::result::Result<J::Output, JobError> {
        let options = J::options();
        let json = serde_json::to_value(&args).map_err(|e| JobError::permanent(e.to_string()))?;
        let attempt = i32::try_from(attempt.max(1)).unwrap_or(i32::MAX);
        let max_attempts = i32::try_from(options.max_attempts).unwrap_or(i32::MAX).max(attempt);
        let job: ClaimedJob = sqlx::query_as(
            "insert into forge_jobs (kind, queue, args, state, attempt, max_attempts, attempted_at, heartbeat_at, attempted_by) \
             values ($1, $2, $3, 'running', $4, $5, now(), now(), 'perform_job') \
             returning id, priority, kind, args, attempt, max_attempts, queue, run_at, metadata",
        )
        .bind(J::NAME)
        .bind(options.queue)
        .bind(&json)
        .bind(attempt)
        .bind(max_attempts)
        .fetch_one(self.pool())
        .await
        .map_err(|e| JobError::permanent(format!("cannot insert the job: {e}")))?;
        let started_at = chrono::Utc::now();
        let run = Attempt {
            pool: self.pool(),
            node_id: "perform_job",
            dispatcher: None,
            job: &job,
            options: &options,
            lease: Duration::from_secs(30),
            token: Default::default(),
            tx_slots: None,
            extensions: Default::default(),
            hold: None,
        };
        let ended = run.run(|ctx| async move { J::run(&ctx, args).await }).await;
        let (ended, result) = ended.split();
        if let Some(outcome) = outcome::decide(&job, ended, options.backoff, started_at, "perform_job") {
            completer::finish(self.pool(), std::slice::from_ref(&outcome))
                .await
                .map_err(|e| JobError::permanent(format!("cannot record the attempt's outcome: {e}")))?;
        }
        result
    }

    /// Runs every available job of `queue` to completion in this process, one at a time, with
    /// the real worker (claims, retries, timeouts), until none is available or running. Due
    /// scheduled jobs and due retries are promoted as they come due; jobs whose `run_at` is still
    /// ahead are left (see [`TestDatabase::drain_queue_with`] to run them too). Returns how the
    /// jobs it ran ended.
    pub async fn drain_queue(&self, queue: &str) -> Drained {
        self.drain_queue_with(queue, DrainOptions::default()).await
    }

    /// [`TestDatabase::drain_queue`], also running jobs scheduled for later
    /// ([`DrainOptions::with_scheduled`]) and retries without waiting out their backoff
    /// ([`DrainOptions::with_retries`]): a job that fails twice and then succeeds is tested with
    /// one call. A job that snoozes every time keeps a drain with scheduled jobs going: give it a
    /// way out.
    pub async fn drain_queue_with(&self, queue: &str, options: DrainOptions) -> Drained {
        let started = chrono::Utc::now();
        let capabilities: Vec<String> = sqlx::query_scalar(
            "select distinct capability from forge_jobs where queue = $1 and capability is not null",
        )
        .bind(queue)
        .fetch_all(self.pool())
        .await
        .unwrap_or_default();
        let notifier = Notifier::spawn(self.pool().clone());
        let dispatcher = crate::jobs::BatchedDispatcher::with_notifier(self.pool().clone(), notifier.clone());
        let worker = Worker::spawn(
            self.pool().clone(),
            self.pool().clone(),
            JobRegistry::collect(&[]),
            notifier,
            dispatcher,
            crate::observability::Telemetry::new("drain_queue", 1),
            WorkerSettings {
                node_id: "drain_queue".to_owned(),
                queues: vec![(queue.to_owned(), 1)],
                capabilities,
                poll_interval: Duration::from_millis(10),
                lease: Duration::from_secs(30),
                shutdown_timeout: Duration::from_secs(30),
                listen: true,
                claim_window: Some(Duration::from_millis(50)),
                extensions: Default::default(),
            },
        );
        loop {
            // Due retries and scheduled jobs join in, as maintenance would promote them; with
            // the options, those not yet due too.
            let _ = sqlx::query(
                "update forge_jobs set state = 'available', run_at = least(run_at, now()) \
                 where queue = $1 and ((state in ('scheduled', 'retryable') and run_at <= now()) \
                    or (state = 'scheduled' and $2) or (state = 'retryable' and $3))",
            )
            .bind(queue)
            .bind(options.scheduled)
            .bind(options.retries)
            .execute(self.pool())
            .await;
            // A retry or a scheduled job the options run counts as work left: its row may have
            // turned retryable just after the promotion above.
            let busy: i64 = sqlx::query_scalar(
                "select count(*) from forge_jobs where queue = $1 \
                 and (state = 'running' or (state = 'available' and run_at <= now()) \
                      or (state = 'scheduled' and $2) or (state = 'retryable' and $3))",
            )
            .bind(queue)
            .bind(options.scheduled)
            .bind(options.retries)
            .fetch_one(self.pool())
            .await
            .unwrap_or(0);
            if busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worker.stop(None).await;
        let rows: Vec<(JobState, i64)> = sqlx::query_as(
            "select state, count(*) from forge_jobs where queue = $1 and attempted_at >= $2 group by state",
        )
        .bind(queue)
        .bind(started)
        .fetch_all(self.pool())
        .await
        .unwrap_or_default();
        let mut drained = Drained::default();
        for (state, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match state {
                JobState::Completed => drained.completed += n,
                JobState::Retryable => drained.retryable += n,
                JobState::Discarded => drained.discarded += n,
                JobState::Cancelled => drained.cancelled += n,
                _ => {}
            }
        }
        drained
    }
}
