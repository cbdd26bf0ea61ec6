//! Generated input for the operator tools' parsers of outside input: the JSON of MQTT
//! requests (`dbus-mqtt-devices/request/<verb>`) and durations (`--not-seen-for`,
//! `not_seen_for`). Neither may panic; what they accept keeps their promises.

use super::config;
use dbus_mqtt_devices::operator::duration;
use dbus_mqtt_devices::operator::request::{self, Verb};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use std::time::Duration;

const UNITS: [(char, u64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 3_600),
    ('d', 86_400),
    ('w', 604_800),
];

/// Field values from pools of good and bad ones, or anything.
fn field() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        select(
            &[
                "me/answer",
                "a/+/b",
                "#",
                "",
                "device/x/Status",
                "$SYS/x",
                "W/p/x",
                "fe001",
                "fe001/t1",
                "fe-001/t 1",
                "/",
                "a/b/c",
                "30d",
                "0s",
                "1d12h",
                "x",
                "-1d"
            ][..]
        )
        .prop_map(|s| serde_json::json!(s)),
        any::<String>().prop_map(serde_json::Value::String),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        Just(serde_json::json!({"nested": [1, 2]})),
    ]
}

/// Request objects with the known fields (and others) filled from the pools.
fn request_payload() -> impl Strategy<Value = Vec<u8>> {
    let keys = select(
        &[
            "response_topic",
            "request_id",
            "target",
            "not_seen_for",
            "dry_run",
            "extra",
        ][..],
    );
    prop_oneof![
        4 => vec((keys, field()), 0..6).prop_map(|fields| {
            let map: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            serde_json::Value::Object(map).to_string().into_bytes()
        }),
        1 => vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn requests(payload in request_payload(), verb in select(&[Verb::List, Verb::Remove, Verb::Doctor][..])) {
        match request::parse(verb, &payload) {
            Ok(r) => {
                prop_assert!(request::usable_response_topic(&r.response_topic));
                prop_assert_eq!(r.verb, verb);
                if verb == Verb::Remove {
                    prop_assert!(r.target.is_some() || r.not_seen_for.is_some());
                } else {
                    prop_assert!(r.not_seen_for.is_none());
                }
            }
            Err(refusal) => {
                prop_assert!(!refusal.reason.is_empty());
                if let Some(t) = refusal.response_topic {
                    prop_assert!(request::usable_response_topic(&t));
                }
            }
        }
    }

    #[test]
    fn durations_never_panic(text in "\\PC{0,24}") {
        if let Ok(d) = duration::parse(&text) {
            prop_assert!(d <= duration::MAX);
        }
    }

    #[test]
    fn durations_add_up(groups in vec((0u64..100_000, 0usize..5), 1..4)) {
        let mut text = String::new();
        let mut total = 0u64;
        for (n, u) in &groups {
            let (unit, seconds) = UNITS[*u];
            text.push_str(&format!("{n}{unit}"));
            total += n * seconds;
        }
        let parsed = duration::parse(&text);
        if Duration::from_secs(total) <= duration::MAX {
            prop_assert_eq!(parsed, Ok(Duration::from_secs(total)));
        } else {
            prop_assert!(parsed.is_err());
        }
    }
}
