//! dbus-mqtt-devices: lets Wi-Fi devices register themselves on the Venus OS
//! D-Bus over MQTT.
//!
//! # Layout
//! - [`dbus`]: the Venus BusItem dialect on zbus (services, values, dispatcher).
//!   Knows nothing of MQTT or devices; usable by any Rust driver on Venus OS.
//! - [`ids`]: client, service, unique and portal ids; the legal-id mapping.
//! - [`protocol`]: the device protocol (v1, v2, v3) as types and reply payloads.
//! - [`pyjson`]: JSON text byte-for-byte as Python's `json.dumps` writes it.

pub mod ids;
pub mod protocol;
pub mod pyjson;
