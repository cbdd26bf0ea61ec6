//! Protocol v3: direct values, two-way control, liveness, rich declarations,
//! driver presence and surviving a restart of the daemon.

use super::world::*;
use futures_util::StreamExt;
use serde_json::json;
use zbus::{OwnedVariant, Variant};

fn float(v: OwnedVariant) -> f64 {
    f64::try_from(v).expect("a double")
}

fn int(v: OwnedVariant) -> i32 {
    i32::try_from(v).expect("an int32")
}

fn text(v: OwnedVariant) -> String {
    String::try_from(v).expect("a string")
}

fn is_invalid(v: &OwnedVariant) -> bool {
    // Invalid is an empty array of int32.
    v.value_signature().to_string() == "ai"
}

/// A stream of the ItemsChanged signals of one service.
async fn items_changed(conn: &zbus::Connection, service: &str) -> zbus::MessageStream {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(service)
        .interface("com.victronenergy.BusItem")
        .member("ItemsChanged")
        .path("/")
        .build()
        .expect("match rule");
    zbus::MessageStream::for_match_rule(rule, conn, None)
        .await
        .expect("signal stream")
}

async fn next_items(
    stream: &mut zbus::MessageStream,
) -> std::collections::HashMap<String, std::collections::HashMap<String, OwnedVariant>> {
    let message = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an ItemsChanged signal")
        .expect("stream open")
        .expect("a message");
    message.body().deserialize().expect("a{sa{sv}}")
}

#[tokio::test]
async fn values_set_paths_directly_with_one_items_changed_per_service() {
    let world = World::start().await;
    let mut device = world.device("v3val").await;
    device
        .register(r#"{"t1": "temperature", "tk1": "tank"}"#)
        .await;
    let t1 = "com.victronenergy.temperature.mqtt_v3val_t1";
    let mut signals = items_changed(&world.conn, t1).await;

    device
        .send(
            "Values",
            r#"{"t1": {"Temperature": 21.5, "Humidity": "40"}, "tk1": {"Level": 55}}"#,
        )
        .await;
    let items = next_items(&mut signals).await;
    assert!(
        items.contains_key("/Temperature") && items.contains_key("/Humidity"),
        "{items:?}"
    );
    assert_eq!(
        float(get_value(&world.conn, t1, "/Temperature").await),
        21.5
    );
    // "40" on a numeric path is coerced, as SetValue would.
    assert_eq!(float(get_value(&world.conn, t1, "/Humidity").await), 40.0);
    let tk1 = "com.victronenergy.tank.mqtt_v3val_tk1";
    assert_eq!(float(get_value(&world.conn, tk1, "/Level").await), 55.0);
}

#[tokio::test]
async fn bad_values_are_refused_per_field_and_the_rest_applies() {
    let world = World::start().await;
    let mut device = world.device("v3bad").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    let t1 = "com.victronenergy.temperature.mqtt_v3bad_t1";
    device
        .send(
            "Values",
            r#"{"t1": {"Temperature": 19.5, "Humidity": "NaN", "NoSuchPath": 1}, "zz": {"Level": 1}}"#,
        )
        .await;
    let mut errors = Vec::new();
    for _ in 0..3 {
        errors.push(device.expect_error().await);
    }
    let codes: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e["error"].as_str().unwrap().to_owned(),
                e["path"]
                    .as_str()
                    .or(e["service"].as_str())
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert!(
        codes.contains(&("invalid_value".into(), "Humidity".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("invalid_field".into(), "NoSuchPath".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("not_registered".into(), "zz".into())),
        "{codes:?}"
    );
    assert_eq!(
        float(get_value(&world.conn, t1, "/Temperature").await),
        19.5
    );
}

#[tokio::test]
async fn a_write_on_the_gx_reaches_the_device() {
    let world = World::start().await;
    let mut device = world.device("v3ev").await;
    device.register(r#"{"ev1": "evcharger"}"#).await;
    let ev = "com.victronenergy.evcharger.mqtt_v3ev_ev1";
    // The GUI sets the charging current.
    assert_eq!(
        set_value(&world.conn, ev, "/SetCurrent", Variant::I32(16)).await,
        0
    );
    let write = device.expect("device/v3ev/Write").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&write.payload).unwrap(),
        json!({"service": "ev1", "path": "SetCurrent", "value": 16})
    );
    // It is a setting too: stored in localsettings.
    let setting = get_value(
        &world.conn,
        "com.victronenergy.settings",
        "/Settings/MqttDevices/mqtt_v3ev_ev1/SetCurrent",
    )
    .await;
    assert_eq!(int(setting), 16);
    // A measured value written over D-Bus is not echoed back.
    assert_eq!(
        set_value(&world.conn, ev, "/Ac/Power", Variant::F64(1000.0)).await,
        0
    );
    assert_eq!(
        set_value(&world.conn, ev, "/StartStop", Variant::I32(1)).await,
        0
    );
    let next = device.expect("device/v3ev/Write").await;
    assert!(next.payload.contains("StartStop"), "{}", next.payload);
}

#[tokio::test]
async fn a_silent_device_is_invalidated_then_restored_by_its_next_value() {
    let world = World::start().await;
    let mut device = world.device("v3live").await;
    device
        .send(
            "Status",
            r#"{"clientId": "v3live", "connected": 1, "timeout": 0.5, "services": {"t1": "temperature"}}"#,
        )
        .await;
    device.expect_dbus_reply().await;
    let t1 = "com.victronenergy.temperature.mqtt_v3live_t1";
    let mut signals = items_changed(&world.conn, t1).await;
    device
        .send("Values", r#"{"t1": {"Temperature": 5.5}}"#)
        .await;
    next_items(&mut signals).await;

    // Silence: the daemon marks the service disconnected and its values invalid.
    let items = next_items(&mut signals).await;
    assert!(items.contains_key("/Connected"), "{items:?}");
    assert_eq!(int(get_value(&world.conn, t1, "/Connected").await), 0);
    assert!(is_invalid(
        &get_value(&world.conn, t1, "/Temperature").await
    ));
    // The service stays on the bus.
    assert!(owner(&world.conn, t1).await.is_some());

    device
        .send("Values", r#"{"t1": {"Temperature": 6.5}}"#)
        .await;
    next_items(&mut signals).await;
    assert_eq!(int(get_value(&world.conn, t1, "/Connected").await), 1);
    assert_eq!(float(get_value(&world.conn, t1, "/Temperature").await), 6.5);
}

#[tokio::test]
async fn liveness_policy_remove_takes_the_services_off_the_bus() {
    let world = World::start().await;
    let mut device = world.device("v3gone").await;
    device
        .send(
            "Status",
            r#"{"clientId": "v3gone", "connected": 1, "timeout": 0.3, "liveness": "remove", "services": {"t1": "temperature"}}"#,
        )
        .await;
    device.expect_dbus_reply().await;
    let t1 = "com.victronenergy.temperature.mqtt_v3gone_t1";
    wait_name_gone(&world.conn, t1).await;
    // The next value brings it back.
    device
        .send("Values", r#"{"t1": {"Temperature": 1.5}}"#)
        .await;
    wait_name_owned(&world.conn, t1).await;
}

#[tokio::test]
async fn a_rich_declaration_sets_name_instance_settings_and_product() {
    let world = World::start().await;
    let mut device = world.device("v3rich").await;
    let reply = device
        .register(
            r#"{"t1": {"type": "temperature", "name": "Fridge", "instance": 30, "settings": {"TemperatureType": 1}, "product": "Fridge probe"}}"#,
        )
        .await;
    assert_eq!(reply["deviceInstance"]["t1"], json!(30));
    let t1 = "com.victronenergy.temperature.mqtt_v3rich_t1";
    assert_eq!(
        text(get_value(&world.conn, t1, "/CustomName").await),
        "Fridge"
    );
    assert_eq!(int(get_value(&world.conn, t1, "/TemperatureType").await), 1);
    assert_eq!(
        text(get_value(&world.conn, t1, "/ProductName").await),
        "Fridge probe"
    );

    // The user renames it on the GX: a later declaration does not undo that.
    assert_eq!(
        set_value(&world.conn, t1, "/CustomName", Variant::from("Beer fridge")).await,
        0
    );
    device
        .send("Status", r#"{"clientId": "v3rich", "connected": 0}"#)
        .await;
    wait_name_gone(&world.conn, t1).await;
    device
        .register(r#"{"t1": {"type": "temperature", "name": "Fridge", "settings": {"TemperatureType": 4}}}"#)
        .await;
    assert_eq!(
        text(get_value(&world.conn, t1, "/CustomName").await),
        "Beer fridge"
    );
    assert_eq!(int(get_value(&world.conn, t1, "/TemperatureType").await), 1);
}

#[tokio::test]
async fn presence_topic_is_online_while_running_and_offline_after() {
    let mut world = World::start().await;
    let mut watcher = TestDevice::connect_with(
        world.port(),
        "presence",
        None,
        &["dbus-mqtt-devices/status"],
    )
    .await;
    let online = watcher.expect("dbus-mqtt-devices/status").await;
    assert!(online.retained);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&online.payload).unwrap(),
        json!({"online": 1, "version": env!("CARGO_PKG_VERSION"), "portalId": PORTAL})
    );
    world.stop_daemon().await;
    let offline = watcher.expect("dbus-mqtt-devices/status").await;
    assert!(
        offline.payload.contains("\"online\": 0"),
        "{}",
        offline.payload
    );
}

#[tokio::test]
async fn connected_devices_come_back_after_a_daemon_restart_without_doing_anything() {
    let mut world = World::start().await;
    let mut device = world.device("v3stay").await;
    let first = device
        .register(r#"{"t1": "temperature", "tk1": "tank"}"#)
        .await;
    let t1 = "com.victronenergy.temperature.mqtt_v3stay_t1";
    let tk1 = "com.victronenergy.tank.mqtt_v3stay_tk1";
    world.stop_daemon().await;
    wait_name_gone(&world.conn, t1).await;

    world.start_daemon().await;
    wait_name_owned(&world.conn, t1).await;
    wait_name_owned(&world.conn, tk1).await;
    assert_eq!(
        i64::from(int(get_value(&world.conn, t1, "/DeviceInstance").await)),
        first["deviceInstance"]["t1"].as_i64().unwrap()
    );
    // The device is told again, as after any registration.
    let again = device.expect_dbus_reply().await;
    assert_eq!(again["deviceInstance"], first["deviceInstance"]);
}

#[tokio::test]
async fn a_restored_device_that_never_shows_up_is_removed() {
    let mut world = World::start().await;
    let mut device = world.device("v3stale").await;
    device
        .send(
            "Status",
            r#"{"clientId": "v3stale", "connected": 1, "timeout": 0.5, "liveness": "keep", "services": {"t1": "temperature"}}"#,
        )
        .await;
    device.expect_dbus_reply().await;
    device.disconnect().await;
    world.stop_daemon().await;
    let t1 = "com.victronenergy.temperature.mqtt_v3stale_t1";
    world.start_daemon().await;
    // Back from the state file, then gone: no sign of life within its timeout.
    wait_name_owned(&world.conn, t1).await;
    wait_name_gone(&world.conn, t1).await;
}

#[tokio::test]
async fn a_retained_status_is_enough_to_come_back() {
    let mut world = World::start().await;
    let device = world.device("v3ret").await;
    let status = r#"{"clientId": "v3ret", "connected": 1, "services": {"t1": "temperature"}}"#;
    device.publish_retained("device/v3ret/Status", status).await;
    let t1 = "com.victronenergy.temperature.mqtt_v3ret_t1";
    wait_name_owned(&world.conn, t1).await;
    world.stop_daemon().await;
    std::fs::remove_file(world.dir.path().join("daemon/state.json")).expect("state file exists");
    world.start_daemon().await;
    wait_name_owned(&world.conn, t1).await;
}

#[tokio::test]
async fn a_status_after_silence_reconnects_the_services() {
    let world = World::start().await;
    let mut device = world.device("v3back").await;
    let status = r#"{"clientId": "v3back", "connected": 1, "timeout": 0.3, "services": {"t1": "temperature"}}"#;
    device.send("Status", status).await;
    device.expect_dbus_reply().await;
    let t1 = "com.victronenergy.temperature.mqtt_v3back_t1";
    let mut signals = items_changed(&world.conn, t1).await;
    // Silence marks it disconnected.
    next_items(&mut signals).await;
    assert_eq!(int(get_value(&world.conn, t1, "/Connected").await), 0);
    // The device announces itself again (e.g. after a reconnect) without a value yet.
    device.send("Status", status).await;
    device.expect_dbus_reply().await;
    assert_eq!(int(get_value(&world.conn, t1, "/Connected").await), 1);
}

#[tokio::test]
async fn a_flood_of_values_still_ends_with_the_last_value_sent() {
    let world = World::start().await;
    let mut device = world.device("v3flood").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    let t1 = "com.victronenergy.temperature.mqtt_v3flood_t1";
    let mut signals = items_changed(&world.conn, t1).await;
    // Far more than the device's queue holds, as fast as the broker takes
    // them (the test broker queues without limit, so none is lost before
    // the daemon).
    let last = 20000;
    for i in 1..=last {
        device
            .send("Values", &format!(r#"{{"t1": {{"Temperature": {i}.5}}}}"#))
            .await;
    }
    let wanted = f64::from(last) + 0.5;
    loop {
        let items = next_items(&mut signals).await;
        let value = items
            .get("/Temperature")
            .and_then(|entry| entry.get("Value"))
            .and_then(|v| f64::try_from(v.clone()).ok());
        if value == Some(wanted) {
            break;
        }
    }
    assert_eq!(
        float(get_value(&world.conn, t1, "/Temperature").await),
        wanted
    );
}

#[tokio::test]
async fn a_flood_of_partial_values_ends_with_the_last_value_of_every_path() {
    let world = World::start().await;
    let mut device = world.device("v3partial").await;
    let services = ["t1", "t2", "t3", "t4"];
    device
        .register(
            r#"{"t1": "temperature", "t2": "temperature", "t3": "temperature", "t4": "temperature"}"#,
        )
        .await;
    let t1 = "com.victronenergy.temperature.mqtt_v3partial_t1";
    let mut signals = items_changed(&world.conn, t1).await;
    // One service and one path per message, far past the device's pace: every
    // path's last message is followed by messages that do not carry it.
    let rounds = 3000;
    for i in 1..=rounds {
        for s in services {
            device
                .send("Values", &format!(r#"{{"{s}": {{"Temperature": {i}.5}}}}"#))
                .await;
            device
                .send("Values", &format!(r#"{{"{s}": {{"Humidity": {i}}}}}"#))
                .await;
        }
    }
    // Values are applied in the order sent: once the marker is on D-Bus, so is
    // everything before it.
    device.send("Values", r#"{"t1": {"Pressure": 999}}"#).await;
    loop {
        let items = next_items(&mut signals).await;
        let pressure = items
            .get("/Pressure")
            .and_then(|entry| entry.get("Value"))
            .and_then(|v| f64::try_from(v.clone()).ok());
        if pressure == Some(999.0) {
            break;
        }
    }
    for s in services {
        let name = format!("com.victronenergy.temperature.mqtt_v3partial_{s}");
        assert_eq!(
            float(get_value(&world.conn, &name, "/Temperature").await),
            f64::from(rounds) + 0.5,
            "{s} /Temperature"
        );
        assert_eq!(
            float(get_value(&world.conn, &name, "/Humidity").await),
            f64::from(rounds),
            "{s} /Humidity"
        );
    }
}
