//! What happens to a value between the device's payload and the D-Bus path,
//! in the spec's order: pick the array element, read it (`nan`, `null` and
//! empty are invalid, never 0), `unit`, `scale`, `offset`, `invert`, `abs`,
//! `map`, `min`/`max` (outside: no update), `round`, then the Venus value of
//! the path's kind. Knows no topics and no device state.

use serde_json::Value as Json;

use super::unit::{Linear, Unit};
use crate::catalog::ValueKind;
use crate::dbus::Value;

/// The transforms of one mapping; the default changes nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transform {
    /// When the value is an array, take this element (Tasmota turns fields
    /// into arrays on multi-channel devices); a single value is taken as is.
    pub element: Option<usize>,
    /// The unit the device sends; converted into the path's unit.
    pub unit: Option<Unit>,
    /// The conversion `unit` stands for, worked out against the catalog.
    pub(crate) convert: Option<Linear>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    /// Multiply by -1 (a clamp mounted backwards).
    pub invert: bool,
    /// Take the absolute value (a meter measuring production).
    pub abs: bool,
    /// Replace a value by another; keys are the value's text (`"1"`, `"ON"`).
    pub map: Vec<(String, MapTo)>,
    /// Lowest value accepted; below it the value is not applied (warned).
    pub min: Option<f64>,
    /// Highest value accepted; above it the value is not applied (warned).
    pub max: Option<f64>,
    /// Decimals to round to.
    pub round: Option<u8>,
}

/// What a `map` entry turns a value into.
#[derive(Debug, Clone, PartialEq)]
pub enum MapTo {
    Number(f64),
    Text(String),
}

/// A value read from a payload, before it becomes a Venus value.
#[derive(Debug, Clone, PartialEq)]
enum Reading {
    Number(f64),
    Text(String),
    /// The device says it has no value (`null`, `nan`, empty).
    Invalid,
}

impl Transform {
    /// `true` when a numeric step is configured (these refuse text values).
    fn is_numeric(&self) -> bool {
        self.convert.is_some()
            || self.scale.is_some()
            || self.offset.is_some()
            || self.invert
            || self.abs
    }

    /// Applies the transforms to the value found in a payload and makes the
    /// Venus value of a path of `kind`. `Err` is why the value is not applied
    /// (the path keeps its value, and the reason is warned).
    pub fn apply(&self, found: &Json, kind: ValueKind) -> Result<Value, String> {
        let found = match (self.element, found) {
            (Some(i), Json::Array(items)) => items
                .get(i)
                .ok_or_else(|| format!("the array has no element {i}"))?,
            _ => found,
        };
        let mut reading = read(found)?;
        if reading == Reading::Invalid {
            return Ok(Value::Invalid);
        }
        if let Reading::Number(x) = &mut reading {
            if let Some(c) = self.convert {
                *x = c.apply(*x);
            }
            if let Some(s) = self.scale {
                *x *= s;
            }
            if let Some(o) = self.offset {
                *x += o;
            }
            if self.convert.is_some() || self.scale.is_some() || self.offset.is_some() {
                *x = significant(*x);
            }
            if self.invert {
                *x = -*x;
            }
            if self.abs {
                *x = x.abs();
            }
        } else if self.is_numeric() {
            return Err(format!("{} is not a number", describe(&reading)));
        }
        if !self.map.is_empty() {
            let key = match &reading {
                Reading::Number(x) => number_text(*x),
                Reading::Text(s) => s.clone(),
                Reading::Invalid => String::new(),
            };
            reading = match self.map.iter().find(|(k, _)| *k == key) {
                Some((_, MapTo::Number(x))) => Reading::Number(*x),
                Some((_, MapTo::Text(s))) => Reading::Text(s.clone()),
                None => {
                    let keys: Vec<&str> = self.map.iter().map(|(k, _)| k.as_str()).collect();
                    return Err(format!(
                        "{} is not in the map (it has {})",
                        describe(&reading),
                        keys.join(", ")
                    ));
                }
            };
        }
        if let Reading::Number(x) = &mut reading {
            if let Some(min) = self.min.filter(|m| *x < *m) {
                return Err(format!("{} is below the minimum {min}", number_text(*x)));
            }
            if let Some(max) = self.max.filter(|m| *x > *m) {
                return Err(format!("{} is above the maximum {max}", number_text(*x)));
            }
            if let Some(d) = self.round {
                *x = round_to(*x, d);
            }
            if !x.is_finite() {
                return Err("the value is not a finite number after the transforms".into());
            }
        }
        into_kind(reading, kind)
    }
}

/// Reads a JSON value: numbers and numeric text are numbers, booleans 1/0,
/// `null`, empty text, `nan`, `null`, `none` and infinities are invalid.
fn read(found: &Json) -> Result<Reading, String> {
    Ok(match found {
        Json::Null => Reading::Invalid,
        Json::Bool(b) => Reading::Number(if *b { 1.0 } else { 0.0 }),
        Json::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() => Reading::Number(x),
            _ => Reading::Invalid,
        },
        Json::String(s) => {
            let t = s.trim();
            let lower = t.to_ascii_lowercase();
            if t.is_empty() || matches!(lower.as_str(), "nan" | "-nan" | "null" | "none") {
                Reading::Invalid
            } else {
                match t.parse::<f64>() {
                    Ok(x) if x.is_finite() => Reading::Number(x),
                    Ok(_) => Reading::Invalid,
                    Err(_) => Reading::Text(s.clone()),
                }
            }
        }
        Json::Array(_) => return Err("an array where a single value is expected".into()),
        Json::Object(_) => return Err("an object where a single value is expected".into()),
    })
}

/// Makes the Venus value of a path of `kind`: a float path takes numbers, an
/// int path takes numbers rounded to whole ones, a str path takes text (and
/// numbers as text), an any path takes both.
fn into_kind(reading: Reading, kind: ValueKind) -> Result<Value, String> {
    Ok(match (reading, kind) {
        (Reading::Invalid, _) => Value::Invalid,
        (Reading::Number(x), ValueKind::Float) => Value::F64(x),
        (Reading::Number(x), ValueKind::Int) => whole(x.round())?,
        (Reading::Number(x), ValueKind::Str) => Value::Str(number_text(x)),
        (Reading::Number(x), ValueKind::Any) => {
            if x.fract() == 0.0 {
                whole(x)?
            } else {
                Value::F64(x)
            }
        }
        (Reading::Text(s), ValueKind::Str | ValueKind::Any) => Value::Str(s),
        (r @ Reading::Text(_), ValueKind::Float | ValueKind::Int) => {
            return Err(format!("{} is not a number", describe(&r)))
        }
    })
}

fn whole(x: f64) -> Result<Value, String> {
    // i64 covers ±9.2e18; anything larger cannot be a D-Bus integer.
    if x.abs() < 9.0e18 {
        Ok(Value::int(x as i64))
    } else {
        Err(format!("{x} is too large for a whole-number path"))
    }
}

/// Significant digits kept of a converted value: Wh → kWh turns
/// 3264143.34 into 3264.1433399999996, shown as such on D-Bus and in N/.
const SIGNIFICANT_DIGITS: usize = 12;

/// `x` to [`SIGNIFICANT_DIGITS`] significant digits (the nearest f64 to
/// that decimal).
fn significant(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    format!("{x:.*e}", SIGNIFICANT_DIGITS - 1)
        .parse()
        .unwrap_or(x)
}

fn round_to(x: f64, decimals: u8) -> f64 {
    let p = 10f64.powi(i32::from(decimals.min(15)));
    (x * p).round() / p
}

fn describe(reading: &Reading) -> String {
    match reading {
        Reading::Number(x) => number_text(*x),
        Reading::Text(s) => format!("'{s}'"),
        Reading::Invalid => "no value".into(),
    }
}

/// A number as a map key or message shows it: whole numbers without a
/// fraction (`7`, not `7.0`), others as Rust prints them shortest.
pub fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn t() -> Transform {
        Transform::default()
    }

    #[test]
    fn no_value_is_invalid_never_zero() {
        for v in [
            json!(null),
            json!(""),
            json!("nan"),
            json!("NaN"),
            json!(" -nan "),
            json!("null"),
        ] {
            assert_eq!(t().apply(&v, ValueKind::Float), Ok(Value::Invalid), "{v}");
        }
    }

    #[test]
    fn numbers_and_numeric_text_become_the_paths_kind() {
        assert_eq!(
            t().apply(&json!(21.4), ValueKind::Float),
            Ok(Value::F64(21.4))
        );
        assert_eq!(
            t().apply(&json!("21.4"), ValueKind::Float),
            Ok(Value::F64(21.4))
        );
        assert_eq!(
            t().apply(&json!(21), ValueKind::Float),
            Ok(Value::F64(21.0))
        );
        assert_eq!(t().apply(&json!(6.6), ValueKind::Int), Ok(Value::I32(7)));
        assert_eq!(t().apply(&json!(true), ValueKind::Int), Ok(Value::I32(1)));
        assert_eq!(
            t().apply(&json!(230), ValueKind::Str),
            Ok(Value::Str("230".into()))
        );
        assert_eq!(
            t().apply(&json!("ON"), ValueKind::Any),
            Ok(Value::Str("ON".into()))
        );
        assert!(t().apply(&json!("warm"), ValueKind::Float).is_err());
        assert!(t().apply(&json!([1]), ValueKind::Float).is_err());
        assert!(t().apply(&json!({"a": 1}), ValueKind::Float).is_err());
    }

    #[test]
    fn a_unit_conversion_leaves_no_float_noise() {
        let kwh = Transform {
            convert: Some(Unit::parse("Wh").conversion_to(Some("kWh")).unwrap()),
            unit: Some(Unit::parse("Wh")),
            ..t()
        };
        assert_eq!(3264143.34 / 1000.0, 3264.1433399999996);
        assert_eq!(
            kwh.apply(&json!(3264143.34), ValueKind::Float),
            Ok(Value::F64(3264.14334))
        );
        // Small values keep their digits (significant, not decimal places).
        assert_eq!(
            kwh.apply(&json!(0.01), ValueKind::Float),
            Ok(Value::F64(0.00001))
        );
    }

    #[test]
    fn transforms_run_in_the_spec_order() {
        // unit, scale, offset, invert, abs, map, min/max, round
        let x = Transform {
            convert: Some(Unit::parse("Wh").conversion_to(Some("kWh")).unwrap()),
            unit: Some(Unit::parse("Wh")),
            scale: Some(2.0),
            offset: Some(-3.0),
            invert: true,
            round: Some(1),
            ..t()
        };
        // 5000 Wh -> 5 kWh -> 10 -> 7 -> -7
        assert_eq!(
            x.apply(&json!(5000), ValueKind::Float),
            Ok(Value::F64(-7.0))
        );
        let a = Transform {
            invert: true,
            abs: true,
            ..t()
        };
        assert_eq!(
            a.apply(&json!(-607.3), ValueKind::Float),
            Ok(Value::F64(607.3))
        );
        let m = Transform {
            map: vec![
                ("1".into(), MapTo::Number(7.0)),
                ("0".into(), MapTo::Number(8.0)),
            ],
            ..t()
        };
        assert_eq!(m.apply(&json!("1"), ValueKind::Int), Ok(Value::I32(7)));
        assert_eq!(m.apply(&json!(0), ValueKind::Int), Ok(Value::I32(8)));
        let e = m.apply(&json!(2), ValueKind::Int).unwrap_err();
        assert!(e.contains("not in the map"), "{e}");
        let r = Transform {
            round: Some(2),
            ..t()
        };
        assert_eq!(
            r.apply(&json!(0.956), ValueKind::Float),
            Ok(Value::F64(0.96))
        );
    }

    #[test]
    fn out_of_range_is_not_applied() {
        let limits = Transform {
            min: Some(0.0),
            max: Some(23000.0),
            ..t()
        };
        assert!(limits
            .apply(&json!(-1), ValueKind::Float)
            .unwrap_err()
            .contains("below"));
        assert!(limits
            .apply(&json!(23001), ValueKind::Float)
            .unwrap_err()
            .contains("above"));
        assert_eq!(
            limits.apply(&json!(23000), ValueKind::Float),
            Ok(Value::F64(23000.0))
        );
    }

    #[test]
    fn text_refuses_numeric_transforms_and_arrays_take_their_element() {
        let inv = Transform {
            invert: true,
            ..t()
        };
        assert!(inv.apply(&json!("ON"), ValueKind::Any).is_err());
        let first = Transform {
            element: Some(0),
            ..t()
        };
        assert_eq!(
            first.apply(&json!([52, 5]), ValueKind::Float),
            Ok(Value::F64(52.0))
        );
        assert_eq!(
            first.apply(&json!(56), ValueKind::Float),
            Ok(Value::F64(56.0))
        );
        let second = Transform {
            element: Some(3),
            ..t()
        };
        assert!(second.apply(&json!([1]), ValueKind::Float).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_never_makes_a_non_finite_float(
            x in any::<f64>(), scale in proptest::option::of(any::<f64>()),
            round in proptest::option::of(0u8..30), invert: bool, abs: bool,
        ) {
            let tr = Transform { scale, round, invert, abs, ..Transform::default() };
            let found = serde_json::Number::from_f64(x).map(Json::Number).unwrap_or(Json::Null);
            for kind in [ValueKind::Float, ValueKind::Int, ValueKind::Str, ValueKind::Any] {
                if let Ok(Value::F64(y)) = tr.apply(&found, kind) {
                    prop_assert!(y.is_finite());
                }
                let _ = tr.apply(&Json::String(x.to_string()), kind);
            }
        }
    }
}
