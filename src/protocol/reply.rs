//! The payloads the daemon publishes to a device: the `DBus` reply (v2), the
//! `DeviceInstance` reply (v1), rejections on `Error`, and forwarded writes
//! (v3). Replies are written as the Python driver wrote them (see `pyjson`).

use super::Rejection;
use crate::pyjson;
use serde_json::{json, Map, Value};

/// What a reply says about one registered service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReply {
    pub service_id: String,
    pub service_type: String,
    pub device_instance: u32,
}

/// `device/<id>/DBus`: `{"portalId": …, "deviceInstance": {…}, "topicPath": {…}}`.
pub fn dbus_reply(portal_id: &str, services: &[ServiceReply]) -> String {
    let mut instances = Map::new();
    let mut paths = Map::new();
    for s in services {
        instances.insert(s.service_id.clone(), json!(s.device_instance));
        let tail = format!("{portal_id}/{}/{}", s.service_type, s.device_instance);
        let mut topic = Map::new();
        topic.insert("N".into(), json!(format!("N/{tail}")));
        topic.insert("R".into(), json!(format!("R/{tail}")));
        topic.insert("W".into(), json!(format!("W/{tail}")));
        paths.insert(s.service_id.clone(), Value::Object(topic));
    }
    let mut reply = Map::new();
    reply.insert("portalId".into(), json!(portal_id));
    reply.insert("deviceInstance".into(), Value::Object(instances));
    reply.insert("topicPath".into(), Value::Object(paths));
    pyjson::dumps(&Value::Object(reply))
}

/// `device/<id>/DeviceInstance` (v1): `{"t1": 5, "tk1": 20}`.
pub fn device_instance_reply(services: &[ServiceReply]) -> String {
    let map: Map<String, Value> = services
        .iter()
        .map(|s| (s.service_id.clone(), json!(s.device_instance)))
        .collect();
    pyjson::dumps(&Value::Object(map))
}

/// `device/<id>/Error`: one rejection.
pub fn error_reply(rejection: &Rejection, topic: &str) -> String {
    pyjson::dumps(&rejection.to_json(topic))
}

/// `device/<id>/Write` (v3): a value written on the GX side to one of the
/// device's paths, `{"service": "ev1", "path": "SetCurrent", "value": 16}`.
pub fn write_forward(service_id: &str, path: &str, value: &Value) -> String {
    let mut map = Map::new();
    map.insert("service".into(), json!(service_id));
    map.insert("path".into(), json!(path));
    map.insert("value".into(), value.clone());
    pyjson::dumps(&Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<ServiceReply> {
        vec![
            ServiceReply {
                service_id: "t1".into(),
                service_type: "temperature".into(),
                device_instance: 5,
            },
            ServiceReply {
                service_id: "tk1".into(),
                service_type: "tank".into(),
                device_instance: 20,
            },
        ]
    }

    #[test]
    fn dbus_reply_is_byte_for_byte_the_python_drivers() {
        // json.dumps(build_dbus_payload("c0ffee000001", services)) in the Python driver 0.9.
        assert_eq!(
            dbus_reply("c0ffee000001", &services()),
            concat!(
                r#"{"portalId": "c0ffee000001", "deviceInstance": {"t1": 5, "tk1": 20}, "topicPath": "#,
                r#"{"t1": {"N": "N/c0ffee000001/temperature/5", "R": "R/c0ffee000001/temperature/5", "W": "W/c0ffee000001/temperature/5"}, "#,
                r#""tk1": {"N": "N/c0ffee000001/tank/20", "R": "R/c0ffee000001/tank/20", "W": "W/c0ffee000001/tank/20"}}}"#
            )
        );
        assert_eq!(
            dbus_reply("c0ffee000001", &[]),
            r#"{"portalId": "c0ffee000001", "deviceInstance": {}, "topicPath": {}}"#
        );
    }

    #[test]
    fn device_instance_reply_lists_instances() {
        assert_eq!(
            device_instance_reply(&services()),
            r#"{"t1": 5, "tk1": 20}"#
        );
    }

    #[test]
    fn error_reply_names_code_message_and_service() {
        let r = Rejection::new(
            super::super::RejectionCode::UnknownServiceType,
            "no type \"x\"",
        )
        .for_service("t3");
        assert_eq!(
            error_reply(&r, "device/d/Status"),
            r#"{"error": "unknown_service_type", "message": "no type \"x\"", "topic": "device/d/Status", "service": "t3"}"#
        );
    }
}
