//! What every parser of outside input must keep, whatever it is given: it
//! never panics, what it accepts is usable further on (ids are legal, values
//! can be sent on D-Bus, text has no NUL), and every refusal is a
//! [`Rejection`] or error with a reason in words.
//!
//! One function per parser; each panics when its property is broken. The
//! generated-input tests (`tests/generated`) and the fuzz targets (`fuzz/`)
//! both call them, so the two check exactly the same thing.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use dbus_mqtt_devices::catalog::{Catalog, ValueKind};
use dbus_mqtt_devices::config::{Config, FileConfig};
use dbus_mqtt_devices::dbus::tree::{value_text_entry, WriteCheck};
use dbus_mqtt_devices::dbus::{Item, TextFormat, Value, ValueType, VariantMap};
use dbus_mqtt_devices::device::venus_service::catalog_item;
use dbus_mqtt_devices::ids::{ClientId, PortalId, ServiceId, UniqueId};
use dbus_mqtt_devices::protocol::{
    self, DeviceTopic, ProxyRequest, Rejection, RejectionCode, Status, ValuesMessage,
    MAX_PAYLOAD_BYTES,
};
use dbus_mqtt_devices::settings::store::{Kind, Store};
use dbus_mqtt_devices::{persist, pyjson};
use zbus::wire::StructureBuilder;
use zbus::{Array, Dict, Signature, Variant};

const KINDS: [ValueKind; 4] = [
    ValueKind::Any,
    ValueKind::Int,
    ValueKind::Float,
    ValueKind::Str,
];

// ---------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------

/// A refusal a device is sent: a reason in words, and an `Error` payload
/// that is JSON naming the code, the reason and the topic.
pub fn check_rejection(r: &Rejection) {
    assert!(!r.message.trim().is_empty(), "a reason in words: {r:?}");
    let topic = "device/x/Status";
    let payload = protocol::error_reply(r, topic);
    assert!(payload.is_ascii(), "{payload}");
    let parsed: serde_json::Value = serde_json::from_str(&payload).expect("Error is JSON");
    assert_eq!(parsed["error"], r.code.as_str(), "{payload}");
    assert_eq!(parsed["message"], r.message.as_str(), "{payload}");
    assert_eq!(parsed["topic"], topic, "{payload}");
}

/// The code a whole payload gets before its fields are read: too large,
/// not JSON, not an object; `None` when it is a JSON object.
pub fn envelope_code(payload: &[u8]) -> Option<RejectionCode> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Some(RejectionCode::PayloadTooLarge);
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(_)) => None,
        _ => Some(RejectionCode::InvalidJson),
    }
}

/// A value the daemon may store on a D-Bus item: it passes the wire check
/// and really encodes, as a `GetItems` entry and as a `GetValue` reply.
pub fn check_sendable(value: &Value) {
    value
        .check_wire()
        .unwrap_or_else(|e| panic!("{value:?}: {e}"));
    let entry: HashMap<String, VariantMap> = HashMap::from([(
        "/X".to_string(),
        value_text_entry(value, value.python_text()),
    )]);
    zbus::Message::signal("/", "com.victronenergy.BusItem", "ItemsChanged")
        .build(&(entry,))
        .unwrap_or_else(|e| panic!("{value:?} does not encode: {e}"));
}

fn check_text(what: &str, s: &str) {
    assert!(!s.contains('\0'), "{what} holds NUL: {s:?}");
}

/// A legal id for D-Bus names and settings paths.
fn is_legal(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The client id a payload names (so that the Status parser gets past its
/// client-id check), else a fixed one.
fn payload_client(payload: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| {
            v.get("clientId")
                .or_else(|| v.get("clientid"))
                .and_then(|c| c.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| "fe001".to_owned())
}

// ---------------------------------------------------------------------------
// MQTT: topics and ids
// ---------------------------------------------------------------------------

/// A topic the daemon receives, and every id made from its text.
pub fn topic(topic: &str) {
    if let Some(t) = DeviceTopic::parse(topic) {
        assert_eq!(
            protocol::device_topic(t.client_id, leaf(t.kind)),
            topic,
            "a device topic is exactly device/<id>/<kind>"
        );
        client_id(t.client_id);
    }
    client_id(topic);
    match ServiceId::parse(topic) {
        Ok(s) => assert!(is_legal(s.as_str()) && s.as_str() == topic),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match PortalId::parse(topic) {
        Ok(p) => {
            assert!(!p.as_str().is_empty());
            assert!(!p.as_str().contains(['/', '+', '#', '\0']));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn leaf(kind: protocol::MessageKind) -> &'static str {
    match kind {
        protocol::MessageKind::Status => "Status",
        protocol::MessageKind::Proxy => "Proxy",
        protocol::MessageKind::Values => "Values",
    }
}

/// A client id: refused with a reason, or mapped to a legal id that is
/// stable, keeps legal ids unchanged and gives a valid D-Bus name and
/// settings path.
pub fn client_id(raw: &str) {
    let parsed = match ClientId::parse(raw) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(parsed.raw(), raw);
    assert!(is_legal(parsed.legal()), "{:?}", parsed.legal());
    assert_eq!(ClientId::parse(raw).as_ref(), Ok(&parsed), "stable");
    if is_legal(raw) {
        assert_eq!(parsed.legal(), raw, "a legal id is used unchanged");
    } else {
        assert!(parsed.is_mapped());
        assert!(parsed.legal().len() <= raw.chars().count() + 10);
    }
    let unique = UniqueId::new(&parsed, &ServiceId::parse("t1").expect("legal"));
    let name = unique.bus_name("temperature");
    assert!(
        zbus::names::WellKnownName::try_from(name.as_str()).is_ok(),
        "{name}"
    );
    assert_eq!(
        dbus_mqtt_devices::settings::store::check_path(&unique.instance_setting()),
        Ok(()),
        "{unique}"
    );
}

/// Two client ids: different raw ids never share a legal id, unless one is
/// a legal id equal to the other's mapped form (the registry refuses that
/// one while the other is connected).
pub fn two_client_ids(a: &str, b: &str) {
    let (Ok(ca), Ok(cb)) = (ClientId::parse(a), ClientId::parse(b)) else {
        return;
    };
    if a != b && ca.legal() == cb.legal() {
        assert!(
            !ca.is_mapped() || !cb.is_mapped(),
            "two mapped ids collide: {a:?} and {b:?} → {}",
            ca.legal()
        );
    }
}

// ---------------------------------------------------------------------------
// MQTT: payloads
// ---------------------------------------------------------------------------

/// A Status payload, on the topic of the client it names and on another.
pub fn status_payload(payload: &[u8]) {
    let client = payload_client(payload);
    status_on(&client, payload);
    status_on("other", payload);
}

fn status_on(client: &str, payload: &[u8]) {
    let status = match Status::parse(client, payload) {
        Ok(s) => s,
        Err(r) => {
            check_rejection(&r);
            if let Some(code) = envelope_code(payload) {
                assert_eq!(r.code, code, "{r}");
            }
            return;
        }
    };
    assert_eq!(envelope_code(payload), None);
    // The registry's one parse: the same Status, and the JSON the state file keeps.
    let (kept, json) = Status::parse_keeping_json(client, payload).expect("parses as parse does");
    assert_eq!(kept, status);
    assert_eq!(
        Some(json),
        serde_json::from_slice::<serde_json::Value>(payload).ok()
    );
    for r in &status.rejections {
        check_rejection(r);
    }
    for refused in &status.refused_services {
        assert!(
            status
                .rejections
                .iter()
                .any(|r| r.service.as_deref() == Some(refused.as_str())),
            "a refused service {refused:?} is named in a rejection"
        );
    }
    assert!(status.services.len() <= dbus_mqtt_devices::protocol::MAX_SERVICES_PER_DEVICE);
    for s in &status.services {
        assert!(is_legal(s.id.as_str()));
        check_text("name", s.name.as_deref().unwrap_or_default());
        check_text("product", s.product.as_deref().unwrap_or_default());
        assert!(s.instance.is_none_or(|i| i <= 999));
        for (key, v) in &s.settings {
            assert!(!v.is_array() && !v.is_object(), "setting {key}: {v}");
            check_text("setting", v.as_str().unwrap_or_default());
        }
    }
    if let Some(serde_json::Value::String(v)) = &status.version {
        check_text("version", v);
    }
    if let Some((topic, _)) = &status.lwt {
        assert!(!topic.is_empty() && !topic.contains(['+', '#', '\0']));
    }
    if let Some(t) = status.timeout {
        assert!(t.is_finite() && t > 0.0 && t <= 86_400.0, "{t}");
    }
}

/// A Values payload: each accepted value, converted for a path of any
/// kind, is either refused with a reason or sendable on D-Bus.
pub fn values_payload(payload: &[u8]) {
    let message = match ValuesMessage::parse(payload) {
        Ok(m) => m,
        Err(r) => {
            check_rejection(&r);
            if let Some(code) = envelope_code(payload) {
                assert_eq!(r.code, code, "{r}");
            }
            return;
        }
    };
    for r in &message.rejections {
        check_rejection(r);
        assert!(r.service.is_some(), "names its service: {r}");
    }
    for (_, paths) in &message.services {
        for (path, value) in paths {
            assert!(
                dbus_mqtt_devices::dbus::tree::is_item_path(&format!("/{path}")),
                "{path}"
            );
            json_value(value);
        }
    }
    let mut twice = message.clone();
    twice.merge(message.clone());
    assert_eq!(
        twice.len(),
        message.len(),
        "merging a message into itself adds nothing"
    );
}

/// One JSON value as a device sends it, for a path of each kind.
pub fn json_value(value: &serde_json::Value) {
    for kind in KINDS {
        match Value::from_json_as(value, ValueType::from(kind)) {
            Ok(v) => check_sendable(&v),
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
    match Value::from_json(value) {
        Ok(v) => check_sendable(&v),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A Proxy payload: a W topic path of four levels and values that are
/// republished as `{"value": v}`.
pub fn proxy_payload(payload: &[u8]) {
    match ProxyRequest::parse(payload) {
        Ok(p) => {
            assert_eq!(envelope_code(payload), None);
            let levels: Vec<&str> = p.topic_path.split('/').collect();
            assert_eq!(levels.len(), 4, "{}", p.topic_path);
            assert_eq!(levels.first(), Some(&"W"));
            assert!(!p.values.is_empty());
            for (key, value) in &p.values {
                let topic = format!("{}/{key}", p.topic_path);
                assert!(!topic.contains(['+', '#', '\0']), "{topic}");
                let mut body = serde_json::Map::new();
                body.insert("value".into(), value.clone());
                pyjson_value(&serde_json::Value::Object(body));
            }
        }
        Err(r) => {
            check_rejection(&r);
            if let Some(code) = envelope_code(payload) {
                assert_eq!(r.code, code, "{r}");
            }
        }
    }
}

/// `lwt_value`: the text a last-will payload is compared with.
pub fn lwt_value(value: &serde_json::Value) {
    let payload = serde_json::json!({
        "clientId": "shelly1", "connected": 1, "lwt_topic": "shelly1/online",
        "lwt_value": value, "services": {}
    })
    .to_string();
    let status = Status::parse("shelly1", payload.as_bytes()).expect("the rest is valid");
    match (&status.lwt, value) {
        (Some((_, v)), serde_json::Value::String(s)) => assert_eq!(v, s),
        (Some((_, v)), serde_json::Value::Null) => assert_eq!(v, "false"),
        (Some((_, v)), other) => assert_eq!(v, &other.to_string()),
        (None, _) => {
            assert_eq!(status.rejections.len(), 1, "{status:?}");
            check_rejection(&status.rejections[0]);
        }
    }
}

/// A reply written as Python's `json.dumps`: ASCII, and read back it is
/// the same value (floats to the bit).
pub fn pyjson_value(value: &serde_json::Value) {
    let text = pyjson::dumps(value);
    assert!(text.is_ascii(), "{text}");
    let back: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(same_json(value, &back), "{value} → {text} → {back}");
}

fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i64(), x.as_u64(), x.as_f64()) {
            (Some(i), _, _) => y.as_i64() == Some(i),
            (_, Some(u), _) => y.as_u64() == Some(u),
            (_, _, Some(f)) => y.as_f64().is_some_and(|g| g.to_bits() == f.to_bits()),
            _ => false,
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// `catalog.toml` from the user: errors name the file and say why; every
/// type that results gives services D-Bus can carry.
pub fn catalog_text(text: &str) {
    let (catalog, errors) = Catalog::load_str(text, "catalog.toml");
    for e in &errors {
        assert_eq!(e.file, "catalog.toml");
        assert!(!e.reason.trim().is_empty(), "{e:?}");
        assert!(e.to_string().starts_with("catalog.toml"));
    }
    check_catalog(&catalog);
}

/// Every type of a catalog can be registered: a valid bus name, items with
/// legal paths, and every value, text and description sendable on D-Bus.
pub fn check_catalog(catalog: &Catalog) {
    for t in catalog.iter() {
        let name = format!("com.victronenergy.{}.mqtt_x_t1", t.name);
        assert!(
            zbus::names::WellKnownName::try_from(name.as_str()).is_ok(),
            "{name}"
        );
        check_text("product_name", &t.product_name);
        check_text("custom_name", &t.custom_name);
        let items: Vec<Item> = t
            .paths
            .iter()
            .map(|spec| {
                let value = spec
                    .default
                    .as_ref()
                    .map(|d| {
                        Value::from_json_as(d, ValueType::from(spec.kind))
                            .unwrap_or_else(|e| panic!("{spec:?}: {e}"))
                    })
                    .unwrap_or(Value::Invalid);
                catalog_item(spec, value)
            })
            .collect();
        for item in &items {
            assert!(
                dbus_mqtt_devices::dbus::tree::is_item_path(&item.path),
                "{}",
                item.path
            );
        }
        check_items(&items);
    }
}

/// Items answer every call: their entries (value and text) and their
/// descriptions encode, all in one message (GetItems sends them together).
fn check_items(items: &[Item]) {
    let mut entries = HashMap::new();
    let mut descriptions = Vec::new();
    for item in items {
        item.value
            .check_wire()
            .unwrap_or_else(|e| panic!("{item:?}: {e}"));
        check_text("text", &item.text());
        check_text("description", &item.description);
        entries.insert(item.path.clone(), item.entry());
        descriptions.push(item.description.as_str());
    }
    zbus::Message::signal("/", "com.victronenergy.BusItem", "ItemsChanged")
        .build(&(entries, descriptions))
        .unwrap_or_else(|e| panic!("{items:?}: {e}"));
}

/// `config.toml`: parsed and resolved, or refused with a reason.
pub fn config_text(text: &str) {
    match FileConfig::parse(text, Path::new("config.toml")) {
        Ok(file) => {
            if let Err(e) = Config::merge(&Default::default(), file) {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("config.toml"), "{shown}");
        }
    }
}

/// `state.json` in the data dir: read (each saved Status then goes through
/// the Status parser, as at start) or refused with a reason.
pub fn state_file(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join(dbus_mqtt_devices::data_dir::STATE_FILE), bytes)
        .expect("writing state.json");
    match persist::load(dir) {
        Ok(devices) => {
            for d in devices {
                // As Registry::restore takes it: the saved JSON, not text. It is
                // the Status its text would be if the device sent it now.
                let restored = Status::from_json(&d.client_id, &d.status);
                let payload = d.status.to_string();
                if payload.len() <= MAX_PAYLOAD_BYTES {
                    assert_eq!(restored, Status::parse(&d.client_id, payload.as_bytes()));
                }
                status_on(&d.client_id, payload.as_bytes());
                client_id(&d.client_id);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// `settings.json` of our settings service: read or refused with a reason;
/// every setting read has a value of its type that can be sent and saved.
pub fn settings_file(dir: &Path, bytes: &[u8]) {
    let file = dir.join("settings.json");
    std::fs::write(&file, bytes).expect("writing settings.json");
    match Store::load(&file) {
        Ok(store) => {
            for (path, s) in store.iter() {
                assert!(
                    dbus_mqtt_devices::settings::store::check_path(path).is_ok(),
                    "{path}"
                );
                for v in [&s.value, &s.default] {
                    check_sendable(v);
                    assert_eq!(s.kind.convert(v).as_ref(), Some(v), "{path}: {v:?}");
                }
                check_text("text", &s.text());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

// ---------------------------------------------------------------------------
// D-Bus
// ---------------------------------------------------------------------------

/// A value arriving in `SetValue` on one of our BusItem paths (of each type,
/// writeable, with and without limits) and on a setting of each type of our
/// settings service: refused, or stored as something D-Bus can carry and,
/// for settings, the settings file can keep.
pub fn dbus_value(raw: &Variant<'_>) {
    let value = match Value::from_variant(raw) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    check_sendable(&value);
    for ty in [
        ValueType::Any,
        ValueType::Int,
        ValueType::Float,
        ValueType::Str,
    ] {
        for limits in [(None, None), (Some(0.0), Some(100.0))] {
            let item = Item::new("/Path", Value::Invalid)
                .writeable()
                .with_type(ty)
                .with_limits(limits.0, limits.1)
                .with_text(TextFormat::Fixed {
                    decimals: Some(2),
                    unit: Some("W".into()),
                });
            if let WriteCheck::Changed(stored) = item.check_remote_write(value.clone()) {
                check_sendable(&stored);
                let mut item = item;
                item.value = stored;
                check_items(&[item]);
            }
        }
    }
    settings_value(&value);
}

/// `SetValue` on a setting of our settings service, of each type.
fn settings_value(value: &Value) {
    let mut store = Store::new();
    let settings = [
        (
            "/Settings/I",
            Value::I32(1),
            Some((Value::I32(0), Value::I32(100))),
        ),
        ("/Settings/F", Value::F64(1.0), None),
        ("/Settings/S", Value::Str("x".into()), None),
        (
            "/Settings/Devices/d/ClassAndVrmInstance",
            Value::Str("temperature:1".into()),
            None,
        ),
    ];
    for (path, default, limits) in &settings {
        let (min, max) = match limits {
            Some((lo, hi)) => (Some(lo), Some(hi)),
            None => (None, None),
        };
        store
            .add(path, default, None, min, max, false)
            .expect("a valid setting");
    }
    for (path, _, _) in &settings {
        if store.set(path, value).is_ok() {
            let s = store.get(path).expect("still there");
            check_sendable(&s.value);
            check_text("text", &s.text());
            // What the settings file keeps must read back as the same value.
            let kept = Value::from_json(&s.value.to_json())
                .ok()
                .and_then(|v| s.kind.convert(&v));
            assert_eq!(kept.as_ref(), Some(&s.value), "{path}: {value:?}");
        }
    }
    for kind in [Kind::Int, Kind::Float, Kind::Str] {
        if let Some(v) = kind.convert(value) {
            check_sendable(&v);
        }
    }
    // AddSettings with the value as default, and as limits around a default.
    let mut store = Store::new();
    let adds = [
        ("/Settings/A", value.clone(), None, None),
        ("/Settings/B", Value::I32(5), Some(value), Some(value)),
        (
            "/Settings/C",
            Value::F64(5.0),
            Some(&Value::F64(0.0)),
            Some(value),
        ),
        (
            "/Settings/Devices/d/ClassAndVrmInstance",
            value.clone(),
            None,
            None,
        ),
    ];
    for (path, default, min, max) in adds {
        if store.add(path, &default, None, min, max, false).is_ok() {
            let s = store.get(path).expect("added");
            check_sendable(&s.min());
            check_sendable(&s.max());
            for v in [&s.value, &s.default] {
                check_sendable(v);
                let kept = Value::from_json(&v.to_json())
                    .ok()
                    .and_then(|k| s.kind.convert(&k));
                assert_eq!(kept.as_ref(), Some(v), "{path}: {value:?}");
            }
        }
    }
}

/// A `W/` payload through the gateway of `sim`, typed as dbus-flashmq
/// types it, then set on our items.
#[cfg(feature = "sim")]
pub fn w_payload(payload: &[u8]) {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(payload)
    else {
        return;
    };
    let Some(value) = o.get("value") else {
        return;
    };
    if let Some(variant) = dbus_mqtt_devices::sim::gateway::json_to_variant(value) {
        zbus::Message::method_call("/Path", "SetValue")
            .build(&(&variant,))
            .unwrap_or_else(|e| panic!("{value} → {variant:?} does not encode: {e}"));
        dbus_value(&variant);
    }
}

// ---------------------------------------------------------------------------
// Building D-Bus values of every type from bytes
// ---------------------------------------------------------------------------

/// Reads bytes one at a time; zero once they run out.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }
}

/// A D-Bus type, as the value builder chooses it.
#[derive(Clone, Debug)]
enum DType {
    Basic(char),
    Variant,
    Fd,
    Array(Box<DType>),
    Dict(char, Box<DType>),
    Struct(Vec<DType>),
}

impl DType {
    fn signature(&self) -> String {
        match self {
            DType::Basic(c) => c.to_string(),
            DType::Variant => "v".into(),
            DType::Fd => "h".into(),
            DType::Array(t) => format!("a{}", t.signature()),
            DType::Dict(k, v) => format!("a{{{k}{}}}", v.signature()),
            DType::Struct(f) => format!("({})", f.iter().map(DType::signature).collect::<String>()),
        }
    }
}

const BASIC: &[char] = &['y', 'b', 'n', 'q', 'i', 'u', 'x', 't', 'd', 's', 'o', 'g'];

/// How deep the builder nests containers: past what D-Bus allows in one
/// message, so that the parsers see values no bus would carry too.
const MAX_BUILD_DEPTH: usize = 40;

fn dtype(b: &mut Bytes<'_>, depth: usize) -> DType {
    let pick = b.byte();
    if depth >= MAX_BUILD_DEPTH {
        return DType::Basic(BASIC[usize::from(pick) % BASIC.len()]);
    }
    match pick % 24 {
        0..=11 => DType::Basic(BASIC[usize::from(pick % 12)]),
        12 | 13 => DType::Variant,
        14 => DType::Fd,
        15..=18 => DType::Array(Box::new(dtype(b, depth + 1))),
        19 | 20 => {
            let k = BASIC[usize::from(b.byte()) % BASIC.len()];
            DType::Dict(k, Box::new(dtype(b, depth + 1)))
        }
        _ => {
            let n = 1 + usize::from(b.byte() % 3);
            DType::Struct((0..n).map(|_| dtype(b, depth + 1)).collect())
        }
    }
}

/// A D-Bus value of any type (nested arrays, dicts with any key type,
/// structs, variants in variants, file descriptors, text with NUL or
/// multibyte characters, extreme numbers) built from `bytes`.
pub fn variant_from_bytes(bytes: &[u8]) -> Variant<'static> {
    let mut b = Bytes(bytes);
    let t = dtype(&mut b, 0);
    build(&mut b, &t, 0)
}

fn text(b: &mut Bytes<'_>) -> String {
    let n = usize::from(b.byte() % 24);
    String::from_utf8_lossy(b.take(n)).into_owned()
}

fn signature_of(t: &DType) -> Signature {
    Signature::try_from(t.signature().as_str()).unwrap_or(Signature::I32)
}

fn build(b: &mut Bytes<'_>, t: &DType, depth: usize) -> Variant<'static> {
    match t {
        DType::Basic(c) => basic(b, *c),
        DType::Variant => {
            let inner = dtype(b, depth + 1);
            Variant::Variant(Box::new(build(b, &inner, depth + 1)))
        }
        DType::Fd => match std::fs::File::open("/dev/null") {
            Ok(f) => Variant::Fd(std::os::fd::OwnedFd::from(f).into()),
            Err(_) => Variant::I32(0),
        },
        DType::Array(e) => {
            let mut a = Array::new(&signature_of(e));
            for _ in 0..(b.byte() % 4) {
                let v = build(b, e, depth + 1);
                if a.append(v).is_err() {
                    break;
                }
            }
            Variant::Array(a)
        }
        DType::Dict(k, v) => {
            let mut d = Dict::new(&signature_of(&DType::Basic(*k)), &signature_of(v));
            for _ in 0..(b.byte() % 4) {
                let key = basic(b, *k);
                let value = build(b, v, depth + 1);
                if d.append(key, value).is_err() {
                    break;
                }
            }
            Variant::Dict(d)
        }
        DType::Struct(fields) => {
            let mut s = StructureBuilder::new();
            for f in fields {
                s = s.append_field(build(b, f, depth + 1));
            }
            match s.build() {
                Ok(s) => Variant::Structure(s),
                Err(_) => Variant::I32(0),
            }
        }
    }
}

fn basic(b: &mut Bytes<'_>, c: char) -> Variant<'static> {
    let edge = b.byte();
    let n = b.u64();
    match c {
        'y' => Variant::U8(n as u8),
        'b' => Variant::Bool(n & 1 == 1),
        'n' => Variant::I16(n as i16),
        'q' => Variant::U16(n as u16),
        'i' => Variant::I32(n as i32),
        'u' => Variant::U32(n as u32),
        'x' => Variant::I64(n as i64),
        't' => Variant::U64(n),
        'd' => Variant::F64(match edge % 8 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            3 => f64::MIN_POSITIVE / 2.0,
            4 => 9_223_372_036_854_775_808.0,
            _ => f64::from_bits(n),
        }),
        's' => Variant::Str(text(b).into()),
        'o' => Variant::ObjectPath(
            zbus::ObjectPath::try_from(if n & 1 == 0 { "/" } else { "/Ac/L1/Power" })
                .expect("valid path"),
        ),
        _ => Variant::Signature(Signature::try_from("a{sv}").expect("valid signature")),
    }
}
