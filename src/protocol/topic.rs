//! The device topics the daemon listens to: `device/<client id>/<kind>`.

/// What a device topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `device/<id>/Status`: registration and disconnect (v1, v2, v3).
    Status,
    /// `device/<id>/Proxy`: values republished to the gateway's W/ topics (v2).
    Proxy,
    /// `device/<id>/Values`: values set directly on D-Bus (v3).
    Values,
}

/// A parsed device topic. The client id is the raw topic level; it is
/// validated by [`crate::ids::ClientId::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopic<'a> {
    pub client_id: &'a str,
    pub kind: MessageKind,
}

impl<'a> DeviceTopic<'a> {
    /// The subscriptions that cover every device topic.
    pub const SUBSCRIPTIONS: [&'static str; 3] =
        ["device/+/Status", "device/+/Proxy", "device/+/Values"];

    /// Parses `device/<id>/Status|Proxy|Values`; anything else is `None`.
    pub fn parse(topic: &'a str) -> Option<DeviceTopic<'a>> {
        let rest = topic.strip_prefix("device/")?;
        let (client_id, kind) = rest.split_once('/')?;
        let kind = match kind {
            "Status" => MessageKind::Status,
            "Proxy" => MessageKind::Proxy,
            "Values" => MessageKind::Values,
            _ => return None,
        };
        Some(DeviceTopic { client_id, kind })
    }
}

/// `device/<id>/<leaf>`: the topics the daemon answers on.
pub fn device_topic(client_raw: &str, leaf: &str) -> String {
    format!("device/{client_raw}/{leaf}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_topics() {
        assert_eq!(
            DeviceTopic::parse("device/fe001/Status"),
            Some(DeviceTopic {
                client_id: "fe001",
                kind: MessageKind::Status
            })
        );
        assert_eq!(
            DeviceTopic::parse("device/ESP32-1/Proxy").map(|t| t.kind),
            Some(MessageKind::Proxy)
        );
        assert_eq!(
            DeviceTopic::parse("device//Status").map(|t| t.client_id),
            Some("")
        );
        assert_eq!(DeviceTopic::parse("device/fe001/DBus"), None);
        assert_eq!(DeviceTopic::parse("device/fe001/Status/x"), None);
        assert_eq!(DeviceTopic::parse("N/x/system/0/Serial"), None);
    }
}
