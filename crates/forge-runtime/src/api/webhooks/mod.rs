//! Webhooks, signed per the Standard Webhooks specification.
//!
//! A client registers endpoints (`/v1/webhooks`) naming the event types it wants, or gives one
//! with a job (`"webhook"` in a submission) for that job's events alone. The dispatcher
//! (`dispatch.rs`) turns each new event into one delivery job per endpoint that wants it; a
//! delivery (`deliver.rs`) POSTs the event signed with the endpoint's secret ([`signature`]),
//! to an address the policy allows ([`guard`]), on the published retry schedule
//! (`[api.webhooks] schedule`). See `website/src/concepts/job-api.md` for the contract.

pub(crate) mod deliver;
pub(crate) mod dispatch;
pub mod guard;
mod lookup;
pub(crate) mod manage;
mod record;
pub(crate) mod routes;
mod settings;
pub mod signature;
pub(crate) mod sql;

pub use deliver::{DeliverWebhook, Delivered, Delivery, QUEUE};
pub use settings::WebhookSettings;

/// The event types an endpoint may ask for.
pub const EVENT_TYPES: [&str; 7] =
    ["job.created", "job.started", "job.progress", "job.retried", "job.succeeded", "job.failed", "job.cancelled"];
