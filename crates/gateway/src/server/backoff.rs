//! Exponential backoff with jitter, for restarts and retries. Pure: the caller supplies
//! the random fraction, so tests are deterministic.

use std::time::Duration;

/// The delay before attempt `attempt` (1-based): `base · 2^(attempt-1)`, capped at `max`,
/// then scaled into `[½, 1]` of itself by `jitter` ∈ [0, 1) ("equal jitter").
pub(crate) fn delay(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let raw = base.saturating_mul(1u32 << exponent).min(max);
    let half = raw / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A jitter fraction from the system's randomness.
pub(crate) fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(delay(base, max, 1, 1.0), Duration::from_millis(100));
        assert_eq!(delay(base, max, 2, 1.0), Duration::from_millis(200));
        assert_eq!(delay(base, max, 3, 0.0), Duration::from_millis(200));
        assert_eq!(delay(base, max, 10, 1.0), max);
        assert_eq!(delay(base, max, 200, 1.0), max, "no overflow");
        for attempt in 1..20 {
            let d = delay(base, max, attempt, 0.5);
            assert!(d <= max && d >= Duration::from_millis(50));
        }
    }
}
