//! Delay arithmetic shared by polling, result delivery and authentication: exponential growth
//! with "equal jitter", so that many workers recovering from the same outage do not retry in
//! lockstep, yet no delay is ever shorter than half its nominal value.

use std::time::Duration;

/// Exponential backoff: `base · 2^attempt`, capped at `max`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay for attempt 0.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `base` up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The nominal delay for `attempt` (0-based), without jitter.
    ///
    /// ```
    /// use conductor_worker::backoff::Backoff;
    /// use std::time::Duration;
    /// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    /// assert_eq!(b.nominal(0), Duration::from_millis(100));
    /// assert_eq!(b.nominal(3), Duration::from_millis(800));
    /// assert_eq!(b.nominal(60), Duration::from_secs(5));
    /// ```
    pub fn nominal(&self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt.min(40)).unwrap_or(u64::MAX);
        let millis = (self.base.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(millis).min(self.max)
    }

    /// The delay for `attempt`: uniformly drawn from `[nominal/2, nominal]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        let half = nominal / 2;
        let spread = (nominal - half).as_millis() as u64;
        half + Duration::from_millis(fastrand::u64(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_in_bounds_and_reach_the_cap() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(60));
        let mut previous_nominal = Duration::ZERO;
        for attempt in 0..200 {
            let nominal = b.nominal(attempt);
            assert!(nominal >= previous_nominal);
            assert!(nominal <= b.max);
            for _ in 0..20 {
                let d = b.delay(attempt);
                assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            }
            previous_nominal = nominal;
        }
        assert_eq!(b.nominal(199), Duration::from_secs(60));
    }

    #[test]
    fn jitter_spreads_retries() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: std::collections::HashSet<_> = (0..50).map(|_| b.delay(4)).collect();
        assert!(
            delays.len() > 10,
            "50 draws gave only {} distinct delays",
            delays.len()
        );
    }
}
