//! Spans: what the layer buffers when a traced span closes, and how a batch is written to
//! `forge_traces`.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::telemetry::Telemetry;
use super::trace_context::{SpanContext, SpanId, TraceId, TraceParent, current_context};
use super::{DISPATCH_SPAN, sql};

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
        let Some(context) = current_context() else { return (None, None) };
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

/// One finished span.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanRecord {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// The span it ran in, if any (possibly in another process, from `traceparent`).
    pub parent_span_id: Option<SpanId>,
    /// The span's name: `forge.http`, `forge.function`, `forge.job`, `forge.cron`, or the
    /// application's own.
    pub name: String,
    /// `server` (a request), `consumer` (a job attempt), `producer` (a cron tick) or `internal`.
    pub kind: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it lasted, in microseconds.
    pub duration_us: i64,
    /// `ok` or `error`.
    pub status: &'static str,
    /// Its fields.
    pub attributes: Vec<(&'static str, serde_json::Value)>,
    /// The job it belongs to.
    pub job_id: Option<i64>,
    /// The function it belongs to.
    pub function: Option<String>,
}

/// Writes `batch` as `node_id` with one `COPY` (at thousands of job attempts a second, a span
/// per attempt is a large share of the database's work: COPY is its cheapest way in).
pub(crate) async fn insert(pool: &PgPool, node_id: &str, batch: &[SpanRecord]) -> Result<(), sqlx::Error> {
    let mut data = String::with_capacity(batch.len() * 256);
    for s in batch {
        let attributes = attributes_json(&s.attributes);
        let started_at = s.started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let (duration, job_id) = (s.duration_us.to_string(), s.job_id.map(|id| id.to_string()));
        let (trace_id, span_id) = (s.trace_id.to_string(), s.span_id.to_string());
        let parent_span_id = s.parent_span_id.map(|p| p.to_string());
        let fields: [Option<&str>; 12] = [
            Some(&trace_id),
            Some(&span_id),
            parent_span_id.as_deref(),
            Some(&s.name),
            Some(&s.kind),
            Some(&started_at),
            Some(&duration),
            Some(s.status),
            Some(&attributes),
            Some(node_id),
            job_id.as_deref(),
            s.function.as_deref(),
        ];
        copy_row(&mut data, &fields);
    }
    let mut tx = pool.begin().await?;
    // Telemetry does not wait for the disk: see `sql::RELAXED_COMMIT`.
    sqlx::query(sql::RELAXED_COMMIT).execute(&mut *tx).await?;
    let mut copy = tx.copy_in_raw(sql::COPY_SPANS).await?;
    copy.send(data.as_bytes()).await?;
    copy.finish().await?;
    tx.commit().await
}

/// `{"key": value, …}` straight from the pairs.
fn attributes_json(pairs: &[(&'static str, serde_json::Value)]) -> String {
    let mut out = String::with_capacity(16 + pairs.len() * 24);
    out.push('{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(*key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// Appends one row in COPY's text format: tab-separated, `\N` for NULL, escaped.
pub(crate) fn copy_row(out: &mut String, fields: &[Option<&str>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match field {
            None => out.push_str("\\N"),
            Some(text) => {
                for c in text.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        // Postgres text cannot hold NUL.
                        '\0' => {}
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::copy_row;

    #[test]
    fn copy_rows_escape_what_the_text_format_reserves() {
        let mut out = String::new();
        copy_row(&mut out, &[Some("a\tb\nc\\d\re\0f"), None, Some("")]);
        let pairs = [("kind", serde_json::json!("a\"b")), ("attempt", serde_json::json!(2))];
        assert_eq!(super::attributes_json(&pairs), r#"{"kind":"a\"b","attempt":2}"#);
        assert_eq!(out, "a\\tb\\nc\\\\d\\ref\t\\N\t\n");
    }
}
