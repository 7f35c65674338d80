//! Small helpers for reporting.

use std::time::Duration;

/// Milliseconds, two decimals.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// The `q` quantile (0.0–1.0) of sorted samples.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50, p90 and max of the samples, in milliseconds.
pub(crate) fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    serde_json::json!({
        "p50": ms(quantile(samples, 0.5)),
        "p90": ms(quantile(samples, 0.9)),
        "max": ms(quantile(samples, 1.0)),
    })
}

/// `n` per second over `d`, rounded.
pub(crate) fn per_second(n: usize, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64().max(1e-9)).round()
}
