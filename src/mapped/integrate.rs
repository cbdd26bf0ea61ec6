//! Energy integrated from power, for a device that reports power but no
//! counter: `/Ac/Energy/Forward` counts positive power, `…/Reverse` negative
//! power. The last power is held until the next one arrives (devices report
//! on change), but never longer than the device's `stale_after` (else
//! [`DEFAULT_MAX_GAP`]) after it was received, however often the counter is
//! advanced in between: a device that went quiet does not produce energy. The totals are kept across restarts as an
//! [`EnergyState`] that the executor saves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::unit::Unit;

/// The longest time a power value is held when the device has no
/// `stale_after`: longer than Tasmota's default TelePeriod (300 s).
pub const DEFAULT_MAX_GAP: Duration = Duration::from_secs(900);

/// The integrated counters of one device, by D-Bus path, in the path's unit
/// (kWh): what the executor saves and gives back after a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyState(pub BTreeMap<String, f64>);

/// One integrated counter.
#[derive(Debug, Clone)]
pub struct Integrator {
    /// The counter path, e.g. `/Ac/Energy/Forward`.
    pub target: String,
    /// The power path it integrates, e.g. `/Ac/Power`.
    pub input: String,
    /// `true` counts negative power (a `Reverse` counter).
    reverse: bool,
    /// Input unit → W.
    watts: f64,
    /// W·s → the target's unit.
    per_joule: f64,
    max_gap: Duration,
    total: f64,
    /// The power held, if any.
    last: Option<Held>,
}

/// A power value held for integration.
#[derive(Debug, Clone, Copy)]
struct Held {
    power: f64,
    /// When it was received: it stands for at most `max_gap` from here.
    received: Instant,
    /// Up to when it has been counted.
    counted_to: Instant,
}

impl Integrator {
    /// An integrator from a power path into an energy path, with their
    /// catalog units; `None` when the units are not power and energy (the
    /// declaration parser has already refused those).
    pub fn new(
        target: &str,
        input: &str,
        target_unit: Option<&str>,
        input_unit: Option<&str>,
        max_gap: Duration,
    ) -> Option<Integrator> {
        Some(Integrator {
            target: target.to_string(),
            input: input.to_string(),
            reverse: target.ends_with("/Reverse"),
            watts: Unit::watts_from(input_unit)?,
            per_joule: Unit::joules_into(target_unit)?,
            max_gap,
            total: 0.0,
            last: None,
        })
    }

    /// The counter now.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Continues from a saved total.
    pub fn restore(&mut self, total: f64) {
        if total.is_finite() && total > self.total {
            self.total = total;
        }
    }

    /// Takes over the total and the held power of the same counter under
    /// an earlier declaration (the gap limit stays this one's).
    pub fn continue_from(&mut self, old: &Integrator) {
        self.total = old.total;
        self.last = old.last;
    }

    /// A new power value (`None`: invalid, or the device stopped being
    /// alive). Returns `true` when the total grew.
    pub fn power(&mut self, power: Option<f64>, now: Instant) -> bool {
        let grew = self.advance(now);
        self.last = power.filter(|p| p.is_finite()).map(|power| Held {
            power,
            received: now,
            counted_to: now,
        });
        grew
    }

    /// Counts the held power up to `now`, but not past `max_gap` after it
    /// was received. Returns `true` when the total grew.
    pub fn advance(&mut self, now: Instant) -> bool {
        let Some(held) = self.last.as_mut() else {
            return false;
        };
        let expires = held.received + self.max_gap;
        let until = now.min(expires);
        let dt = until.saturating_duration_since(held.counted_to);
        held.counted_to = held.counted_to.max(until);
        let p = held.power;
        if now >= expires {
            // The held value is too old to stand for any longer.
            self.last = None;
        }
        let part = if self.reverse { -p } else { p };
        if part <= 0.0 || dt.is_zero() {
            return false;
        }
        self.total += part * self.watts * dt.as_secs_f64() * self.per_joule;
        true
    }

    /// Stops counting without counting the time since the last power value.
    pub fn stop(&mut self) {
        self.last = None;
    }

    /// `true` while a power value is held (the counter is running).
    pub fn is_running(&self) -> bool {
        self.last.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kwh(target: &str) -> Integrator {
        Integrator::new(
            target,
            "/Ac/Power",
            Some("kWh"),
            Some("W"),
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[test]
    fn one_kilowatt_for_an_hour_is_one_kilowatt_hour() {
        let t0 = Instant::now();
        let mut f = kwh("/Ac/Energy/Forward");
        f.power(Some(1000.0), t0);
        for s in 1..=3600 {
            let t = t0 + Duration::from_secs(s);
            f.advance(t);
            if s % 30 == 0 {
                f.power(Some(1000.0), t);
            }
        }
        assert!((f.total() - 1.0).abs() < 1e-9, "{}", f.total());
    }

    #[test]
    fn forward_counts_positive_power_reverse_negative() {
        let t0 = Instant::now();
        let mut f = kwh("/Ac/Energy/Forward");
        let mut r = kwh("/Ac/Energy/Reverse");
        for i in [&mut f, &mut r] {
            i.power(Some(-3600.0), t0);
            i.power(Some(3600.0), t0 + Duration::from_secs(10));
            i.power(Some(0.0), t0 + Duration::from_secs(30));
        }
        // -3600 W for 10 s = 0.01 kWh reverse; 3600 W for 20 s = 0.02 kWh forward.
        assert!((f.total() - 0.02).abs() < 1e-12);
        assert!((r.total() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn a_power_value_is_held_no_longer_than_the_gap_limit() {
        let t0 = Instant::now();
        let mut f = kwh("/Ac/Energy/Forward");
        f.power(Some(3600.0), t0);
        // 3600 W for the 60 s limit = 0.06 kWh, not for the hour.
        assert!(f.power(Some(1000.0), t0 + Duration::from_secs(3600)));
        assert!((f.total() - 0.06).abs() < 1e-12, "{}", f.total());
        // Counting resumes from the new value.
        assert!(f.advance(t0 + Duration::from_secs(3630)));
        f.power(None, t0 + Duration::from_secs(3630));
        assert!(!f.is_running());
        assert!(!f.advance(t0 + Duration::from_secs(3640)));
    }

    #[test]
    fn frequent_advances_do_not_stretch_the_gap_limit() {
        // The device's clock advances every counter once a minute: a
        // device that went silent must still stop counting after the limit.
        let t0 = Instant::now();
        let mut f = kwh("/Ac/Energy/Forward");
        f.power(Some(3600.0), t0);
        for s in (10..=7200).step_by(10) {
            f.advance(t0 + Duration::from_secs(s));
        }
        assert!((f.total() - 0.06).abs() < 1e-12, "{}", f.total());
        assert!(!f.is_running());
    }

    #[test]
    fn restored_totals_continue_and_never_go_back() {
        let mut f = kwh("/Ac/Energy/Forward");
        f.restore(12.5);
        f.restore(3.0);
        f.restore(f64::NAN);
        assert_eq!(f.total(), 12.5);
        let state = EnergyState(BTreeMap::from([("/Ac/Energy/Forward".to_string(), 12.5)]));
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(text, r#"{"/Ac/Energy/Forward":12.5}"#);
        assert_eq!(serde_json::from_str::<EnergyState>(&text).unwrap(), state);
    }
}
