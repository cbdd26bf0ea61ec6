//! The Values message (v3): `{"<service id>": {"<path>": value, …}, …}`, set
//! directly on the device's D-Bus services.

use super::proxy::check_path_key;
use super::{json_type, parse_object, Rejection, RejectionCode};
use serde_json::Value;

/// A parsed Values message: per service id, the paths and values in message order.
/// Refused entries are listed in `rejections`; the others still apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuesMessage {
    pub services: Vec<(String, Vec<(String, Value)>)>,
    pub rejections: Vec<Rejection>,
}

impl ValuesMessage {
    /// Parses a Values payload.
    pub fn parse(payload: &[u8]) -> Result<ValuesMessage, Rejection> {
        let map = parse_object(payload)?;
        let mut message = ValuesMessage {
            services: Vec::new(),
            rejections: Vec::new(),
        };
        for (service, paths) in map {
            let Value::Object(paths) = paths else {
                message.rejections.push(
                    Rejection::new(
                        RejectionCode::InvalidField,
                        format!(
                            "values of a service must be an object of path: value, got {}",
                            json_type(&paths)
                        ),
                    )
                    .for_service(service.as_str()),
                );
                continue;
            };
            let mut accepted = Vec::with_capacity(paths.len());
            for (path, value) in paths {
                match check_path_key(&path) {
                    Ok(()) => accepted.push((path, value)),
                    Err(r) => message.rejections.push(r.for_service(service.as_str())),
                }
            }
            message.services.push((service, accepted));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_refuses_bad_entries_one_by_one() {
        let m = ValuesMessage::parse(
            br#"{"t1": {"Temperature": 21.5, "bad key": 1}, "tk1": {"Level": 55}, "x": 5}"#,
        )
        .unwrap();
        assert_eq!(m.services.len(), 2);
        assert_eq!(
            m.services[0].1,
            vec![("Temperature".to_string(), Value::from(21.5))]
        );
        assert_eq!(m.rejections.len(), 2);
        assert_eq!(m.rejections[0].service.as_deref(), Some("t1"));
        assert_eq!(m.rejections[1].service.as_deref(), Some("x"));
    }
}
