//! Finding the GX's portal id (VRM id), which devices need for their W/
//! topics: the command line, `/data/venus/unique-id`, `/Serial` of
//! `com.victronenergy.system`, or the retained `N/<id>/system/0/Serial`.

use crate::ids::PortalId;
use std::path::Path;
use tracing::debug;

/// File written at boot by Venus with the portal id (dbus-flashmq reads it too).
pub const VENUS_UNIQUE_ID_FILE: &str = "/data/venus/unique-id";

/// The topic on which both Venus MQTT gateways keep the portal id retained.
pub const SERIAL_SUBSCRIPTION: &str = "N/+/system/0/Serial";

/// Reads the portal id from a file such as `/data/venus/unique-id`.
pub fn from_file(path: &Path) -> Option<PortalId> {
    let text = std::fs::read_to_string(path).ok()?;
    PortalId::parse(&text).ok()
}

/// Asks systemcalc (`com.victronenergy.system /Serial`), as the Python driver did.
pub async fn from_system_service(conn: &zbus::Connection) -> Option<PortalId> {
    let reply = conn
        .call_method(
            Some("com.victronenergy.system"),
            "/Serial",
            Some("com.victronenergy.BusItem"),
            "GetValue",
            &(),
        )
        .await;
    let message = match reply {
        Ok(m) => m,
        Err(e) => {
            debug!(error = %e, "no portal id from com.victronenergy.system");
            return None;
        }
    };
    let value: zbus::zvariant::OwnedVariant = message.body().deserialize().ok()?;
    let value = crate::dbus::Value::from_variant(&value).ok()?;
    PortalId::parse(value.as_str()?).ok()
}

/// velib's last resort (`get_vrm_portal_id`): the MAC address of `eth0` (or of
/// the interface named by `VRM_IFACE`) without colons, lower case — what
/// dbus-mqtt uses on a machine without `/sbin/get-unique-id`.
pub fn from_network_interface() -> Option<PortalId> {
    let iface = std::env::var("VRM_IFACE").unwrap_or_else(|_| "eth0".into());
    let mac = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    mac_to_portal_id(&mac)
}

fn mac_to_portal_id(mac: &str) -> Option<PortalId> {
    let id: String = mac.trim().replace(':', "").to_ascii_lowercase();
    (id.len() == 12 && id != "000000000000" && id.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| PortalId::parse(&id).ok())
        .flatten()
}

/// `N/<portal id>/system/0/Serial` → the portal id in the topic.
pub fn from_serial_topic(topic: &str) -> Option<PortalId> {
    let rest = topic.strip_prefix("N/")?;
    let (id, tail) = rest.split_once('/')?;
    (tail == "system/0/Serial")
        .then(|| PortalId::parse(id).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_topic_names_the_portal() {
        assert_eq!(
            from_serial_topic("N/c0ffee000001/system/0/Serial").map(|p| p.to_string()),
            Some("c0ffee000001".into())
        );
        assert_eq!(from_serial_topic("N/c0ffee000001/system/0/Other"), None);
        assert_eq!(from_serial_topic("device/x/Status"), None);
    }

    #[test]
    fn a_mac_address_becomes_a_portal_id_as_velib_makes_it() {
        assert_eq!(
            mac_to_portal_id("02:FC:00:00:00:01\n").map(|p| p.to_string()),
            Some("02fc00000001".into())
        );
        assert_eq!(mac_to_portal_id("00:00:00:00:00:00"), None);
        assert_eq!(mac_to_portal_id("garbage"), None);
    }

    #[test]
    fn unique_id_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unique-id");
        std::fs::write(&path, "c0ffee000001\n").unwrap();
        assert_eq!(from_file(&path).unwrap().as_str(), "c0ffee000001");
        assert!(from_file(&dir.path().join("missing")).is_none());
    }
}
