//! One test per fixed defect, named `issue_<n>_<what>`, each through the real
//! broker, bus and settings service.

use super::world::*;

/// The Status from issue 10: a multibyte string in a refused field.
fn multibyte_status(id: &str) -> String {
    format!(
        r#"{{"clientId":"{id}","connected":"{}","services":{{"t1":"temperature"}}}}"#,
        "é".repeat(48)
    )
}

/// See: issue 10. The text of a refused field was cut by bytes inside a
/// multibyte character, which panicked: one message took the daemon down.
#[tokio::test]
async fn issue_10_multibyte_text_in_a_status_is_refused_not_fatal() {
    let world = World::start().await;
    let mut keeper = world.device("keeper10").await;
    keeper.register(r#"{"k1": "tank"}"#).await;

    let mut x1 = world.device("x1").await;
    x1.send("Status", &multibyte_status("x1")).await;
    let error = x1.expect_error().await;
    assert_eq!(error["error"], "invalid_field", "{error}");
    assert!(
        error["message"].as_str().unwrap_or_default().contains('é'),
        "the reason quotes the value: {error}"
    );

    let mut good = world.device("good10").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
    assert!(
        owner(&world.conn, "com.victronenergy.tank.mqtt_keeper10_k1")
            .await
            .is_some()
    );
}

/// See: issue 10. Published retained, the same message reached the daemon
/// again at every start: a crash loop. After a restart the daemon must come
/// online, answer it again, restore its other devices and serve new ones.
#[tokio::test]
async fn issue_10_retained_multibyte_status_does_not_stop_a_restart() {
    let mut world = World::start().await;
    let mut keeper = world.device("keeper10r").await;
    keeper.register(r#"{"k1": "tank"}"#).await;
    let mut x1 = world.device("x1r").await;
    x1.publish_retained("device/x1r/Status", &multibyte_status("x1r"))
        .await;
    assert_eq!(x1.expect_error().await["error"], "invalid_field");

    world.stop_daemon().await;
    world.start_daemon().await;
    // The retained message is delivered to the new daemon and refused again.
    assert_eq!(x1.expect_error().await["error"], "invalid_field");
    wait_name_owned(&world.conn, "com.victronenergy.tank.mqtt_keeper10r_k1").await;
    let mut good = world.device("good10r").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
}

/// See: issue 10. D-Bus strings may not hold NUL: a text value with one was
/// sent as is, and the bus daemon cut the service's connection, so the
/// service vanished from the GX.
#[tokio::test]
async fn issue_10_nul_in_a_text_value_is_refused_and_the_service_stays() {
    let world = World::start().await;
    let mut device = world.device("nul10").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    let t1 = "com.victronenergy.temperature.mqtt_nul10_t1";

    device
        .send(
            "Values",
            r#"{"t1": {"CustomName": "a\u0000b", "Temperature": 4.5}}"#,
        )
        .await;
    let error = device.expect_error().await;
    assert_eq!(error["error"], "invalid_value", "{error}");
    assert_eq!(error["path"], "CustomName", "{error}");
    assert!(
        !error["message"].as_str().unwrap_or_default().is_empty(),
        "{error}"
    );
    // The valid value of the same message applies; the service is still there.
    assert_eq!(
        f64::try_from(get_value(&world.conn, t1, "/Temperature").await).unwrap(),
        4.5
    );
    assert!(get_items_answers(&world.conn, t1).await);
}

/// See: issue 10. A value nested deeper than D-Bus can carry was stored on
/// a path of kind `any`; from then on every `GetItems` of the service went
/// unanswered, and dbus-flashmq ignores such a service for good.
#[tokio::test]
async fn issue_10_a_too_deeply_nested_value_is_refused_and_get_items_answers() {
    let world = World::start().await;
    let mut device = world.device("deep10").await;
    device.register(r#"{"ev1": "evcharger"}"#).await;
    let ev1 = "com.victronenergy.evcharger.mqtt_deep10_ev1";

    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    device
        .send("Values", &format!(r#"{{"ev1": {{"Role": {deep}}}}}"#))
        .await;
    let error = device.expect_error().await;
    assert_eq!(error["error"], "invalid_value", "{error}");
    assert_eq!(error["path"], "Role", "{error}");
    assert!(get_items_answers(&world.conn, ev1).await);
}

/// See: issue 10. A Status `name`, `product` or `version` holding NUL went
/// to D-Bus and localsettings as is; the bus daemon then cuts the
/// connection that sent it.
#[tokio::test]
async fn issue_10_nul_in_status_text_is_refused_per_field() {
    let world = World::start().await;
    let mut device = world.device("nuls10").await;
    device
        .send(
            "Status",
            r#"{"clientId": "nuls10", "connected": 1, "version": "1\u0000", "services": {"t1": {"type": "temperature", "name": "x\u0000"}, "t2": {"type": "temperature", "product": "\u0000"}, "t3": "temperature"}}"#,
        )
        .await;
    let mut errors = Vec::new();
    for _ in 0..3 {
        errors.push(device.expect_error().await);
    }
    assert!(
        errors.iter().all(|e| e["error"] == "invalid_field"),
        "{errors:?}"
    );
    let reply = device.expect_dbus_reply().await;
    assert!(reply["deviceInstance"]["t3"].is_u64(), "{reply}");
    let t3 = "com.victronenergy.temperature.mqtt_nuls10_t3";
    assert!(get_items_answers(&world.conn, t3).await);
    assert!(
        world
            .settings
            .as_ref()
            .and_then(|s| s.service.as_ref())
            .is_some(),
        "settings service still runs"
    );
}

/// See: issue 10. The D-Bus layer itself never stores a value it could not
/// send: a local write of one is refused, and `GetItems` keeps answering.
#[tokio::test]
async fn issue_10_a_service_refuses_values_the_bus_cannot_carry() {
    use dbus_mqtt_devices::dbus::{Error, Item, Service, Value};
    let bus = super::support::TestBus::start().await;
    let name = "com.victronenergy.temperature.wire10";
    let items = vec![
        Item::new("/A", Value::I32(1)),
        Item::new("/B", Value::I32(1)),
    ];
    let (service, _writes) = Service::register(&bus.bus(), name, items, None)
        .await
        .expect("registered");
    let mut deep = Value::I32(1);
    for _ in 0..40 {
        deep = Value::List(vec![deep]);
    }
    for bad in [Value::Str("a\0b".into()), deep] {
        let refused = service.set_value("/A", bad.clone()).await;
        assert!(
            matches!(refused, Err(Error::InvalidValue { .. })),
            "{refused:?}"
        );
        let refused = service
            .set_values(vec![("/B".into(), Value::I32(2)), ("/A".into(), bad)])
            .await;
        assert!(
            matches!(refused, Err(Error::InvalidValue { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(service.value("/A"), Some(Value::I32(1)));
    assert_eq!(service.value("/B"), Some(Value::I32(1)));
    let conn = bus.client().await;
    assert!(get_items_answers(&conn, name).await);
}

/// A log that tests can read: everything the daemon logs on this thread.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// See: issue 10. dbus-flashmq ignores SetValue's code, so a W/ write that
/// a service refused left no trace anywhere: now each refusal is logged
/// with the service, the path and the reason.
#[tokio::test]
async fn issue_10_a_refused_set_value_is_logged_with_its_reason() {
    use dbus_mqtt_devices::dbus::{Item, Service, Value, ValueType};
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = super::support::TestBus::start().await;
    let name = "com.victronenergy.temperature.log10";
    let items = vec![Item::new("/T", Value::F64(1.0))
        .writeable()
        .with_type(ValueType::Float)
        .with_limits(Some(0.0), Some(10.0))];
    let (_service, _writes) = Service::register(&bus.bus(), name, items, None)
        .await
        .expect("registered");
    let conn = bus.client().await;
    let body = zbus::Variant::from("warm");
    assert_eq!(set_value(&conn, name, "/T", body).await, 1);
    assert_eq!(
        set_value(&conn, name, "/T", zbus::Variant::from(11.0)).await,
        2
    );

    let text = log.text();
    for want in [
        "SetValue refused: \"warm\" does not fit the path's type",
        "SetValue refused: \"11.0\" is out of range",
    ] {
        assert!(text.contains(want), "{want:?} not in the log:\n{text}");
    }
    assert!(
        text.contains(name) && text.contains("path=\"/T\""),
        "{text}"
    );
}

/// See: issue 10. When a reply could not be built, the dispatcher logged it
/// and sent nothing: the caller waited for its timeout (25 s for
/// dbus-flashmq, which then ignores the service for good). Now it gets an
/// error reply at once.
#[tokio::test]
async fn issue_10_a_reply_that_cannot_be_built_is_answered_with_an_error() {
    use dbus_mqtt_devices::dbus::dispatch::{self, Call, Handler, Introspection, Reply, Response};
    use std::sync::Arc;

    /// Answers every call with a value nested deeper than D-Bus allows.
    struct TooDeep;
    impl Handler for TooDeep {
        fn handle(&self, _call: &Call<'_>) -> Response {
            let mut v = zbus::Variant::I32(1);
            for _ in 0..70 {
                v = zbus::Variant::Variant(Box::new(v));
            }
            Reply::Variant(v).into()
        }
        fn introspect(&self, _path: &str) -> Option<Introspection> {
            None
        }
    }

    let bus = super::support::TestBus::start().await;
    let server = bus.client().await;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::MethodCall)
        .build()
        .unwrap();
    let stream = zbus::MessageStream::for_match_rule(rule, &server, None)
        .await
        .unwrap();
    tokio::spawn(dispatch::serve(server.clone(), stream, Arc::new(TooDeep)));
    let name = server.unique_name().unwrap().to_string();

    let client = bus.client().await;
    let call = client.call_method(Some(name.as_str()), "/", None::<&str>, "GetValue", &());
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), call)
        .await
        .expect("an answer, not a timeout");
    let error = answer.expect_err("an error reply");
    assert!(error.to_string().contains("could not be built"), "{error}");
}

/// See: issue 10. A device could name another device's Status topic as its
/// `lwt_topic`; the daemon then took every message on it for a last will,
/// and the other device could no longer register (nothing answered it).
#[tokio::test]
async fn issue_10_an_lwt_topic_cannot_capture_a_device_topic() {
    let world = World::start().await;
    let mut a = world.device("lwta").await;
    a.send(
        "Status",
        r#"{"clientId": "lwta", "connected": 1, "lwt_topic": "device/lwtb/Status", "lwt_value": "x", "services": {"t1": "temperature"}}"#,
    )
    .await;
    let error = a.expect_error().await;
    assert_eq!(error["error"], "invalid_field", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("lwt_topic"),
        "{error}"
    );
    assert!(a.expect_dbus_reply().await["deviceInstance"]["t1"].is_u64());

    let mut b = world.device("lwtb").await;
    let reply = b.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
}
