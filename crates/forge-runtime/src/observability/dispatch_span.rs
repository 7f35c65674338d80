//! [`DispatchSpan`]: the stored `forge.dispatch` span of an insert of jobs inside a trace.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::layer::referenced_context;
use super::telemetry::Telemetry;
use super::trace_context::{DISPATCH_SPAN, SpanContext, SpanId, TraceParent};
use super::traces::SpanRecord;

/// Id ranges a `forge.dispatch` span keeps at most (a batch's ids are nearly always one range).
const MAX_DISPATCH_RANGES: usize = 1000;

/// The `forge.dispatch` span of jobs inserted inside a stored trace: the producer side of the
/// jobs' attempts. Its `jobs` attribute lists the inserted ids (as `[first, last]` ranges);
/// that link is how [`crate::observability::trace`] finds the attempts, which are not stored
/// spans but rebuilt from the jobs' rows.
#[derive(Debug)]
pub(crate) struct DispatchSpan {
    node: Arc<Telemetry>,
    context: SpanContext,
    span_id: SpanId,
    started_at: DateTime<Utc>,
    started: Instant,
}

impl DispatchSpan {
    /// For jobs inserted now: a span under the current one if that one is in a trace this
    /// process stores, and the `traceparent` the jobs carry (this span's, else the current
    /// span's if it is in a trace at all).
    pub(crate) fn start() -> (Option<Self>, Option<TraceParent>) {
        let Some(context) = referenced_context() else { return (None, None) };
        let (Some(node), Some(trace_id)) = (context.node.clone(), context.trace_id) else {
            return (None, context.traceparent());
        };
        let span_id = SpanId::new();
        let traceparent = TraceParent { trace_id, parent_id: span_id };
        let span = Self { node, context, span_id, started_at: Utc::now(), started: Instant::now() };
        (Some(span), Some(traceparent))
    }

    /// Records the span: `kinds` of the jobs and the `ids` they got (none if the insert failed).
    pub(crate) fn finish<'a>(self, kinds: impl Iterator<Item = &'a str>, ids: &[i64], failed: bool) {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<[i64; 2]> = Vec::new();
        for id in sorted {
            match ranges.last_mut() {
                Some(last) if last[1] + 1 == id => last[1] = id,
                _ => ranges.push([id, id]),
            }
        }
        let truncated = ranges.len() > MAX_DISPATCH_RANGES;
        ranges.truncate(MAX_DISPATCH_RANGES);
        let mut distinct: Vec<&str> = Vec::new();
        for kind in kinds {
            if !distinct.contains(&kind) && distinct.len() < 16 {
                distinct.push(kind);
            }
        }
        let mut attributes =
            vec![("jobs", serde_json::json!(ranges)), ("count", ids.len().into()), ("kind", distinct.join(",").into())];
        if truncated {
            attributes.push(("jobs_truncated", true.into()));
        }
        let Some(trace_id) = self.context.trace_id else { return };
        self.node.push_span(SpanRecord {
            trace_id,
            span_id: self.span_id,
            parent_span_id: self.context.span_id,
            name: DISPATCH_SPAN.to_owned(),
            kind: "producer".to_owned(),
            started_at: self.started_at,
            duration_us: i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX),
            status: if failed { "error" } else { "ok" },
            attributes,
            job_id: self.context.job_id,
            function: self.context.function,
        });
    }
}
