//! The messages of `GET /ws`, as JSON text frames.

use serde::{Deserialize, Serialize};

use crate::functions::ForgeError;
use crate::gateway::Problem;

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientMessage {
    /// Credentials for this connection (instead of, or replacing, the upgrade request's
    /// `Authorization` header): a JWT or an API key. Existing subscriptions are run again as
    /// the new caller.
    Auth {
        /// The bearer token or API key.
        token: String,
    },
    /// Runs `query` with `args` and pushes its result now and whenever it changes.
    Subscribe {
        /// The client's name for this subscription (1 to 64 characters), echoed in every
        /// message about it.
        id: String,
        /// The query's name.
        query: String,
        /// Its arguments (`null` when left out).
        #[serde(default)]
        args: serde_json::Value,
    },
    /// Watches job `job`: its state as it is now (unless `cursor` is the version the client
    /// already has) and again each time it changes. For operators (`[dashboard] role`) any job;
    /// for a job API client, its own jobs.
    Watch {
        /// The client's name for this watch (as for `subscribe`).
        id: String,
        /// The job's id.
        job: i64,
        /// The `cursor` of the last `job` message the client got, to resume after a reconnect.
        #[serde(default)]
        cursor: Option<String>,
    },
    /// Ends subscription or watch `id`.
    Unsubscribe {
        /// The subscription.
        id: String,
    },
    /// Asks for a `pong` (the server also sends WebSocket pings of its own).
    Ping,
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// Subscription `id`'s result: the first one, then each that differs from the last.
    Data {
        /// The subscription.
        id: String,
        /// The query's result.
        data: serde_json::Value,
    },
    /// Watch `id`'s job, as it is now.
    Job {
        /// The watch.
        id: String,
        /// The version shown: send it back as `cursor` when watching again after a reconnect.
        cursor: String,
        /// The job.
        job: JobState,
    },
    /// Something went wrong: with `id`, for that subscription (which ended unless the
    /// query failed on a re-run: it is run again at the next change); without, for the message
    /// the client sent.
    Error {
        /// The subscription, if the error is about one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// An RFC 7807 problem, as `/rpc/{function}` would answer it.
        error: Problem,
    },
    /// The client read too slowly and updates were dropped: the `data` of every subscription
    /// follows, and replaces what the client had.
    Resync,
    /// The answer to a `ping`.
    Pong,
}

/// A watched job, as `job` messages show it.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
#[non_exhaustive]
pub struct JobState {
    /// The job's id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// `scheduled`, `available`, `running`, `retryable`, `completed`, `discarded` or `cancelled`.
    pub state: String,
    /// The current (or last) attempt; 0 before the first.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The last progress reported: `{"percent": …, "message": …}`.
    pub progress: Option<serde_json::Value>,
    /// The output of a completed job.
    pub output: Option<serde_json::Value>,
    /// The last failed attempt's error message.
    pub last_error: Option<String>,
    /// When it runs (or ran).
    pub run_at: chrono::DateTime<chrono::Utc>,
    /// When its last attempt started.
    pub attempted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it finished.
    pub finalized_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether cancelling it was asked.
    pub cancel_requested: bool,
}

impl ServerMessage {
    /// An error about subscription `id` (or about the client's message, without one).
    pub(crate) fn error(id: Option<String>, e: &ForgeError) -> Self {
        let mut problem = Problem::new(e.status(), e.public_message()).with_type(e.problem_type());
        problem.errors = e.field_errors().to_vec();
        problem.data = e.data();
        ServerMessage::Error { id, error: problem }
    }

    /// An error with its own problem `type` and status.
    pub(crate) fn problem(id: Option<String>, status: axum::http::StatusCode, kind: &str, detail: String) -> Self {
        ServerMessage::Error { id, error: Problem::new(status, detail).with_type(format!("urn:forge:problem:{kind}")) }
    }
}
