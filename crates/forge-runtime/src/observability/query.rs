//! Reading telemetry back: logs, a trace as a span tree, a metric's series. Used by the
//! dashboard and `/_api`; every query is served by an index (see the `0006_observability`
//! migration) and bounded by a limit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Row};

use super::span_tree::{SpanNode, Trace, build_tree};
use super::sql;
use super::trace_context::{SpanId, TraceId, trace_of_job};
use forge_core::jobs::JobId;

/// The most log records one page holds.
pub const MAX_LOG_PAGE: u32 = 1000;

/// A search of `forge_logs`, newest first.
///
/// ```
/// use forge_runtime::observability::LogQuery;
///
/// let query = LogQuery::default().min_level("warn").text("timeout").limit(50);
/// ```
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    levels: Option<Vec<&'static str>>,
    text: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    job_id: Option<i64>,
    trace_id: Option<TraceId>,
    node_id: Option<String>,
    before: Option<LogCursor>,
    limit: Option<u32>,
}

/// Where a page of logs ended: pass it to [`LogQuery::before`] for the next (older) page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogCursor {
    /// The last record's time.
    pub at: DateTime<Utc>,
    /// The last record's id.
    pub id: i64,
}

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl LogQuery {
    /// Records at `level` or more severe (`error`, `warn`, `info`, `debug`, `trace`); an
    /// unknown level matches nothing.
    pub fn min_level(mut self, level: &str) -> Self {
        let level = level.to_ascii_lowercase();
        self.levels = Some(match LEVELS.iter().position(|l| *l == level) {
            Some(i) => LEVELS[..=i].to_vec(),
            None => Vec::new(),
        });
        self
    }

    /// Records whose message contains `text` (case-insensitive).
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Records at or after `at`.
    pub fn since(mut self, at: DateTime<Utc>) -> Self {
        self.since = Some(at);
        self
    }

    /// Records before `at`.
    pub fn until(mut self, at: DateTime<Utc>) -> Self {
        self.until = Some(at);
        self
    }

    /// Records logged inside job `id`.
    pub fn job(mut self, id: i64) -> Self {
        self.job_id = Some(id);
        self
    }

    /// Records of trace `trace_id`.
    pub fn trace(mut self, trace_id: TraceId) -> Self {
        self.trace_id = Some(trace_id);
        self
    }

    /// Records of node `node_id`.
    pub fn node(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }

    /// Records older than a previous page's end.
    pub fn before(mut self, cursor: LogCursor) -> Self {
        self.before = Some(cursor);
        self
    }

    /// The page size: 100 unless set, at most [`MAX_LOG_PAGE`].
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// Runs the search.
    pub async fn fetch(&self, pool: &PgPool) -> Result<LogPage, sqlx::Error> {
        let limit = self.limit.unwrap_or(100).clamp(1, MAX_LOG_PAGE);
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "select id, at, level, target, message, fields, trace_id, span_id, node_id, job_id, cron, function \
             from forge_logs where true",
        );
        if let Some(levels) = &self.levels {
            q.push(" and level = any(").push_bind(levels.clone()).push(")");
        }
        if let Some(text) = &self.text {
            let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q.push(" and message ilike ").push_bind(pattern);
        }
        if let Some(since) = self.since {
            q.push(" and at >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            q.push(" and at < ").push_bind(until);
        }
        if let Some(job_id) = self.job_id {
            q.push(" and job_id = ").push_bind(job_id);
        }
        if let Some(trace_id) = self.trace_id {
            q.push(" and trace_id = ").push_bind(trace_id);
        }
        if let Some(node_id) = &self.node_id {
            q.push(" and node_id = ").push_bind(node_id.clone());
        }
        if let Some(cursor) = self.before {
            q.push(" and (at, id) < (").push_bind(cursor.at).push(", ").push_bind(cursor.id).push(")");
        }
        q.push(" order by at desc, id desc limit ").push_bind(i64::from(limit) + 1);
        let mut entries: Vec<LogEntry> = q.build_query_as().fetch_all(pool).await?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next = if more { entries.last().map(|e| LogCursor { at: e.at, id: e.id }) } else { None };
        Ok(LogPage { entries, next })
    }
}

/// A stored log record.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub struct LogEntry {
    /// Its id.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its level.
    pub level: String,
    /// Its target (module).
    pub target: String,
    /// Its message.
    pub message: String,
    /// Its other fields.
    pub fields: serde_json::Value,
    /// The trace it belongs to.
    pub trace_id: Option<TraceId>,
    /// The span it happened in.
    pub span_id: Option<SpanId>,
    /// The node that logged it.
    pub node_id: String,
    /// The job it happened in.
    pub job_id: Option<i64>,
    /// The cron whose job it happened in.
    pub cron: Option<String>,
    /// The function it happened in.
    pub function: Option<String>,
}

/// One page of logs, newest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogPage {
    /// The records.
    pub entries: Vec<LogEntry>,
    /// Where the next (older) page starts, if there is one.
    pub next: Option<LogCursor>,
}

/// Trace `trace_id` as a span tree, or `None` if it has no spans: its stored spans, and the
/// attempts of its jobs rebuilt from their rows (see the `attempts` module).
pub async fn trace(pool: &PgPool, trace_id: TraceId) -> Result<Option<Trace>, sqlx::Error> {
    trace_with_jobs(pool, trace_id, &[]).await
}

/// The trace job `id` runs in, with that job's attempts even where no stored span leads to them
/// (the dispatching node stored no telemetry, or its `forge.dispatch` span is older than the
/// traces retention while the job is kept longer); `None` if there is no such job.
pub async fn job_trace(pool: &PgPool, id: JobId) -> Result<Option<Trace>, sqlx::Error> {
    let metadata: Option<serde_json::Value> =
        sqlx::query_scalar("select metadata from forge_jobs where id = $1").bind(id).fetch_optional(pool).await?;
    let Some(metadata) = metadata else { return Ok(None) };
    trace_with_jobs(pool, trace_of_job(id, &metadata), &[id]).await
}

/// Trace `trace_id`, with the attempts of `jobs` besides those its spans lead to.
async fn trace_with_jobs(pool: &PgPool, trace_id: TraceId, jobs: &[JobId]) -> Result<Option<Trace>, sqlx::Error> {
    let rows = sqlx::query(sql::TRACE_SPANS).bind(trace_id).fetch_all(pool).await?;
    let mut spans = Vec::with_capacity(rows.len());
    for row in rows {
        spans.push(SpanNode {
            span_id: row.try_get("span_id")?,
            parent_span_id: row.try_get("parent_span_id")?,
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            started_at: row.try_get("started_at")?,
            duration_us: row.try_get("duration_us")?,
            status: row.try_get("status")?,
            attributes: row.try_get("attributes")?,
            node_id: row.try_get("node_id")?,
            job_id: row.try_get("job_id")?,
            function: row.try_get("function")?,
            children: Vec::new(),
        });
    }
    let mut attempts = super::attempts::attempt_spans(pool, trace_id, &spans, jobs).await?;
    spans.append(&mut attempts);
    if spans.is_empty() {
        return Ok(None);
    }
    spans.sort_by(|a, b| (a.started_at, &a.span_id).cmp(&(b.started_at, &b.span_id)));
    let started_at = spans.iter().map(|s| s.started_at).min().unwrap_or_else(Utc::now);
    let ended =
        spans.iter().map(|s| s.started_at + chrono::Duration::microseconds(s.duration_us)).max().unwrap_or(started_at);
    let span_count = spans.len();
    Ok(Some(Trace {
        trace_id,
        started_at,
        duration_us: (ended - started_at).num_microseconds().unwrap_or(i64::MAX),
        span_count,
        roots: build_tree(spans),
    }))
}

/// A metric's values over a time range, one point per step.
#[derive(Clone, Debug)]
pub struct SeriesQuery {
    name: String,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    step: chrono::Duration,
    labels: BTreeMap<String, String>,
}

impl SeriesQuery {
    /// Metric `name` over the last hour in one-minute steps.
    pub fn new(name: impl Into<String>) -> Self {
        let until = Utc::now();
        Self {
            name: name.into(),
            since: until - chrono::Duration::hours(1),
            until,
            step: chrono::Duration::minutes(1),
            labels: BTreeMap::new(),
        }
    }

    /// The time range: after `since`, up to and including `until`.
    pub fn range(mut self, since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// The width of one point (at least one second).
    pub fn step(mut self, step: std::time::Duration) -> Self {
        self.step = chrono::Duration::from_std(step.max(std::time::Duration::from_secs(1)))
            .unwrap_or(chrono::Duration::minutes(1));
        self
    }

    /// Only series whose label `key` is `value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Reads the series: one per label set (and, for gauges, per node), points in time order.
    pub async fn fetch(&self, pool: &PgPool) -> Result<Vec<Series>, sqlx::Error> {
        let filter = serde_json::to_value(&self.labels).unwrap_or_default();
        let rows = sqlx::query(sql::METRIC_ROWS)
            .bind(&self.name)
            .bind(self.since)
            .bind(self.until)
            .bind(filter)
            .fetch_all(pool)
            .await?;
        let step_ms = self.step.num_milliseconds().max(1000);
        let mut series: BTreeMap<String, Series> = BTreeMap::new();
        for row in rows {
            let at: DateTime<Utc> = row.try_get("at")?;
            let kind: String = row.try_get("kind")?;
            let labels: serde_json::Value = row.try_get("labels")?;
            let node_id: String = row.try_get("node_id")?;
            let node = (kind == "gauge").then_some(node_id);
            let key = format!("{labels}|{}", node.as_deref().unwrap_or(""));
            let entry = series.entry(key).or_insert_with(|| Series {
                kind: kind.clone(),
                labels: labels.clone(),
                node_id: node.clone(),
                points: Vec::new(),
            });
            let bucket_ms = at.timestamp_millis().div_euclid(step_ms) * step_ms;
            let bucket = DateTime::<Utc>::from_timestamp_millis(bucket_ms).unwrap_or(at);
            if entry.points.last().is_none_or(|p| p.at != bucket) {
                entry.points.push(Point { at: bucket, ..Point::default() });
            }
            let Some(point) = entry.points.last_mut() else { continue };
            let value: f64 = row.try_get("value")?;
            point.samples += 1;
            match kind.as_str() {
                // The gauge's last value in the step.
                "gauge" => point.value = value,
                "counter" => point.value += value,
                _ => {
                    point.value += value;
                    point.sum += row.try_get::<Option<f64>, _>("sum")?.unwrap_or(0.0);
                    if let Some(buckets) = row.try_get::<Option<serde_json::Value>, _>("buckets")? {
                        add_buckets(point, &buckets);
                    }
                }
            }
        }
        let mut out: Vec<Series> = series.into_values().collect();
        for s in &mut out {
            if s.kind == "histogram" {
                for p in &mut s.points {
                    p.p50 = quantile(&p.bounds, &p.counts, p.value, 0.5);
                    p.p95 = quantile(&p.bounds, &p.counts, p.value, 0.95);
                    p.p99 = quantile(&p.bounds, &p.counts, p.value, 0.99);
                }
            }
        }
        Ok(out)
    }
}

fn add_buckets(point: &mut Point, buckets: &serde_json::Value) {
    let bounds: Vec<f64> =
        buckets["le"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default();
    let counts: Vec<u64> =
        buckets["counts"].as_array().map(|a| a.iter().filter_map(|v| v.as_u64()).collect()).unwrap_or_default();
    if point.bounds.is_empty() {
        point.bounds = bounds;
        point.counts = vec![0; point.bounds.len()];
    }
    if point.bounds.len() == counts.len() {
        for (total, n) in point.counts.iter_mut().zip(counts) {
            *total += n;
        }
    }
}

/// The upper bound of the bucket holding quantile `q` (`None` past the last bound).
fn quantile(bounds: &[f64], cumulative: &[u64], count: f64, q: f64) -> Option<f64> {
    if count <= 0.0 {
        return None;
    }
    let rank = (count * q).ceil() as u64;
    bounds.iter().zip(cumulative).find(|(_, n)| **n >= rank.max(1)).map(|(b, _)| *b)
}

/// One series of a metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Its labels.
    pub labels: serde_json::Value,
    /// For gauges, the node that reported it.
    pub node_id: Option<String>,
    /// Its points, oldest first; steps without samples are absent.
    pub points: Vec<Point>,
}

/// One step of a series.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// The step's start.
    pub at: DateTime<Utc>,
    /// Counter: the increase in the step. Gauge: its last value. Histogram: observations.
    pub value: f64,
    /// Histogram: the sum of observations.
    pub sum: f64,
    /// Histogram: the bucket bounds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<f64>,
    /// Histogram: cumulative counts per bound.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<u64>,
    /// Histogram: the median's bucket bound.
    pub p50: Option<f64>,
    /// Histogram: the 95th percentile's bucket bound.
    pub p95: Option<f64>,
    /// Histogram: the 99th percentile's bucket bound.
    pub p99: Option<f64>,
    /// Rows in the step.
    pub samples: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_cumulative_buckets() {
        let bounds = [0.1, 0.5, 1.0];
        let counts = [50, 90, 100];
        assert_eq!(quantile(&bounds, &counts, 100.0, 0.5), Some(0.1));
        assert_eq!(quantile(&bounds, &counts, 100.0, 0.9), Some(0.5));
        assert_eq!(quantile(&bounds, &counts, 100.0, 0.99), Some(1.0));
        assert_eq!(quantile(&bounds, &counts, 110.0, 0.99), None);
        assert_eq!(quantile(&bounds, &counts, 0.0, 0.5), None);
    }
}
