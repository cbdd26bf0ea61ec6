//! JSON text exactly as Python's `json.dumps` writes it with default options,
//! the form the Python driver published its replies in: `", "` and `": "`
//! separators, non-ASCII escaped as `\uXXXX`, floats as Python's `repr`.
//!
//! Devices written against the Python driver sometimes match reply payloads as
//! strings, so replies are byte-for-byte what it sent. Knows nothing of MQTT.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
    )
)]
use serde_json::Value;
use std::fmt::Write;

/// Serializes `value` as Python's `json.dumps(value)` would.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                out.push_str(&float_repr(f));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Python's `ensure_ascii=True` string escaping.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`, which `json.dumps` uses for finite floats (the
/// only kind JSON has): shared with the D-Bus layer's `str()` texts.
pub fn float_repr(f: f64) -> String {
    crate::dbus::value::python_float(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_read_like_python_repr() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (21.5, "21.5"),
            (0.1, "0.1"),
            (24.91, "24.91"),
            (230.0, "230.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
            (123456789.125, "123456789.125"),
        ];
        for (value, python) in cases {
            assert_eq!(float_repr(value), python, "repr({value:e})");
        }
    }

    #[test]
    fn objects_use_python_separators_and_keep_key_order() {
        let v = json!({"portalId": "c0ffee000001", "deviceInstance": {"t1": 5, "tk1": 20}});
        assert_eq!(
            dumps(&v),
            r#"{"portalId": "c0ffee000001", "deviceInstance": {"t1": 5, "tk1": 20}}"#
        );
    }

    #[test]
    fn strings_are_escaped_like_ensure_ascii() {
        let v = json!(["a\"b\\c\n", "Küche", "\u{1}", "😀"]);
        assert_eq!(
            dumps(&v),
            r#"["a\"b\\c\n", "K\u00fcche", "\u0001", "\ud83d\ude00"]"#
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(dumps(&json!({"value": null})), r#"{"value": null}"#);
        assert_eq!(dumps(&json!({"value": true})), r#"{"value": true}"#);
        assert_eq!(dumps(&json!({"value": 23})), r#"{"value": 23}"#);
        assert_eq!(dumps(&json!({"value": 23.0})), r#"{"value": 23.0}"#);
        assert_eq!(dumps(&json!({"value": []})), r#"{"value": []}"#);
        assert_eq!(dumps(&json!({})), r#"{}"#);
        assert_eq!(
            dumps(&json!(18446744073709551615u64)),
            "18446744073709551615"
        );
    }
}
