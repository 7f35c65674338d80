//! Crons: `#[forge::cron("expr")]` functions, fired by the leader, run by workers.
//!
//! A cron is a job kind (`cron:<name>`) plus a schedule. The leader's scheduler evaluates every
//! schedule and, for each due tick, inserts `(cron_name, scheduled_at)` into `forge_cron_runs`
//! and dispatches the cron's job **in the same transaction**. The row's primary key makes each
//! tick fire once across the cluster, even if two nodes briefly both believe they lead; the job
//! runs on workers with the job engine's retries, timeouts and rescue.
//!
//! After a gap (no leader for a while, a deploy), a cron with `catch_up` fires the ticks it
//! missed, oldest first, at most `catch_up_limit` of them; without it, only the latest missed
//! tick fires. With `overlap = "skip"` (the default), a tick whose previous run is still live is
//! recorded as `skipped` instead of firing; the ticks of one catch-up are fired together.

mod context;
mod control;
mod scheduler;
mod sql;

pub use context::{CronArgs, CronContext};
pub(crate) use control::trigger;
pub use control::{CronRun, CronStatus, pause_cron, resume_cron};
pub(crate) use scheduler::{CronScheduler, Crons};

use forge_core::jobs::JobOptions;

/// Whether a tick may fire while the previous run is still live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Record the tick as skipped.
    Skip,
    /// Fire anyway.
    Allow,
}

/// One cron as the scheduler sees it. `#[forge::cron]` submits one to the global registry.
#[derive(Debug)]
pub struct CronRegistration {
    /// The cron's name.
    pub name: &'static str,
    /// Its expression (5 or 6 fields).
    pub expression: &'static str,
    /// Its IANA time zone.
    pub timezone: &'static str,
    /// Whether missed ticks fire after a gap.
    pub catch_up: bool,
    /// At most this many missed ticks fire after a gap.
    pub catch_up_limit: u32,
    /// Overlap policy.
    pub overlap: Overlap,
    /// The job kind that runs it.
    pub job_kind: &'static str,
    /// That job's options.
    pub job_options: fn() -> JobOptions,
}

inventory::collect!(CronRegistration);
