//! The delivery of one event to one endpoint: a Forge job of kind `forge.webhook`.
//!
//! Each attempt loads the endpoint (a deleted or disabled one ends the delivery, cancelled),
//! signs the body with the endpoint's live secrets, and POSTs it with `webhook-id`,
//! `webhook-timestamp`, `webhook-signature` and `traceparent`. Every attempt is recorded in
//! `forge_webhook_deliveries` (status, latency, error). A 2xx ends it; a `410 Gone` disables the
//! endpoint; any other answer, a timeout or a refused address is retried on the schedule
//! (`Retry-After` honoured), and an endpoint with no success for `disable_after` is disabled
//! with its reason. The message id stays the same across attempts and replays, so a receiver
//! can drop duplicates.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::lookup::Endpoints;
use super::record::Record;
use super::settings::WebhookSettings;
use super::signature;
use super::sql;
use crate::jobs::{Job, JobContext, JobError, JobOptions};

/// The queue deliveries run on; a node with `[api] enabled` works it (with
/// `[api.webhooks] concurrency` slots) besides `[worker] queues`.
pub const QUEUE: &str = "forge_webhooks";

/// The delivery job.
#[derive(Debug)]
pub struct DeliverWebhook;

/// What a delivery carries: the endpoint, the event, and the exact body sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    /// The endpoint.
    pub endpoint: Uuid,
    /// The event (`forge_job_events.id`).
    pub event: i64,
    /// The job the event is about.
    pub job: i64,
    /// `webhook-id`: the same for every attempt and replay of this event.
    pub msg_id: String,
    /// The body: `{type, timestamp, data}`.
    pub payload: serde_json::Value,
}

/// What a successful delivery records.
#[derive(Debug, Serialize)]
pub struct Delivered {
    /// The endpoint's status code.
    pub status: u16,
    /// How long it took to answer, in milliseconds.
    pub latency_ms: u64,
}

impl Job for DeliverWebhook {
    const NAME: &'static str = "forge.webhook";
    type Args = Delivery;
    type Output = Delivered;

    fn options() -> JobOptions {
        let mut options = JobOptions::new();
        options.queue = QUEUE;
        options.timeout = Duration::from_secs(120);
        options
    }

    async fn run(ctx: &JobContext, delivery: Delivery) -> Result<Delivered, JobError> {
        let Some(settings) = ctx.extension::<WebhookSettings>() else {
            return Err(JobError::retry("this node has no [api.webhooks] settings"));
        };
        let pool = ctx.db();
        let endpoint = settings.endpoints(pool).get(delivery.endpoint).await?;
        let Some(endpoint) = endpoint else {
            return Err(JobError::cancel("the endpoint was deleted"));
        };
        if endpoint.disabled_at.is_some() {
            return Err(JobError::cancel("the endpoint is disabled"));
        }
        let live = if endpoint.previous_live() {
            &endpoint.secrets[..]
        } else {
            &endpoint.secrets[..1.min(endpoint.secrets.len())]
        };
        let body = serde_json::to_vec(&delivery.payload)?;
        let attempt = i32::try_from(ctx.attempt()).unwrap_or(i32::MAX);
        let started = Instant::now();
        let sent = send(settings, &endpoint.url, live, &delivery.msg_id, &body).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, error) = match &sent {
            Ok(answer) => (Some(answer.status), (!answer.is_success()).then(|| format!("answered {}", answer.status))),
            Err(e) => (None, Some(e.clone())),
        };
        let succeeded = matches!(&sent, Ok(answer) if answer.is_success());
        let record = Record {
            endpoint: delivery.endpoint,
            event: delivery.event,
            job: delivery.job,
            attempt,
            status: status.map(i32::from),
            error: error.map(|mut e| {
                forge_core::text::clean_text(&mut e, 2048);
                e
            }),
            latency_ms: i32::try_from(latency_ms).unwrap_or(i32::MAX),
            succeeded,
        };
        let overdue = settings.recorder(pool).record(record).await?;
        match sent {
            Ok(answer) if answer.is_success() => Ok(Delivered { status: answer.status, latency_ms }),
            Ok(answer) if answer.status == 410 => {
                disable(pool, settings.endpoints(pool), delivery.endpoint, "the endpoint answered 410 Gone").await?;
                Err(JobError::permanent("410 Gone: the endpoint is disabled"))
            }
            failed => {
                let (message, retry_after) = match failed {
                    Ok(answer) => (format!("answered {}", answer.status), answer.retry_after),
                    Err(e) => (e, None),
                };
                if overdue {
                    let reason = format!(
                        "no successful delivery for {}; last: {message}",
                        describe_duration(settings.disable_after)
                    );
                    disable(pool, settings.endpoints(pool), delivery.endpoint, &reason).await?;
                    return Err(JobError::permanent(format!("{message}; the endpoint is disabled")));
                }
                let delay = settings.delay_after(ctx.attempt(), retry_after, random_unit());
                Err(JobError::retry_in(message, delay))
            }
        }
    }
}

/// An endpoint's answer.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
}

impl Answer {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// POSTs the signed body; an error is a sentence (refused address, timeout, connection).
async fn send(
    settings: &WebhookSettings,
    url: &str,
    secrets: &[String],
    msg_id: &str,
    body: &[u8],
) -> Result<Answer, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("the endpoint's URL is not valid: {e}"))?;
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = settings
        .client
        .request(reqwest::Method::POST, parsed)
        .map_err(|refused| format!("refused: {refused}; allow it with [api.webhooks] allow_private or allowed_ranges"))?
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature::sign(secrets, msg_id, timestamp, body))
        .body(body.to_vec());
    if let Some(traceparent) = crate::observability::current_traceparent() {
        request = request.header("traceparent", traceparent.to_string());
    }
    let response = request.send().await.map_err(|e| describe(&e))?;
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Ok(Answer { status: response.status().as_u16(), retry_after })
}

/// A request error in a sentence, with the refusal of the address policy when that is why.
fn describe(e: &reqwest::Error) -> String {
    if let Some(refused) = super::guard::GuardedClient::refusal(e) {
        return format!("refused: {refused}; allow it with [api.webhooks] allow_private or allowed_ranges");
    }
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    forge_core::jobs::error_chain(e)
}

async fn disable(pool: &sqlx::PgPool, endpoints: &Endpoints, endpoint: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql::DISABLE_ENDPOINT).bind(endpoint).bind(reason).execute(pool).await?;
    // Other nodes hear of it from the trigger's notice; this one forgets at once.
    endpoints.forget();
    tracing::warn!(target: "forge::webhooks", %endpoint, reason, "webhook endpoint disabled");
    Ok(())
}

/// `5 days`, `3 hours`, `90 seconds`.
fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

/// A number in 0.0..1.0 for jitter.
fn random_unit() -> f64 {
    let bits = Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
