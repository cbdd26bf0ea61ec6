//! Energy counters only go forward. Devices send 0 while booting, OpenDTU
//! zeroes its total when an inverter sleeps, and counters drop after a power
//! loss: after a real value, a 0 or a step backwards is not applied, but a
//! lower value that persists for [`RESET_CONFIRMATION`] is a real reset and
//! is accepted. A counter that has never had a value takes its first one, 0
//! included: an unused clamp or a phase that never exported reports 0 for
//! good, and a sum over it must not stay invalid.

use std::time::{Duration, Instant};

/// How long a lower value must persist before it counts as a reset.
pub const RESET_CONFIRMATION: Duration = Duration::from_secs(600);

/// The guard of one counter path.
#[derive(Debug, Clone, Default)]
pub struct CounterGuard {
    /// The last value applied.
    last: Option<f64>,
    /// Since when every value received has been below `last`.
    lower_since: Option<Instant>,
}

/// What to do with a counter value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Apply it.
    Apply,
    /// Apply it: it stayed below the previous value long enough to be a reset.
    Reset { previous: f64 },
    /// A 0 (or less) after a real value, or a negative first value: not
    /// applied.
    HoldZero,
    /// Lower than the last value applied: not applied (yet).
    HoldBackwards { last: f64 },
}

impl CounterGuard {
    /// Judges a new value at `now`.
    pub fn check(&mut self, value: f64, now: Instant) -> Verdict {
        let Some(last) = self.last else {
            if value < 0.0 {
                return Verdict::HoldZero;
            }
            self.last = Some(value);
            return Verdict::Apply;
        };
        if value <= 0.0 && last > 0.0 || value < 0.0 {
            return Verdict::HoldZero;
        }
        if value >= last {
            self.last = Some(value);
            self.lower_since = None;
            return Verdict::Apply;
        }
        match self.lower_since {
            None => {
                self.lower_since = Some(now);
                Verdict::HoldBackwards { last }
            }
            Some(since) if now.saturating_duration_since(since) >= RESET_CONFIRMATION => {
                self.last = Some(value);
                self.lower_since = None;
                Verdict::Reset { previous: last }
            }
            Some(_) => Verdict::HoldBackwards { last },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn minutes(t0: Instant, m: u64) -> Instant {
        t0 + Duration::from_secs(60 * m)
    }

    #[test]
    fn the_first_value_is_taken_even_when_it_is_zero() {
        let t0 = Instant::now();
        let mut g = CounterGuard::default();
        assert_eq!(g.check(0.0, t0), Verdict::Apply);
        assert_eq!(g.check(0.0, minutes(t0, 1)), Verdict::Apply);
        assert_eq!(g.check(0.01, minutes(t0, 2)), Verdict::Apply);
        assert_eq!(g.check(0.0, minutes(t0, 3)), Verdict::HoldZero);
        let mut g = CounterGuard::default();
        assert_eq!(g.check(-1.0, t0), Verdict::HoldZero);
    }

    #[test]
    fn zero_and_backwards_steps_are_not_applied() {
        let t0 = Instant::now();
        let mut g = CounterGuard::default();
        assert_eq!(g.check(2852.05, t0), Verdict::Apply);
        assert_eq!(g.check(0.0, t0), Verdict::HoldZero);
        assert_eq!(g.check(2852.06, t0), Verdict::Apply);
        assert_eq!(g.check(100.0, t0), Verdict::HoldBackwards { last: 2852.06 });
        // Back above: the drop was a glitch.
        assert_eq!(g.check(2852.10, minutes(t0, 1)), Verdict::Apply);
    }

    #[test]
    fn a_lower_value_persisting_ten_minutes_is_a_reset() {
        let t0 = Instant::now();
        let mut g = CounterGuard::default();
        g.check(500.0, t0);
        assert_eq!(g.check(1.0, t0), Verdict::HoldBackwards { last: 500.0 });
        assert_eq!(
            g.check(1.2, minutes(t0, 9)),
            Verdict::HoldBackwards { last: 500.0 }
        );
        assert_eq!(
            g.check(1.3, minutes(t0, 10)),
            Verdict::Reset { previous: 500.0 }
        );
        assert_eq!(g.check(1.4, minutes(t0, 11)), Verdict::Apply);
    }

    #[test]
    fn a_night_of_zeros_is_never_a_reset() {
        let t0 = Instant::now();
        let mut g = CounterGuard::default();
        g.check(465.294, t0);
        for m in 0..600 {
            assert_eq!(g.check(0.0, minutes(t0, m)), Verdict::HoldZero);
        }
        assert_eq!(g.check(465.3, minutes(t0, 601)), Verdict::Apply);
    }

    proptest! {
        #[test]
        fn applied_values_only_go_down_after_ten_minutes_below(
            steps in proptest::collection::vec((-10.0f64..1000.0, 0u64..400), 1..60)
        ) {
            let t0 = Instant::now();
            let mut g = CounterGuard::default();
            let mut applied: Option<f64> = None;
            let mut t = t0;
            for (v, dt) in steps {
                t += Duration::from_secs(dt);
                match g.check(v, t) {
                    Verdict::Apply => {
                        prop_assert!(v >= 0.0);
                        prop_assert!(applied.is_none_or(|a| v >= a));
                        prop_assert!(v > 0.0 || applied.is_none_or(|a| a <= 0.0));
                        applied = Some(v);
                    }
                    Verdict::Reset { previous } => {
                        prop_assert_eq!(Some(previous), applied);
                        prop_assert!(v < previous && v > 0.0);
                        applied = Some(v);
                    }
                    Verdict::HoldZero => {
                        prop_assert!(v < 0.0 || (v == 0.0 && applied.is_some_and(|a| a > 0.0)));
                    }
                    Verdict::HoldBackwards { last } => prop_assert_eq!(Some(last), applied),
                }
            }
        }
    }
}
