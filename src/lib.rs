//! dbus-mqtt-devices: lets Wi-Fi devices register themselves on the Venus OS
//! D-Bus over MQTT.
//!
//! # Layout
//! - [`dbus`]: the Venus BusItem dialect on zbus (services, values, dispatcher).
//!   Knows nothing of MQTT or devices; usable by any Rust driver on Venus OS.
//! - [`settings`]: localsettings (`com.victronenergy.settings`): a client for drivers, and a
//!   service of our own that behaves like it (test peer and PC-mode settings store).

pub mod dbus;
pub mod settings;
