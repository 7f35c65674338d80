//! What a dispatch inserts: [`NewJob`], built from a kind's defaults and [`DispatchOptions`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_core::jobs::{JobOptions, Priority, UniqueBy};
use sha2::{Digest, Sha256};

use super::error::JobsError;

/// Per-dispatch options; each unset one takes the kind's default.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// Run no earlier than this.
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this long from now (ignored when `run_at` is set).
    pub delay: Option<Duration>,
    /// Priority.
    pub priority: Option<Priority>,
    /// Queue.
    pub queue: Option<String>,
    /// Uniqueness key (for kinds unique by key; on other kinds it makes this dispatch unique).
    pub unique_key: Option<String>,
    /// Tags, for filtering.
    pub tags: Vec<String>,
    /// Attempts before discarding.
    pub max_attempts: Option<u32>,
}

impl DispatchOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs at `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Runs after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the uniqueness key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Adds tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Sets the attempts.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

/// One row to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) args: serde_json::Value,
    pub(crate) priority: i16,
    pub(crate) max_attempts: i32,
    pub(crate) run_at: Option<DateTime<Utc>>,
    pub(crate) unique_key: Option<String>,
    pub(crate) unique_period: bool,
    pub(crate) capability: Option<String>,
    pub(crate) tags: Vec<String>,
    /// Context travelling with the job: `traceparent` (the dispatcher's span, filled in at
    /// insert) and `cron` (the cron that fired it).
    pub(crate) metadata: serde_json::Map<String, serde_json::Value>,
    /// The API client submitting it (`/v1/jobs`): its state changes go to the event feed.
    pub(crate) client: Option<uuid::Uuid>,
}

impl NewJob {
    /// The row for a job of kind `kind` (whose defaults are `defaults`) with `args` and
    /// `options`; [`NewJob::of`] for a typed kind.
    pub(crate) fn for_kind(
        kind: &'static str,
        defaults: JobOptions,
        args: serde_json::Value,
        options: &DispatchOptions,
    ) -> Result<Self, JobsError> {
        let max_attempts = options.max_attempts.unwrap_or(defaults.max_attempts);
        let max_attempts = i32::try_from(max_attempts)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| JobsError::InvalidOption(format!("max_attempts {max_attempts} must be 1 or more")))?;
        let run_at = options
            .run_at
            .or_else(|| options.delay.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| Utc::now() + d));
        let (unique_key, unique_period) = unique_key(kind, defaults.unique, options.unique_key.as_deref(), &args)?;
        Ok(Self {
            kind: kind.to_owned(),
            queue: options.queue.clone().unwrap_or_else(|| defaults.queue.to_owned()),
            args,
            priority: options.priority.unwrap_or(defaults.priority).as_i16(),
            max_attempts,
            run_at,
            unique_key,
            unique_period,
            capability: defaults.capability.map(str::to_owned),
            tags: options.tags.clone(),
            metadata: serde_json::Map::new(),
            client: None,
        })
    }

    /// Its kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The queue it goes to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// A row for kind `kind` with raw JSON arguments and a kind's options.
    pub fn with_options(kind: impl Into<String>, args: serde_json::Value, options: &JobOptions) -> Self {
        Self {
            kind: kind.into(),
            queue: options.queue.to_owned(),
            args,
            priority: options.priority.as_i16(),
            max_attempts: i32::try_from(options.max_attempts).unwrap_or(i32::MAX).max(1),
            run_at: None,
            unique_key: None,
            unique_period: false,
            capability: options.capability.map(str::to_owned),
            tags: Vec::new(),
            metadata: serde_json::Map::new(),
            client: None,
        }
    }

    /// A row for kind `kind` with raw JSON arguments and default options (for tools such as the
    /// CLI that do not know the Rust type).
    pub fn raw(kind: impl Into<String>, queue: impl Into<String>, args: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            queue: queue.into(),
            args,
            priority: Priority::Normal.as_i16(),
            max_attempts: 20,
            run_at: None,
            unique_key: None,
            unique_period: false,
            capability: None,
            tags: Vec::new(),
            metadata: serde_json::Map::new(),
            client: None,
        }
    }
}

impl NewJob {
    /// Submitted by this API client: the job's state changes are appended to the event feed.
    pub(crate) fn with_client(mut self, client: uuid::Uuid) -> Self {
        self.client = Some(client);
        self
    }

    /// Runs this job no earlier than `at`.
    pub fn with_run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Allows this many attempts (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = i32::try_from(n).unwrap_or(i32::MAX).max(1);
        self
    }

    /// Runs it at this priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority.as_i16();
        self
    }

    /// Puts it on this queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
}

/// Hex SHA-256 of the arguments' canonical JSON (object keys sorted).
fn args_digest(args: &serde_json::Value) -> String {
    let canonical = serde_json::to_string(args).unwrap_or_default();
    Sha256::digest(canonical.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The unique key a job of `kind` gets under its rule `unique` (`None`: not unique), from the
/// dispatcher's `key` or the arguments, and whether it is per period. A kind unique by key
/// dispatched without one is refused: it would otherwise never be deduplicated.
pub(crate) fn unique_key(
    kind: &str,
    unique: Option<forge_core::jobs::Unique>,
    key: Option<&str>,
    args: &serde_json::Value,
) -> Result<(Option<String>, bool), JobsError> {
    let Some(unique) = unique else {
        return Ok((key.map(str::to_owned), false));
    };
    let base = match (unique.by, key) {
        (_, Some(key)) => key.to_owned(),
        (UniqueBy::Args, None) => args_digest(args),
        (UniqueBy::Key, None) => return Err(JobsError::MissingUniqueKey { kind: kind.to_owned() }),
    };
    Ok(match unique.period {
        Some(period) if period.as_secs() > 0 => {
            let window = Utc::now().timestamp().max(0) as u64 / period.as_secs();
            (Some(format!("{base}@{window}")), true)
        }
        _ => (Some(base), false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_digest_ignores_key_order() {
        let a = serde_json::json!({"a": 1, "b": [1, 2]});
        let b: serde_json::Value = serde_json::from_str(r#"{"b": [1, 2], "a": 1}"#).unwrap();
        assert_eq!(args_digest(&a), args_digest(&b));
        assert_ne!(args_digest(&a), args_digest(&serde_json::json!({"a": 2, "b": [1, 2]})));
    }
}
