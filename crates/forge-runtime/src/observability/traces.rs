//! Spans: what the layer buffers when a traced span closes, and how a batch is written to
//! `forge_traces`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::sql;

/// One finished span.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanRecord {
    /// The trace (32 hex digits).
    pub trace_id: String,
    /// The span (16 hex digits).
    pub span_id: String,
    /// The span it ran in, if any (possibly in another process, from `traceparent`).
    pub parent_span_id: Option<String>,
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

/// Writes `batch` as `node_id` in one statement.
pub(crate) async fn insert(pool: &PgPool, node_id: &str, batch: &[SpanRecord]) -> Result<(), sqlx::Error> {
    let n = batch.len();
    let (mut trace_id, mut span_id, mut parent, mut name) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut kind, mut started_at, mut duration) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut status, mut attributes, mut job_id, mut function) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for s in batch {
        trace_id.push(s.trace_id.as_str());
        span_id.push(s.span_id.as_str());
        parent.push(s.parent_span_id.as_deref());
        name.push(s.name.as_str());
        kind.push(s.kind.as_str());
        started_at.push(s.started_at);
        duration.push(s.duration_us);
        status.push(s.status);
        attributes
            .push(serde_json::Value::Object(s.attributes.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()));
        job_id.push(s.job_id);
        function.push(s.function.as_deref());
    }
    sqlx::query(sql::INSERT_SPANS)
        .bind(trace_id)
        .bind(span_id)
        .bind(parent)
        .bind(name)
        .bind(kind)
        .bind(started_at)
        .bind(duration)
        .bind(status)
        .bind(attributes)
        .bind(node_id)
        .bind(job_id)
        .bind(function)
        .execute(pool)
        .await?;
    Ok(())
}
