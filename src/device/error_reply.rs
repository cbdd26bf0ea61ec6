//! Answers on `device/<id>/Error`: the one place that publishes them, for the registry,
//! the device tasks and the daemon's own failures alike.

use crate::mqtt::MqttHandle;
use crate::protocol::{self, device_topic, Rejection, RejectionCode};
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
fn publish(mqtt: &MqttHandle, client_raw: &str, topic: &str, rejection: &Rejection) {
    mqtt.publish(
        &device_topic(client_raw, "Error"),
        protocol::error_reply(rejection, topic),
        false,
    );
}

/// How the daemon failed on a device's message, for its `internal_error` answer.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// A panic in the device's task (the reason): its services were removed.
    InDevice(&'a str),
    /// A panic while the message was routed: the device's services were removed and
    /// the message is set aside.
    Now(&'a str),
    /// The message made the daemon fail before (a replay that is set aside).
    Before(&'a str),
}

/// Answers `internal_error` about the message on `topic` that made the daemon fail
/// (the caller logs it, with what it knows of the failure).
pub fn internal_error(mqtt: &MqttHandle, client_raw: &str, topic: &str, failure: Failure<'_>) {
    let message = match failure {
        Failure::InDevice(reason) => format!(
            "the daemon failed while handling this message ({reason}); the device's services were removed. This is a defect of the daemon: please report it. Send a Status to register again."
        ),
        Failure::Now(reason) => format!(
            "the daemon failed while handling this message ({reason}); the device's services were removed and the message is not handled again after a restart. This is a defect of the daemon: please report it. Send a Status to register again."
        ),
        Failure::Before(reason) => format!(
            "this message made the daemon fail before ({reason}); it is set aside and not handled again. This is a defect of the daemon: please report it. Send a Status to register again."
        ),
    };
    let rejection = Rejection::new(RejectionCode::InternalError, message);
    publish(mqtt, client_raw, topic, &rejection);
}
