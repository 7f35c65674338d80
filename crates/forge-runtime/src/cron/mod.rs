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
mod registration;
mod scheduler;
mod sql;

pub use context::{CronArgs, CronContext};
pub use control::{CronRun, CronStatus, KnownCron, known_crons, pause_cron, resume_cron, trigger_known};
pub(crate) use control::{prune_runs, record_crons, trigger};
pub use registration::{CronRegistration, Overlap};
pub(crate) use scheduler::{CronScheduler, Crons};
