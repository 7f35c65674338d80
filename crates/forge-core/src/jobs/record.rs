//! A job's row as Rust values: [`JobRecord`], its failed attempts ([`AttemptError`]) and its
//! progress ([`JobProgress`]).
//!
//! Every component that reads or writes `forge_jobs` goes through these types (the worker
//! writes an [`AttemptError`] for each failed attempt, the leader's rescue writes the same
//! shape, the dashboard, the CLI and the traces read them back), so the JSON stored in
//! `forge_jobs.errors` has one definition: this file.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::id::JobId;
use super::state::JobState;

/// How a failed attempt failed: the `kind` of its [`AttemptError`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler returned an error.
    #[default]
    Error,
    /// The handler panicked.
    Panic,
    /// The handler ran past the kind's timeout.
    Timeout,
    /// The attempt was cancelled (by an operator, or by the handler's own `JobError::Cancel`).
    Cancel,
    /// The attempt's lease was lost: its node stopped heartbeating, or was declared dead.
    Lease,
}

impl FailureKind {
    /// The name stored in the entry's `kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::Cancel => "cancel",
            FailureKind::Lease => "lease",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One failed attempt: an element of `forge_jobs.errors`.
///
/// With `started_at` and `node` the entry is also the attempt's span (a job attempt is not
/// stored as a span row; traces rebuild it from here).
///
/// ```
/// use forge_core::jobs::{AttemptError, FailureKind};
///
/// let entry: AttemptError = serde_json::from_value(serde_json::json!({
///     "attempt": 2, "at": "2026-01-01T00:00:02Z", "message": "smtp down",
///     "kind": "timeout", "started_at": "2026-01-01T00:00:01Z", "node": "n1"
/// }))?;
/// assert_eq!((entry.attempt, entry.kind), (2, FailureKind::Timeout));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt that failed, from 1.
    pub attempt: i32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// What went wrong, as the handler (or the rescue) said it.
    pub message: String,
    /// How it failed.
    #[serde(default)]
    pub kind: FailureKind,
    /// When the attempt started (absent only in entries written before Forge kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// The node the attempt ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl AttemptError {
    /// The keys of the stored JSON object, in order. SQL that builds an entry itself (the
    /// leader's rescue) is checked against this list by a test.
    pub const KEYS: [&'static str; 6] = ["attempt", "at", "message", "kind", "started_at", "node"];
}

/// What a running job last said about how far it got (`JobContext::progress`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// 0 to 100.
    pub percent: u8,
    /// What it is doing.
    #[serde(default)]
    pub message: String,
}

/// A job as stored in `forge_jobs`: what listings, the dashboard, the CLI and traces read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// Its kind (the job's `NAME`).
    pub kind: String,
    /// The queue it runs on.
    pub queue: String,
    /// Where it is in its life.
    pub state: JobState,
    /// 0 (critical) to 4 (background): lower runs first.
    pub priority: i16,
    /// Attempts started so far.
    pub attempt: i32,
    /// Attempts allowed before it is discarded.
    pub max_attempts: i32,
    /// Its arguments.
    pub args: serde_json::Value,
    /// What its handler returned, once completed.
    pub output: Option<serde_json::Value>,
    /// One entry per failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// Its latest progress report.
    pub progress: Option<JobProgress>,
    /// Tags, for filtering.
    pub tags: Vec<String>,
    /// Context that travels with the job (`traceparent`, `cron`).
    pub metadata: serde_json::Value,
    /// When it is (or was) due.
    pub run_at: DateTime<Utc>,
    /// When it was inserted.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub finalized_at: Option<DateTime<Utc>>,
    /// The node of its latest attempt.
    pub attempted_by: Option<String>,
    /// Its uniqueness key, if it has one.
    pub unique_key: Option<String>,
}

impl JobRecord {
    /// The columns a [`JobRecord`] is read from, for `select {COLUMNS} from forge_jobs`.
    pub const COLUMNS: &'static str = "id, kind, queue, state, priority, attempt, max_attempts, args, output, \
         errors, progress, tags, metadata, run_at, created_at, attempted_at, finalized_at, attempted_by, unique_key";

    /// The message of the latest failed attempt, if any failed.
    pub fn last_error(&self) -> Option<&AttemptError> {
        self.errors.last()
    }
}

#[cfg(feature = "sqlx")]
impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for JobRecord {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        use sqlx::types::Json;
        Ok(Self {
            id: JobId(row.try_get("id")?),
            kind: row.try_get("kind")?,
            queue: row.try_get("queue")?,
            state: row.try_get("state")?,
            priority: row.try_get("priority")?,
            attempt: row.try_get("attempt")?,
            max_attempts: row.try_get("max_attempts")?,
            args: row.try_get("args")?,
            output: row.try_get("output")?,
            errors: row.try_get::<Json<Vec<AttemptError>>, _>("errors")?.0,
            progress: row.try_get::<Option<Json<JobProgress>>, _>("progress")?.map(|p| p.0),
            tags: row.try_get("tags")?,
            metadata: row.try_get("metadata")?,
            run_at: row.try_get("run_at")?,
            created_at: row.try_get("created_at")?,
            attempted_at: row.try_get("attempted_at")?,
            finalized_at: row.try_get("finalized_at")?,
            attempted_by: row.try_get("attempted_by")?,
            unique_key: row.try_get("unique_key")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serialises_with_exactly_the_listed_keys() {
        let entry = AttemptError {
            attempt: 1,
            at: Utc::now(),
            message: "boom".to_owned(),
            kind: FailureKind::Panic,
            started_at: Some(Utc::now()),
            node: Some("n1".to_owned()),
        };
        let value = serde_json::to_value(&entry).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = AttemptError::KEYS.to_vec();
        keys.sort_unstable();
        listed.sort_unstable();
        assert_eq!(keys, listed);
        assert_eq!(value["kind"], "panic");
        assert_eq!(serde_json::from_value::<AttemptError>(value).unwrap(), entry);
    }

    #[test]
    fn old_entries_without_kind_or_start_still_read() {
        let entry: AttemptError =
            serde_json::from_str(r#"{"attempt":1,"at":"2026-01-01T00:00:00Z","message":"x","trace":"t"}"#).unwrap();
        assert_eq!((entry.kind, entry.started_at, entry.node), (FailureKind::Error, None, None));
    }
}
