//! The observability component's SQL.

/// Telemetry commits without waiting for its WAL to reach the disk. Jobs' own commits wait for
/// the disk (fsync) and share it with telemetry: at thousands of attempts a second, waiting
/// here too would slow the queue. A Postgres crash may lose the last fraction of a second of
/// telemetry; never a job, and never consistency.
pub(crate) const RELAXED_COMMIT: &str = "set local synchronous_commit = off";

/// Log records, one array per column; `$8` is the node.
pub(crate) const INSERT_LOGS: &str = r#"
insert into forge_logs (at, level, target, message, fields, trace_id, span_id, node_id, job_id, cron, function)
select at, level, target, message, fields, trace_id, span_id, $8, job_id, cron, function
from unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[],
            $9::bigint[], $10::text[], $11::text[])
     as t(at, level, target, message, fields, trace_id, span_id, job_id, cron, function)
"#;

/// Spans, in COPY's text format.
pub(crate) const COPY_SPANS: &str = "copy forge_traces (trace_id, span_id, parent_span_id, name, kind, started_at, \
     duration_us, status, attributes, node_id, job_id, function) from stdin";

/// One interval's metric rows: `$1` the time, `$2` the node, `$3` the interval's length.
pub(crate) const INSERT_METRICS: &str = r#"
insert into forge_metrics (at, node_id, seconds, name, kind, labels, value, sum, buckets)
select $1, $2, $3, name, kind, labels, value, sum, buckets
from unnest($4::text[], $5::text[], $6::jsonb[], $7::float8[], $8::float8[], $9::jsonb[])
     as t(name, kind, labels, value, sum, buckets)
"#;

/// Unfinished jobs by queue and state. Each state is counted through its partial index.
pub(crate) const QUEUE_DEPTH: &str = r#"
select queue, state, count(*)
from forge_jobs
where state in ('available', 'scheduled', 'retryable', 'running')
group by queue, state
order by queue, state
"#;

/// Deletes up to `$2` rows older than `$1` from a telemetry table (`{table}`, `{column}`).
pub(crate) fn delete_older(table: &str, column: &str) -> String {
    format!(
        "delete from {table} where ctid = any(array(\
             select ctid from {table} where {column} < $1 order by {column} limit $2))"
    )
}

/// A trace's spans, in start order.
pub(crate) const TRACE_SPANS: &str = r#"
select span_id, parent_span_id, name, kind, started_at, duration_us, status, attributes,
       node_id, job_id, function
from forge_traces
where trace_id = $1::uuid
order by started_at, span_id
limit 10000
"#;

/// The jobs whose ids fall in the ranges `$1`..`$2` (a trace's dispatch spans name them), as
/// `JobRecord`s: their attempt spans are rebuilt from them. One primary-key range scan per range.
pub(crate) const TRACE_JOBS: &str = r#"
select distinct on (j.id) j.*
from unnest($1::bigint[], $2::bigint[]) as r(lo, hi)
join forge_jobs j on j.id between r.lo and r.hi
order by j.id
limit 10000
"#;

/// A metric's rows over a time range whose labels contain `$4`.
pub(crate) const METRIC_ROWS: &str = r#"
select at, node_id, kind, labels, value, sum, buckets
from forge_metrics
where name = $1 and at > $2 and at <= $3 and labels @> $4
order by at
limit 200000
"#;
