//! Job attempts as spans, rebuilt from the jobs' rows.
//!
//! A job attempt is a span of its trace, but it is not a row of `forge_traces`: the job's row
//! already says when each attempt started (`attempted_at`, or `started_at` in its `errors`
//! entry), how it ended (`finalized_at`, `state`, the entry's `at` and message) and where it ran
//! (`attempted_by`, the entry's `node`). Writing it again as a span row for every attempt was most
//! of what telemetry cost a busy queue (see `forge-bench observability`). The attempt's span id
//! is derived from the job and attempt ([`SpanId::of_attempt`]), so the logs and spans recorded
//! inside it name it as their parent; its parent is the `forge.dispatch` span in the job's
//! `traceparent`. Attempt spans live as long as the job's row (`[jobs] prune_after`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use forge_core::jobs::{FailureKind, JobId, JobRecord, JobState};
use sqlx::PgPool;

use super::span_tree::SpanNode;
use super::sql;
use super::trace_context::{DISPATCH_SPAN, JOB_ATTEMPT_SPAN, SpanId, TraceId, TraceParent, trace_of_job};

/// Id ranges named by the trace's `forge.dispatch` spans, plus the trace's own job and `extra`.
fn job_ranges(trace_id: TraceId, stored: &[SpanNode], extra: &[JobId]) -> (Vec<i64>, Vec<i64>) {
    let mut ranges: Vec<(i64, i64)> =
        trace_id.job().into_iter().chain(extra.iter().copied()).map(|id| (id.0, id.0)).collect();
    for span in stored.iter().filter(|s| s.name == DISPATCH_SPAN) {
        for range in span.attributes.get("jobs").and_then(|j| j.as_array()).into_iter().flatten() {
            if let (Some(lo), Some(hi)) = (range.get(0).and_then(|v| v.as_i64()), range.get(1).and_then(|v| v.as_i64()))
            {
                ranges.push((lo, hi));
            }
        }
    }
    ranges.into_iter().unzip()
}

/// The attempt spans of the jobs in trace `trace_id`: its own job, the jobs its stored
/// `forge.dispatch` spans name, and those of `extra` that run in it.
pub(crate) async fn attempt_spans(
    pool: &PgPool,
    trace_id: TraceId,
    stored: &[SpanNode],
    extra: &[JobId],
) -> Result<Vec<SpanNode>, sqlx::Error> {
    let (lo, hi) = job_ranges(trace_id, stored, extra);
    if lo.is_empty() {
        return Ok(Vec::new());
    }
    let jobs: Vec<JobRecord> = sqlx::query_as(sql::TRACE_JOBS).bind(&lo).bind(&hi).fetch_all(pool).await?;
    let now = Utc::now();
    Ok(jobs
        .iter()
        // A job listed by a span of this trace still runs in its own (its metadata said so).
        .filter(|job| trace_of_job(job.id, &job.metadata) == trace_id)
        .flat_map(|job| spans_of(job, now))
        .collect())
}

/// One span per attempt of `job`: each failed attempt from its `errors` entry, the latest one
/// (running, or ended without an error) from the row's columns.
pub(crate) fn spans_of(job: &JobRecord, now: DateTime<Utc>) -> Vec<SpanNode> {
    let parent = TraceParent::of_job_metadata(&job.metadata).map(|p| p.parent_id);
    let span = |attempt: i32, started_at: DateTime<Utc>, ended_at: DateTime<Utc>, node: Option<&str>| SpanNode {
        span_id: SpanId::of_attempt(job.id, attempt),
        parent_span_id: parent,
        name: JOB_ATTEMPT_SPAN.to_owned(),
        kind: "consumer".to_owned(),
        started_at,
        duration_us: (ended_at - started_at).num_microseconds().unwrap_or(0).max(0),
        status: "ok".to_owned(),
        attributes: serde_json::json!({ "kind": job.kind, "queue": job.queue, "attempt": attempt }),
        node_id: node.or(job.attempted_by.as_deref()).unwrap_or_default().to_owned(),
        job_id: Some(job.id.0),
        function: None,
        children: Vec::new(),
    };
    let mut spans = Vec::new();
    let mut seen = HashSet::new();
    for entry in &job.errors {
        // Entries from before attempts kept their start are not spans.
        let Some(started_at) = entry.started_at else { continue };
        if !seen.insert(entry.attempt) {
            continue;
        }
        let outcome = match entry.kind {
            FailureKind::Cancel => "cancelled",
            _ if entry.attempt == job.attempt && job.state == JobState::Discarded => "discarded",
            _ => "retryable",
        };
        let mut s = span(entry.attempt, started_at, entry.at, entry.node.as_deref());
        if entry.kind != FailureKind::Cancel {
            s.status = "error".to_owned();
        }
        s.attributes["outcome"] = outcome.into();
        s.attributes["error"] = entry.message.clone().into();
        s.attributes["error_kind"] = entry.kind.as_str().into();
        spans.push(s);
    }
    if job.attempt > 0
        && !seen.contains(&job.attempt)
        && let Some(started_at) = job.attempted_at
    {
        let ended_at = match job.state {
            JobState::Running => now,
            _ => job.finalized_at.unwrap_or(started_at),
        };
        let mut s = span(job.attempt, started_at, ended_at.max(started_at), None);
        s.attributes["outcome"] = job.state.as_str().into();
        spans.push(s);
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, attempt: i32, errors: serde_json::Value) -> JobRecord {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        JobRecord {
            id: JobId(42),
            kind: "mail".to_owned(),
            queue: "default".to_owned(),
            state: state.parse().expect("state"),
            priority: 2,
            attempt,
            max_attempts: 3,
            args: serde_json::json!({}),
            output: None,
            errors: serde_json::from_value(errors).expect("errors"),
            progress: None,
            tags: Vec::new(),
            run_at: at("2026-01-01T00:00:00Z"),
            created_at: at("2026-01-01T00:00:00Z"),
            attempted_at: Some(at("2026-01-01T00:00:10Z")),
            finalized_at: (state == "completed").then(|| at("2026-01-01T00:00:11Z")),
            attempted_by: Some("n2".to_owned()),
            unique_key: None,
            metadata: serde_json::json!({ "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }),
        }
    }

    #[test]
    fn each_attempt_is_a_span_under_the_dispatch() {
        let errors = serde_json::json!([
            { "attempt": 1, "at": "2026-01-01T00:00:02Z", "started_at": "2026-01-01T00:00:01Z",
              "message": "smtp down", "kind": "error", "node": "n1" },
            // An entry without a start (an older row, or a cancellation while waiting) is not an attempt.
            { "attempt": 1, "at": "2026-01-01T00:00:03Z", "message": "noise" },
        ]);
        let spans = spans_of(&job("completed", 2, errors), Utc::now());
        assert_eq!(spans.len(), 2);
        let (first, second) = (&spans[0], &spans[1]);
        assert_eq!((first.status.as_str(), first.node_id.as_str(), first.duration_us), ("error", "n1", 1_000_000));
        assert_eq!(first.attributes["outcome"], "retryable");
        assert_eq!(first.attributes["error"], "smtp down");
        assert_eq!((second.status.as_str(), second.node_id.as_str(), second.duration_us), ("ok", "n2", 1_000_000));
        assert_eq!(second.attributes["outcome"], "completed");
        assert_eq!(second.span_id, SpanId::of_attempt(JobId(42), 2));
        assert!(spans.iter().all(|s| s.parent_span_id.map(|p| p.to_string()).as_deref() == Some("00f067aa0ba902b7")));
    }

    #[test]
    fn a_running_attempt_lasts_until_now_and_a_final_failure_is_discarded() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:15Z").expect("time").with_timezone(&Utc);
        let running = spans_of(&job("running", 1, serde_json::json!([])), now);
        assert_eq!((running.len(), running[0].duration_us), (1, 5_000_000));
        assert_eq!(running[0].attributes["outcome"], "running");
        let errors = serde_json::json!([{ "attempt": 1, "at": "2026-01-01T00:00:12Z",
            "started_at": "2026-01-01T00:00:10Z", "message": "bad", "kind": "error" }]);
        let discarded = spans_of(&job("discarded", 1, errors), now);
        assert_eq!(discarded.len(), 1, "the failed attempt is the latest one: not twice");
        assert_eq!(discarded[0].attributes["outcome"], "discarded");
        assert_eq!(discarded[0].node_id, "n2", "no node in the entry: the row's");
        assert!(spans_of(&job("available", 0, serde_json::json!([])), now).is_empty(), "never attempted");
    }
}
