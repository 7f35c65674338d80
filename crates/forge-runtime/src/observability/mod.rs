//! What a node records about itself, stored in Postgres with no collector.
//!
//! - **Logs**: every `tracing` event at `[observability] store_level` or above goes to
//!   `forge_logs`, carrying the node, trace and span, and the job, cron or function it
//!   happened in.
//! - **Traces**: spans inside a trace go to `forge_traces` when they close. Every HTTP request
//!   (`forge.http`), function call (`forge.function`), insert of jobs (`forge.dispatch`), job
//!   attempt (`forge.job`) and cron tick (`forge.cron`) is a span; a job continues the trace of
//!   whatever dispatched it. Job attempts are the exception to "stored": [`trace`] rebuilds them
//!   from the jobs' rows, which already record every attempt (see the `attempts` module). A
//!   plain request's span (it succeeded quickly and nothing inside it was stored) is stored only
//!   within `[observability] request_spans` per second ([`Telemetry::set_request_spans`]).
//! - **Metrics**: [`Metrics`] in memory, shown by `GET /metrics` and written to `forge_metrics`
//!   every `metrics_interval`, one row per series per interval. Application code records its
//!   own through the `metrics` crate's macros ([`ForgeRecorder`]).
//!
//! Recording never waits on the database: see [`Telemetry`]. The leader deletes old rows
//! ([`enforce_retention`]); [`LogQuery`], [`trace`] and [`SeriesQuery`] read them back.

mod attempts;
mod buffer;
mod dispatch_span;
mod layer;
mod logs;
mod metrics;
mod query;
mod recorder;
mod retention;
mod span_tree;
mod sql;
mod system;
mod telemetry;
mod trace_context;
mod traces;

pub(crate) use dispatch_span::DispatchSpan;
pub(crate) use layer::JOB_SPAN;
pub(crate) use layer::current_metrics;
pub use layer::{StoreFilter, TelemetryLayer, Unentered, current_traceparent};
pub use logs::LogRecord;
pub use metrics::{DURATION_BUCKETS, Metrics};
pub use query::{LogCursor, LogEntry, LogPage, LogQuery, MAX_LOG_PAGE, Point, Series, SeriesQuery, job_trace, trace};
pub use recorder::ForgeRecorder;
pub(crate) use retention::run as retention_duty;
pub use retention::{Pruned, enforce_retention};
pub use span_tree::{SpanNode, Trace};
pub(crate) use telemetry::{FlushSettings, sample_queue_depth, spawn_flusher};
pub use telemetry::{Probes, Telemetry, queue_depths};
pub use trace_context::{
    ACCESS_TARGET, DISPATCH_SPAN, FUNCTION_SPAN, HTTP_SPAN, InvalidId, JOB_ATTEMPT_SPAN, SpanId, TRACE_SAMPLED,
    TraceId, TraceParent, trace_of_job,
};
pub(crate) use trace_context::{SpanContext, in_task_context, new_uuid};
pub use traces::SpanRecord;
