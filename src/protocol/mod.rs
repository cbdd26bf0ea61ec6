//! The device protocol (v1, v2 and our v3 extensions, see `docs/protocol.md`)
//! as types: topics, the Status, Proxy and Values messages, the replies and
//! the rejections sent back to devices.
//!
//! Knows no MQTT client and no D-Bus: it turns topics and payload bytes into
//! values, and values into reply payloads.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
    )
)]
mod proxy;
mod rejection;
mod reply;
mod status;
mod topic;
mod values;

use crate::dbus::json_type_name;

pub use proxy::ProxyRequest;
pub use rejection::{Rejection, RejectionCode};
pub use reply::{dbus_reply, device_instance_reply, error_reply, write_forward, ServiceReply};
pub use status::{ServiceDecl, Status};
#[cfg(feature = "internals")]
pub use status::MAX_SERVICES_PER_DEVICE;
pub use topic::device_topic;
pub use topic::{DeviceTopic, MessageKind};
pub use values::ValuesMessage;

/// Largest payload accepted on a device topic, in bytes. A Status with 32
/// services fits in a few KiB; anything larger is a mistake or an attack.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// Parses a payload as a JSON object, with the size limit applied first.
fn parse_object(payload: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::new(
            RejectionCode::PayloadTooLarge,
            format!(
                "payload is {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            ),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
        Rejection::new(
            RejectionCode::InvalidJson,
            format!("payload is not valid JSON: {e}"),
        )
    })?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(Rejection::new(
            RejectionCode::InvalidJson,
            format!(
                "payload must be a JSON object, got {}",
                json_type_name(&other)
            ),
        )),
    }
}
