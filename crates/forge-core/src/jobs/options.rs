//! Per-kind defaults of a job, set by `#[forge::job(...)]` and overridable per dispatch.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::Backoff;

/// Which jobs run first: lower before higher, then by `run_at`, then by id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// 0.
    Critical,
    /// 1.
    High,
    /// 2, the default.
    #[default]
    Normal,
    /// 3.
    Low,
    /// 4.
    Background,
}

impl Priority {
    /// The number stored in `forge_jobs.priority`.
    pub const fn as_i16(self) -> i16 {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
            Priority::Background => 4,
        }
    }

    /// The priority stored as `n`, if valid.
    pub const fn from_i16(n: i16) -> Option<Self> {
        Some(match n {
            0 => Priority::Critical,
            1 => Priority::High,
            2 => Priority::Normal,
            3 => Priority::Low,
            4 => Priority::Background,
            _ => return None,
        })
    }

    /// Its lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Priority::Critical, Priority::High, Priority::Normal, Priority::Low, Priority::Background]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown priority {s:?}; use critical, high, normal, low or background"))
    }
}

/// What makes two jobs of a kind "the same" for uniqueness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniqueBy {
    /// Equal arguments (compared as canonical JSON).
    Args,
    /// An explicit key given at dispatch (`DispatchOptions::unique_key`).
    Key,
}

/// A kind's uniqueness rule: while a same job is live (scheduled, available, running,
/// retryable), or, with a period, within the same period window whatever its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unique {
    /// What identifies a duplicate.
    pub by: UniqueBy,
    /// `None`: while the first job is live. `Some(p)`: one job per window of length `p`
    /// (windows are aligned on the Unix epoch), even after the first finished.
    pub period: Option<Duration>,
}

/// A job kind's defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JobOptions {
    /// Queue. Default `"default"`.
    pub queue: &'static str,
    /// Priority. Default normal.
    pub priority: Priority,
    /// Attempts before the job is discarded. Default 20.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Longest an attempt may run; past it the attempt fails. Default 5 minutes.
    pub timeout: Duration,
    /// A capability a worker must offer to run this kind.
    pub capability: Option<&'static str>,
    /// Uniqueness, if any.
    pub unique: Option<Unique>,
    /// Whether the handler's database work commits together with the job's completion.
    pub transactional: bool,
    /// Whether outside clients may submit it through the job API (`POST /v1/jobs`).
    pub api: bool,
}

impl JobOptions {
    /// The defaults.
    pub const fn new() -> Self {
        Self {
            queue: "default",
            priority: Priority::Normal,
            max_attempts: 20,
            backoff: Backoff::exponential(Duration::from_secs(1), Duration::from_secs(3600)),
            timeout: Duration::from_secs(300),
            capability: None,
            unique: None,
            transactional: false,
            api: false,
        }
    }
}

impl Default for JobOptions {
    fn default() -> Self {
        Self::new()
    }
}
