//! Requests to the daemon over MQTT: `dbus-mqtt-devices/request/<verb>` with a JSON object
//! naming where to answer (`response_topic`, as MQTT 3.1.1 has no response-topic property;
//! the daemon speaks 3.1.1). Outside input: every refusal has a reason, and a request
//! without a usable `response_topic` is logged and dropped (there is nowhere to answer).

use super::duration;
use crate::ids::{ClientId, ServiceId};
use serde::Deserialize;
use std::time::Duration;

/// Where requests arrive; the verb is the last level.
pub const REQUEST_PREFIX: &str = "dbus-mqtt-devices/request/";

/// The subscription covering every verb.
pub const REQUEST_SUBSCRIPTION: &str = "dbus-mqtt-devices/request/+";

/// Longest request payload read (a request is a few fields).
pub const MAX_REQUEST: usize = 4096;

/// Longest response topic accepted.
pub const MAX_TOPIC: usize = 256;

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    List,
    Remove,
    Doctor,
}

impl Verb {
    /// The verb of a request topic.
    pub fn of_topic(topic: &str) -> Option<Verb> {
        match topic.strip_prefix(REQUEST_PREFIX)? {
            "list" => Some(Verb::List),
            "remove" => Some(Verb::Remove),
            "doctor" => Some(Verb::Doctor),
            _ => None,
        }
    }

    /// The topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Remove => "remove",
            Verb::Doctor => "doctor",
        }
    }
}

/// `<client id>` or `<client id>/<service id>`: what `remove` and `doctor` are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub client: ClientId,
    pub service: Option<ServiceId>,
}

impl Target {
    /// Parses `fe001` or `fe001/t1` (a client id never holds '/').
    pub fn parse(text: &str) -> Result<Target, String> {
        let (client, service) = match text.split_once('/') {
            Some((c, s)) => (c, Some(s)),
            None => (text, None),
        };
        let client = ClientId::parse(client).map_err(|e| e.to_string())?;
        let service = service
            .map(ServiceId::parse)
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Target { client, service })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.service {
            Some(s) => write!(f, "{}/{s}", self.client),
            None => write!(f, "{}", self.client),
        }
    }
}

/// The JSON of a request, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    response_topic: String,
    #[serde(default)]
    request_id: Option<serde_json::Value>,
    /// `remove`, `doctor`: `fe001` or `fe001/t1`.
    #[serde(default)]
    target: Option<String>,
    /// `remove`: only devices not heard from for this long (`30d`).
    #[serde(default)]
    not_seen_for: Option<String>,
    /// `remove`: answer what would be removed, remove nothing.
    #[serde(default)]
    dry_run: bool,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub verb: Verb,
    pub response_topic: String,
    /// Echoed in the answer, to match answers to requests.
    pub request_id: Option<serde_json::Value>,
    pub target: Option<Target>,
    pub not_seen_for: Option<Duration>,
    pub dry_run: bool,
}

/// Why a request was refused: with a response topic (answered) or without (dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub response_topic: Option<String>,
    pub request_id: Option<serde_json::Value>,
    pub reason: String,
}

/// Every topic of the daemon's own (requests, retained device states, declarations).
pub const OWN_PREFIX: &str = "dbus-mqtt-devices/";

/// Under [`OWN_PREFIX`], the one place answers may go (where the command line asks them).
pub const RESPONSE_PREFIX: &str = "dbus-mqtt-devices/response/";

/// True for a topic a request may ask to be answered on: no wildcard, not empty, not one
/// of the device or gateway topics (an answer must never look like a device's message),
/// nor of the daemon's own (an answer must never replace a device state or a declaration).
pub fn usable_response_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC
        && !topic.contains(['+', '#', '\0'])
        && !topic.starts_with('$')
        && !topic.starts_with("device/")
        && (!topic.starts_with(OWN_PREFIX) || topic.starts_with(RESPONSE_PREFIX))
        && !["N/", "R/", "W/"].iter().any(|p| topic.starts_with(p))
}

/// The usable `response_topic` and the `request_id` of a payload that is not a valid
/// request, as far as they can be read: a refusal is answered where it asked, and matched.
fn readable(payload: &[u8]) -> (Option<String>, Option<serde_json::Value>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return (None, None);
    };
    let topic = v
        .get("response_topic")
        .and_then(serde_json::Value::as_str)
        .filter(|t| usable_response_topic(t))
        .map(str::to_owned);
    (topic, v.get("request_id").cloned())
}

/// The refusal of a request on `dbus-mqtt-devices/request/<verb>` for a verb that is not one.
pub fn unknown_verb(verb: &str, payload: &[u8]) -> Refusal {
    let (response_topic, request_id) = if payload.len() > MAX_REQUEST {
        (None, None)
    } else {
        readable(payload)
    };
    Refusal {
        response_topic,
        request_id,
        reason: format!("unknown request {verb:?}: the verbs are list, remove and doctor"),
    }
}

/// Parses a request for `verb`.
pub fn parse(verb: Verb, payload: &[u8]) -> Result<Request, Refusal> {
    let refuse = |topic: Option<String>, id: Option<serde_json::Value>, reason: String| Refusal {
        response_topic: topic,
        request_id: id,
        reason,
    };
    if payload.len() > MAX_REQUEST {
        return Err(refuse(None, None, format!("request longer than {MAX_REQUEST} bytes")));
    }
    let raw: RawRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            let (topic, id) = readable(payload);
            return Err(refuse(topic, id, format!("invalid request: {e}")));
        }
    };
    if !usable_response_topic(&raw.response_topic) {
        return Err(refuse(
            None,
            raw.request_id,
            format!("unusable response_topic {:?}", raw.response_topic),
        ));
    }
    let topic = raw.response_topic;
    let id = raw.request_id;
    let target = match raw.target.as_deref().map(Target::parse).transpose() {
        Ok(t) => t,
        Err(e) => return Err(refuse(Some(topic), id, format!("target: {e}"))),
    };
    let not_seen_for = match raw.not_seen_for.as_deref().map(duration::parse).transpose() {
        Ok(d) => d,
        Err(e) => return Err(refuse(Some(topic), id, format!("not_seen_for: {e}"))),
    };
    if verb == Verb::Remove && target.is_none() && not_seen_for.is_none() {
        return Err(refuse(
            Some(topic),
            id,
            "remove needs a target, not_seen_for, or both".into(),
        ));
    }
    if verb != Verb::Remove && not_seen_for.is_some() {
        return Err(refuse(
            Some(topic),
            id,
            format!("not_seen_for applies to remove, not {}", verb.as_str()),
        ));
    }
    if verb == Verb::List && target.is_some() {
        return Err(refuse(Some(topic), id, "list takes no target".into()));
    }
    Ok(Request {
        verb,
        response_topic: topic,
        request_id: id,
        target,
        not_seen_for,
        dry_run: raw.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_refusals() {
        let r = parse(
            Verb::Remove,
            br#"{"response_topic": "me/answer", "request_id": 7, "target": "fe001/t1"}"#,
        )
        .unwrap();
        assert_eq!(r.target.unwrap().to_string(), "fe001/t1");
        assert_eq!(r.request_id, Some(serde_json::json!(7)));
        let no_topic = parse(Verb::List, br#"{"response_topic": "a/+/b"}"#).unwrap_err();
        assert_eq!(no_topic.response_topic, None);
        let bad = parse(Verb::Remove, br#"{"response_topic": "me", "not_seen_for": "x"}"#)
            .unwrap_err();
        assert_eq!(bad.response_topic.as_deref(), Some("me"));
        assert!(parse(Verb::Remove, br#"{"response_topic": "me"}"#).is_err());
        assert!(parse(Verb::List, br#"{"response_topic": "device/x/Status"}"#).is_err());
        assert!(parse(Verb::List, br#"{"response_topic": "me", "extra": 1}"#).is_err());
        assert_eq!(Verb::of_topic("dbus-mqtt-devices/request/doctor"), Some(Verb::Doctor));
        assert_eq!(Verb::of_topic("dbus-mqtt-devices/request/x"), None);
        // Never over the daemon's own topics: a device state, a declaration, a request.
        for topic in [
            "dbus-mqtt-devices/devices/fe001",
            "dbus-mqtt-devices/mapped/grid",
            "dbus-mqtt-devices/request/list",
        ] {
            let body = format!(r#"{{"response_topic": "{topic}"}}"#);
            assert!(parse(Verb::List, body.as_bytes()).is_err(), "{topic}");
        }
        // A refusal keeps the request id when it can be read.
        let bad = parse(Verb::List, br#"{"response_topic": "me", "request_id": 3, "x": 1}"#)
            .unwrap_err();
        assert_eq!(bad.request_id, Some(serde_json::json!(3)));
        let unknown = unknown_verb("lsit", br#"{"response_topic": "me", "request_id": "r"}"#);
        assert_eq!(unknown.response_topic.as_deref(), Some("me"));
        assert_eq!(unknown.request_id, Some(serde_json::json!("r")));
        assert!(unknown.reason.contains("lsit"));
    }
}
