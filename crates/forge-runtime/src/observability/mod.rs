//! What a node measures about itself.
//!
//! For now: [`Metrics`], counters and histograms aggregated in memory and rendered in the
//! Prometheus text format by the gateway's `GET /metrics`. Logs, traces and flushing metrics
//! into Postgres arrive with this component's next part.

mod metrics;

pub use metrics::{DURATION_BUCKETS, Metrics, render_gauge};
