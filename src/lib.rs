//! dbus-mqtt-devices: lets Wi-Fi devices register themselves on the Venus OS
//! D-Bus over MQTT.
//!
//! # Layout
//! - [`dbus`]: the Venus BusItem dialect on zbus (services, values, dispatcher).
//!   Knows nothing of MQTT or devices; usable by any Rust driver on Venus OS.
//! - [`catalog`]: service types as data (paths, units, defaults, persisted
//!   settings), built in and overridable by a user file. Knows no bus, no broker.

pub mod catalog;
