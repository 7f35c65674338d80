//! [`CronRegistration`]: one cron as `#[forge::cron]` registers it, and its [`Overlap`] policy.

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
