//! [`CronContext`]: what a cron run knows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::jobs::JobContext;

/// A run counts as late when it starts this long after its scheduled time.
const LATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The arguments of a cron's job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CronArgs {
    /// The tick this run is for.
    pub scheduled_at: DateTime<Utc>,
    /// Whether the tick was missed and is being caught up.
    pub catch_up: bool,
}

/// The context of one cron run.
#[derive(Clone, Debug)]
pub struct CronContext {
    job: JobContext,
    name: &'static str,
    args: CronArgs,
    started: DateTime<Utc>,
}

impl CronContext {
    /// Built by `#[forge::cron]`'s generated job.
    #[doc(hidden)]
    pub fn new(job: JobContext, name: &'static str, args: CronArgs) -> Self {
        Self { job, name, args, started: Utc::now() }
    }

    /// The cron's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The tick this run is for.
    pub fn scheduled_time(&self) -> DateTime<Utc> {
        self.args.scheduled_at
    }

    /// When this attempt started.
    pub fn execution_time(&self) -> DateTime<Utc> {
        self.started
    }

    /// Whether the tick was missed (no leader, a deploy) and is being caught up.
    pub fn is_catch_up(&self) -> bool {
        self.args.catch_up
    }

    /// How long after its scheduled time this attempt started.
    pub fn delay(&self) -> chrono::TimeDelta {
        self.started - self.args.scheduled_at
    }

    /// Whether the attempt started more than a minute late.
    pub fn is_late(&self) -> bool {
        self.delay() > LATE_AFTER
    }

    /// The underlying job's context: attempt, database, progress, cancellation.
    pub fn job(&self) -> &JobContext {
        &self.job
    }

    /// The pool.
    pub fn db(&self) -> &sqlx::PgPool {
        self.job.db()
    }
}

/// A cron dispatches jobs as its job would: `SendDigest::dispatch(ctx, args)`.
impl crate::jobs::Dispatcher for CronContext {
    fn dispatch_pool(&self) -> &sqlx::PgPool {
        self.job.dispatch_pool()
    }

    fn dispatch_notifier(&self) -> Option<&crate::jobs::Notifier> {
        self.job.dispatch_notifier()
    }

    fn dispatch_batched(&self) -> Option<&crate::jobs::BatchedDispatcher> {
        self.job.dispatch_batched()
    }
}
