//! Generated input for every parser of outside input: MQTT topics and ids,
//! Status, Values and Proxy payloads, `lwt_value`, the user's
//! `catalog.toml` and `config.toml`, `state.json`, `settings.json`, values
//! arriving over D-Bus and `W/` values. The properties are in
//! `properties.rs` (shared with the fuzz targets in `fuzz/`); the inputs mix
//! arbitrary bytes with structured messages whose fields come from pools of
//! good and bad values, so the parsers get past their first check.
//!
//! Each test runs 40 to 1500 cases, a second or less; the fuzz targets run
//! the same properties for as long as one likes (`scripts/fuzz`).

mod operator;
mod properties;
mod text;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use text::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2000,
        // Cases that failed once are replayed first, every run (committed).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/generated/proptest-regressions.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn topics_and_ids(topic in topic()) {
        properties::topic(&topic);
    }

    #[test]
    fn client_id_mapping_is_collision_free(
        (a, b) in similar_ids()
    ) {
        properties::two_client_ids(&a, &b);
        properties::client_id(&a);
    }
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn status_payloads(payload in status_payload()) {
        properties::status_payload(payload.as_bytes());
    }

    #[test]
    fn values_payloads(payload in values_payload()) {
        properties::values_payload(payload.as_bytes());
    }

    #[test]
    fn proxy_payloads(payload in proxy_payload()) {
        properties::proxy_payload(payload.as_bytes());
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_bytes_on_every_device_topic(bytes in vec(any::<u8>(), 0..200)) {
        properties::status_payload(&bytes);
        properties::values_payload(&bytes);
        properties::proxy_payload(&bytes);
    }

    #[test]
    fn lwt_values(value in json_leaf().prop_map(|l| l.print())) {
        let value: serde_json::Value = match serde_json::from_str(&value) {
            Ok(v) => v,
            Err(_) => return Ok(()),
        };
        properties::lwt_value(&value);
    }

    #[test]
    fn replies_read_back_as_sent(text in json_tree(4).prop_map(|t| t.print())) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            properties::pyjson_value(&value);
        }
    }

    #[test]
    fn replies_keep_every_float(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        if let Some(n) = serde_json::Number::from_f64(f) {
            properties::pyjson_value(&serde_json::Value::Number(n));
        }
    }

    #[test]
    fn values_from_devices_for_every_kind(text in json_tree(12).prop_map(|t| t.print())) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            properties::json_value(&value);
        }
    }

    #[cfg(feature = "sim")]
    #[test]
    fn w_values_through_the_gateway(value in json_tree(12).prop_map(|t| t.print())) {
        let payload = format!("{{\"value\": {value}}}");
        properties::w_payload(payload.as_bytes());
    }

    #[test]
    fn dbus_values_of_every_type(bytes in vec(any::<u8>(), 0..160)) {
        let raw = properties::variant_from_bytes(&bytes);
        properties::dbus_value(&raw);
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn catalog_files(text in catalog_text()) {
        properties::catalog_text(&text);
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn config_files(text in config_text()) {
        properties::config_text(&text);
    }
}

proptest! {
    #![proptest_config(config(120))]

    #[test]
    fn state_files(bytes in state_file()) {
        let dir = tempfile::tempdir().expect("temp dir");
        properties::state_file(dir.path(), &bytes);
    }

    #[test]
    fn settings_files(bytes in settings_file()) {
        let dir = tempfile::tempdir().expect("temp dir");
        properties::settings_file(dir.path(), &bytes);
    }
}

/// Payloads around the size limit (16 KiB): one byte under and at the limit
/// are read, one byte over is refused as too large, on every topic.
#[test]
fn payloads_at_the_size_limit() {
    use dbus_mqtt_devices::protocol::{
        ProxyRequest, RejectionCode, Status, ValuesMessage, MAX_PAYLOAD_BYTES,
    };
    for size in [
        MAX_PAYLOAD_BYTES - 1,
        MAX_PAYLOAD_BYTES,
        MAX_PAYLOAD_BYTES + 1,
    ] {
        let status = padded(
            r#"{"clientId": "fe001", "connected": 1, "services": {"t1": "temperature"}, "pad": ""#,
            size,
        );
        let values = padded(r#"{"t1": {"Temperature": 1}, "pad": {"X": ""#, size - 1) + "}";
        let proxy = padded(
            r#"{"topicPath": "W/c0ffee000001/temperature/5", "values": {"Temperature": 1}, "pad": ""#,
            size,
        );
        assert_eq!(status.len(), size);
        assert_eq!(values.len(), size);
        assert_eq!(proxy.len(), size);
        let too_large = size > MAX_PAYLOAD_BYTES;
        let code = |r: Result<(), dbus_mqtt_devices::protocol::Rejection>| r.err().map(|r| r.code);
        let want = too_large.then_some(RejectionCode::PayloadTooLarge);
        assert_eq!(
            code(Status::parse("fe001", status.as_bytes()).map(drop)),
            want,
            "{size}"
        );
        assert_eq!(
            code(ValuesMessage::parse(values.as_bytes()).map(drop)),
            want,
            "{size}"
        );
        assert_eq!(
            code(ProxyRequest::parse(proxy.as_bytes()).map(drop)),
            want,
            "{size}"
        );
        properties::status_payload(status.as_bytes());
        properties::values_payload(values.as_bytes());
        properties::proxy_payload(proxy.as_bytes());
    }
}

/// `head` + padding + `"}` making exactly `size` bytes.
fn padded(head: &str, size: usize) -> String {
    let pad = size - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// The numbers JSON parsers get wrong, in every numeric field: refused with
/// `invalid_json` when JSON cannot hold them (`1e309`), else read or refused
/// per field with a reason.
#[test]
fn extreme_numbers_in_every_numeric_field() {
    use dbus_mqtt_devices::protocol::{RejectionCode, Status};
    for n in EDGE_NUMBERS {
        for field in ["connected", "timeout", "version"] {
            let payload = format!(
                r#"{{"clientId": "fe001", "connected": 1, "services": {{}}, "{field}": {n}}}"#
            )
            .replace(
                r#""connected": 1, "services": {}, "connected""#,
                r#""services": {}, "connected""#,
            );
            properties::status_payload(payload.as_bytes());
            let parsed = Status::parse("fe001", payload.as_bytes());
            if serde_json::from_str::<serde_json::Value>(&payload).is_err() {
                assert_eq!(
                    parsed.unwrap_err().code,
                    RejectionCode::InvalidJson,
                    "{payload}"
                );
            }
        }
        let rich = format!(
            r#"{{"clientId": "fe001", "connected": 1, "services": {{"t1": {{"type": "tank", "instance": {n}, "settings": {{"Capacity": {n}}}}}}}}}"#
        );
        properties::status_payload(rich.as_bytes());
        properties::values_payload(format!(r#"{{"t1": {{"Level": {n}}}}}"#).as_bytes());
        #[cfg(feature = "sim")]
        properties::w_payload(format!(r#"{{"value": {n}}}"#).as_bytes());
    }
}
