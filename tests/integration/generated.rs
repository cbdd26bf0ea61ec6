//! Generated bad input through the real broker and bus to the running
//! daemon: each refused payload is answered on `device/<id>/Error` with the
//! code the parser gives it (so nothing is dropped silently), every
//! `SetValue` of any D-Bus type gets an answer, and afterwards the daemon
//! still serves its devices and a new one.

use super::properties;
use super::text;
use super::world::*;
use dbus_mqtt_devices::protocol::{ProxyRequest, Status, ValuesMessage, MAX_PAYLOAD_BYTES};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::time::Duration;

/// A runner that gives the same inputs at every run.
fn runner() -> TestRunner {
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    )
}

/// `n` values of `strategy` that `keep` accepts.
fn generate<S: Strategy>(
    runner: &mut TestRunner,
    strategy: S,
    n: usize,
    keep: impl Fn(&S::Value) -> bool,
) -> Vec<S::Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let value = strategy
            .new_tree(runner)
            .expect("a generated value")
            .current();
        if keep(&value) {
            out.push(value);
        }
    }
    out
}

/// The code the daemon must answer a payload with, when the parser refuses
/// it whole (`None` when the parser reads it).
fn whole_refusal(leaf: &str, id: &str, payload: &[u8]) -> Option<&'static str> {
    let refused = match leaf {
        "Status" => Status::parse(id, payload).err(),
        "Values" => ValuesMessage::parse(payload).err(),
        _ => ProxyRequest::parse(payload).err(),
    };
    refused.map(|r| r.code.as_str())
}

#[tokio::test]
async fn generated_bad_payloads_are_each_answered_and_harm_nothing() {
    let world = World::start().await;
    let mut keeper = world.device("keepergen").await;
    keeper.register(r#"{"k1": "tank"}"#).await;
    let mut device = world.device("gen10").await;
    device.register(r#"{"t1": "temperature"}"#).await;

    let mut runner = runner();
    let mut batch: Vec<(&str, Vec<u8>)> = Vec::new();
    let strategies = [
        ("Status", text::status_payload().boxed()),
        ("Values", text::values_payload().boxed()),
        ("Proxy", text::proxy_payload().boxed()),
    ];
    for (leaf, strategy) in strategies {
        // The payloads name the client "fe001"; on this device's topic that
        // is a client_id_mismatch, so the names are made to match.
        let strategy = strategy.prop_map(|p| p.replace("fe001", "gen10"));
        for payload in generate(&mut runner, strategy, 25, |p| {
            !p.is_empty() && whole_refusal(leaf, "gen10", p.as_bytes()).is_some()
        }) {
            batch.push((leaf, payload.into_bytes()));
        }
        // Not UTF-8, one byte over the limit, nested past every limit.
        batch.push((leaf, vec![0xff, 0xfe, b'{']));
        batch.push((leaf, vec![b' '; MAX_PAYLOAD_BYTES + 1]));
        batch.push((
            leaf,
            format!("{}1{}", "[".repeat(500), "]".repeat(500)).into_bytes(),
        ));
    }

    for (leaf, payload) in &batch {
        device.send_bytes(leaf, payload).await;
    }
    for (leaf, payload) in &batch {
        let want = whole_refusal(leaf, "gen10", payload).expect("chosen to be refused");
        let error = device.expect_error().await;
        let shown = String::from_utf8_lossy(payload);
        assert_eq!(error["error"], want, "{leaf} {shown} → {error}");
        assert_eq!(error["topic"], format!("device/gen10/{leaf}"), "{error}");
        assert!(
            !error["message"].as_str().unwrap_or_default().is_empty(),
            "{error}"
        );
    }

    // Everything registered before is still there, and a new device registers.
    for name in [
        "com.victronenergy.tank.mqtt_keepergen_k1",
        "com.victronenergy.temperature.mqtt_gen10_t1",
    ] {
        assert!(owner(&world.conn, name).await.is_some(), "{name}");
        assert!(get_items_answers(&world.conn, name).await, "{name}");
    }
    let mut good = world.device("goodgen").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
}

#[tokio::test]
async fn set_value_of_every_d_bus_type_is_answered_on_services_and_settings() {
    let world = World::start().await;
    let mut device = world.device("dbusgen").await;
    device
        .register(r#"{"t1": "temperature", "ev1": "evcharger"}"#)
        .await;
    let targets = [
        (
            "com.victronenergy.temperature.mqtt_dbusgen_t1",
            "/Temperature",
        ),
        (
            "com.victronenergy.temperature.mqtt_dbusgen_t1",
            "/CustomName",
        ),
        (
            "com.victronenergy.temperature.mqtt_dbusgen_t1",
            "/TemperatureType",
        ),
        ("com.victronenergy.evcharger.mqtt_dbusgen_ev1", "/Role"),
        (
            "com.victronenergy.evcharger.mqtt_dbusgen_ev1",
            "/SetCurrent",
        ),
        (
            "com.victronenergy.settings",
            "/Settings/MqttDevices/mqtt_dbusgen_t1/CustomName",
        ),
        (
            "com.victronenergy.settings",
            "/Settings/MqttDevices/mqtt_dbusgen_t1/TemperatureType",
        ),
        (
            "com.victronenergy.settings",
            "/Settings/Devices/mqtt_dbusgen_t1/ClassAndVrmInstance",
        ),
    ];

    let mut runner = runner();
    let values = generate(
        &mut runner,
        proptest::collection::vec(proptest::num::u8::ANY, 0..96),
        150,
        |_| true,
    );
    let mut sent = 0;
    for (i, bytes) in values.iter().enumerate() {
        let value = properties::variant_from_bytes(bytes);
        if holds_nul(&value) {
            // No bus carries it: dbus-daemon cuts the connection that sends it.
            continue;
        }
        let (service, path) = targets[i % targets.len()];
        let body = (&value,);
        let call = world.conn.call_method(
            Some(service),
            path,
            Some("com.victronenergy.BusItem"),
            "SetValue",
            &body,
        );
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Err(_) => panic!("SetValue({value:?}) on {service} {path}: no answer"),
            // Sent and answered: a code, or an error reply naming why.
            Ok(Ok(reply)) => {
                let code: i32 = reply.body().deserialize().expect("SetValue returns an int");
                assert!([-1, 0, 1, 2].contains(&code), "{value:?} → {code}");
                sent += 1;
            }
            Ok(Err(zbus::Error::MethodError(..) | zbus::Error::FDO(_))) => sent += 1,
            // zbus itself refuses to send what D-Bus cannot carry (too deep).
            Ok(Err(_)) => {}
        }
    }
    assert!(
        sent > 100,
        "only {sent} of {} values could be sent",
        values.len()
    );

    // AddSettings with generated defaults and limits, as any driver may send.
    for bytes in values.iter().take(60) {
        let value = properties::variant_from_bytes(bytes);
        if holds_nul(&value) {
            continue;
        }
        let entry = std::collections::HashMap::from([
            ("path", zbus::Variant::from("/Settings/Gen/X")),
            ("default", value.try_clone().expect("clonable")),
            ("min", value.try_clone().expect("clonable")),
            ("max", value),
        ]);
        let body = (vec![entry],);
        let call = world.conn.call_method(
            Some("com.victronenergy.settings"),
            "/",
            Some("com.victronenergy.Settings"),
            "AddSettings",
            &body,
        );
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Err(_) => panic!("AddSettings: no answer"),
            Ok(Ok(reply)) => assert_eq!(reply.body().signature().to_string(), "aa{sv}"),
            Ok(Err(_)) => {}
        }
    }

    for (service, _) in targets {
        assert!(get_items_answers(&world.conn, service).await, "{service}");
    }
    // The daemon's connection to the settings service still works.
    let mut good = world.device("gooddbus").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
}

/// Whether a value holds text with NUL anywhere (keys too).
fn holds_nul(v: &zbus::Variant<'_>) -> bool {
    use zbus::Variant as V;
    match v {
        V::Str(s) => s.as_str().contains('\0'),
        V::Variant(inner) => holds_nul(inner),
        V::Array(a) => a.inner().iter().any(holds_nul),
        V::Dict(d) => d.iter().any(|(k, v)| holds_nul(k) || holds_nul(v)),
        V::Structure(s) => s.fields().iter().any(holds_nul),
        _ => false,
    }
}

#[cfg(feature = "sim")]
#[tokio::test]
async fn generated_w_values_through_the_gateway_leave_the_services_serving() {
    use dbus_mqtt_devices::dbus::Value;
    use dbus_mqtt_devices::sim::gateway::{Event, Gateway, GatewayConfig};
    use tokio::sync::mpsc;

    let world = World::start().await;
    let mut device = world.device("wgen").await;
    let reply = device
        .register(r#"{"t1": "temperature", "ev1": "evcharger"}"#)
        .await;
    let t1 = reply["topicPath"]["t1"]["W"]
        .as_str()
        .expect("W path")
        .to_owned();
    let ev1 = reply["topicPath"]["ev1"]["W"]
        .as_str()
        .expect("W path")
        .to_owned();

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let gateway = Gateway::start(
        GatewayConfig {
            bus: world.bus.bus(),
            mqtt_host: "127.0.0.1".into(),
            mqtt_port: world.port(),
            portal: dbus_mqtt_devices::ids::PortalId::parse(PORTAL).expect("portal"),
        },
        events_tx,
    )
    .await
    .expect("starting the gateway");
    let mut seen = 0;
    tokio::time::timeout(WAIT, async {
        while seen < 2 {
            if let Some(Event::ServiceAdded { service, .. }) = events.recv().await {
                if service.contains("mqtt_wgen_") {
                    seen += 1;
                }
            }
        }
    })
    .await
    .expect("the gateway read both services");

    let mut runner = runner();
    let values = generate(
        &mut runner,
        text::json_tree(12).prop_map(|t| t.print()),
        120,
        |_| true,
    );
    let topics = [
        format!("{t1}/Temperature"),
        format!("{t1}/CustomName"),
        format!("{t1}/TemperatureType"),
        format!("{ev1}/Role"),
        format!("{ev1}/SetCurrent"),
    ];
    for (i, value) in values.iter().enumerate() {
        let payload = format!("{{\"value\": {value}}}");
        device.publish(&topics[i % topics.len()], &payload).await;
    }
    // The gateway writes in order: once the last value arrives, every
    // generated one has been answered.
    device
        .publish(&format!("{t1}/Temperature"), r#"{"value": 12.25}"#)
        .await;
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::ValueChanged { path, value, .. }) = events.recv().await {
                if path == "/Temperature" && value == Value::F64(12.25) {
                    return;
                }
            }
        }
    })
    .await
    .expect("the last write arrived");

    for name in [
        "com.victronenergy.temperature.mqtt_wgen_t1",
        "com.victronenergy.evcharger.mqtt_wgen_ev1",
    ] {
        assert!(get_items_answers(&world.conn, name).await, "{name}");
    }
    gateway.stop().await;
}
