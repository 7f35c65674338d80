//! What `/v1` reads and writes. Every request type refuses unknown fields, so a misspelt option
//! is a 422 naming it rather than a silent default.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/jobs`: a job to submit.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// The kind: one the application exposes to clients.
    #[schema(min_length = 1, max_length = 255)]
    pub kind: String,
    /// Its arguments, checked against the kind's Rust type. Default `{}`.
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
    /// The queue; default the kind's.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub queue: Option<String>,
    /// `critical`, `high`, `normal`, `low` or `background`; default the kind's.
    #[serde(default)]
    #[schema(pattern = "^(critical|high|normal|low|background)$")]
    pub priority: Option<String>,
    /// Run no earlier than this (RFC 3339).
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this many seconds from now (ignored with `run_at`).
    #[serde(default)]
    #[schema(maximum = 316_224_000)]
    pub delay: Option<u64>,
    /// Attempts before the job fails for good; default the kind's.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// Tags, for filtering (at most 16, each 1 to 64 characters).
    #[serde(default)]
    #[schema(max_items = 16)]
    pub tags: Vec<String>,
    /// A URL to POST this job's events to, signed with a secret the answer carries once.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2048, pattern = "^[hH][tT][tT][pP][sS]?://")]
    pub webhook: Option<String>,
}

/// The answer to a submission: the job and, when one was given, its webhook's secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubmittedJob {
    /// The job.
    #[serde(flatten)]
    pub job: ApiJob,
    /// The job's webhook endpoint with its secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookWithSecret>,
}

/// A job's times as `/v1` writes them: UTC with microseconds and `Z`, always the same width
/// (as Postgres stores them, and as the one-statement submission writes them).
fn micros<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

fn micros_or_null<S: serde::Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => micros(at, s),
        None => s.serialize_none(),
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A job as a client sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct ApiJob {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// `scheduled`, `available`, `running`, `retryable`, `completed`, `discarded` or `cancelled`.
    pub state: String,
    /// `critical` … `background`.
    pub priority: String,
    /// Attempts made so far.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was submitted.
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
    /// When it runs (or ran) next.
    #[serde(serialize_with = "micros")]
    pub run_at: DateTime<Utc>,
    /// When its last attempt started.
    #[serde(serialize_with = "micros_or_null")]
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(serialize_with = "micros_or_null")]
    pub finalized_at: Option<DateTime<Utc>>,
    /// What it last said about its progress: `{percent, message}`.
    pub progress: Option<serde_json::Value>,
    /// Its result, once it succeeded.
    pub output: Option<serde_json::Value>,
    /// Whether cancellation was asked for (a running job ends `cancelled` soon).
    pub cancel_requested: bool,
}

/// A page of a listing: `data`, and the cursor of the next page (absent on the last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One state change of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct JobEvent {
    /// Its id: increasing, the cursor of `/events` and the SSE `id`.
    pub id: i64,
    /// `job.created`, `job.started`, `job.progress`, `job.retried`, `job.succeeded`,
    /// `job.failed` or `job.cancelled`.
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub event_type: String,
    /// The job.
    pub job_id: i64,
    /// The attempt it concerns (0 before the first).
    pub attempt: i32,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What it says: `error` and `run_at` for a retry, `error` for a failure, `percent` and
    /// `message` for progress, `node` for a start.
    pub data: serde_json::Value,
}

/// One attempt in a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportAttempt {
    /// From 1.
    pub attempt: i32,
    /// When it started, when known.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (absent while it runs).
    pub ended_at: Option<DateTime<Utc>>,
    /// `succeeded`, `failed`, `running`, `cancelled` or `lost` (its node died).
    pub outcome: String,
    /// What went wrong, for a failed attempt.
    pub error: Option<String>,
    /// The node it ran on, when known.
    pub node: Option<String>,
}

/// How long a job took, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportTimings {
    /// From submission to its first attempt.
    pub queued_ms: Option<i64>,
    /// From its last attempt's start to its end.
    pub last_attempt_ms: Option<i64>,
    /// From submission to its end.
    pub total_ms: Option<i64>,
}

/// `GET /v1/jobs/{id}/report`: everything about a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobReport {
    /// The job.
    pub job: ApiJob,
    /// `succeeded`, `failed` or `cancelled` once it finished; absent before.
    pub outcome: Option<String>,
    /// Every attempt, first to last.
    pub attempts: Vec<ReportAttempt>,
    /// Its timings.
    pub timings: ReportTimings,
    /// Its events, oldest first (at most 1,000; page `/events` for more).
    pub events: Vec<JobEvent>,
}

/// `POST /v1/clients`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// A unique name, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

/// A client of the job API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Client {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was disabled (its keys stop working).
    pub disabled_at: Option<DateTime<Utc>>,
}

/// `POST /v1/clients/{id}/keys`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientKey {
    /// A name for people; default `"<client name> key"`.
    #[serde(default)]
    pub name: Option<String>,
    /// What the key may do (`jobs:read`, `jobs:write`, `webhooks`); default everything.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When it stops working by itself.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/clients/{id}/keys/{key_id}/rotate`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working, in seconds (at most 30 days). Default 0: at once.
    #[serde(default)]
    #[schema(maximum = 2_592_000)]
    pub grace_seconds: u64,
}

/// A client's key as listed: its prefix, never its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientKey {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// `forge_<prefix>_…`: enough to recognise it.
    pub prefix: String,
    /// What it may do (empty: everything).
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was, or will be (a rotation's grace), revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key just created: the record and, this once, the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedClientKey {
    /// The record.
    #[serde(flatten)]
    pub record: ClientKey,
    /// The key: give it to the client now, it is not stored.
    pub key: String,
}

impl From<crate::gateway::ApiKey> for ClientKey {
    fn from(k: crate::gateway::ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: format!("{}{}", crate::gateway::api_keys::API_KEY_PREFIX, k.prefix),
            scopes: k.scopes,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            expires_at: k.expires_at,
        }
    }
}

/// The scopes a client's key may carry.
pub const SCOPES: [&str; 3] = ["jobs:read", "jobs:write", "webhooks"];

/// `POST /v1/webhooks`: an endpoint to create.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed: `http` or `https`, at most 2,048 characters.
    #[schema(min_length = 1, max_length = 2048, pattern = "^[hH][tT][tT][pP][sS]?://")]
    pub url: String,
    /// The event types it wants (see [`EVENT_TYPES`](super::webhooks::EVENT_TYPES)); empty:
    /// all.
    #[serde(default)]
    pub events: Vec<String>,
    /// A note for people, at most 500 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub description: Option<String>,
}

/// A webhook endpoint (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: Uuid,
    /// Its client.
    pub client_id: Uuid,
    /// The job it was given with, for an endpoint of one job.
    pub job_id: Option<i64>,
    /// Where events go.
    pub url: String,
    /// The event types it wants (empty: all).
    pub events: Vec<String>,
    /// A note for people.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was disabled; no event is delivered to it while it is.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why: `410 Gone`, failing for too long, or by hand.
    pub disabled_reason: Option<String>,
    /// The first failure of the current streak, if it is failing.
    pub failing_since: Option<DateTime<Utc>>,
    /// Its last successful delivery (to the second).
    pub last_success_at: Option<DateTime<Utc>>,
}

/// An endpoint with its signing secret: the answer of creating one or rotating its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks).
    pub secret: String,
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing too, in seconds (at most 7 days). Default
    /// 86,400 (a day).
    #[serde(default)]
    #[schema(maximum = 604_800)]
    pub grace_seconds: Option<u64>,
}

/// `POST /v1/webhooks/{id}/recover`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// Replay the events since this time (RFC 3339), at most 10,000.
    pub since: DateTime<Utc>,
}

/// What a recovery or a resend queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// Deliveries queued.
    pub queued: u64,
}

/// One attempt to deliver an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct DeliveryAttempt {
    /// Its id (the cursor of the listing).
    pub id: i64,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// The event delivered.
    pub event_id: i64,
    /// The job the event is about.
    pub job_id: Option<i64>,
    /// Which attempt of the delivery, from 1.
    pub attempt: i32,
    /// The endpoint's status code, when it answered.
    pub status: Option<i32>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// How long the endpoint took, in milliseconds.
    pub latency_ms: Option<i32>,
    /// When.
    pub at: DateTime<Utc>,
}

/// `POST /v1/webhooks/{id}/resend`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendEvent {
    /// The event to deliver again (one this endpoint wants).
    pub event_id: i64,
}

/// The body of the POSTs that take no options (cancel, retry, enable, disable): nothing, or
/// an empty object.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}
