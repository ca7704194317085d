//! Reconnect delays: exponential from `min` to `max`, with jitter so that a site full of bridges
//! does not reconnect in lockstep after a broker or network restart.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
            rng: fastrand::Rng::new(),
        }
    }

    #[cfg(test)]
    fn seeded(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            rng: fastrand::Rng::with_seed(seed),
            ..Backoff::new(min, max)
        }
    }

    /// The wait before the next attempt: between half and all of the current step, which then
    /// doubles up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        // Saturating: `max` comes from the config (validated, but this must not be what stands
        // between a typo and a panic).
        self.next = self.next.saturating_mul(2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
        half.saturating_add(Duration::from_nanos(self.rng.u64(0..=spread)))
    }

    /// After a success: start again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut b = Backoff::seeded(100 * MS, 800 * MS, 1);
        let steps: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (d, step) in steps.iter().zip([100, 200, 400, 800, 800, 800]) {
            assert!(
                *d >= step * MS / 2 && *d <= step * MS,
                "{d:?} not within half of {step}ms"
            );
        }
    }

    #[test]
    fn a_reset_starts_again_from_the_minimum() {
        let mut b = Backoff::seeded(100 * MS, 10_000 * MS, 2);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= 100 * MS);
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut a = Backoff::seeded(1000 * MS, 1000 * MS, 3);
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| a.next_delay()).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn every_delay_lies_between_half_and_all_of_its_step_and_uses_that_whole_range() {
        let mut b = Backoff::seeded(1000 * MS, 1000 * MS, 4);
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(
            delays.iter().all(|d| *d >= 500 * MS && *d <= 1000 * MS),
            "{delays:?}"
        );
        assert!(
            delays.iter().any(|d| *d < 600 * MS),
            "the lower half is used"
        );
        assert!(delays.iter().any(|d| *d > 900 * MS), "the top is used");
    }

    #[test]
    fn a_zero_minimum_still_waits_a_millisecond_step_and_the_maximum_is_never_below_it() {
        let mut b = Backoff::seeded(Duration::ZERO, Duration::ZERO, 5);
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d >= MS / 2 && d <= MS, "{d:?}");
        }
    }
}
