//! The Values message (v3): `{"<service id>": {"<path>": value, …}, …}`, set
//! directly on the device's D-Bus services.

use super::proxy::check_path_key;
use super::{json_type_name, parse_object, Rejection, RejectionCode};
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
                            json_type_name(&paths)
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

impl ValuesMessage {
    /// Folds a newer message into this one: a path in both keeps the newer
    /// value, so applying the result equals applying both in order.
    pub fn merge(&mut self, newer: ValuesMessage) {
        for (service, paths) in newer.services {
            match self.services.iter_mut().find(|(s, _)| *s == service) {
                Some((_, existing)) => {
                    for (path, value) in paths {
                        match existing.iter_mut().find(|(p, _)| *p == path) {
                            Some(slot) => slot.1 = value,
                            None => existing.push((path, value)),
                        }
                    }
                }
                None => self.services.push((service, paths)),
            }
        }
        self.rejections.extend(newer.rejections);
    }

    /// Number of path values carried.
    #[allow(clippy::len_without_is_empty)] // only the size is asked (the overflow's bound)
    pub fn len(&self) -> usize {
        self.services.iter().map(|(_, paths)| paths.len()).sum()
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

    /// See: issue 10. serde_json's default float parser is off by one unit
    /// in the last place for some numbers, so the double on D-Bus was not
    /// the one the device sent (nor what Python's json reads).
    #[test]
    fn issue_10_floats_are_read_to_the_bit() {
        for text in [
            "4.314509314113156e-30",
            "2.5702914827664043e286",
            "-4.801180672990437e-102",
        ] {
            let payload = format!(r#"{{"t1": {{"Temperature": {text}}}}}"#);
            let m = ValuesMessage::parse(payload.as_bytes()).unwrap();
            let got = m.services[0].1[0].1.as_f64().unwrap();
            assert_eq!(
                got.to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
        }
    }

    #[test]
    fn merging_keeps_the_newest_value_of_each_path() {
        let mut older = ValuesMessage::parse(
            br#"{"t1": {"Temperature": 1, "Humidity": 50}, "tk1": {"Level": 5}}"#,
        )
        .unwrap();
        let newer = ValuesMessage::parse(
            br#"{"t1": {"Temperature": 2, "Pressure": 1000}, "t2": {"Temperature": 9}}"#,
        )
        .unwrap();
        older.merge(newer);
        assert_eq!(
            older.services,
            vec![
                (
                    "t1".to_string(),
                    vec![
                        ("Temperature".to_string(), Value::from(2)),
                        ("Humidity".to_string(), Value::from(50)),
                        ("Pressure".to_string(), Value::from(1000)),
                    ]
                ),
                (
                    "tk1".to_string(),
                    vec![("Level".to_string(), Value::from(5))]
                ),
                (
                    "t2".to_string(),
                    vec![("Temperature".to_string(), Value::from(9))]
                ),
            ]
        );
        assert_eq!(older.len(), 5);
    }
}
