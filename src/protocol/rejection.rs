//! A refused piece of device input: a value, not an error, so that the valid
//! parts of the same message still take effect.

use serde_json::{json, Value};

/// Machine-readable reason, sent as `"error"` on `device/<id>/Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    /// The payload is not a JSON object.
    InvalidJson,
    /// The payload is larger than [`super::MAX_PAYLOAD_BYTES`].
    PayloadTooLarge,
    /// The client id is empty, too long or not a topic level.
    InvalidClientId,
    /// The client id in the payload differs from the one in the topic.
    ClientIdMismatch,
    /// A field has the wrong JSON type or an impossible value.
    InvalidField,
    /// A service id is empty, too long or has characters outside `[A-Za-z0-9_]`.
    InvalidServiceId,
    /// The service type is not in the catalog.
    UnknownServiceType,
    /// The device declared more services than allowed.
    TooManyServices,
    /// The daemon already serves as many devices or services as allowed.
    TooManyDevices,
    /// Registering the service on D-Bus or in localsettings failed.
    RegistrationFailed,
    /// The message needs a registered device or service and there is none.
    NotRegistered,
    /// A Proxy topicPath is malformed or belongs to another device.
    InvalidTopicPath,
    /// A value is not acceptable for its path.
    InvalidValue,
    /// The daemon failed while handling the device's message (a defect of the
    /// daemon, not of the device); the device's services were removed.
    InternalError,
}

impl RejectionCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::InvalidJson => "invalid_json",
            RejectionCode::PayloadTooLarge => "payload_too_large",
            RejectionCode::InvalidClientId => "invalid_client_id",
            RejectionCode::ClientIdMismatch => "client_id_mismatch",
            RejectionCode::InvalidField => "invalid_field",
            RejectionCode::InvalidServiceId => "invalid_service_id",
            RejectionCode::UnknownServiceType => "unknown_service_type",
            RejectionCode::TooManyServices => "too_many_services",
            RejectionCode::TooManyDevices => "too_many_devices",
            RejectionCode::RegistrationFailed => "registration_failed",
            RejectionCode::NotRegistered => "not_registered",
            RejectionCode::InvalidTopicPath => "invalid_topic_path",
            RejectionCode::InvalidValue => "invalid_value",
            RejectionCode::InternalError => "internal_error",
        }
    }
}

/// One refused field or message, with the reason in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
    /// The service id the rejection is about, when it is about one.
    pub service: Option<String>,
    /// The path the rejection is about (Values, Write), when it is about one.
    pub path: Option<String>,
}

impl Rejection {
    /// A rejection of the whole message or of a device-level field.
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            service: None,
            path: None,
        }
    }

    /// The same rejection, about one service.
    pub fn for_service(mut self, service: impl Into<String>) -> Rejection {
        self.service = Some(service.into());
        self
    }

    /// The same rejection, about one path.
    pub fn for_path(mut self, path: impl Into<String>) -> Rejection {
        self.path = Some(path.into());
        self
    }

    /// The `device/<id>/Error` payload: `{"error": …, "message": …, "service": …}`.
    pub fn to_json(&self, topic: &str) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("error".into(), json!(self.code.as_str()));
        map.insert("message".into(), json!(self.message));
        map.insert("topic".into(), json!(topic));
        if let Some(service) = &self.service {
            map.insert("service".into(), json!(service));
        }
        if let Some(path) = &self.path {
            map.insert("path".into(), json!(path));
        }
        Value::Object(map)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(service) = &self.service {
            write!(f, " (service {service})")?;
        }
        if let Some(path) = &self.path {
            write!(f, " (path {path})")?;
        }
        Ok(())
    }
}
