//! dbus-mqtt-devices: lets Wi-Fi devices register themselves on the Venus OS
//! D-Bus over MQTT.
//!
//! # Layout
//! - [`dbus`]: the Venus BusItem dialect on zbus (services, values, dispatcher).
//!   Knows nothing of MQTT or devices; usable by any Rust driver on Venus OS.
//! - `catalog`: service types as data (paths, units, defaults, persisted
//!   settings), built in and overridable by a user file. Knows no bus, no broker.
//! - [`settings`]: localsettings (`com.victronenergy.settings`): a client for drivers, and a
//!   service of our own that behaves like it (test peer and PC-mode settings store).
//! - `cli` and `config`: the command line, the configuration file, defaults.
//! - `data_dir`: where the user's files live on a GX device; the move from the old place.
//! - `app`: wires everything together and owns shutdown.
//! - `mqtt`: the broker connection (rumqttc), reconnects and resubscribes.
//! - `registry`: client id → device task; parses and refuses device input.
//! - `device`: one device: a state machine with no I/O (registration, reconcile, values,
//!   liveness) and the task that carries out what it decides.
//! - `mapped`: devices that cannot speak the protocol (Shelly, Tasmota, OpenDTU,
//!   Zigbee2MQTT, ESPHome), declared in files or on a topic: the pure core that
//!   turns their own topics into values for a device.
//! - `atomic_file`: replacing a file atomically (temporary file, rename) and syncing it.
//! - `persist`: the state file that survives a restart of the daemon.
//! - `state`: the record of connected devices, written through to the state file
//!   (persist, then reply).
//! - `quarantine` and `replay`: messages that made the daemon fail are set aside, so
//!   that a restart does not replay them (retained Status, state file).
//! - `health`: counts of live objects, logged and asked for by tests.
//! - `fault`: failures on purpose, for tests only (feature `fault-injection`).
//! - `portal`: finding the GX's portal id.
//! - `logging`: stderr or syslog output.
//! - `ids`: client, service, unique and portal ids; the legal-id mapping.
//! - `protocol`: the device protocol (v1, v2, v3) as types and reply payloads.
//! - `pyjson`: JSON text byte-for-byte as Python's `json.dumps` writes it.
//! - `operator`: the operator tools (`list`, `remove`, `doctor`), on the command line and
//!   over MQTT (`dbus-mqtt-devices/request/<verb>`, `dbus-mqtt-devices/devices/<id>`).
//! - `sim` (feature `sim`): the whole Venus side on a PC (broker, private bus, settings,
//!   an MQTT gateway like dbus-flashmq, the daemon, a demo device) with a live view.
//!
//! # Public surface
//! What a Rust driver on Venus OS would use: [`dbus`] and [`settings`]. The daemon's own
//! modules are private to the crate; the `internals` feature (on for the crate's own tests,
//! benches and fuzz targets only, through its dev-dependency on itself) opens them to those.

// Code that runs in the daemon may not panic on what it is given: no indexing or
// slicing that can fail, no unwrap or expect, no panic. Unit tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod dbus;
pub mod settings;

mod binary;
#[doc(hidden)]
pub use binary::main;

/// Declares the daemon's modules: crate-private, or public with the `internals` feature.
macro_rules! internal_modules {
    ($($(#[$attr:meta])* $name:ident;)*) => {
        $(
            $(#[$attr])*
            #[cfg(feature = "internals")]
            pub mod $name;
            $(#[$attr])*
            #[cfg(not(feature = "internals"))]
            mod $name;
        )*
    };
}

internal_modules! {
    app;
    atomic_file;
    catalog;
    cli;
    config;
    data_dir;
    device;
    fault;
    health;
    ids;
    logging;
    mapped;
    mqtt;
    operator;
    persist;
    portal;
    protocol;
    pyjson;
    quarantine;
    registry;
    replay;
    state;
    #[cfg(feature = "sim")]
    sim;
}
