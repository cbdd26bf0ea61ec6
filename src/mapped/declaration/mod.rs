//! A mapped device as declared: which service it is, where its data comes
//! from, how each value is read and transformed, how availability and
//! staleness are judged, and which writes go back to the device. This is the
//! validated, fully explicit form (a preset already expanded); [`parse`]
//! builds it from a file's or topic's tree, [`print`](mod@print) writes it back as TOML.

pub mod parse;
pub mod print;
#[cfg(test)]
mod spec_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::json_path::JsonPath;
use super::topic::{TopicFilter, TopicName};
use super::transform::Transform;
use crate::dbus::Value;

/// Longest id accepted, in bytes, as for client ids: keeps
/// `com.victronenergy.<type>.mqtt_<id>` well under D-Bus' 255-byte limit.
pub const MAX_ID_LEN: usize = crate::ids::MAX_CLIENT_ID_LEN;

/// The id of a mapped device: `[A-Za-z0-9_]`, unique among all declarations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappedId(String);

impl MappedId {
    /// Validates an id.
    pub fn parse(s: &str) -> Result<MappedId, String> {
        if s.is_empty() {
            return Err("the id is empty".into());
        }
        if s.len() > MAX_ID_LEN {
            return Err(format!(
                "the id is {} bytes long, the limit is {MAX_ID_LEN}",
                s.len()
            ));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "'{s}' is not a valid id: use letters, digits and '_' only"
            ));
        }
        Ok(MappedId(s.to_string()))
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `mqtt_<id>`: the unique id of its settings
    /// (`/Settings/Devices/mqtt_<id>/ClassAndVrmInstance`) and the last
    /// element of its D-Bus name.
    pub fn unique_id(&self) -> crate::ids::UniqueId {
        crate::ids::UniqueId::mapped(&self.0)
    }
}

impl fmt::Display for MappedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One mapped device, fully explicit.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    pub id: MappedId,
    /// The catalog type: `com.victronenergy.<service>.mqtt_<id>`.
    pub service: String,
    /// Default `/CustomName` (the user's later change on the GX wins).
    pub name: Option<String>,
    /// Preferred VRM instance.
    pub instance: Option<u32>,
    /// `/Serial`.
    pub serial: Option<String>,
    /// `/ProductName` instead of the catalog's.
    pub product: Option<String>,
    /// `/Mgmt/Connection`: where the data comes from.
    pub connection: String,
    /// Which `/Ac/Lx` a one-phase device fills (`Lx` in paths stands for it).
    pub phase: Phase,
    /// How long without a fresh message before the device counts as stale.
    pub stale_after: Option<Duration>,
    /// What happens to the values when the device goes stale or offline.
    pub on_stale: OnStale,
    /// Initial values of persisted paths (`"/Position"` → 0).
    pub settings: BTreeMap<String, Value>,
    /// Fixed values (`"/Ac/MaxPower"` → 800).
    pub constants: BTreeMap<String, Value>,
    /// Where the device says whether it is online.
    pub availability: Vec<Availability>,
    /// How several availability topics combine.
    pub availability_mode: AvailabilityMode,
    /// The device's topics and what they carry.
    pub sources: Vec<Source>,
    /// D-Bus writes forwarded to the device.
    pub writes: Vec<Write>,
    /// The preset this was expanded from, for the reader (printed as a comment).
    pub preset: Option<PresetUse>,
}

/// The preset a declaration was expanded from, and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetUse {
    pub name: String,
    pub parameters: Vec<(String, String)>,
}

/// Which phase a one-phase device fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    L1,
    L2,
    L3,
}

impl Phase {
    /// `"L1"`, `"L2"` or `"L3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::L1 => "L1",
            Phase::L2 => "L2",
            Phase::L3 => "L3",
        }
    }

    /// Reads `"L1"`…`"L3"`.
    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "L1" => Some(Phase::L1),
            "L2" => Some(Phase::L2),
            "L3" => Some(Phase::L3),
            _ => None,
        }
    }

    /// `path` with its `Lx` element replaced by this phase.
    pub fn resolve(self, path: &str) -> String {
        path.split('/')
            .map(|e| if e == "Lx" { self.as_str() } else { e })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// What happens when a device goes stale or its availability says offline.
/// In every case `/Connected` becomes 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStale {
    /// Measured values become invalid.
    #[default]
    Invalidate,
    /// Values stay as they were.
    Keep,
    /// Power and current become 0, energy counters stay, other measured
    /// values become invalid: a PV inverter at night.
    Zero,
    /// The service leaves D-Bus until the device is back.
    Remove,
}

impl OnStale {
    pub const NAMES: [&'static str; 4] = ["invalidate", "keep", "zero", "remove"];

    pub fn as_str(self) -> &'static str {
        match self {
            OnStale::Invalidate => "invalidate",
            OnStale::Keep => "keep",
            OnStale::Zero => "zero",
            OnStale::Remove => "remove",
        }
    }

    pub fn parse(s: &str) -> Option<OnStale> {
        match s {
            "invalidate" => Some(OnStale::Invalidate),
            "keep" => Some(OnStale::Keep),
            "zero" => Some(OnStale::Zero),
            "remove" => Some(OnStale::Remove),
            _ => None,
        }
    }
}

/// How several availability topics combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AvailabilityMode {
    /// The last message on any of them decides.
    #[default]
    Latest,
    /// Online only when all say online.
    All,
    /// Online when any says online.
    Any,
}

impl AvailabilityMode {
    pub const NAMES: [&'static str; 3] = ["latest", "all", "any"];

    pub fn as_str(self) -> &'static str {
        match self {
            AvailabilityMode::Latest => "latest",
            AvailabilityMode::All => "all",
            AvailabilityMode::Any => "any",
        }
    }

    pub fn parse(s: &str) -> Option<AvailabilityMode> {
        match s {
            "latest" => Some(AvailabilityMode::Latest),
            "all" => Some(AvailabilityMode::All),
            "any" => Some(AvailabilityMode::Any),
            _ => None,
        }
    }
}

/// A topic telling whether the device is online.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    pub topic: TopicFilter,
    /// Payloads meaning online (`"online"` unless declared).
    pub online: Vec<String>,
    /// Payloads meaning offline (`"offline"` unless declared).
    pub offline: Vec<String>,
    /// Where the state is inside a JSON payload (Zigbee2MQTT's
    /// `{"state":"online"}`); a payload without it is compared as a whole.
    pub path: Option<JsonPath>,
}

/// One of the device's topics and the D-Bus paths it feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// `None` only for a table that holds computed paths alone.
    pub topic: Option<TopicFilter>,
    pub mappings: Vec<Mapping>,
}

/// One D-Bus path and how its value is obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Absolute D-Bus path, `Lx` resolved: `"/Ac/L1/Power"`.
    pub path: String,
    pub rule: Rule,
    pub transform: Transform,
}

/// Where a path's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// From the payload of the source's topic.
    Extract(JsonPath),
    /// The sum of other paths of the device (when the device sends no total).
    Sum(Vec<String>),
    /// Energy integrated from a power path (Forward: positive power,
    /// Reverse: negative power), kept across restarts.
    Integrate(String),
}

/// A D-Bus write forwarded to the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The writeable D-Bus path.
    pub path: String,
    /// Where the value is published.
    pub topic: TopicName,
    /// Payload template with `{value}`; `None` sends the plain value.
    pub format: Option<String>,
    pub retain: bool,
    /// Values below are raised to it before sending.
    pub min: Option<f64>,
    /// Values above are lowered to it before sending.
    pub max: Option<f64>,
}

impl Declaration {
    /// Whether `other` can be served by the service already on D-Bus for
    /// this one: the same id, type and stale policy (whether it leaves
    /// D-Bus). The rest is values (sources, transforms, constants, serial,
    /// product), or defaults that localsettings took once and keeps (name,
    /// instance, settings).
    pub fn same_service(&self, other: &Declaration) -> bool {
        self.id == other.id && self.service == other.service && self.on_stale == other.on_stale
    }

    /// All mappings of all sources.
    pub fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.sources.iter().flat_map(|s| s.mappings.iter())
    }
}

/// `true` for an energy counter (`*/Energy/*`), which is monotonic.
pub fn is_energy_counter(path: &str) -> bool {
    let elements: Vec<&str> = path.split('/').collect();
    let last = elements.len().saturating_sub(1);
    elements
        .iter()
        .enumerate()
        .any(|(i, e)| *e == "Energy" && i < last)
}

/// `true` for a power or current path (`*/Power`, `*/Current`), which
/// `on_stale = "zero"` sets to 0.
pub fn is_power_or_current(path: &str) -> bool {
    matches!(path.rsplit('/').next(), Some("Power" | "Current"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_reading_other_topics_or_renamed_is_the_same_service_another_type_is_not() {
        let one = |text: &str| {
            let loaded = crate::mapped::test_support::load(text);
            assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
            loaded.devices.into_iter().next().unwrap().declaration
        };
        let base = "[[device]]\nid = \"n\"\nservice = \"temperature\"\npreset = \"esphome\"\ntopic = \"n\"\nsensors = { \"/Temperature\" = \"t\" }\n";
        let a = one(base);
        let more = one(&base.replace("\"t\" }", "\"t\", \"/Humidity\" = \"h\" }"));
        assert_ne!(a, more);
        assert!(a.same_service(&more));
        let named = one(&format!("{base}name = \"Outside\"\ninstance = 7\n"));
        assert!(a.same_service(&named));
        let removed = one(&format!("{base}on_stale = \"remove\"\n"));
        assert!(!a.same_service(&removed));
        let other_type = one(&base.replace("temperature", "tank").replace("/Temperature", "/Level"));
        assert!(!a.same_service(&other_type));
    }

    #[test]
    fn ids_are_legal_dbus_elements() {
        assert!(MappedId::parse("grid_shelly").is_ok());
        assert_eq!(
            MappedId::parse("grid_shelly").unwrap().unique_id().to_string(),
            "mqtt_grid_shelly"
        );
        for bad in ["", "grid-shelly", "a b", "ä", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(MappedId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_families() {
        assert!(is_energy_counter("/Ac/Energy/Forward"));
        assert!(is_energy_counter("/Ac/L2/Energy/Reverse"));
        assert!(!is_energy_counter("/Ac/Energy"));
        assert!(!is_energy_counter("/Ac/Power"));
        assert!(is_power_or_current("/Ac/L1/Power"));
        assert!(is_power_or_current("/Ac/Current"));
        assert!(!is_power_or_current("/Ac/PowerLimit"));
        assert!(!is_power_or_current("/Ac/MaxPower"));
        assert_eq!(Phase::L2.resolve("/Ac/Lx/Power"), "/Ac/L2/Power");
        assert_eq!(Phase::L2.resolve("/Ac/Power"), "/Ac/Power");
    }
}
