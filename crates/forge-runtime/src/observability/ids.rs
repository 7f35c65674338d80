//! Trace and span ids without a system call each: a per-process random seed stepped through
//! an odd multiplier (a bijection on 64 bits), so ids never repeat within a process and look
//! random across processes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Step of the sequence: odd, so `seed + n * STEP` visits every 64-bit value once.
const STEP: u64 = 0x9e37_79b9_7f4a_7c15;

fn next() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let seed = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    mix(seed.wrapping_add(n.wrapping_mul(STEP)))
}

/// The finaliser of splitmix64: a bijection that scrambles consecutive values.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A new span id: 16 lowercase hex digits, not all zero.
pub(crate) fn new_span_id() -> String {
    let mut v = next();
    if v == 0 {
        v = 1;
    }
    format!("{v:016x}")
}

/// A new W3C trace id: 32 lowercase hex digits, not all zero. The first 48 bits are the time
/// in milliseconds (as in UUIDv7), so new traces sort after old ones and `forge_traces`' index
/// grows at its right edge instead of splitting pages all over.
pub fn new_trace_id() -> String {
    let millis = chrono::Utc::now().timestamp_millis().max(0) as u64;
    format!("{:012x}{:04x}{:016x}", millis & 0xffff_ffff_ffff, next() & 0xffff, next() | 1)
}

/// The trace of job `id` when nothing dispatched it inside a trace: derived from the id, so
/// every attempt of the job shares one trace and the dashboard finds it from the job's row.
///
/// The id leads (ids grow, so the index grows at its right edge, as for [`new_trace_id`]),
/// behind a fixed tag that keeps these ids apart from time-based ones.
pub fn job_trace_id(id: i64) -> String {
    format!("f09e{:028x}", id as u64 as u128)
}

/// The span of attempt `attempt` of job `id`: derived from both, so the attempt's logs and the
/// spans inside it name a parent that [`crate::observability::trace`] rebuilds from the job's
/// row (an attempt is not a stored span: see `forge_jobs` in DESIGN.md).
pub fn attempt_span_id(id: i64, attempt: i32) -> String {
    let v = mix(mix(id as u64) ^ u64::from(attempt as u32).rotate_right(16));
    format!("{:016x}", v.max(1))
}

/// The trace job `id` runs in: its dispatcher's (`metadata.traceparent`), or its own.
pub fn trace_of_job(id: i64, metadata: &serde_json::Value) -> String {
    metadata
        .get("traceparent")
        .and_then(|v| v.as_str())
        .and_then(crate::gateway::parse_traceparent)
        .map_or_else(|| job_trace_id(id), |p| p.trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_w3c_shape_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let span = new_span_id();
            assert_eq!(span.len(), 16);
            assert!(seen.insert(span));
        }
        let trace = new_trace_id();
        assert_eq!(trace.len(), 32);
        assert!(trace.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn a_jobs_trace_is_its_dispatchers_or_derived_from_its_id() {
        assert_eq!(job_trace_id(42).len(), 32);
        assert!(job_trace_id(9) < job_trace_id(10), "ids grow with the job id");
        assert_eq!(job_trace_id(42), job_trace_id(42));
        assert_ne!(job_trace_id(42), job_trace_id(43));
        assert_eq!(trace_of_job(42, &serde_json::json!({})), job_trace_id(42));
        let metadata = serde_json::json!({ "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" });
        assert_eq!(trace_of_job(42, &metadata), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn attempt_spans_are_stable_and_distinct() {
        assert_eq!(attempt_span_id(7, 1), attempt_span_id(7, 1));
        assert_eq!(attempt_span_id(7, 1).len(), 16);
        let mut seen = std::collections::HashSet::new();
        for id in 1..2000 {
            for attempt in 1..5 {
                assert!(seen.insert(attempt_span_id(id, attempt)), "job {id} attempt {attempt}");
            }
        }
    }
}
