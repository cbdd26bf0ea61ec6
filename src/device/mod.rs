//! One device: a pure state machine ([`machine`]) that decides what the device's messages
//! (Status, Proxy, Values) and the GX side (D-Bus writes, settings changes, timeouts) lead
//! to, and a task per device ([`task`]) that carries its decisions out against D-Bus,
//! localsettings, the state file and MQTT, one input at a time.
//!
//! - [`machine`]: `(state, input, env) → actions`; no I/O, no clock.
//! - [`task`]: the executor; one task per device, with its panic boundary ([`failure`]).
//! - [`venus_service`]: one device service as Venus sees it: its registration on D-Bus and in localsettings, its settings.
//! - [`error_reply`]: the one publisher of `device/<id>/Error`.
//! - [`budget`], [`pace`], [`overflow`]: the limits that keep one device from crowding out
//!   the others.
//!
//! Knows no rumqttc: it publishes through [`crate::mqtt::MqttHandle`] and receives parsed
//! messages from the registry.

pub mod budget;
pub mod error_reply;
pub mod failure;
pub mod machine;
pub mod overflow;
pub mod pace;
pub mod venus_service;
pub mod task;

use crate::dbus::Value;
use crate::ids::ServiceId;
use crate::protocol::{ProxyRequest, Status, ValuesMessage};
pub use budget::ServiceBudget;
use failure::Origin;

pub use task::{spawn, DeviceContext, CONCURRENT_REGISTRATIONS};

/// Events queued per device; past this the registry drops messages of that
/// device (with a warning) instead of letting one device exhaust memory.
pub const DEVICE_QUEUE: usize = 64;

/// What the device task is told.
#[derive(Debug)]
pub enum DeviceEvent {
    /// A Status message with `connected: 1` (parsed; may carry rejections),
    /// or one remembered in the state file. Boxed: it is much larger than the
    /// other events, and every queued event takes the size of the largest.
    Announce(Box<Announce>),
    /// A Proxy message.
    Proxy(ProxyRequest),
    /// A Values message (v3).
    Values(ValuesMessage),
    /// `connected: 0`, the `lwt_value` on `lwt_topic`, or the daemon stopping.
    Disconnect { reason: &'static str },
    /// A D-Bus write to one of the device's paths was accepted.
    RemoteWrite {
        service: ServiceId,
        path: String,
        value: Value,
    },
    /// A setting of one of the device's services changed in localsettings.
    SettingChanged {
        service: ServiceId,
        path: String,
        value: Value,
    },
}

/// A registration: a Status with `connected: 1`.
#[derive(Debug)]
pub struct Announce {
    pub status: Status,
    /// The payload as the state file keeps it.
    pub payload: serde_json::Value,
    /// Remembered in the state file from before the daemon's restart, not
    /// sent now: registered again, and removed if the device shows no sign of
    /// life within its timeout (or [`machine::RESTORE_GRACE`]) of the broker being there.
    pub restored: bool,
}

/// An event with where it came from (none for events from the GX side).
#[derive(Debug)]
pub struct Envelope {
    pub event: DeviceEvent,
    pub origin: Option<Origin>,
}

