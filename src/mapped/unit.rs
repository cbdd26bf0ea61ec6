//! Units a device may send a value in, and the conversion into the unit of
//! the D-Bus path, which the catalog knows (`"W"`, `"kWh"`, `"°C"`, none for
//! a power factor). Knows no payloads and no declarations.

/// A unit a source's value is given in.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// As the user wrote it (`"Wh"`), printed back the same way.
    name: String,
    /// What it measures and its size relative to the base unit of that kind.
    scale: Scale,
}

/// `value_in_base = value * num / den + offset`. Kept as a fraction so
/// that Wh → kWh divides by 1000 (exact to the last digit) rather than
/// multiplying by 0.001 (which is not).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    dimension: Dimension,
    num: f64,
    den: f64,
    offset: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    Power,
    Energy,
    Voltage,
    Current,
    /// A fraction: a power factor is 0–1, `%` is 0–100.
    Ratio,
    Pressure,
    Temperature,
    /// A unit the table does not know, only convertible into itself.
    Other,
}

/// The units understood, by name: (name, dimension, size in the base unit
/// as num/den, offset). The base units are W, Wh, V, A, a plain ratio, hPa
/// and °C.
const UNITS: &[(&str, Dimension, f64, f64, f64)] = &[
    ("W", Dimension::Power, 1.0, 1.0, 0.0),
    ("kW", Dimension::Power, 1000.0, 1.0, 0.0),
    ("Wh", Dimension::Energy, 1.0, 1.0, 0.0),
    ("kWh", Dimension::Energy, 1000.0, 1.0, 0.0),
    // Watt-minutes: Shelly Gen1 `energy` counters.
    ("Wmin", Dimension::Energy, 1.0, 60.0, 0.0),
    ("V", Dimension::Voltage, 1.0, 1.0, 0.0),
    ("mV", Dimension::Voltage, 1.0, 1000.0, 0.0),
    ("A", Dimension::Current, 1.0, 1.0, 0.0),
    ("mA", Dimension::Current, 1.0, 1000.0, 0.0),
    ("%", Dimension::Ratio, 1.0, 100.0, 0.0),
    ("hPa", Dimension::Pressure, 1.0, 1.0, 0.0),
    ("kPa", Dimension::Pressure, 10.0, 1.0, 0.0),
    ("degC", Dimension::Temperature, 1.0, 1.0, 0.0),
    ("°C", Dimension::Temperature, 1.0, 1.0, 0.0),
    ("degF", Dimension::Temperature, 5.0, 9.0, -160.0 / 9.0),
    ("°F", Dimension::Temperature, 5.0, 9.0, -160.0 / 9.0),
];

/// The names a user may write, for error messages.
pub const UNIT_NAMES: &str = "W, kW, Wh, kWh, Wmin, V, mV, A, mA, %, hPa, kPa, degC, degF";

fn lookup(name: &str) -> Option<Scale> {
    UNITS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(_, dimension, num, den, offset)| Scale {
            dimension,
            num,
            den,
            offset,
        })
}

/// The scale of a D-Bus path's catalog unit; `None` (no unit) is a plain
/// number, which a `%` converts into as a ratio (power factor).
fn path_scale(path_unit: Option<&str>) -> Scale {
    match path_unit {
        None => Scale {
            dimension: Dimension::Ratio,
            ..IDENTITY
        },
        Some(u) => lookup(u).unwrap_or(IDENTITY),
    }
}

const IDENTITY: Scale = Scale {
    dimension: Dimension::Other,
    num: 1.0,
    den: 1.0,
    offset: 0.0,
};

/// A conversion `y = (x * mul + add) / div`, ready to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    pub mul: f64,
    pub add: f64,
    pub div: f64,
}

impl Linear {
    /// No change.
    pub const IDENTITY: Linear = Linear {
        mul: 1.0,
        add: 0.0,
        div: 1.0,
    };

    /// Applies the conversion.
    pub fn apply(&self, x: f64) -> f64 {
        (x * self.mul + self.add) / self.div
    }
}

impl Unit {
    /// A unit as written in a declaration. Besides the table, any unit equal
    /// to the path's own (`"Hz"` on a frequency) is accepted as it is; that
    /// is checked by [`Unit::conversion_to`].
    pub fn parse(name: &str) -> Unit {
        Unit {
            name: name.to_string(),
            scale: lookup(name).unwrap_or(IDENTITY),
        }
    }

    /// The unit as the user wrote it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The conversion from this unit into a path whose catalog unit is
    /// `path_unit`; `Err` says why they do not fit.
    pub fn conversion_to(&self, path_unit: Option<&str>) -> Result<Linear, String> {
        if path_unit == Some(self.name.as_str()) {
            return Ok(Linear::IDENTITY);
        }
        let to = path_scale(path_unit);
        let shown = path_unit.unwrap_or("no unit");
        if self.scale.dimension == Dimension::Other {
            return Err(format!(
                "unknown unit '{}' (known: {UNIT_NAMES}, or the path's own unit '{shown}')",
                self.name
            ));
        }
        if self.scale.dimension != to.dimension {
            return Err(format!(
                "a value in '{}' cannot be converted into this path's unit ({shown})",
                self.name
            ));
        }
        // base = x * n1 / d1 + o1; y = (base - o2) * d2 / n2
        //   = (x * n1 * d2 + (o1 - o2) * d1 * d2) / (d1 * n2)
        let (from, to) = (self.scale, to);
        Ok(Linear {
            mul: from.num * to.den,
            add: (from.offset - to.offset) * from.den * to.den,
            div: from.den * to.num,
        })
    }

    #[cfg(any(test, feature = "internals"))]
    /// `true` for power units (W, kW): what energy can be integrated from.
    pub fn is_power(path_unit: Option<&str>) -> bool {
        path_unit.and_then(lookup).map(|s| s.dimension) == Some(Dimension::Power)
    }

    /// The conversion from watt-seconds into a path's energy unit, if it is one.
    pub fn joules_into(path_unit: Option<&str>) -> Option<f64> {
        let s = path_unit.and_then(lookup)?;
        (s.dimension == Dimension::Energy).then(|| s.den / (3600.0 * s.num))
    }

    /// The conversion from a power path's unit into watts, if it is one.
    pub fn watts_from(path_unit: Option<&str>) -> Option<f64> {
        let s = path_unit.and_then(lookup)?;
        (s.dimension == Dimension::Power).then(|| s.num / s.den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(from: &str, to: Option<&str>, x: f64) -> f64 {
        Unit::parse(from).conversion_to(to).unwrap().apply(x)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn common_conversions_are_exact_to_the_last_digit() {
        assert_eq!(convert("Wh", Some("kWh"), 2852055.81), 2852.05581);
        assert_eq!(convert("%", None, 95.0), 0.95);
        assert_eq!(convert("mV", Some("V"), 3000.0), 3.0);
        assert_eq!(convert("degF", Some("°C"), 212.0), 100.0);
    }

    #[test]
    fn device_units_become_the_paths_units() {
        assert!(close(convert("Wh", Some("kWh"), 2852055.81), 2852.05581));
        assert!(close(convert("Wmin", Some("kWh"), 60_000.0), 1.0));
        assert!(close(convert("kW", Some("W"), 1.5), 1500.0));
        assert!(close(convert("mV", Some("V"), 3000.0), 3.0));
        assert!(close(convert("mA", Some("A"), 250.0), 0.25));
        assert!(close(convert("%", None, 95.0), 0.95));
        assert!(close(convert("%", Some("%"), 63.84), 63.84));
        assert!(close(convert("kPa", Some("hPa"), 101.3), 1013.0));
        assert!(close(convert("degF", Some("°C"), 212.0), 100.0));
        assert!(close(convert("degF", Some("°C"), 32.0), 0.0));
        assert!(close(convert("degC", Some("°C"), 21.5), 21.5));
        assert!(close(convert("Hz", Some("Hz"), 50.0), 50.0));
    }

    #[test]
    fn mismatched_or_unknown_units_are_refused() {
        let e = Unit::parse("Wh").conversion_to(Some("W")).unwrap_err();
        assert!(e.contains("cannot be converted"), "{e}");
        let e = Unit::parse("furlong").conversion_to(Some("W")).unwrap_err();
        assert!(e.contains("unknown unit 'furlong'"), "{e}");
        assert!(Unit::parse("W").conversion_to(None).is_err());
    }

    #[test]
    fn energy_from_power_factors() {
        assert_eq!(Unit::watts_from(Some("W")), Some(1.0));
        assert!(close(
            Unit::joules_into(Some("kWh")).unwrap() * 3_600_000.0,
            1.0
        ));
        assert_eq!(Unit::joules_into(Some("W")), None);
        assert!(Unit::is_power(Some("W")));
        assert!(!Unit::is_power(Some("kWh")));
    }
}
