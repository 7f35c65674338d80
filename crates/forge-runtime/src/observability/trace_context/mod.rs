//! Trace context, in one place: [`TraceId`] and [`SpanId`], the W3C [`TraceParent`] that carries
//! them across processes (HTTP headers, a job's `metadata.traceparent`), and the context a span
//! or a job attempt passes on to what runs inside it ([`SpanContext`], kept in the span's
//! extensions or, for a job attempt, in a task-local).
//!
//! The gateway reads an incoming `traceparent` with [`TraceParent::parse`]; a dispatch writes the
//! jobs' `traceparent` from the current context; the worker continues it for each attempt
//! ([`SpanContext::for_attempt`]). A job dispatched outside any trace runs in a trace of its own,
//! [`TraceId::of_job`], from which [`TraceId::job`] gets the job back: that is how the dashboard
//! finds a job's attempts from its trace.
//!
//! The ids and the header are in `ids.rs`; this file holds the context and its task-local.

mod ids;

use std::sync::Arc;

use forge_core::jobs::JobId;

pub(crate) use self::ids::new_uuid;
pub use self::ids::{
    ACCESS_TARGET, DISPATCH_SPAN, FUNCTION_SPAN, HTTP_SPAN, InvalidId, JOB_ATTEMPT_SPAN, SpanId, TRACE_SAMPLED,
    TraceId, TraceParent,
};
use super::telemetry::Telemetry;

/// The trace job `id` runs in: its dispatcher's (`metadata.traceparent`), or its own.
pub fn trace_of_job(id: JobId, metadata: &serde_json::Value) -> TraceId {
    TraceParent::of_job_metadata(metadata).map_or_else(|| TraceId::of_job(id), |p| p.trace_id)
}

/// What a span passes on to the spans and events inside it.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpanContext {
    /// The node whose buffers its records go to.
    pub(crate) node: Option<Arc<Telemetry>>,
    /// The trace, if it is in one.
    pub(crate) trace_id: Option<TraceId>,
    /// The span itself.
    pub(crate) span_id: Option<SpanId>,
    /// The span it runs in.
    pub(crate) parent_span_id: Option<SpanId>,
    pub(crate) job_id: Option<i64>,
    pub(crate) cron: Option<String>,
    pub(crate) function: Option<String>,
}

impl SpanContext {
    /// The context of attempt `attempt` of job `id` run by `node`: it continues the trace of
    /// whatever dispatched the job (its `traceparent`), or the job's own.
    pub(crate) fn for_attempt(
        node: Arc<Telemetry>,
        id: JobId,
        attempt: i32,
        metadata: &serde_json::Value,
    ) -> SpanContext {
        let parent = TraceParent::of_job_metadata(metadata);
        SpanContext {
            node: Some(node),
            trace_id: Some(parent.map_or_else(|| TraceId::of_job(id), |p| p.trace_id)),
            span_id: Some(SpanId::of_attempt(id, attempt)),
            parent_span_id: parent.map(|p| p.parent_id),
            job_id: Some(id.0),
            cron: metadata.get("cron").and_then(|v| v.as_str()).map(str::to_owned),
            function: None,
        }
    }

    /// The `traceparent` naming this span as the parent.
    pub(crate) fn traceparent(&self) -> Option<TraceParent> {
        Some(TraceParent { trace_id: self.trace_id?, parent_id: self.span_id? })
    }
}

tokio::task_local! {
    /// The job attempt the current task runs: the context of records outside any stored span.
    /// Cheaper than a stored span per attempt, which at thousands of jobs a second costs more
    /// than the jobs themselves (see `forge-bench observability`).
    static TASK_CONTEXT: SpanContext;
}

/// The context of the job attempt the current task runs, if any.
pub(crate) fn task_context() -> Option<SpanContext> {
    TASK_CONTEXT.try_with(SpanContext::clone).ok()
}

/// Runs `future` as a job attempt with `context`.
pub(crate) fn in_task_context<F: std::future::Future>(
    context: SpanContext,
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    TASK_CONTEXT.scope(context, future)
}

/// Marks a span that something outside it names as a parent (a job it dispatched, a call it
/// made with its `traceparent`): it is stored, whatever the request budget says, so the trace
/// has no hole.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Referenced;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_trace_is_its_dispatchers_or_its_own() {
        assert_eq!(trace_of_job(JobId(42), &serde_json::json!({})), TraceId::of_job(JobId(42)));
        let metadata = serde_json::json!({ "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" });
        assert_eq!(trace_of_job(JobId(42), &metadata).to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
