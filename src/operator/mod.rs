//! Operator tools: `list`, `remove` and `doctor`, on the command line and over MQTT.
//!
//! - [`report`]: the device report and its stable JSON.
//! - [`inventory`]: builds the reports from D-Bus, localsettings, the state file and the
//!   daemon's [`activity`].
//! - [`activity`]: what the running daemon knows beyond D-Bus (last seen, last value, last
//!   refusal), updated from the device paths.
//! - [`mapped_activity`]: what the mapped-device runtime reports of its devices.
//! - [`bus`]: the D-Bus reads and `RemoveSettings`.
//! - [`remove`]: what a removal selects and what it did.
//! - [`doctor`]: the checks; [`mapped_checks`]: those of a mapped device.
//! - [`request`]: MQTT requests (`dbus-mqtt-devices/request/<verb>`), parsed.
//! - [`duration`]: `30d`, `12h` as an operator types them.
//! - [`service`]: the daemon's side: answers requests, keeps the retained device states.
//! - [`client`]: the command line's MQTT connection to the broker and the daemon.
//! - [`cli`]: the `list`, `remove` and `doctor` commands.

pub mod activity;
pub mod bus;
pub mod cli;
pub mod client;
pub mod doctor;
pub mod duration;
pub mod inventory;
pub mod mapped_activity;
pub mod mapped_checks;
pub mod remove;
pub mod report;
pub mod request;
pub mod service;
