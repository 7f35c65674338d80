//! Log records: what the layer buffers and how a batch is written to `forge_logs`.

use chrono::{DateTime, Utc};
use forge_core::text;
use serde::Serialize;
use sqlx::PgPool;

use super::sql;
use super::trace_context::{SpanId, TraceId};

/// One log record, as buffered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogRecord {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// The module or target that logged it.
    pub target: String,
    /// The message.
    pub message: String,
    /// The event's other fields.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The trace it belongs to.
    pub trace_id: Option<TraceId>,
    /// The span it happened in.
    pub span_id: Option<SpanId>,
    /// The job it happened in.
    pub job_id: Option<i64>,
    /// The cron whose job it happened in.
    pub cron: Option<String>,
    /// The function it happened in.
    pub function: Option<String>,
}

/// Writes `batch` as `node_id` in one statement.
pub(crate) async fn insert(pool: &PgPool, node_id: &str, batch: &[LogRecord]) -> Result<(), sqlx::Error> {
    let n = batch.len();
    let (mut at, mut level, mut target, mut message) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut fields, mut trace_id, mut span_id) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut job_id, mut cron, mut function) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for r in batch {
        at.push(r.at);
        level.push(r.level);
        target.push(r.target.as_str());
        let mut text = r.message.clone();
        text::clean_text(&mut text, text::caps::LOG_MESSAGE);
        message.push(text);
        let mut map = r.fields.clone();
        for value in map.values_mut() {
            text::clean_json(value, text::caps::LOG_FIELD);
        }
        fields.push(serde_json::Value::Object(map));
        trace_id.push(r.trace_id.map(|t| t.to_string()));
        span_id.push(r.span_id.map(|s| s.to_string()));
        job_id.push(r.job_id);
        cron.push(r.cron.as_deref());
        function.push(r.function.as_deref());
    }
    let mut tx = pool.begin().await?;
    sqlx::query(sql::RELAXED_COMMIT).execute(&mut *tx).await?;
    sqlx::query(sql::INSERT_LOGS)
        .bind(at)
        .bind(level)
        .bind(target)
        .bind(message)
        .bind(fields)
        .bind(trace_id)
        .bind(span_id)
        .bind(node_id)
        .bind(job_id)
        .bind(cron)
        .bind(function)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub(crate) fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}
