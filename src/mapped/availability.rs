//! Whether a device says it is online: its availability topics (a Shelly's
//! `online`, OpenDTU's `reachable`, a Zigbee2MQTT `availability`), their
//! payloads (plain, or a JSON path into the payload), and how several
//! combine: `latest` (the last message decides), `all`, `any`.

use super::declaration::{Availability, AvailabilityMode};
use super::transform::number_text;

/// What the availability topics say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    /// Nothing (usable) heard yet.
    #[default]
    Unknown,
    Online,
    Offline,
}

/// The availability of one device.
#[derive(Debug, Clone)]
pub struct AvailabilityTracker {
    mode: AvailabilityMode,
    /// Per availability topic, what it last said.
    states: Vec<State>,
    /// What the last message said (for `latest`).
    latest: State,
}

impl AvailabilityTracker {
    /// A tracker for `count` availability topics.
    pub fn new(mode: AvailabilityMode, count: usize) -> AvailabilityTracker {
        AvailabilityTracker {
            mode,
            states: vec![State::Unknown; count],
            latest: State::Unknown,
        }
    }

    /// A message on availability topic `index`. `Err` says why the payload
    /// means neither online nor offline (the state is unchanged).
    pub fn on_message(
        &mut self,
        index: usize,
        spec: &Availability,
        payload: &[u8],
    ) -> Result<State, String> {
        let said = classify(spec, payload)?;
        if let Some(s) = self.states.get_mut(index) {
            *s = said;
        }
        self.latest = said;
        Ok(self.state())
    }

    /// What the topics say together.
    pub fn state(&self) -> State {
        let any = |s: State| self.states.contains(&s);
        match self.mode {
            AvailabilityMode::Latest => self.latest,
            AvailabilityMode::All if any(State::Offline) => State::Offline,
            AvailabilityMode::All if self.states.iter().all(|s| *s == State::Online) => {
                State::Online
            }
            AvailabilityMode::All => State::Unknown,
            AvailabilityMode::Any if any(State::Online) => State::Online,
            AvailabilityMode::Any if any(State::Offline) => State::Offline,
            AvailabilityMode::Any => State::Unknown,
        }
    }
}

/// Online, offline, or neither (with the payload, for the warning).
fn classify(spec: &Availability, payload: &[u8]) -> Result<State, String> {
    let text = String::from_utf8_lossy(payload);
    let text = text.trim();
    let said = spec
        .path
        .as_ref()
        .and_then(|path| {
            let json: serde_json::Value = serde_json::from_str(text).ok()?;
            match path.find(&json)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => n.as_f64().map(number_text),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        })
        .unwrap_or_else(|| text.to_string());
    if spec.online.contains(&said) {
        Ok(State::Online)
    } else if spec.offline.contains(&said) {
        Ok(State::Offline)
    } else {
        let shown: String = said.chars().take(40).collect();
        Err(format!(
            "availability '{shown}' on {} is neither online ({}) nor offline ({})",
            spec.topic,
            spec.online.join(", "),
            spec.offline.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapped::topic::TopicFilter;

    fn spec(online: &[&str], offline: &[&str], path: Option<&str>) -> Availability {
        Availability {
            topic: TopicFilter::parse("x/availability").unwrap(),
            online: online.iter().map(|s| s.to_string()).collect(),
            offline: offline.iter().map(|s| s.to_string()).collect(),
            path: path.map(|p| p.parse().unwrap()),
        }
    }

    #[test]
    fn zigbee2mqtt_says_it_plain_or_as_json() {
        let s = spec(&["online"], &["offline"], Some("state"));
        let mut t = AvailabilityTracker::new(AvailabilityMode::Latest, 1);
        assert_eq!(t.on_message(0, &s, b"online"), Ok(State::Online));
        assert_eq!(
            t.on_message(0, &s, br#"{"state":"offline"}"#),
            Ok(State::Offline)
        );
        assert_eq!(
            t.on_message(0, &s, br#"{"state":"online"}"#),
            Ok(State::Online)
        );
        let e = t.on_message(0, &s, b"maybe").unwrap_err();
        assert!(e.contains("'maybe'"), "{e}");
        assert_eq!(t.state(), State::Online);
    }

    #[test]
    fn ahoy_has_several_online_payloads() {
        let s = spec(&["1", "2", "3"], &["0", "4"], None);
        let mut t = AvailabilityTracker::new(AvailabilityMode::Latest, 1);
        assert_eq!(t.on_message(0, &s, b"2"), Ok(State::Online));
        assert_eq!(t.on_message(0, &s, b"4"), Ok(State::Offline));
        assert_eq!(t.on_message(0, &s, b"1\n"), Ok(State::Online));
    }

    #[test]
    fn modes_combine_several_topics() {
        let s = spec(&["1"], &["0"], None);
        let mut all = AvailabilityTracker::new(AvailabilityMode::All, 2);
        assert_eq!(all.on_message(0, &s, b"1"), Ok(State::Unknown));
        assert_eq!(all.on_message(1, &s, b"1"), Ok(State::Online));
        assert_eq!(all.on_message(0, &s, b"0"), Ok(State::Offline));
        let mut any = AvailabilityTracker::new(AvailabilityMode::Any, 2);
        assert_eq!(any.on_message(0, &s, b"0"), Ok(State::Offline));
        assert_eq!(any.on_message(1, &s, b"1"), Ok(State::Online));
        assert_eq!(any.on_message(1, &s, b"0"), Ok(State::Offline));
        let mut latest = AvailabilityTracker::new(AvailabilityMode::Latest, 2);
        latest.on_message(0, &s, b"0").unwrap();
        assert_eq!(latest.on_message(1, &s, b"1"), Ok(State::Online));
    }
}
