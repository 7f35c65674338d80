//! How long a failed job waits before its next attempt.

use std::time::Duration;

/// The shape of the delay curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffKind {
    /// Always `base`.
    Fixed,
    /// `base × attempt`.
    Linear,
    /// `base × 2^(attempt − 1)`.
    Exponential,
}

/// A retry delay policy: a curve, capped at `max`, with up to `jitter` (a fraction) added at
/// random so that jobs failing together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use forge_core::jobs::Backoff;
///
/// let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60)).with_jitter(0.0);
/// assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
/// assert_eq!(b.delay(4, 0.0), Duration::from_secs(8));
/// assert_eq!(b.delay(30, 0.0), Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The curve.
    pub kind: BackoffKind,
    /// The first delay.
    pub base: Duration,
    /// The largest delay before jitter.
    pub max: Duration,
    /// Up to this fraction of the delay is added at random (0.0 to 1.0).
    pub jitter: f64,
}

impl Backoff {
    /// Always `delay`.
    pub const fn fixed(delay: Duration) -> Self {
        Self { kind: BackoffKind::Fixed, base: delay, max: delay, jitter: 0.1 }
    }

    /// `base × attempt`, capped at `max`.
    pub const fn linear(base: Duration, max: Duration) -> Self {
        Self { kind: BackoffKind::Linear, base, max, jitter: 0.1 }
    }

    /// `base × 2^(attempt − 1)`, capped at `max`.
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        Self { kind: BackoffKind::Exponential, base, max, jitter: 0.1 }
    }

    /// The same policy with another jitter fraction (clamped to 0.0..=1.0).
    pub const fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The delay after failed attempt number `attempt` (1-based). `unit` is a random number in
    /// `0.0..1.0` that picks the jitter; pass 0.0 for none.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let attempt = attempt.max(1);
        let raw = match self.kind {
            BackoffKind::Fixed => self.base,
            BackoffKind::Linear => self.base.saturating_mul(attempt),
            BackoffKind::Exponential => self.base.saturating_mul(2u32.saturating_pow((attempt - 1).min(31))),
        };
        let capped = raw.min(self.max.max(self.base));
        let extra = capped.as_secs_f64() * self.jitter * unit.clamp(0.0, 1.0);
        capped.saturating_add(Duration::from_secs_f64(extra))
    }
}

impl Default for Backoff {
    /// Exponential from 1 s, capped at 1 h, with 10% jitter: 1 s, 2 s, 4 s, … 34 min, 1 h, 1 h.
    fn default() -> Self {
        Self::exponential(Duration::from_secs(1), Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy() -> impl Strategy<Value = Backoff> {
        (0u8..3, 1u64..10_000, 1u64..1_000_000, 0.0f64..1.0).prop_map(|(k, base, max, jitter)| {
            let (base, max) = (Duration::from_millis(base), Duration::from_millis(max));
            match k {
                0 => Backoff::fixed(base),
                1 => Backoff::linear(base, max),
                _ => Backoff::exponential(base, max),
            }
            .with_jitter(jitter)
        })
    }

    proptest! {
        #[test]
        fn delays_stay_within_cap_plus_jitter(b in policy(), attempt in 1u32..200, unit in 0.0f64..1.0) {
            let cap = b.max.max(b.base);
            let d = b.delay(attempt, unit);
            prop_assert!(d >= b.base.min(cap));
            prop_assert!(d.as_secs_f64() <= cap.as_secs_f64() * (1.0 + b.jitter) + 1e-6);
        }

        #[test]
        fn delays_never_shrink_without_jitter(b in policy(), attempt in 1u32..200) {
            let b = b.with_jitter(0.0);
            prop_assert!(b.delay(attempt + 1, 0.0) >= b.delay(attempt, 0.0));
        }
    }

    #[test]
    fn schedules_follow_their_curve() {
        let s = Duration::from_secs;
        let fixed = Backoff::fixed(s(5)).with_jitter(0.0);
        assert_eq!([1, 2, 9].map(|a| fixed.delay(a, 0.5)), [s(5), s(5), s(5)]);
        let linear = Backoff::linear(s(2), s(7)).with_jitter(0.0);
        assert_eq!([1, 2, 3, 4].map(|a| linear.delay(a, 0.0)), [s(2), s(4), s(6), s(7)]);
        let exp = Backoff::exponential(s(1), s(10)).with_jitter(0.0);
        assert_eq!([1, 2, 3, 4, 5].map(|a| exp.delay(a, 0.0)), [s(1), s(2), s(4), s(8), s(10)]);
        let jittery = Backoff::fixed(s(10)).with_jitter(0.5);
        assert_eq!(jittery.delay(1, 1.0), s(15));
    }
}
