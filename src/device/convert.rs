//! Turns a JSON value sent by a device into the D-Bus value of a catalog path,
//! coercing as `SetValue` would (an integer on a float path becomes a float,
//! `"100"` on a numeric path becomes 100) and refusing what cannot fit.

use crate::catalog::ValueKind;
use crate::dbus::Value;
use serde_json::Value as Json;

/// Converts `json` for a path of kind `kind`; `Err` says why in words.
pub fn json_to_value(json: &Json, kind: ValueKind) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Invalid);
    }
    match kind {
        ValueKind::Any => Value::from_json(json).map_err(|e| e.to_string()),
        ValueKind::Float => match json {
            Json::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Value::F64)
                .ok_or_else(|| format!("{n} is not a finite number")),
            Json::Bool(b) => Ok(Value::F64(if *b { 1.0 } else { 0.0 })),
            Json::String(s) => parse_number_text(s).map(Value::F64),
            other => Err(format!("expected a number, got {}", kind_name(other))),
        },
        ValueKind::Int => {
            let f = match json {
                Json::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        return Ok(int_value(i));
                    }
                    n.as_f64().ok_or_else(|| format!("{n} is out of range"))?
                }
                Json::Bool(b) => return Ok(Value::I32(i32::from(*b))),
                Json::String(s) => parse_number_text(s)?,
                other => return Err(format!("expected an integer, got {}", kind_name(other))),
            };
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Ok(int_value(f as i64))
            } else {
                Err(format!("expected an integer, got {f}"))
            }
        }
        ValueKind::Str => match json {
            Json::String(s) => Value::text(s.as_str()).map_err(|e| e.to_string()),
            Json::Number(n) => Ok(Value::Str(n.to_string())),
            other => Err(format!("expected a string, got {}", kind_name(other))),
        },
    }
}

/// An integer as velib wraps it: int32 when it fits, else int64.
fn int_value(i: i64) -> Value {
    match i32::try_from(i) {
        Ok(small) => Value::I32(small),
        Err(_) => Value::I64(i),
    }
}

/// `"21.5"` → 21.5; NaN, Infinity and words are refused.
fn parse_number_text(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err(format!("{s:?} is not a finite number")),
    }
}

fn kind_name(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_paths_take_integers_and_numeric_text() {
        assert_eq!(
            json_to_value(&json!(21), ValueKind::Float),
            Ok(Value::F64(21.0))
        );
        assert_eq!(
            json_to_value(&json!(21.5), ValueKind::Float),
            Ok(Value::F64(21.5))
        );
        assert_eq!(
            json_to_value(&json!("100"), ValueKind::Float),
            Ok(Value::F64(100.0))
        );
        assert!(json_to_value(&json!("NaN"), ValueKind::Float).is_err());
        assert!(json_to_value(&json!("inf"), ValueKind::Float).is_err());
        assert!(json_to_value(&json!("warm"), ValueKind::Float).is_err());
        assert!(json_to_value(&json!([1]), ValueKind::Float).is_err());
    }

    #[test]
    fn int_paths_take_integral_numbers_only() {
        assert_eq!(json_to_value(&json!(3), ValueKind::Int), Ok(Value::I32(3)));
        assert_eq!(
            json_to_value(&json!(3.0), ValueKind::Int),
            Ok(Value::I32(3))
        );
        assert_eq!(
            json_to_value(&json!("100"), ValueKind::Int),
            Ok(Value::I32(100))
        );
        assert_eq!(
            json_to_value(&json!(4_294_967_296i64), ValueKind::Int),
            Ok(Value::I64(4_294_967_296))
        );
        assert!(json_to_value(&json!(3.5), ValueKind::Int).is_err());
    }

    #[test]
    fn null_is_invalid_everywhere() {
        for kind in [
            ValueKind::Any,
            ValueKind::Int,
            ValueKind::Float,
            ValueKind::Str,
        ] {
            assert_eq!(json_to_value(&Json::Null, kind), Ok(Value::Invalid));
        }
    }

    #[test]
    fn strings_and_any() {
        assert_eq!(
            json_to_value(&json!("x"), ValueKind::Str),
            Ok(Value::Str("x".into()))
        );
        assert!(json_to_value(&json!({}), ValueKind::Str).is_err());
        assert_eq!(
            json_to_value(&json!(true), ValueKind::Any),
            Ok(Value::Bool(true))
        );
    }
}
