//! Identifiers of the device protocol: client ids, service ids, the unique ids
//! used in D-Bus names and localsettings paths, and the portal id.
//!
//! Pure: no I/O, no async. Every id is built through `parse`, so code past the
//! protocol edge can rely on its form.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
    )
)]
use std::fmt;

/// Longest client id accepted, in bytes. Keeps `com.victronenergy.<type>.mqtt_<client>_<service>`
/// well under the 255-byte limit D-Bus puts on bus names.
pub const MAX_CLIENT_ID_LEN: usize = 100;

/// Longest service id accepted, in bytes (see [`MAX_CLIENT_ID_LEN`]).
pub const MAX_SERVICE_ID_LEN: usize = 32;

/// True for the characters allowed in D-Bus path elements and bus-name
/// elements alike: `[A-Za-z0-9_]`.
fn is_legal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("the {0} is empty")]
    Empty(&'static str),
    /// The id is longer than the documented limit.
    #[error("the {what} is {len} bytes long, the limit is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// The id has characters outside `[A-Za-z0-9_]` where no mapping applies.
    #[error("the {0} may only contain letters, digits and '_'")]
    IllegalCharacters(&'static str),
    /// The id cannot be an MQTT topic level.
    #[error("the {0} contains '/', '+', '#' or a control character")]
    NotATopicLevel(&'static str),
}

/// The client id of a device, exactly as it appears in its topics
/// (`device/<client id>/Status`), together with the legal form used on D-Bus.
///
/// Ids made only of `[A-Za-z0-9_]` are used unchanged, exactly as the Python
/// driver used them, so settings stored by it are found again. Any other id
/// (`ESP32-ABC123`, `shellyplus1pm-a8032a`) is mapped to
/// `<id with each other character replaced by '_'>_x<8 hex digits>`, where the
/// hex digits are the FNV-1a hash (32 bit) of the raw id: stable across
/// restarts and versions, readable, and distinct for distinct raw ids that
/// sanitize alike (`a-b` and `a.b`). A mapped id that equals a legal id of
/// another connected device is refused at registration (see the registry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    raw: String,
    legal: String,
}

impl ClientId {
    /// Validates a client id taken from a topic level or a payload.
    pub fn parse(raw: &str) -> Result<ClientId, IdError> {
        const WHAT: &str = "client id";
        if raw.is_empty() {
            return Err(IdError::Empty(WHAT));
        }
        if raw.len() > MAX_CLIENT_ID_LEN {
            return Err(IdError::TooLong {
                what: WHAT,
                len: raw.len(),
                max: MAX_CLIENT_ID_LEN,
            });
        }
        if raw
            .chars()
            .any(|c| c == '/' || c == '+' || c == '#' || c.is_control())
        {
            return Err(IdError::NotATopicLevel(WHAT));
        }
        let legal = if raw.chars().all(is_legal_char) {
            raw.to_owned()
        } else {
            let sanitized: String = raw
                .chars()
                .map(|c| if is_legal_char(c) { c } else { '_' })
                .collect();
            format!("{sanitized}_x{:08x}", fnv1a32(raw.as_bytes()))
        };
        Ok(ClientId {
            raw: raw.to_owned(),
            legal,
        })
    }

    /// The id as the device wrote it; used in its MQTT topics.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The `[A-Za-z0-9_]` form used in D-Bus names and settings paths.
    pub fn legal(&self) -> &str {
        &self.legal
    }

    /// True when the legal form differs from the raw id.
    pub fn is_mapped(&self) -> bool {
        self.raw != self.legal
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// FNV-1a, 32 bit: tiny, stable and documented, which is all the id mapping
/// needs (it is not a security boundary).
fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A service id: the device's own label for one of its services (`t1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(String);

impl ServiceId {
    /// Validates a service id; it must be `[A-Za-z0-9_]`, as the Python driver required.
    pub fn parse(raw: &str) -> Result<ServiceId, IdError> {
        const WHAT: &str = "service id";
        if raw.is_empty() {
            return Err(IdError::Empty(WHAT));
        }
        if raw.len() > MAX_SERVICE_ID_LEN {
            return Err(IdError::TooLong {
                what: WHAT,
                len: raw.len(),
                max: MAX_SERVICE_ID_LEN,
            });
        }
        if !raw.chars().all(is_legal_char) {
            return Err(IdError::IllegalCharacters(WHAT));
        }
        Ok(ServiceId(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `mqtt_<client>_<service>`: the unique id of one device service, used in the
/// D-Bus service name and in localsettings paths, as the Python driver made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UniqueId(String);

impl UniqueId {
    /// Builds the unique id of a device service.
    pub fn new(client: &ClientId, service: &ServiceId) -> UniqueId {
        UniqueId(format!("mqtt_{}_{}", client.legal(), service.as_str()))
    }

    /// `mqtt_<id>`: the unique id of a mapped device, whose id is already
    /// `[A-Za-z0-9_]` (see `crate::mapped::MappedId`).
    pub fn mapped(id: &str) -> UniqueId {
        UniqueId(format!("mqtt_{id}"))
    }

    /// `com.victronenergy.<type>.<unique id>`.
    pub fn bus_name(&self, service_type: &str) -> String {
        format!("com.victronenergy.{service_type}.{}", self.0)
    }

    /// `/Settings/Devices/<unique id>/ClassAndVrmInstance`, where localsettings
    /// allocates the VRM device instance.
    pub fn instance_setting(&self) -> String {
        format!("/Settings/Devices/{}/ClassAndVrmInstance", self.0)
    }

    /// `/Settings/MqttDevices/<unique id>/<key>`: the group the Python driver
    /// stored persisted paths in (CustomName, TemperatureType, …).
    pub fn setting_path(&self, key: &str) -> String {
        format!("/Settings/MqttDevices/{}/{key}", self.0)
    }

    /// The prefix of every persisted-path setting of this service, with a trailing '/'.
    pub fn settings_prefix(&self) -> String {
        format!("/Settings/MqttDevices/{}/", self.0)
    }
}

impl fmt::Display for UniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The GX's portal id (VRM id): its MAC address without colons, e.g. `c0ffee000001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortalId(String);

impl PortalId {
    /// Accepts a non-empty MQTT topic level (trimmed of white space).
    pub fn parse(raw: &str) -> Result<PortalId, IdError> {
        const WHAT: &str = "portal id";
        let id = raw.trim();
        if id.is_empty() {
            return Err(IdError::Empty(WHAT));
        }
        if id
            .chars()
            .any(|c| c == '/' || c == '+' || c == '#' || c.is_control() || c.is_whitespace())
        {
            return Err(IdError::NotATopicLevel(WHAT));
        }
        Ok(PortalId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PortalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_client_ids_stay_exactly_as_the_python_driver_used_them() {
        for id in ["fe001", "ESP32_ABC", "0abc", "a_b_c"] {
            let c = ClientId::parse(id).unwrap();
            assert_eq!(c.legal(), id);
            assert!(!c.is_mapped());
        }
    }

    #[test]
    fn illegal_client_ids_map_to_a_stable_documented_form() {
        let c = ClientId::parse("ESP32-ABC123").unwrap();
        assert_eq!(c.raw(), "ESP32-ABC123");
        assert_eq!(
            c.legal(),
            format!("ESP32_ABC123_x{:08x}", fnv1a32(b"ESP32-ABC123"))
        );
        assert!(c.legal().chars().all(is_legal_char));
        // Stable: the same input always gives the same output.
        assert_eq!(c, ClientId::parse("ESP32-ABC123").unwrap());
    }

    /// The mapping is part of what users keep (instances and names are
    /// stored under it): these exact forms must never change.
    #[test]
    fn mapped_ids_are_the_same_in_every_version() {
        for (raw, legal) in [
            ("ESP32-ABC123", "ESP32_ABC123_xe596aba9"),
            ("shellyplus1pm-a8032a", "shellyplus1pm_a8032a_x6696ac32"),
            ("Küche 1", "K_che_1_xeb83ece6"),
            ("a.b", "a_b_x108bf50c"),
        ] {
            assert_eq!(ClientId::parse(raw).unwrap().legal(), legal, "{raw}");
        }
    }

    #[test]
    fn ids_that_sanitize_alike_stay_distinct() {
        let a = ClientId::parse("a-b").unwrap();
        let b = ClientId::parse("a.b").unwrap();
        let c = ClientId::parse("a_b").unwrap();
        assert_ne!(a.legal(), b.legal());
        assert_ne!(a.legal(), c.legal());
        assert_ne!(b.legal(), c.legal());
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn bad_client_ids_are_rejected_with_a_reason() {
        assert_eq!(ClientId::parse(""), Err(IdError::Empty("client id")));
        let long = "x".repeat(MAX_CLIENT_ID_LEN + 1);
        assert!(matches!(
            ClientId::parse(&long),
            Err(IdError::TooLong { .. })
        ));
        assert!(ClientId::parse(&"x".repeat(MAX_CLIENT_ID_LEN)).is_ok());
        assert!(matches!(
            ClientId::parse("a/b"),
            Err(IdError::NotATopicLevel(_))
        ));
        assert!(matches!(
            ClientId::parse("a+"),
            Err(IdError::NotATopicLevel(_))
        ));
    }

    #[test]
    fn service_ids_must_be_legal() {
        assert!(ServiceId::parse("t1").is_ok());
        assert!(matches!(
            ServiceId::parse("t-1"),
            Err(IdError::IllegalCharacters(_))
        ));
        assert!(matches!(ServiceId::parse(""), Err(IdError::Empty(_))));
        assert!(matches!(
            ServiceId::parse(&"s".repeat(MAX_SERVICE_ID_LEN + 1)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn unique_id_paths_match_the_python_driver() {
        let u = UniqueId::new(
            &ClientId::parse("fe001").unwrap(),
            &ServiceId::parse("t1").unwrap(),
        );
        assert_eq!(u.to_string(), "mqtt_fe001_t1");
        assert_eq!(
            u.bus_name("temperature"),
            "com.victronenergy.temperature.mqtt_fe001_t1"
        );
        assert_eq!(
            u.instance_setting(),
            "/Settings/Devices/mqtt_fe001_t1/ClassAndVrmInstance"
        );
        assert_eq!(
            u.setting_path("CustomName"),
            "/Settings/MqttDevices/mqtt_fe001_t1/CustomName"
        );
    }

    #[test]
    fn portal_id_is_trimmed_and_checked() {
        assert_eq!(
            PortalId::parse(" c0ffee000001\n").unwrap().as_str(),
            "c0ffee000001"
        );
        assert!(PortalId::parse("").is_err());
        assert!(PortalId::parse("a/b").is_err());
    }
}
