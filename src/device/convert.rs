//! Turns a JSON value sent by a device into the D-Bus value of a catalog path:
//! [`Value::from_json_as`] with the path's kind as its D-Bus value type.

use crate::catalog::ValueKind;
use crate::dbus::{Value, ValueType};
use serde_json::Value as Json;

/// Converts `json` for a path of kind `kind`; `Err` says why in words.
pub fn json_to_value(json: &Json, kind: ValueKind) -> Result<Value, String> {
    Value::from_json_as(json, ValueType::from(kind))
}
