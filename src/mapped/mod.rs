//! Mapped devices: devices that cannot speak our protocol (a Shelly meter, a
//! Tasmota plug, OpenDTU, Zigbee2MQTT, ESPHome), declared once in a file or
//! on a topic and served on D-Bus from their own topics. See
//! `docs/mapped-devices.md` for the user's side.
//!
//! This module is a pure core: it reads declarations and presets, and turns
//! each MQTT message or clock tick into [`Effect`]s for the device state
//! machine to apply. It does no I/O (except [`load::read_data_dir`], which
//! only reads files) and reads no clock: time is an argument. [`runtime`]
//! carries it out through the device room (registration, localsettings,
//! D-Bus, MQTT), beside the devices of the protocol.
//!
//! # Layout
//! - [`tree`]: a declaration as a tree of values that remember file, line
//!   and column (TOML) — the form files, presets and JSON share.
//! - [`diagnostic`]: one finding, with its place and device.
//! - [`declaration`]: the validated model, its parser and its TOML printer.
//! - [`preset`]: presets as data files, and their expansion.
//! - [`load`]: every file of the data directory (and topic declarations)
//!   into declarations; a broken device never stops the others.
//! - [`topic`], [`json_path`], [`unit`](mod@unit), [`transform`]: the pieces of a source.
//! - [`routes`]: one subscription per distinct topic filter, and which
//!   device input a message goes to.
//! - [`counter`], [`integrate`], [`availability`]: per-device state helpers.
//! - [`device`]: one mapped device as a state machine, `(input, now) → effects`.
//! - [`effect`]: what the device state machine is asked to do.
//! - [`check`]: the `check-config` report.
//! - [`runtime`]: the declarations in effect, served: one task per device,
//!   the subscriptions, reloads, the integrated energy file.
//! - [`fuzz`]: byte-taking entry points for fuzz targets.

// A device's payload, a user's file or a topic declaration must never panic
// the daemon; these lints keep the ways to panic out of this module.
#![deny(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
// Tests may unwrap: a panic there is a failed test.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod availability;
pub mod check;
pub mod counter;
pub mod declaration;
pub mod device;
pub mod diagnostic;
pub mod effect;
#[cfg(any(test, feature = "internals"))]
pub mod fuzz;
pub mod integrate;
pub mod json_path;
pub mod load;
pub mod preset;
pub mod routes;
pub mod runtime;
#[cfg(test)]
mod test_support;
pub mod topic;
pub mod transform;
pub mod tree;
pub mod unit;

// The module's surface for the crate's tests, benches and fuzz targets; the
// daemon itself reaches into the submodules.
#[allow(unused_imports)]
pub use declaration::{
    Availability, AvailabilityMode, Declaration, MappedId, Mapping, OnStale, Phase, Rule, Source,
    Write,
};
#[allow(unused_imports)]
pub use device::{MappedDevice, WriteOutcome};
#[allow(unused_imports)]
pub use diagnostic::{Diagnostic, Severity};
#[allow(unused_imports)]
pub use effect::{Effect, EnergyState, Log, LogLevel, Publish};
#[allow(unused_imports)]
pub use json_path::JsonPath;
#[allow(unused_imports)]
pub use preset::{Preset, Presets};
#[allow(unused_imports)]
pub use routes::{Input, Route, Routes};
#[allow(unused_imports)]
pub use topic::{TopicFilter, TopicName};
#[allow(unused_imports)]
pub use transform::Transform;
