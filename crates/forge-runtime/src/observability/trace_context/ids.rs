//! Trace and span ids ([`TraceId`], [`SpanId`]) and the W3C [`TraceParent`] that carries them.
//!
//! New ids cost no system call: a per-process random seed stepped through an odd multiplier (a
//! bijection on 64 bits), so ids never repeat within a process and look random across processes.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use forge_core::jobs::JobId;

/// The span of a job attempt (rebuilt from the job's row by `observability::trace`).
pub const JOB_ATTEMPT_SPAN: &str = "forge.job";
/// The span in which jobs are inserted (stored; it names the jobs).
pub const DISPATCH_SPAN: &str = "forge.dispatch";
/// The span of an HTTP request. A function called over `/rpc` is stored as this span's
/// `function` and `function_kind` attributes, not as a span of its own.
pub const HTTP_SPAN: &str = "forge.http";
/// The span of a function call (stored when the call did not come over HTTP: a WebSocket, a
/// subscription).
pub const FUNCTION_SPAN: &str = "forge.function";
/// A `bool` field of a span meaning "the caller asked for this trace" (a W3C `traceparent`
/// with its sampled flag set): a request span carrying it is stored whatever the node's
/// `request_spans` budget says. Not stored as an attribute.
pub const TRACE_SAMPLED: &str = "trace_sampled";
/// The target of the gateway's access-log line. The line is printed; it is stored only at
/// `warn` (a 5xx answer) unless `store_level` names this target, since the request's
/// [`HTTP_SPAN`] stores the same facts.
pub const ACCESS_TARGET: &str = "forge::access";

/// A W3C trace id: 128 bits, never zero, written as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

/// A W3C span id: 64 bits, never zero, written as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

/// The high 16 bits of the trace of a job dispatched outside any trace ([`TraceId::of_job`]).
/// New traces start with the time in milliseconds, which will not reach this value for
/// thousands of years, so the two kinds never meet.
const JOB_TRACE_TAG: u128 = 0xf09e;

impl TraceId {
    /// A new trace. The first 48 bits are the time in milliseconds (as in UUIDv7), so new traces
    /// sort after old ones and `forge_traces`' index grows at its right edge.
    pub fn new() -> Self {
        let millis = chrono::Utc::now().timestamp_millis().max(0) as u128 & 0xffff_ffff_ffff;
        Self((millis << 80) | (u128::from(next() & 0xffff) << 64) | u128::from(next() | 1))
    }

    /// The trace of job `id` when nothing dispatched it inside a trace: derived from the id, so
    /// every attempt of the job shares it and the dashboard finds the job from it.
    pub fn of_job(id: JobId) -> Self {
        Self((JOB_TRACE_TAG << 112) | u128::from(id.0 as u64))
    }

    /// The job whose own trace this is ([`TraceId::of_job`]), if it is one.
    pub fn job(self) -> Option<JobId> {
        let id = self.0 & ((1 << 112) - 1);
        (self.0 >> 112 == JOB_TRACE_TAG).then_some(id).and_then(|id| i64::try_from(id).ok()).map(JobId)
    }

    /// From 32 hex digits (either case); `None` if malformed or zero.
    pub fn parse(text: &str) -> Option<Self> {
        parse_hex(text, 32).filter(|v| *v != 0).map(Self)
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

impl SpanId {
    /// A new span id.
    pub fn new() -> Self {
        Self(next().max(1))
    }

    /// The span of attempt `attempt` of job `id`: derived from both, so the attempt's logs and
    /// the spans inside it name a parent that traces rebuild from the job's row (an attempt is
    /// not a stored span).
    pub fn of_attempt(id: JobId, attempt: i32) -> Self {
        Self(mix(mix(id.0 as u64) ^ u64::from(attempt as u32).rotate_right(16)).max(1))
    }

    /// From 16 hex digits (either case); `None` if malformed or zero.
    pub fn parse(text: &str) -> Option<Self> {
        parse_hex(text, 16).and_then(|v| u64::try_from(v).ok()).filter(|v| *v != 0).map(Self)
    }
}

impl Default for SpanId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0; 32];
        f.pad(write_hex(self.0, &mut digits))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0; 16];
        f.pad(write_hex(u128::from(self.0), &mut digits))
    }
}

/// `value`'s lowest `digits.len()` hex digits, lowercase and zero-padded, written into
/// `digits` (ids are formatted for every request span; `{:032x}` is several times slower).
fn write_hex(value: u128, digits: &mut [u8]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = digits.len();
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((value >> (4 * (n - 1 - i))) & 0xf) as usize];
    }
    std::str::from_utf8(digits).unwrap_or_default()
}

/// A trace or span id that is not the right number of hex digits, or is zero.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a trace or span id (32 or 16 hex digits, not all zero)")]
pub struct InvalidId(String);

impl FromStr for TraceId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| InvalidId(s.to_owned()))
    }
}

impl FromStr for SpanId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| InvalidId(s.to_owned()))
    }
}

macro_rules! hex_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_serde!(TraceId);
hex_serde!(SpanId);

/// Stored as its hex text (`forge_logs.trace_id`, `forge_traces.span_id`; `forge_traces.trace_id`
/// is a uuid, which statements cast to).
macro_rules! hex_sql {
    ($t:ty) => {
        impl sqlx::Type<sqlx::Postgres> for $t {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'_, sqlx::Postgres>>::encode(self.to_string(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $t {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?.parse::<$t>()?)
            }
        }
    };
}

hex_sql!(TraceId);
hex_sql!(SpanId);

/// A W3C `traceparent`: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The span the work was started from.
    pub parent_id: SpanId,
}

impl TraceParent {
    /// Parses a header value strictly (lowercase hex, version not `ff`, nothing after the flags
    /// in version `00`, ids not all zero); `None` if it is not one.
    pub fn parse(value: &str) -> Option<Self> {
        Self::parse_sampled(value).map(|(parent, _)| parent)
    }

    /// Like [`TraceParent::parse`], with whether the caller's sampled flag (bit 0 of the
    /// flags) is set: the caller records this trace and would like the rest of it.
    pub fn parse_sampled(value: &str) -> Option<(Self, bool)> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace_id, 32)
            && hex(parent_id, 16)
            && hex(flags, 2);
        if !valid {
            return None;
        }
        let parent = Self { trace_id: TraceId::parse(trace_id)?, parent_id: SpanId::parse(parent_id)? };
        Some((parent, u8::from_str_radix(flags, 16).ok()? & 1 == 1))
    }

    /// The `traceparent` a job carries in its metadata, if any.
    pub fn of_job_metadata(metadata: &serde_json::Value) -> Option<Self> {
        metadata.get("traceparent").and_then(|v| v.as_str()).and_then(Self::parse)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-01", self.trace_id, self.parent_id)
    }
}

/// A random (version 4) UUID from the process's id sequence: no system call, unlike
/// [`uuid::Uuid::new_v4`], which asks the kernel each time. For ids that must be unique, not
/// secret (request ids).
pub(crate) fn new_uuid() -> uuid::Uuid {
    let bits = (u128::from(next()) << 64) | u128::from(next());
    uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
}

/// Exactly `n` (at most 32) hex digits of either case as a number; `None` for anything else.
fn parse_hex(text: &str, n: usize) -> Option<u128> {
    if text.len() != n {
        return None;
    }
    text.bytes().try_fold(0u128, |value, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some((value << 4) | u128::from(digit))
    })
}

fn next() -> u64 {
    /// Step of the sequence: odd, so `seed + n * STEP` visits every 64-bit value once.
    const STEP: u64 = 0x9e37_79b9_7f4a_7c15;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_w3c_shape_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let span = SpanId::new().to_string();
            assert_eq!(span.len(), 16);
            assert!(seen.insert(span));
        }
        let trace = TraceId::new().to_string();
        assert_eq!(trace.len(), 32);
        assert!(trace.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(trace.parse::<TraceId>().map(|t| t.to_string()), Ok(trace));
        assert!(TraceId::new().job().is_none(), "a new trace is nobody's job");
    }

    #[test]
    fn hex_forms_match_the_standard_formatting_and_parse_back() {
        for value in
            [1u128, 0xf, 0xdead_beef, u128::from(u64::MAX), u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210]
        {
            let trace = TraceId(value);
            assert_eq!(trace.to_string(), format!("{value:032x}"));
            assert_eq!(TraceId::parse(&trace.to_string()), Some(trace));
            assert_eq!(TraceId::parse(&format!("{value:032X}")), Some(trace), "upper case is read too");
            let low = value as u64;
            if low != 0 {
                assert_eq!(SpanId(low).to_string(), format!("{low:016x}"));
                assert_eq!(SpanId::parse(&format!("{low:016x}")), Some(SpanId(low)));
            }
        }
        assert_eq!(format!("[{:>34}]", TraceId(1)), format!("[  {:032x}]", 1), "width is honoured");
        for bad in [
            "",
            "0",
            "+0000000000000000000000000000001",
            "g0000000000000000000000000000001",
            "00000000000000000000000000000000",
        ] {
            assert_eq!(TraceId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(SpanId::parse("+000000000000001"), None);
        assert_eq!(SpanId::parse("00000000000000001"), None, "17 digits");
    }

    #[test]
    fn a_jobs_own_trace_names_it() {
        let own = TraceId::of_job(JobId(42));
        assert_eq!(own.to_string().len(), 32);
        assert_eq!(own.job(), Some(JobId(42)));
        assert!(TraceId::of_job(JobId(9)) < TraceId::of_job(JobId(10)), "ids grow with the job id");
        assert_ne!(own, TraceId::of_job(JobId(43)));
        assert_eq!("4bf92f3577b34da6a3ce929d0e0e4736".parse::<TraceId>().ok().and_then(TraceId::job), None);
    }

    #[test]
    fn attempt_spans_are_stable_and_distinct() {
        assert_eq!(SpanId::of_attempt(JobId(7), 1), SpanId::of_attempt(JobId(7), 1));
        let mut seen = std::collections::HashSet::new();
        for id in 1..2000 {
            for attempt in 1..5 {
                assert!(seen.insert(SpanId::of_attempt(JobId(id), attempt)), "job {id} attempt {attempt}");
            }
        }
    }

    #[test]
    fn traceparent_is_parsed_strictly_and_round_trips() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(good).expect("valid");
        assert_eq!(parsed.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parsed.to_string(), good);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let sampled = |flags: &str| TraceParent::parse_sampled(&good.replace("-01", &format!("-{flags}"))).map(|p| p.1);
        assert_eq!(
            [sampled("01"), sampled("00"), sampled("03"), sampled("02")],
            [Some(true), Some(false), Some(true), Some(false)]
        );
    }

    #[test]
    fn request_uuids_are_version_4_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = new_uuid();
            assert_eq!(id.get_version_num(), 4);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn ids_serialise_as_hex_text() {
        let id = SpanId::parse("00f067aa0ba902b7").expect("id");
        assert_eq!(serde_json::to_value(id).expect("json"), "00f067aa0ba902b7");
        assert!(serde_json::from_value::<SpanId>(serde_json::json!("nope")).is_err());
    }
}
