//! Answers on `device/<id>/Error`: the one place that publishes them, for the registry,
//! the device tasks and the daemon's own failures alike.

use crate::mqtt::MqttHandle;
use crate::protocol::{self, device_topic, Rejection};
use tracing::warn;

/// Logs a refused message (or field of one) with the client id and answers it on
/// `device/<id>/Error`; `kind` is the leaf of the topic refused (`Status`, `Values`…).
/// A message with no usable client id is only logged: there is no one to answer.
pub fn reject(mqtt: &MqttHandle, client_raw: &str, kind: &str, rejection: &Rejection) {
    let topic = device_topic(client_raw, kind);
    warn!(client_id = %client_raw, topic, "rejected: {rejection}");
    if !client_raw.is_empty() {
        publish(mqtt, client_raw, &topic, rejection);
    }
}

/// Answers `rejection` about the message on `topic` on `device/<id>/Error`, without
/// logging it (for callers that log the cause themselves).
pub fn publish(mqtt: &MqttHandle, client_raw: &str, topic: &str, rejection: &Rejection) {
    mqtt.publish(
        &device_topic(client_raw, "Error"),
        protocol::error_reply(rejection, topic),
        false,
    );
}
