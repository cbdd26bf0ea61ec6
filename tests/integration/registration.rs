//! Devices register, re-register and leave over MQTT (protocol v1 and v2),
//! against a real mosquitto, a real dbus-daemon and our settings service.

use super::world::*;
use serde_json::json;
use zbus::{OwnedVariant, Variant};

fn text(v: &OwnedVariant) -> String {
    String::try_from(v.clone()).expect("a string value")
}

fn int(v: &OwnedVariant) -> i32 {
    i32::try_from(v.clone()).expect("an int32 value")
}

#[tokio::test]
async fn v2_device_registers_and_gets_the_python_drivers_reply() {
    let world = World::start().await;
    let mut device = world.device("fe001").await;
    device
        .send(
            "Status",
            r#"{"clientId": "fe001", "connected": 1, "version": "v1.0", "services": {"t1": "temperature", "tk1": "tank"}}"#,
        )
        .await;
    let reply = device.expect("device/fe001/DBus").await;
    let v1 = device.expect("device/fe001/DeviceInstance").await;

    let parsed: serde_json::Value = serde_json::from_str(&reply.payload).unwrap();
    let t1 = parsed["deviceInstance"]["t1"].as_u64().unwrap();
    let tk1 = parsed["deviceInstance"]["tk1"].as_u64().unwrap();
    // Byte for byte what the Python driver's json.dumps wrote.
    let expected = format!(
        concat!(
            r#"{{"portalId": "{p}", "deviceInstance": {{"t1": {t1}, "tk1": {tk1}}}, "topicPath": "#,
            r#"{{"t1": {{"N": "N/{p}/temperature/{t1}", "R": "R/{p}/temperature/{t1}", "W": "W/{p}/temperature/{t1}"}}, "#,
            r#""tk1": {{"N": "N/{p}/tank/{tk1}", "R": "R/{p}/tank/{tk1}", "W": "W/{p}/tank/{tk1}"}}}}}}"#
        ),
        p = PORTAL,
        t1 = t1,
        tk1 = tk1
    );
    assert_eq!(reply.payload, expected);
    assert_eq!(v1.payload, format!(r#"{{"t1": {t1}, "tk1": {tk1}}}"#));
    assert!(!reply.retained);

    let name = "com.victronenergy.temperature.mqtt_fe001_t1";
    let c = &world.conn;
    assert_eq!(int(&get_value(c, name, "/DeviceInstance").await) as u64, t1);
    assert_eq!(int(&get_value(c, name, "/Connected").await), 1);
    assert_eq!(
        text(&get_value(c, name, "/Mgmt/Connection").await),
        "MQTT:fe001"
    );
    assert_eq!(
        text(&get_value(c, name, "/Mgmt/ProcessName").await),
        "dbus-mqtt-devices"
    );
    assert_eq!(text(&get_value(c, name, "/DeviceName").await), "fe001:t1");
    assert_eq!(text(&get_value(c, name, "/FirmwareVersion").await), "v1.0");
    assert_eq!(
        text(&get_value(c, name, "/CustomName").await),
        "My Temperature Sensor"
    );
    assert!(!text(&get_value(c, name, "/ProductName").await).is_empty());
    assert!(owner(c, "com.victronenergy.tank.mqtt_fe001_tk1")
        .await
        .is_some());

    // A value written the way the gateway writes it (int32 on a float path).
    assert_eq!(
        set_value(c, name, "/Temperature", Variant::I32(22)).await,
        0
    );
    assert_eq!(
        f64::try_from(get_value(c, name, "/Temperature").await).unwrap(),
        22.0
    );
}

#[tokio::test]
async fn v1_device_gets_its_device_instances() {
    let world = World::start().await;
    let mut device = world.device("dev1").await;
    device
        .send(
            "Status",
            r#"{"clientid": "dev1", "connected": 1, "services": {"t1": "temperature"}}"#,
        )
        .await;
    let v1 = device.expect("device/dev1/DeviceInstance").await;
    let parsed: serde_json::Value = serde_json::from_str(&v1.payload).unwrap();
    assert!(parsed["t1"].as_u64().is_some(), "{}", v1.payload);
}

#[tokio::test]
async fn disconnect_removes_every_service_and_keeps_settings() {
    let world = World::start().await;
    let mut device = world.device("fe002").await;
    let first = device
        .register(r#"{"t1": "temperature", "t2": "temperature"}"#)
        .await;
    let name = "com.victronenergy.temperature.mqtt_fe002_t1";
    assert!(owner(&world.conn, name).await.is_some());

    device
        .send("Status", r#"{"clientId": "fe002", "connected": 0}"#)
        .await;
    wait_name_gone(&world.conn, name).await;
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_fe002_t2").await;
    assert!(device_services(&world.conn).await.is_empty());

    // Back again: the same instances, from localsettings.
    let again = device
        .register(r#"{"t1": "temperature", "t2": "temperature"}"#)
        .await;
    assert_eq!(first["deviceInstance"], again["deviceInstance"]);
    assert_ne!(
        first["deviceInstance"]["t1"], first["deviceInstance"]["t2"],
        "two services of one type get distinct instances"
    );
}

#[tokio::test]
async fn instances_and_custom_names_survive_a_daemon_restart() {
    let mut world = World::start().await;
    let mut device = world.device("fe003").await;
    let first = device.register(r#"{"t1": "temperature"}"#).await;
    let name = "com.victronenergy.temperature.mqtt_fe003_t1";
    // The GUI renames the sensor.
    assert_eq!(
        set_value(&world.conn, name, "/CustomName", Variant::from("Fridge")).await,
        0
    );
    let stored = get_setting(&world, "/Settings/MqttDevices/mqtt_fe003_t1/CustomName").await;
    assert_eq!(stored, "Fridge");

    world.stop_daemon().await;
    wait_name_gone(&world.conn, name).await;
    world.start_daemon().await;
    let again = device.register(r#"{"t1": "temperature"}"#).await;
    assert_eq!(first["deviceInstance"], again["deviceInstance"]);
    assert_eq!(
        text(&get_value(&world.conn, name, "/CustomName").await),
        "Fridge"
    );
}

async fn get_setting(world: &World, path: &str) -> String {
    text(&get_value(&world.conn, "com.victronenergy.settings", path).await)
}

#[tokio::test]
async fn a_settings_change_made_elsewhere_reaches_the_service() {
    let world = World::start().await;
    let mut device = world.device("fe004").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    let setting = "/Settings/MqttDevices/mqtt_fe004_t1/CustomName";
    assert_eq!(
        set_value(
            &world.conn,
            "com.victronenergy.settings",
            setting,
            Variant::from("Freezer")
        )
        .await,
        0
    );
    let name = "com.victronenergy.temperature.mqtt_fe004_t1";
    // The service follows PropertiesChanged of its settings; await the signal on the service.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if text(&get_value(&world.conn, name, "/CustomName").await) == "Freezer" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "custom name not applied"
        );
        wait_properties_changed(&world.conn, name, "/CustomName").await;
    }
}

/// Waits for one PropertiesChanged of `path` on `service` (or WAIT).
async fn wait_properties_changed(conn: &zbus::Connection, service: &str, path: &str) {
    use futures_util::StreamExt;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(service)
        .interface("com.victronenergy.BusItem")
        .member("PropertiesChanged")
        .path(path)
        .build()
        .expect("match rule");
    let mut stream = zbus::MessageStream::for_match_rule(rule, conn, None)
        .await
        .unwrap();
    let _ = tokio::time::timeout(WAIT, stream.next()).await;
}

#[tokio::test]
async fn re_registration_reconciles_without_touching_unchanged_services() {
    let world = World::start().await;
    let mut device = world.device("fe005").await;
    device
        .register(r#"{"t1": "temperature", "t2": "tank"}"#)
        .await;
    let t1 = "com.victronenergy.temperature.mqtt_fe005_t1";
    let owner_before = owner(&world.conn, t1).await.unwrap();

    // Same list again: nothing changes.
    device
        .register(r#"{"t1": "temperature", "t2": "tank"}"#)
        .await;
    assert_eq!(owner(&world.conn, t1).await.unwrap(), owner_before);

    // t2 dropped, t3 added: t1 keeps its connection (no flicker on the GUI).
    let reply = device
        .register(r#"{"t1": "temperature", "t3": "pvinverter"}"#)
        .await;
    wait_name_gone(&world.conn, "com.victronenergy.tank.mqtt_fe005_t2").await;
    assert_eq!(owner(&world.conn, t1).await.unwrap(), owner_before);
    assert!(
        owner(&world.conn, "com.victronenergy.pvinverter.mqtt_fe005_t3")
            .await
            .is_some()
    );
    let ids: Vec<&String> = reply["deviceInstance"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(ids, ["t1", "t3"]);
}

#[tokio::test]
async fn lwt_topic_with_its_value_removes_the_device() {
    let world = World::start().await;
    let mut device = world.device("shelly1").await;
    device
        .send(
            "Status",
            r#"{"clientId": "shelly1", "connected": 1, "lwt_topic": "shelly1/online", "lwt_value": "false", "services": {"g1": "grid"}}"#,
        )
        .await;
    device.expect_dbus_reply().await;
    let name = "com.victronenergy.grid.mqtt_shelly1_g1";
    assert!(owner(&world.conn, name).await.is_some());
    // Another payload on the topic is not the will.
    device.publish("shelly1/online", "true").await;
    device.publish("shelly1/online", "false").await;
    wait_name_gone(&world.conn, name).await;
}

#[tokio::test]
async fn mqtt_last_will_status_removes_the_device() {
    let world = World::start().await;
    let will = r#"{"clientId": "fe006", "connected": 0}"#;
    let mut device = TestDevice::connect_with(
        world.port(),
        "fe006",
        Some(("device/fe006/Status", will)),
        &["device/fe006/#"],
    )
    .await;
    device.register(r#"{"t1": "temperature"}"#).await;
    let name = "com.victronenergy.temperature.mqtt_fe006_t1";
    assert!(owner(&world.conn, name).await.is_some());
    device.vanish();
    // The broker publishes the will after the keep-alive runs out.
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        wait_name_gone(&world.conn, name),
    )
    .await
    .expect("last will removed the device");
}

#[tokio::test]
async fn client_ids_with_dashes_get_a_stable_legal_id() {
    let world = World::start().await;
    let mut device = world.device("ESP32-ABC123").await;
    let reply = device.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64());
    let services = device_services(&world.conn).await;
    assert_eq!(services.len(), 1, "{services:?}");
    assert!(
        services[0].starts_with("com.victronenergy.temperature.mqtt_ESP32_ABC123_x"),
        "{services:?}"
    );
    let name = services[0].clone();
    assert_eq!(
        text(&get_value(&world.conn, &name, "/Mgmt/Connection").await),
        "MQTT:ESP32-ABC123"
    );
}

#[tokio::test]
async fn the_daemon_reconnects_after_the_broker_restarts() {
    let mut world = World::start().await;
    let port = world.port();
    let mut device = world.device("fe007").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    let t1 = "com.victronenergy.temperature.mqtt_fe007_t1";

    world.broker.take().unwrap().kill().await;
    // Registrations stay on D-Bus while the broker is away.
    assert!(owner(&world.conn, t1).await.is_some());
    world.broker = Some(TestBroker::start_on(port).await);

    // The daemon announces itself again once resubscribed; then a new device registers.
    let mut watcher =
        TestDevice::connect_with(port, "watch", None, &["dbus-mqtt-devices/status"]).await;
    let online = watcher.expect("dbus-mqtt-devices/status").await;
    assert!(
        online.payload.contains("\"online\": 1"),
        "{}",
        online.payload
    );
    let mut other = world.device("fe008").await;
    let reply = other.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64());
    assert!(owner(&world.conn, t1).await.is_some());
}

#[tokio::test]
async fn a_settings_service_that_starts_late_is_awaited() {
    let bus = super::support::TestBus::start().await;
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(Daemon::config(&bus, broker.port, dir.path()));
    let mut watcher =
        TestDevice::connect_with(broker.port, "watch", None, &["dbus-mqtt-devices/status"]).await;
    // Only now does localsettings appear.
    let settings = Settings::start(&bus, &dir.path().join("settings")).await;
    let online = watcher.expect("dbus-mqtt-devices/status").await;
    assert!(online.payload.contains("\"online\": 1"));
    let mut device = TestDevice::connect(broker.port, "late1").await;
    let reply = device.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64());
    daemon.stop().await;
    settings.stop().await;
}

#[tokio::test]
async fn instance_requests_follow_localsettings_allocation() {
    let world = World::start().await;
    let mut a = world.device("inst_a").await;
    let mut b = world.device("inst_b").await;
    let ra = a
        .register(r#"{"t1": {"type": "temperature", "instance": 20}}"#)
        .await;
    let rb = b
        .register(r#"{"t1": {"type": "temperature", "instance": 20}}"#)
        .await;
    assert_eq!(ra["deviceInstance"]["t1"], json!(20));
    assert_eq!(rb["deviceInstance"]["t1"], json!(21));
}

#[tokio::test]
async fn stopping_the_daemon_removes_its_services_within_two_seconds() {
    let mut world = World::start().await;
    let mut device = world.device("fe009").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    // stop_daemon asserts the 2 s limit.
    world.stop_daemon().await;
    assert!(device_services(&world.conn).await.is_empty());
}

#[tokio::test]
async fn the_portal_id_is_learned_from_the_gateways_retained_serial() {
    let mut world = World::start().await;
    world.stop_daemon().await;
    // What both Venus gateways keep retained.
    let gateway = world.device("gateway").await;
    gateway
        .publish_retained(
            "N/abcdef123456/system/0/Serial",
            r#"{"value": "abcdef123456"}"#,
        )
        .await;
    let mut config = world.config();
    config.portal_id = None;
    world.start_daemon_with(config).await;
    let mut device = world.device("fe010").await;
    let reply = device.register(r#"{"t1": "temperature"}"#).await;
    assert_eq!(reply["portalId"], "abcdef123456");
    assert!(reply["topicPath"]["t1"]["W"]
        .as_str()
        .unwrap()
        .starts_with("W/abcdef123456/temperature/"));
}
