//! Spans: what the layer buffers when a traced span closes, and how a batch is written to
//! `forge_traces`.

use chrono::{DateTime, Utc};
use forge_core::text;
use serde::Serialize;
use sqlx::PgPool;

use super::sql;
use super::trace_context::{SpanId, TraceId};

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
        let needs_cleaning = match value {
            serde_json::Value::String(s) => s.len() > text::caps::SPAN_ATTRIBUTE || s.contains('\0'),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => true,
            _ => false,
        };
        if needs_cleaning {
            let mut value = value.clone();
            text::clean_json(&mut value, text::caps::SPAN_ATTRIBUTE);
            out.push_str(&value.to_string());
        } else {
            out.push_str(&value.to_string());
        }
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
