//! The Status message: registration (`connected: 1`) and disconnect
//! (`connected: 0`), in the v1/v2 form and with the v3 additions.

use super::{json_type_name, parse_object, Rejection, RejectionCode};
use crate::ids::{ServiceId, MAX_SERVICE_ID_LEN};
use serde_json::{Map, Value};

/// Most services one device may declare.
pub const MAX_SERVICES_PER_DEVICE: usize = 16;

/// Longest liveness timeout a device may ask for, in seconds (one day).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// One service a device declares: `"t1": "temperature"` or, in v3,
/// `"t1": {"type": "temperature", "name": "Fridge", "instance": 20, "settings": {…}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDecl {
    pub id: ServiceId,
    pub service_type: String,
    /// Default custom name (v3); the user's name in localsettings wins.
    pub name: Option<String>,
    /// Preferred device instance (v3); localsettings keeps what it stored.
    pub instance: Option<u32>,
    /// Initial values of persisted paths (v3); the user's later change wins.
    pub settings: Map<String, Value>,
    /// Product name shown instead of the catalog's (v3).
    pub product: Option<String>,
}

/// A parsed Status message. Fields that were refused are listed in
/// `rejections`; the rest of the message still applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub connected: bool,
    /// `version`: becomes `/FirmwareVersion` (a string or a number).
    pub version: Option<Value>,
    /// `lwt_topic` and `lwt_value` (v2): a topic whose payload equal to the
    /// value means the device is gone. The Python driver's default value is `"false"`.
    pub lwt: Option<(String, String)>,
    /// Declared services in the order the device wrote them (valid ones only).
    pub services: Vec<ServiceDecl>,
    /// Service ids whose declaration was refused (a registration they already
    /// have is kept untouched).
    pub refused_services: Vec<String>,
    /// `timeout` (v3): seconds without a value before the device counts as silent.
    pub timeout: Option<f64>,
    /// `liveness` (v3): what happens when the timeout passes.
    pub liveness: Option<String>,
    pub rejections: Vec<Rejection>,
}

impl Status {
    /// Parses a Status payload received on `device/<topic_client>/Status`.
    ///
    /// `Err` means the whole message is refused (not JSON, no usable
    /// `connected`, client id missing or different from the topic's).
    #[cfg(any(test, feature = "internals"))]
    pub fn parse(topic_client: &str, payload: &[u8]) -> Result<Status, Rejection> {
        Status::from_object(topic_client, &parse_object(payload)?)
    }

    /// [`Status::parse`], also handing back the payload as JSON (what the state file
    /// keeps), so that the payload is parsed once.
    pub fn parse_keeping_json(
        topic_client: &str,
        payload: &[u8],
    ) -> Result<(Status, Value), Rejection> {
        let map = parse_object(payload)?;
        let status = Status::from_object(topic_client, &map)?;
        Ok((status, Value::Object(map)))
    }

    /// A Status payload already parsed as JSON (one remembered in the state file),
    /// checked as [`Status::parse`] checks a payload received on `device/<topic_client>/Status`.
    pub fn from_json(topic_client: &str, json: &Value) -> Result<Status, Rejection> {
        match json {
            Value::Object(map) => Status::from_object(topic_client, map),
            other => Err(Rejection::new(
                RejectionCode::InvalidJson,
                format!("payload must be a JSON object, got {}", json_type_name(other)),
            )),
        }
    }

    fn from_object(topic_client: &str, map: &Map<String, Value>) -> Result<Status, Rejection> {
        check_client_id(topic_client, map)?;

        let connected = match map.get("connected") {
            None => {
                return Err(Rejection::new(
                    RejectionCode::InvalidField,
                    "\"connected\" is missing; use 1 to register, 0 to disconnect",
                ))
            }
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) if n.as_i64() == Some(1) => true,
            Some(Value::Number(n)) if n.as_i64() == Some(0) => false,
            Some(other) => {
                return Err(Rejection::new(
                    RejectionCode::InvalidField,
                    format!(
                        "\"connected\" must be the number 1 or 0, got {}",
                        describe(other)
                    ),
                ))
            }
        };

        let mut status = Status {
            connected,
            version: None,
            lwt: None,
            services: Vec::new(),
            refused_services: Vec::new(),
            timeout: None,
            liveness: None,
            rejections: Vec::new(),
        };
        status.parse_version(map);
        status.parse_lwt(map);
        status.parse_timeout(map);
        if connected {
            status.parse_services(map)?;
        }
        Ok(status)
    }

    fn parse_version(&mut self, map: &Map<String, Value>) {
        match map.get("version") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.contains('\0') => self.rejections.push(Rejection::new(
                RejectionCode::InvalidField,
                nul_reason("\"version\""),
            )),
            Some(v @ Value::String(_)) => self.version = Some(v.clone()),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                self.version = Some(Value::Number(n.clone()))
            }
            Some(other) => self.rejections.push(Rejection::new(
                RejectionCode::InvalidField,
                format!(
                    "\"version\" must be a string or an integer, got {}",
                    describe(other)
                ),
            )),
        }
    }

    fn parse_lwt(&mut self, map: &Map<String, Value>) {
        let topic = match map.get("lwt_topic") {
            None | Some(Value::Null) => return,
            Some(Value::String(t)) if is_plain_topic(t) => t.clone(),
            Some(other) => {
                self.rejections.push(Rejection::new(
                    RejectionCode::InvalidField,
                    format!(
                        "\"lwt_topic\" must be a topic without wildcards, not a device topic, got {}",
                        describe(other)
                    ),
                ));
                return;
            }
        };
        let value = match map.get("lwt_value") {
            None | Some(Value::Null) => "false".to_owned(),
            Some(Value::String(s)) => s.clone(),
            // Shelly and Tasmota publish bare words and numbers; compare with
            // the text the broker will deliver.
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(other) => {
                self.rejections.push(Rejection::new(
                    RejectionCode::InvalidField,
                    format!("\"lwt_value\" must be a string, got {}", describe(other)),
                ));
                return;
            }
        };
        self.lwt = Some((topic, value));
    }

    fn parse_timeout(&mut self, map: &Map<String, Value>) {
        match map.get("timeout") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => match n.as_f64() {
                Some(t) if t > 0.0 && t <= MAX_TIMEOUT_SECS => self.timeout = Some(t),
                Some(0.0) => {}
                _ => self.rejections.push(Rejection::new(
                    RejectionCode::InvalidField,
                    format!(
                        "\"timeout\" must be between 0 and {MAX_TIMEOUT_SECS} seconds, got {n}"
                    ),
                )),
            },
            Some(other) => self.rejections.push(Rejection::new(
                RejectionCode::InvalidField,
                format!(
                    "\"timeout\" must be a number of seconds, got {}",
                    describe(other)
                ),
            )),
        }
        match map.get("liveness") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if ["invalidate", "keep", "remove"].contains(&s.as_str()) => {
                self.liveness = Some(s.clone())
            }
            Some(other) => self.rejections.push(Rejection::new(
                RejectionCode::InvalidField,
                format!(
                    "\"liveness\" must be \"invalidate\", \"keep\" or \"remove\", got {}",
                    describe(other)
                ),
            )),
        }
    }

    fn parse_services(&mut self, map: &Map<String, Value>) -> Result<(), Rejection> {
        let services = match map.get("services") {
            Some(Value::Object(services)) => services,
            None => {
                return Err(Rejection::new(
                    RejectionCode::InvalidField,
                    "\"services\" is missing; a registration needs an object such as {\"t1\": \"temperature\"}",
                ))
            }
            Some(other) => {
                return Err(Rejection::new(
                    RejectionCode::InvalidField,
                    format!(
                        "\"services\" must be an object such as {{\"t1\": \"temperature\"}}, got {}",
                        json_type_name(other)
                    ),
                ))
            }
        };
        for (position, (id, decl)) in services.iter().enumerate() {
            if position >= MAX_SERVICES_PER_DEVICE {
                self.refused_services.push(id.clone());
                self.rejections.push(
                    Rejection::new(
                        RejectionCode::TooManyServices,
                        format!("a device may declare at most {MAX_SERVICES_PER_DEVICE} services"),
                    )
                    .for_service(id.as_str()),
                );
                continue;
            }
            match parse_service(id, decl) {
                Ok(service) => self.services.push(service),
                Err(rejection) => {
                    self.refused_services.push(id.clone());
                    self.rejections.push(rejection.for_service(id.as_str()));
                }
            }
        }
        Ok(())
    }
}

fn check_client_id(topic_client: &str, map: &Map<String, Value>) -> Result<(), Rejection> {
    let camel = map.get("clientId");
    let lower = map.get("clientid");
    let id = match (camel, lower) {
        (Some(a), Some(b)) if a != b => {
            return Err(Rejection::new(
                RejectionCode::ClientIdMismatch,
                "\"clientId\" and \"clientid\" differ",
            ))
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            return Err(Rejection::new(
                RejectionCode::InvalidClientId,
                "\"clientId\" is missing",
            ))
        }
    };
    match id {
        Value::String(s) if s == topic_client => Ok(()),
        Value::String(s) => Err(Rejection::new(
            RejectionCode::ClientIdMismatch,
            format!(
                "\"clientId\" is {s:?} but the topic is device/{topic_client}/Status; they must be equal"
            ),
        )),
        other => Err(Rejection::new(
            RejectionCode::InvalidClientId,
            format!("\"clientId\" must be a string, got {}", describe(other)),
        )),
    }
}

fn parse_service(id: &str, decl: &Value) -> Result<ServiceDecl, Rejection> {
    let id = ServiceId::parse(id).map_err(|e| {
        Rejection::new(
            RejectionCode::InvalidServiceId,
            format!("{e} (at most {MAX_SERVICE_ID_LEN} bytes of [A-Za-z0-9_])"),
        )
    })?;
    match decl {
        Value::String(service_type) => Ok(ServiceDecl {
            id,
            service_type: service_type.clone(),
            name: None,
            instance: None,
            settings: Map::new(),
            product: None,
        }),
        Value::Object(fields) => parse_rich_service(id, fields),
        other => Err(Rejection::new(
            RejectionCode::InvalidField,
            format!(
                "a service must be a type name such as \"temperature\" or an object with \"type\", got {}",
                describe(other)
            ),
        )),
    }
}

/// The v3 object form of a service declaration.
fn parse_rich_service(
    id: ServiceId,
    fields: &Map<String, Value>,
) -> Result<ServiceDecl, Rejection> {
    let invalid = |message: String| Rejection::new(RejectionCode::InvalidField, message);
    let service_type = match fields.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(other) => {
            return Err(invalid(format!(
                "\"type\" must be a string, got {}",
                describe(other)
            )))
        }
        None => return Err(invalid("\"type\" is missing".into())),
    };
    let name = match fields.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.contains('\0') => return Err(invalid(nul_reason("\"name\""))),
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid(format!(
                "\"name\" must be a string, got {}",
                describe(other)
            )))
        }
    };
    let instance = match fields.get("instance") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(i) if i <= 999 => Some(i as u32),
            _ => {
                return Err(invalid(format!(
                    "\"instance\" must be an integer from 0 to 999, got {n}"
                )))
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "\"instance\" must be an integer, got {}",
                describe(other)
            )))
        }
    };
    let settings = match fields.get("settings") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(s)) => {
            check_settings(s).map_err(invalid)?;
            s.clone()
        }
        Some(other) => {
            return Err(invalid(format!(
                "\"settings\" must be an object, got {}",
                describe(other)
            )))
        }
    };
    let product = match fields.get("product") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.contains('\0') => {
            return Err(invalid(nul_reason("\"product\"")))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid(format!(
                "\"product\" must be a string, got {}",
                describe(other)
            )))
        }
    };
    Ok(ServiceDecl {
        id,
        service_type,
        name,
        instance,
        settings,
        product,
    })
}

/// Why text with NUL is refused: D-Bus strings cannot hold it (the bus daemon
/// cuts the connection that sends one), and these fields go to D-Bus.
fn nul_reason(field: &str) -> String {
    format!("{field} may not contain the NUL character (\\u0000)")
}

/// Initial setting values become localsettings defaults, which are numbers
/// or text: anything else, or text with NUL, is refused with the key named.
fn check_settings(settings: &Map<String, Value>) -> Result<(), String> {
    for (key, value) in settings {
        match value {
            Value::String(s) if s.contains('\0') => {
                return Err(nul_reason(&format!("\"settings\": {key:?}")))
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(format!(
                    "\"settings\": {key:?} must be a number or a string, got {}",
                    describe(value)
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A topic a device may name as its `lwt_topic`: non-empty, no wildcards, and
/// not a device topic the daemon reads (every message on an `lwt_topic` is
/// taken for a last will, so another device's Status would be lost).
fn is_plain_topic(topic: &str) -> bool {
    !topic.is_empty()
        && !topic.contains(['+', '#'])
        && !topic.contains('\0')
        && super::DeviceTopic::parse(topic).is_none()
}

/// How many characters of a refused value a rejection message quotes.
const DESCRIBE_MAX_CHARS: usize = 40;

/// "a string (\"1\")": the type and the value, for rejection messages.
/// The quote is cut after [`DESCRIBE_MAX_CHARS`] characters, never inside one:
/// device text is any UTF-8 (cutting by bytes split multibyte characters).
fn describe(value: &Value) -> String {
    let mut text = value.to_string();
    if let Some((cut, _)) = text.char_indices().nth(DESCRIBE_MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    format!("{} ({text})", json_type_name(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(topic: &str, payload: &str) -> Result<Status, Rejection> {
        Status::parse(topic, payload.as_bytes())
    }

    /// See: issue 10. A multibyte string longer than the quoted part used to
    /// be cut inside a character, which panicked (and aborted the daemon).
    #[test]
    fn issue_10_multibyte_text_in_a_refused_field_is_quoted_whole() {
        for text in [
            "é".repeat(48),
            "€".repeat(41),
            "😀".repeat(40),
            "e\u{301}".repeat(30),
        ] {
            let payload = serde_json::json!({
                "clientId": "x1", "connected": text, "services": {"t1": "temperature"}
            })
            .to_string();
            let refused = parse("x1", &payload).unwrap_err();
            assert_eq!(refused.code, RejectionCode::InvalidField, "{refused:?}");
            assert!(refused.message.contains("must be"), "{}", refused.message);
        }
        let quoted = describe(&Value::String("é".repeat(48)));
        assert_eq!(quoted, format!("a string (\"{}…)", "é".repeat(39)));
    }

    #[test]
    fn v2_registration() {
        let s = parse(
            "fe001",
            r#"{"clientId": "fe001", "connected": 1, "version": "v1.0", "services": {"t1": "temperature", "tk1": "tank"}}"#,
        )
        .unwrap();
        assert!(s.connected);
        assert_eq!(s.version, Some(Value::String("v1.0".into())));
        let ids: Vec<_> = s.services.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["t1", "tk1"]);
        assert_eq!(s.services[1].service_type, "tank");
        assert!(s.rejections.is_empty());
    }

    #[test]
    fn v1_spelling_of_client_id_is_accepted() {
        let s = parse(
            "dev1",
            r#"{"clientid": "dev1", "connected": 1, "services": {}}"#,
        )
        .unwrap();
        assert!(s.connected);
        assert!(s.services.is_empty());
    }

    #[test]
    fn disconnect_needs_no_services() {
        let s = parse("dev1", r#"{"clientId": "dev1", "connected": 0}"#).unwrap();
        assert!(!s.connected);
    }

    #[test]
    fn whole_message_rejections() {
        let cases = [
            ("not json", RejectionCode::InvalidJson),
            ("[1]", RejectionCode::InvalidJson),
            (
                r#"{"connected": 1, "services": {}}"#,
                RejectionCode::InvalidClientId,
            ),
            (
                r#"{"clientId": "other", "connected": 1, "services": {}}"#,
                RejectionCode::ClientIdMismatch,
            ),
            (
                r#"{"clientId": 5, "connected": 1, "services": {}}"#,
                RejectionCode::InvalidClientId,
            ),
            (
                r#"{"clientId": "d", "connected": "1", "services": {}}"#,
                RejectionCode::InvalidField,
            ),
            (
                r#"{"clientId": "d", "connected": 2, "services": {}}"#,
                RejectionCode::InvalidField,
            ),
            (
                r#"{"clientId": "d", "services": {}}"#,
                RejectionCode::InvalidField,
            ),
            (
                r#"{"clientId": "d", "connected": 1, "services": []}"#,
                RejectionCode::InvalidField,
            ),
            (
                r#"{"clientId": "d", "connected": 1}"#,
                RejectionCode::InvalidField,
            ),
            (
                r#"{"clientId": "d", "connected": 1, "services": {"t1": NaN}}"#,
                RejectionCode::InvalidJson,
            ),
        ];
        for (payload, code) in cases {
            let topic = "d";
            let got = parse(topic, payload).expect_err(payload);
            assert_eq!(got.code, code, "{payload}: {got}");
        }
    }

    #[test]
    fn oversized_payload_is_refused_before_parsing() {
        let big = format!(
            r#"{{"clientId": "d", "pad": "{}"}}"#,
            "x".repeat(super::super::MAX_PAYLOAD_BYTES)
        );
        assert_eq!(
            parse("d", &big).unwrap_err().code,
            RejectionCode::PayloadTooLarge
        );
    }

    #[test]
    fn bad_services_are_refused_one_by_one() {
        let s = parse(
            "d",
            r#"{"clientId": "d", "connected": 1, "services": {"t1": "temperature", "t-2": "tank", "t3": 5, "t4": {"type": "tank", "instance": -1}, "t5": {"name": "x"}}}"#,
        )
        .unwrap();
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.refused_services, ["t-2", "t3", "t4", "t5"]);
        let codes: Vec<_> = s
            .rejections
            .iter()
            .map(|r| (r.code, r.service.clone().unwrap()))
            .collect();
        assert_eq!(codes[0], (RejectionCode::InvalidServiceId, "t-2".into()));
        assert_eq!(codes[1], (RejectionCode::InvalidField, "t3".into()));
    }

    #[test]
    fn too_many_services_are_refused_past_the_limit() {
        let services: Vec<String> = (0..MAX_SERVICES_PER_DEVICE + 2)
            .map(|i| format!(r#""s{i}": "temperature""#))
            .collect();
        let payload = format!(
            r#"{{"clientId": "d", "connected": 1, "services": {{{}}}}}"#,
            services.join(", ")
        );
        let s = parse("d", &payload).unwrap();
        assert_eq!(s.services.len(), MAX_SERVICES_PER_DEVICE);
        assert_eq!(s.rejections.len(), 2);
        assert_eq!(s.rejections[0].code, RejectionCode::TooManyServices);
    }

    #[test]
    fn v3_rich_declaration() {
        let s = parse(
            "d",
            r#"{"clientId": "d", "connected": 1, "timeout": 30, "services": {"t1": {"type": "temperature", "name": "Fridge", "instance": 20, "settings": {"TemperatureType": 1}, "product": "Fridge probe"}}}"#,
        )
        .unwrap();
        let t1 = &s.services[0];
        assert_eq!(t1.service_type, "temperature");
        assert_eq!(t1.name.as_deref(), Some("Fridge"));
        assert_eq!(t1.instance, Some(20));
        assert_eq!(t1.settings.get("TemperatureType"), Some(&Value::from(1)));
        assert_eq!(t1.product.as_deref(), Some("Fridge probe"));
        assert_eq!(s.timeout, Some(30.0));
    }

    #[test]
    fn lwt_and_field_level_rejections() {
        let s = parse(
            "shelly1",
            r#"{"clientId": "shelly1", "connected": 1, "version": [1], "lwt_topic": "shelly1/online", "timeout": "x", "services": {"g1": "grid"}}"#,
        )
        .unwrap();
        assert_eq!(s.lwt, Some(("shelly1/online".into(), "false".into())));
        assert_eq!(s.version, None);
        assert_eq!(s.rejections.len(), 2);
        assert_eq!(s.services.len(), 1);
        let s = parse(
            "x",
            r#"{"clientId": "x", "connected": 1, "lwt_topic": "a/#", "services": {}}"#,
        )
        .unwrap();
        assert_eq!(s.lwt, None);
        assert_eq!(s.rejections[0].code, RejectionCode::InvalidField);
    }
}
