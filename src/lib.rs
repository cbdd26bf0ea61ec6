//! dbus-mqtt-devices: lets Wi-Fi devices register themselves on the Venus OS
//! D-Bus over MQTT.
//!
//! # Layout
//! - [`dbus`]: the Venus BusItem dialect on zbus (services, values, dispatcher).
//!   Knows nothing of MQTT or devices; usable by any Rust driver on Venus OS.
//! - [`catalog`]: service types as data (paths, units, defaults, persisted
//!   settings), built in and overridable by a user file. Knows no bus, no broker.
//! - [`settings`]: localsettings (`com.victronenergy.settings`): a client for drivers, and a
//!   service of our own that behaves like it (test peer and PC-mode settings store).
//! - [`cli`] and [`config`]: the command line, the configuration file, defaults.
//! - [`data_dir`]: where the user's files live on a GX device; the move from the old place.
//! - [`app`]: wires everything together and owns shutdown.
//! - [`mqtt`]: the broker connection (rumqttc), reconnects and resubscribes.
//! - [`registry`]: client id → device task; parses and refuses device input.
//! - [`device`]: one device: a state machine with no I/O (registration, reconcile, values,
//!   liveness) and the task that carries out what it decides.
//! - [`persist`]: the state file that survives a restart of the daemon.
//! - [`state`]: the record of connected devices, written through to the state file
//!   (persist, then reply).
//! - [`quarantine`] and [`replay`]: messages that made the daemon fail are set aside, so
//!   that a restart does not replay them (retained Status, state file).
//! - [`health`]: counts of live objects, logged and asked for by tests.
//! - [`fault`]: failures on purpose, for tests only (feature `fault-injection`).
//! - [`portal`]: finding the GX's portal id.
//! - [`logging`]: stderr or syslog output.
//! - [`ids`]: client, service, unique and portal ids; the legal-id mapping.
//! - [`protocol`]: the device protocol (v1, v2, v3) as types and reply payloads.
//! - [`pyjson`]: JSON text byte-for-byte as Python's `json.dumps` writes it.
//! - `sim` (feature `sim`): the whole Venus side on a PC (broker, private bus, settings,
//!   an MQTT gateway like dbus-flashmq, the daemon, a demo device) with a live view.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod dbus;
pub mod device;
pub mod fault;
pub mod health;
pub mod ids;
pub mod logging;
pub mod mqtt;
pub mod persist;
pub mod portal;
pub mod protocol;
pub mod pyjson;
pub mod quarantine;
pub mod registry;
pub mod replay;
pub mod settings;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state;
