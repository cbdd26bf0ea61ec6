//! The JSON side of the Venus value model: what MQTT carries (`null` for invalid) to and from
//! [`Value`], once for every user: device Values and Proxy defaults (through a path's
//! [`ValueType`]), the MQTT gateway's `W/` writes, the settings file, the catalog's defaults.
//! Knows no paths, no catalog and no MQTT client.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
use serde_json::Value as Json;

use super::value::{check_text, Value, ValueError, ValueType, MAX_NESTING};

/// The name of a JSON value's type, as messages to devices say it ("a number", "an object").
pub fn json_type_name(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl Value {
    /// From JSON: integer → `I32` (`I64` outside int32), float → `F64`, bool, string,
    /// null → `Invalid`, array → `List`, object → `Dict`. Refuses what D-Bus cannot carry
    /// (see [`Value::check_wire`]).
    pub fn from_json(v: &Json) -> Result<Value, ValueError> {
        Value::from_json_at(v, 0)
    }

    fn from_json_at(v: &Json, depth: usize) -> Result<Value, ValueError> {
        if depth >= MAX_NESTING && (v.is_array() || v.is_object()) {
            return Err(ValueError::TooDeep);
        }
        let inner = |v| Value::from_json_at(v, depth.saturating_add(1));
        Ok(match v {
            Json::Null => Value::Invalid,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::int(i)
                } else if n.is_f64() {
                    // serde_json only yields finite doubles.
                    Value::F64(n.as_f64().unwrap_or_default())
                } else {
                    return Err(ValueError::NumberOutOfRange(n.to_string()));
                }
            }
            Json::String(s) => Value::text(s.as_str())?,
            Json::Array(a) => Value::List(a.iter().map(inner).collect::<Result<_, _>>()?),
            Json::Object(o) => Value::Dict(
                o.iter()
                    .map(|(k, v)| {
                        check_text(k)?;
                        Ok((k.clone(), inner(v)?))
                    })
                    .collect::<Result<_, ValueError>>()?,
            ),
        })
    }

    /// To JSON; `Invalid` → `null`, non-finite doubles → `null` (JSON has no NaN).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Invalid => Json::Null,
            Value::I32(v) => (*v).into(),
            Value::I64(v) => (*v).into(),
            Value::F64(v) => serde_json::Number::from_f64(*v)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Bool(b) => (*b).into(),
            Value::Str(s) => s.clone().into(),
            Value::List(l) => l.iter().map(Value::to_json).collect(),
            Value::Dict(d) => d.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
        }
    }

    /// A value a device sends (MQTT JSON) for a path of type `ty`, coerced as `SetValue`
    /// would coerce it ([`Value::coerce`]) and a little more, as the Python driver took it:
    /// `null` is invalid everywhere; a number or a boolean on a `Float` path becomes a double;
    /// an integral number on an `Int` path becomes an integer; numeric text (`"100"`) counts
    /// as the number on `Int` and `Float` paths; a number on a `Str` path becomes its text;
    /// `Any` takes whatever [`Value::from_json`] takes. `Err` says in words why not, for the
    /// device's error reply.
    pub fn from_json_as(json: &Json, ty: ValueType) -> Result<Value, String> {
        if json.is_null() {
            return Ok(Value::Invalid);
        }
        match ty {
            ValueType::Any => Value::from_json(json).map_err(|e| e.to_string()),
            ValueType::Float => match json {
                Json::Number(n) => n
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(Value::F64)
                    .ok_or_else(|| format!("{n} is not a finite number")),
                Json::Bool(b) => Ok(Value::F64(if *b { 1.0 } else { 0.0 })),
                Json::String(s) => parse_number_text(s).map(Value::F64),
                other => Err(format!("expected a number, got {}", json_type_name(other))),
            },
            ValueType::Int => {
                let f = match json {
                    Json::Number(n) => {
                        if let Some(i) = n.as_i64() {
                            return Ok(Value::int(i));
                        }
                        n.as_f64().ok_or_else(|| format!("{n} is out of range"))?
                    }
                    Json::Bool(b) => return Ok(Value::I32(i32::from(*b))),
                    Json::String(s) => parse_number_text(s)?,
                    other => {
                        return Err(format!(
                            "expected an integer, got {}",
                            json_type_name(other)
                        ))
                    }
                };
                // Whole and well inside i64 (and exact in a double): the cast is exact.
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Ok(Value::int(f as i64))
                } else {
                    Err(format!("expected an integer, got {f}"))
                }
            }
            ValueType::Str => match json {
                Json::String(s) => Value::text(s.as_str()).map_err(|e| e.to_string()),
                Json::Number(n) => Ok(Value::Str(n.to_string())),
                other => Err(format!("expected a string, got {}", json_type_name(other))),
            },
        }
    }
}

/// `"21.5"` → 21.5; NaN, Infinity and words are refused.
fn parse_number_text(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err(format!("{s:?} is not a finite number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_json_as(json: &Json, ty: ValueType) -> Result<Value, String> {
        Value::from_json_as(json, ty)
    }

    #[test]
    fn float_paths_take_integers_and_numeric_text() {
        assert_eq!(
            from_json_as(&json!(21), ValueType::Float),
            Ok(Value::F64(21.0))
        );
        assert_eq!(
            from_json_as(&json!(21.5), ValueType::Float),
            Ok(Value::F64(21.5))
        );
        assert_eq!(
            from_json_as(&json!("100"), ValueType::Float),
            Ok(Value::F64(100.0))
        );
        assert!(from_json_as(&json!("NaN"), ValueType::Float).is_err());
        assert!(from_json_as(&json!("inf"), ValueType::Float).is_err());
        assert!(from_json_as(&json!("warm"), ValueType::Float).is_err());
        assert!(from_json_as(&json!([1]), ValueType::Float).is_err());
    }

    #[test]
    fn int_paths_take_integral_numbers_only() {
        assert_eq!(from_json_as(&json!(3), ValueType::Int), Ok(Value::I32(3)));
        assert_eq!(from_json_as(&json!(3.0), ValueType::Int), Ok(Value::I32(3)));
        assert_eq!(
            from_json_as(&json!("100"), ValueType::Int),
            Ok(Value::I32(100))
        );
        assert_eq!(
            from_json_as(&json!(4_294_967_296i64), ValueType::Int),
            Ok(Value::I64(4_294_967_296))
        );
        assert!(from_json_as(&json!(3.5), ValueType::Int).is_err());
    }

    #[test]
    fn null_is_invalid_everywhere() {
        for ty in [
            ValueType::Any,
            ValueType::Int,
            ValueType::Float,
            ValueType::Str,
        ] {
            assert_eq!(from_json_as(&Json::Null, ty), Ok(Value::Invalid));
        }
    }

    #[test]
    fn strings_and_any() {
        assert_eq!(
            from_json_as(&json!("x"), ValueType::Str),
            Ok(Value::Str("x".into()))
        );
        assert!(from_json_as(&json!({}), ValueType::Str).is_err());
        assert_eq!(
            from_json_as(&json!(true), ValueType::Any),
            Ok(Value::Bool(true))
        );
    }

    #[test]
    fn refusals_name_the_json_type() {
        assert_eq!(
            from_json_as(&json!({"a": 1}), ValueType::Float),
            Err("expected a number, got an object".into())
        );
        assert_eq!(
            from_json_as(&json!([]), ValueType::Int),
            Err("expected an integer, got an array".into())
        );
        assert_eq!(
            from_json_as(&json!(false), ValueType::Str),
            Err("expected a string, got a boolean".into())
        );
    }
}
