//! The Proxy message (v2): values the daemon republishes to the gateway's
//! `W/` topics on the device's behalf.

use super::{json_type_name, parse_object, Rejection, RejectionCode};
use serde_json::Value;

/// A parsed Proxy message:
/// `{"topicPath": "W/<portal>/temperature/5", "values": {"Temperature": 23}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyRequest {
    pub topic_path: String,
    /// Path under the service (`Temperature`, `Ac/L1/Power`) and its value, in message order.
    pub values: Vec<(String, Value)>,
}

impl ProxyRequest {
    /// Parses a Proxy payload. Which topic paths a device may use is checked
    /// by the registry, which knows its services.
    pub fn parse(payload: &[u8]) -> Result<ProxyRequest, Rejection> {
        let map = parse_object(payload)?;
        let topic_path = match map.get("topicPath") {
            Some(Value::String(t)) => t.trim_end_matches('/').to_owned(),
            Some(other) => {
                return Err(Rejection::new(
                    RejectionCode::InvalidTopicPath,
                    format!(
                        "\"topicPath\" must be a string, got {}",
                        json_type_name(other)
                    ),
                ))
            }
            None => {
                return Err(Rejection::new(
                    RejectionCode::InvalidTopicPath,
                    "\"topicPath\" is missing; use the \"W\" topic path of the DBus reply",
                ))
            }
        };
        let levels: Vec<&str> = topic_path.split('/').collect();
        let malformed = |l: &&str| l.is_empty() || l.contains(['+', '#', '\0']);
        if levels.len() != 4 || levels.first() != Some(&"W") || levels.iter().any(malformed) {
            return Err(Rejection::new(
                RejectionCode::InvalidTopicPath,
                format!("\"topicPath\" must be W/<portal id>/<service type>/<device instance>, got {topic_path:?}"),
            ));
        }
        let values = match map.get("values") {
            Some(Value::Object(values)) if !values.is_empty() => values,
            Some(Value::Object(_)) => {
                return Err(Rejection::new(
                    RejectionCode::InvalidField,
                    "\"values\" is empty",
                ))
            }
            Some(other) => {
                return Err(Rejection::new(
                    RejectionCode::InvalidField,
                    format!(
                        "\"values\" must be an object, got {}",
                        json_type_name(other)
                    ),
                ))
            }
            None => {
                return Err(Rejection::new(
                    RejectionCode::InvalidField,
                    "\"values\" is missing",
                ))
            }
        };
        let mut out = Vec::with_capacity(values.len());
        for (key, value) in values {
            check_path_key(key)?;
            out.push((key.clone(), value.clone()));
        }
        Ok(ProxyRequest {
            topic_path,
            values: out,
        })
    }
}

/// A D-Bus path below a service, written without the leading slash:
/// `Temperature`, `Ac/L1/Power`. Like the Python driver, the first letter
/// must not be lower case (Venus paths are CamelCase).
pub(crate) fn check_path_key(key: &str) -> Result<(), Rejection> {
    let legal = !key.is_empty()
        && key
            .split('/')
            .all(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && !key.starts_with(|c: char| c.is_ascii_lowercase());
    if legal {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectionCode::InvalidField,
            format!("{key:?} is not a D-Bus path such as \"Temperature\" or \"Ac/L1/Power\""),
        )
        .for_path(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_proxy_message() {
        let p = ProxyRequest::parse(
            br#"{"topicPath": "W/c0ffee000001/temperature/5", "values": {"Temperature": 23, "Humidity": 56.5}}"#,
        )
        .unwrap();
        assert_eq!(p.topic_path, "W/c0ffee000001/temperature/5");
        assert_eq!(p.values[0], ("Temperature".into(), Value::from(23)));
        assert_eq!(p.values[1].0, "Humidity");
    }

    #[test]
    fn rejects_bad_proxy_messages() {
        let cases: [(&[u8], RejectionCode); 9] = [
            (b"{", RejectionCode::InvalidJson),
            (br#"{"values": {"A": 1}}"#, RejectionCode::InvalidTopicPath),
            (
                br#"{"topicPath": "N/x/temperature/5", "values": {"A": 1}}"#,
                RejectionCode::InvalidTopicPath,
            ),
            (
                br#"{"topicPath": "W/x/temperature", "values": {"A": 1}}"#,
                RejectionCode::InvalidTopicPath,
            ),
            // See: issue 10. Wildcards and NUL are no topic path.
            (
                br#"{"topicPath": "W/+/temperature/#", "values": {"A": 1}}"#,
                RejectionCode::InvalidTopicPath,
            ),
            (
                br#"{"topicPath": "W/x/temp\u0000/5", "values": {"A": 1}}"#,
                RejectionCode::InvalidTopicPath,
            ),
            (
                br#"{"topicPath": "W/x/temperature/5", "values": {}}"#,
                RejectionCode::InvalidField,
            ),
            (
                br#"{"topicPath": "W/x/temperature/5", "values": {"temperature": 1}}"#,
                RejectionCode::InvalidField,
            ),
            (
                br#"{"topicPath": "W/x/temperature/5", "values": {"A/#": 1}}"#,
                RejectionCode::InvalidField,
            ),
        ];
        for (payload, code) in cases {
            let got = ProxyRequest::parse(payload).unwrap_err();
            assert_eq!(got.code, code, "{}", String::from_utf8_lossy(payload));
        }
    }
}
