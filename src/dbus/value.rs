//! The Venus value model and its one wire mapping (the job of velib's `ve_utils`): values,
//! their D-Bus encoding, their Python-compatible text, and SetValue type coercion.
//! Knows no paths (except the `/ProductId` text rule), no connection and no MQTT.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use zbus::{Array, Dict, Signature, Variant};

/// A value as Venus consumers see it. `Invalid` is "not available" (`null` on MQTT).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Not available: sent as an empty `ai`, text `---`.
    Invalid,
    /// `i` on the wire.
    I32(i32),
    /// `x` on the wire; only for integers outside the int32 range.
    I64(i64),
    /// `d` on the wire.
    F64(f64),
    /// `b` on the wire.
    Bool(bool),
    /// `s` on the wire.
    Str(String),
    /// `av` on the wire, or an empty `au` (an empty `ai` would mean invalid).
    List(Vec<Value>),
    /// `a{sv}` on the wire.
    Dict(BTreeMap<String, Value>),
}

/// Why a wire or JSON value has no Venus meaning.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A JSON number that fits neither i64 nor f64 (e.g. above `i64::MAX`).
    #[error("number {0} does not fit an int64 or a double")]
    NumberOutOfRange(String),
    /// A D-Bus type that has no Venus value (struct, fd, dict with non-string keys, u64 > i64).
    #[error("d-bus type `{0}` has no venus value")]
    UnsupportedType(String),
    /// Lists and dicts nested deeper than [`MAX_NESTING`].
    #[error("lists and dicts may nest at most {MAX_NESTING} levels deep")]
    TooDeep,
    /// Text with a NUL character, which a D-Bus string cannot hold (the bus
    /// daemon disconnects a connection that sends one).
    #[error("text may not contain the NUL character (\\u0000)")]
    NulInText,
}

/// How deep lists and dicts may nest in one value. Venus values are scalars
/// and flat lists; the limit keeps every value well inside what D-Bus can
/// carry (32 nested arrays) once wrapped in `GetItems`' `a{sa{sv}}` and one
/// variant per level, so a stored value can always be sent.
pub const MAX_NESTING: usize = 8;

/// Checks one piece of text for D-Bus.
pub(super) fn check_text(s: &str) -> Result<(), ValueError> {
    if s.contains('\0') {
        Err(ValueError::NulInText)
    } else {
        Ok(())
    }
}

/// The type a path accepts from remote writes (velib's `valuetype`). Invalid is always accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueType {
    /// Any value, stored as given.
    #[default]
    Any,
    /// Integers (`i`, `x`, `b`, and `d` when integral), stored as `I32` (or `I64` when outside int32).
    Int,
    /// Numbers (`i`, `x`, `d`, `b`), stored as `F64`: MQTT `{"value": 1}` arrives as int32.
    Float,
    /// Strings only.
    Str,
}

/// How `GetText` renders a path's value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum TextFormat {
    /// Python `str()` as velib does (`21.0`, `True`, `1e-05`); `/ProductId` as `0x%X`.
    #[default]
    Python,
    /// A number with a fixed number of decimals and/or a unit, as gui texts (`"21.5 C"`).
    /// Non-numbers fall back to Python text; invalid is always `---`.
    Fixed {
        /// Decimals for numbers; `None` keeps Python text for the number.
        decimals: Option<u8>,
        /// Appended after a space, e.g. `"W"`.
        unit: Option<String>,
    },
}

/// The text of an invalid value, as velib's `GetText`.
pub const INVALID_TEXT: &str = "---";

impl Value {
    /// True unless `Invalid`.
    pub fn is_valid(&self) -> bool {
        !matches!(self, Value::Invalid)
    }

    /// An integer as `I32` when it fits, else `I64` (velib's `wrap_dbus_value` rule).
    pub fn int(v: i64) -> Value {
        match i32::try_from(v) {
            Ok(i) => Value::I32(i),
            Err(_) => Value::I64(v),
        }
    }

    /// The value as a number, if it is one (bools count as 0/1, as in Python).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::I32(v) => Some(f64::from(*v)),
            // Precision loss above 2^53 is accepted: only used for range checks and formatting.
            Value::I64(v) => Some(*v as f64),
            Value::F64(v) => Some(*v),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// The value as an integer, if it is an integer (bools count as 0/1).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::I32(v) => Some(i64::from(*v)),
            Value::I64(v) => Some(*v),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string value, checked for D-Bus (no NUL).
    pub fn text(s: impl Into<String>) -> Result<Value, ValueError> {
        let s = s.into();
        check_text(&s)?;
        Ok(Value::Str(s))
    }

    /// Checks that the value can be sent on D-Bus: no NUL in any text or
    /// key, lists and dicts at most [`MAX_NESTING`] deep. Every value that
    /// [`Value::from_json`] and [`Value::from_variant`] return passes.
    pub fn check_wire(&self) -> Result<(), ValueError> {
        self.check_wire_at(0)
    }

    fn check_wire_at(&self, depth: usize) -> Result<(), ValueError> {
        match self {
            Value::Str(s) => check_text(s),
            Value::List(_) | Value::Dict(_) if depth >= MAX_NESTING => Err(ValueError::TooDeep),
            Value::List(l) => l
                .iter()
                .try_for_each(|v| v.check_wire_at(depth.saturating_add(1))),
            Value::Dict(d) => d.iter().try_for_each(|(k, v)| {
                check_text(k)?;
                v.check_wire_at(depth.saturating_add(1))
            }),
            _ => Ok(()),
        }
    }

    /// Python `str()` of the value as velib would hold it: `21.0`, `0.1`, `1e-05`, `True`,
    /// `[1, 'a']`; `Invalid` → `---`.
    pub fn python_text(&self) -> String {
        match self {
            Value::Invalid => INVALID_TEXT.to_string(),
            Value::Str(s) => s.clone(),
            other => {
                let mut out = String::new();
                python_repr(other, &mut out);
                out
            }
        }
    }

    /// Encodes for D-Bus with exactly one variant level (the body of a `v`).
    pub fn to_variant(&self) -> Variant<'static> {
        match self {
            Value::Invalid => Variant::Array(Array::new(&Signature::I32)),
            Value::I32(v) => Variant::I32(*v),
            Value::I64(v) => Variant::I64(*v),
            Value::F64(v) => Variant::F64(*v),
            Value::Bool(b) => Variant::Bool(*b),
            Value::Str(s) => Variant::Str(s.clone().into()),
            // An empty `ai` would read as invalid, so an empty valid list is `au` (as ve_utils).
            Value::List(l) if l.is_empty() => Variant::Array(Array::new(&Signature::U32)),
            Value::List(l) => {
                let mut a = Array::new(&Signature::Variant);
                for item in l {
                    // Cannot fail: every element is a variant, the array's element type.
                    let _ = a.append(Variant::Variant(Box::new(item.to_variant())));
                }
                Variant::Array(a)
            }
            Value::Dict(d) => {
                let mut dict = Dict::new(&Signature::Str, &Signature::Variant);
                for (k, v) in d {
                    // Cannot fail: key and value match the dict's signature.
                    let _ = dict.append(
                        Variant::Str(k.clone().into()),
                        Variant::Variant(Box::new(v.to_variant())),
                    );
                }
                Variant::Dict(dict)
            }
        }
    }

    /// Decodes a received value: any empty array is `Invalid` (as every consumer does; an empty
    /// dict stays an empty dict, as in ve_utils), nested
    /// variants are unwrapped, small integer types widen to `I32`/`I64`. Refuses what could
    /// not be sent on again (see [`Value::check_wire`]).
    pub fn from_variant(v: &Variant<'_>) -> Result<Value, ValueError> {
        Value::from_variant_at(v, 0)
    }

    fn from_variant_at(v: &Variant<'_>, depth: usize) -> Result<Value, ValueError> {
        let container =
            matches!(v, Variant::Array(a) if !a.is_empty()) || matches!(v, Variant::Dict(_));
        if depth >= MAX_NESTING && container {
            return Err(ValueError::TooDeep);
        }
        let inner = |v| Value::from_variant_at(v, depth.saturating_add(1));
        Ok(match v {
            Variant::U8(x) => Value::I32(i32::from(*x)),
            Variant::Bool(b) => Value::Bool(*b),
            Variant::I16(x) => Value::I32(i32::from(*x)),
            Variant::U16(x) => Value::I32(i32::from(*x)),
            Variant::I32(x) => Value::I32(*x),
            Variant::U32(x) => Value::int(i64::from(*x)),
            Variant::I64(x) => Value::int(*x),
            Variant::U64(x) => {
                Value::int(i64::try_from(*x).map_err(|_| ValueError::UnsupportedType("t".into()))?)
            }
            Variant::F64(x) => Value::F64(*x),
            Variant::Str(s) => Value::text(s.as_str())?,
            Variant::ObjectPath(p) => Value::Str(p.as_str().to_string()),
            Variant::Signature(s) => Value::Str(s.to_string()),
            // A variant inside a variant adds no level to the value.
            Variant::Variant(v) => Value::from_variant_at(v, depth)?,
            Variant::Array(a) if a.is_empty() => Value::Invalid,
            Variant::Array(a) => {
                Value::List(a.inner().iter().map(inner).collect::<Result<_, _>>()?)
            }
            Variant::Dict(d) => {
                let mut out = BTreeMap::new();
                for (k, v) in d.iter() {
                    let key = match k {
                        Variant::Str(s) => {
                            check_text(s.as_str())?;
                            s.as_str().to_string()
                        }
                        other => {
                            return Err(ValueError::UnsupportedType(
                                other.value_signature().to_string(),
                            ))
                        }
                    };
                    out.insert(key, inner(v)?);
                }
                Value::Dict(out)
            }
            other => {
                return Err(ValueError::UnsupportedType(
                    other.value_signature().to_string(),
                ))
            }
        })
    }

    /// Coerces a remote write to `ty` as velib's `valuetype(newvalue)` does for the types Venus
    /// drivers use. `None` means "wrong type" (SetValue returns 1).
    pub fn coerce(self, ty: ValueType) -> Option<Value> {
        if !self.is_valid() {
            return Some(Value::Invalid);
        }
        match ty {
            ValueType::Any => Some(self),
            ValueType::Float => match self {
                Value::Str(_) | Value::List(_) | Value::Dict(_) => None,
                v => v.as_f64().map(Value::F64),
            },
            ValueType::Int => match self {
                Value::F64(f) if f.is_finite() && f.fract() == 0.0 => {
                    // Integral and finite; `as` saturates outside i64, which the range checks below reject.
                    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
                        Some(Value::int(f as i64))
                    } else {
                        None
                    }
                }
                v => v.as_i64().map(Value::int),
            },
            ValueType::Str => match self {
                Value::Str(_) => Some(self),
                _ => None,
            },
        }
    }
}

/// The dict that a node `GetValue`/`GetItems` entry or a signal carries, ready to serialize.
pub type VariantMap = HashMap<String, Variant<'static>>;

impl TextFormat {
    /// The `GetText` of `value` at `path` (path only matters for `/ProductId`).
    pub fn text(&self, path: &str, value: &Value) -> String {
        if !value.is_valid() {
            return INVALID_TEXT.to_string();
        }
        match self {
            TextFormat::Python => {
                if path == "/ProductId" {
                    if let Some(i) = value.as_i64() {
                        if !matches!(value, Value::Bool(_)) {
                            return if i < 0 {
                                format!("-0x{:X}", i.unsigned_abs())
                            } else {
                                format!("0x{i:X}")
                            };
                        }
                    }
                }
                value.python_text()
            }
            TextFormat::Fixed { decimals, unit } => {
                let number = match (decimals, value) {
                    (Some(d), Value::I32(_) | Value::I64(_) | Value::F64(_)) => {
                        let f = value.as_f64().unwrap_or_default();
                        format!("{:.*}", usize::from(*d), f)
                    }
                    _ => value.python_text(),
                };
                match unit {
                    Some(u) if !u.is_empty() => format!("{number} {u}"),
                    _ => number,
                }
            }
        }
    }
}

/// Python `repr()` of a value, as `str()` of a list shows its elements.
fn python_repr(v: &Value, out: &mut String) {
    match v {
        Value::Invalid => out.push_str("None"),
        Value::I32(i) => {
            let _ = write!(out, "{i}");
        }
        Value::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F64(f) => out.push_str(&python_float(*f)),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::Str(s) => {
            // Python picks double quotes only when the string holds a single quote and no double.
            let q = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            out.push(q);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == q => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(q);
        }
        Value::List(l) => {
            out.push('[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(item, out);
            }
            out.push(']');
        }
        Value::Dict(d) => {
            out.push('{');
            for (i, (k, item)) in d.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(&Value::Str(k.clone()), out);
                out.push_str(": ");
                python_repr(item, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for exponents -4..16,
/// else `1e-05` / `1.5e+16` style.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-5", "-3e16". Where two strings
    // of that length round-trip and lie equally close (843602929140379.25), Python's repr
    // takes the correctly rounded one (half to even), as `{:.*e}` does.
    let shortest = format!("{f:e}");
    let mantissa_digits = shortest
        .split('e')
        .next()
        .unwrap_or_default()
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    let rounded = format!("{:.*e}", mantissa_digits.saturating_sub(1), f);
    let sci = if rounded.parse::<f64>() == Ok(f) {
        rounded
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    match usize::try_from(exp) {
        // -4 ≤ exp < 0: "0.000123".
        Err(_) if exp >= -4 => {
            let zeros = usize::try_from(exp.unsigned_abs()).unwrap_or(0);
            out.push_str("0.");
            out.push_str(&"0".repeat(zeros.saturating_sub(1)));
            out.push_str(&digits);
        }
        // 0 ≤ exp < 16: the point after exp + 1 digits, "123.45" or "1200.0".
        Ok(e) if e < 16 => {
            let whole = e.saturating_add(1);
            match digits.split_at_checked(whole) {
                Some((a, b)) if !b.is_empty() => {
                    out.push_str(a);
                    out.push('.');
                    out.push_str(b);
                }
                _ => {
                    out.push_str(&digits);
                    out.push_str(&"0".repeat(whole.saturating_sub(digits.len())));
                    out.push_str(".0");
                }
            }
        }
        _ => {
            out.push_str(mantissa);
            let sign = if exp < 0 { '-' } else { '+' };
            let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_text_matches_python_repr() {
        for (f, want) in [
            (21.0, "21.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (1.2345e-7, "1.2345e-07"),
            (230.0, "230.0"),
            // See: issue 10. Ties are rounded half to even, as Python's repr
            // does (found comparing 400 000 random doubles with Python).
            (f64::from_bits(0x42ea_8090_bb0f_6d84), "233115890514796.12"),
            (f64::from_bits(0x42e5_dd3d_3864_69d4), "192319672492878.62"),
            (f64::from_bits(0xc31c_b54f_6b43_4481), "-2020163013628192.2"),
            (3_374_411_716_561_517.0 / 4.0, "843602929140379.2"),
            (0.125, "0.125"),
            (2.5, "2.5"),
        ] {
            assert_eq!(python_float(f), want, "for {f:?}");
        }
    }

    #[test]
    fn python_text_of_other_types() {
        assert_eq!(Value::Bool(true).python_text(), "True");
        assert_eq!(Value::Invalid.python_text(), "---");
        assert_eq!(Value::List(vec![]).python_text(), "[]");
        assert_eq!(
            Value::List(vec![Value::I32(1), Value::Str("a".into())]).python_text(),
            "[1, 'a']"
        );
        assert_eq!(Value::Str("x y".into()).python_text(), "x y");
    }

    #[test]
    fn product_id_and_fixed_text() {
        assert_eq!(
            TextFormat::Python.text("/ProductId", &Value::I32(0xA162)),
            "0xA162"
        );
        let f = TextFormat::Fixed {
            decimals: Some(1),
            unit: Some("C".into()),
        };
        assert_eq!(f.text("/T", &Value::F64(21.54)), "21.5 C");
        assert_eq!(f.text("/T", &Value::Invalid), "---");
    }

    #[test]
    fn json_round_trip_and_int_widths() {
        let j: serde_json::Value =
            serde_json::from_str(r#"{"a":[1,2.5,true,"s",null],"b":4294967296}"#).unwrap();
        let v = Value::from_json(&j).unwrap();
        let Value::Dict(d) = &v else {
            panic!("got {v:?}")
        };
        assert_eq!(d["b"], Value::I64(4294967296));
        assert_eq!(v.to_json(), j);
    }

    #[test]
    fn encoding_signatures() {
        assert_eq!(
            Value::Invalid.to_variant().value_signature().to_string(),
            "ai"
        );
        assert_eq!(
            Value::List(vec![])
                .to_variant()
                .value_signature()
                .to_string(),
            "au"
        );
        assert_eq!(
            Value::List(vec![Value::I32(1)])
                .to_variant()
                .value_signature()
                .to_string(),
            "av"
        );
        assert_eq!(
            Value::Dict(BTreeMap::from([("k".into(), Value::I32(1))]))
                .to_variant()
                .value_signature()
                .to_string(),
            "a{sv}"
        );
        // any empty array decodes as invalid
        let au = Variant::Array(Array::new(&Signature::U32));
        assert_eq!(Value::from_variant(&au).unwrap(), Value::Invalid);
    }

    /// See: issue 10. Values D-Bus cannot carry (NUL in text, nesting past
    /// what fits in a message) are refused where they enter, never stored.
    #[test]
    fn issue_10_values_the_bus_cannot_carry_are_refused_on_entry() {
        let deep = |n: usize| {
            let text = format!("{}1{}", "[".repeat(n), "]".repeat(n));
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        };
        assert!(Value::from_json(&deep(MAX_NESTING)).is_ok());
        assert_eq!(
            Value::from_json(&deep(MAX_NESTING + 1)),
            Err(ValueError::TooDeep)
        );
        assert_eq!(
            Value::from_json(&serde_json::json!({"a\u{0}": 1})),
            Err(ValueError::NulInText)
        );
        assert_eq!(
            Value::from_json(&serde_json::json!(["x\u{0}"])),
            Err(ValueError::NulInText)
        );
        assert_eq!(Value::text("a\0"), Err(ValueError::NulInText));

        let mut v = Variant::I32(1);
        for _ in 0..=MAX_NESTING {
            let mut a = Array::new(v.value_signature());
            a.append(v).unwrap();
            v = Variant::Array(a);
        }
        assert_eq!(Value::from_variant(&v), Err(ValueError::TooDeep));

        // Every accepted value can be sent in a GetItems reply.
        let ok = Value::from_json(&deep(MAX_NESTING)).unwrap();
        assert_eq!(ok.check_wire(), Ok(()));
        let entry = HashMap::from([(
            "/X".to_string(),
            crate::dbus::tree::value_text_entry(&ok, ok.python_text()),
        )]);
        zbus::Message::signal("/", "a.b", "C")
            .build(&(entry,))
            .expect("encodable");
    }

    #[test]
    fn coercion_rules() {
        assert_eq!(
            Value::I32(2).coerce(ValueType::Float),
            Some(Value::F64(2.0))
        );
        assert_eq!(Value::F64(3.0).coerce(ValueType::Int), Some(Value::I32(3)));
        assert_eq!(Value::F64(3.5).coerce(ValueType::Int), None);
        assert_eq!(Value::Str("a".into()).coerce(ValueType::Float), None);
        assert_eq!(Value::I32(1).coerce(ValueType::Str), None);
        assert_eq!(Value::Invalid.coerce(ValueType::Str), Some(Value::Invalid));
    }
}
