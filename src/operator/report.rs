//! The device report: what `list --json`, the MQTT `list` answer and the retained
//! `dbus-mqtt-devices/devices/<client id>` topic show of each device. Its JSON is a stable,
//! documented interface (docs/protocol.md, "Operator tools"): fields are only ever added;
//! optional fields are left out when unknown.

use super::mapped_activity::PathSample;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the report's JSON; raised only for a change that is not an addition.
pub const REPORT_FORMAT: u32 = 1;

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// On D-Bus with `/Connected` 1.
    Online,
    /// On D-Bus with `/Connected` 0: the device went silent past its timeout.
    Stale,
    /// Not on D-Bus: the device is not connected; its settings (instance, name) are kept.
    Offline,
    /// Declared by a connected device but not on D-Bus: refused (see `lastError`).
    Refused,
}

impl ServiceState {
    /// The word shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Online => "online",
            ServiceState::Stale => "stale",
            ServiceState::Offline => "offline",
            ServiceState::Refused => "refused",
        }
    }
}

/// What a mapped device (a device described by a declaration, not by its own Status) adds
/// to its service: present only for mapped devices, filled by a running daemon. `lastTopic`,
/// `rawPayload`, `convertedValue` and `at` are of the last message that fed a path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappedDetail {
    /// The last MQTT topic a value came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_topic: Option<String>,
    /// Its payload as received (text, cut to 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_payload: Option<String>,
    /// The value it became on D-Bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_value: Option<serde_json::Value>,
    /// Unix seconds of that value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// Where it is declared: `file:line:column`, or the retained topic
    /// `dbus-mqtt-devices/mapped/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `file` or `topic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<String>,
    /// The declaration has no error now (it may have warnings). A declaration with an
    /// error is not served, unless it was served before the mistake was made (then it is
    /// served as declared before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration_valid: Option<bool>,
    /// What is wrong with the declaration (or worth knowing), each with its place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
    /// The topic filters the daemon subscribed to for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Messages received on them since the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// What its availability (or its silence) says: its `/Connected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    /// Per D-Bus path: the last topic, raw payload, converted value and its time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, PathSample>,
}

/// One service of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReport {
    /// The device's label for the service (`t1`); absent when only the unique id is known
    /// and cannot be split (see `uniqueId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// `mqtt_<client>_<service>`: the key of its settings in localsettings.
    pub unique_id: String,
    /// `com.victronenergy.<type>.<unique id>`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbus_name: Option<String>,
    /// Service type (`temperature`), or the class of its VRM instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    /// VRM device instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_name: Option<String>,
    pub state: ServiceState,
    /// Unix seconds of the last value (known to a running daemon only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value_at: Option<u64>,
    /// The last refusal about this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix seconds of that refusal (known to a running daemon only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<u64>,
    /// Mapped devices only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped: Option<MappedDetail>,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReport {
    /// The client id as the device writes it, or as far as it can be told from a unique id
    /// (then `clientIdGuessed` is true).
    pub client_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_id_guessed: bool,
    /// `native` (registers itself with a Status) or `mapped`.
    pub kind: String,
    /// At least one service on D-Bus, or the daemon serves it now.
    pub connected: bool,
    /// Unix seconds the device was last heard from (kept across restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
    /// The last refusal not about one service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub services: Vec<ServiceReport>,
}

/// A whole listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub format: u32,
    /// Unix seconds the listing was made (ages are counted from it).
    pub generated_at: u64,
    /// Whether a running daemon made it (else: the CLI alone, from D-Bus, localsettings
    /// and the state file; no last values or errors).
    pub from_daemon: bool,
    pub devices: Vec<DeviceReport>,
    /// Mistakes in mapped-device declaration files that name no device (a file that is
    /// not TOML): none of its devices is served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declaration_errors: Vec<String>,
}
