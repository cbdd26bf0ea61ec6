//! Mapped devices over time: restarts (same instance, the user's name, the
//! integrated energy, no duplicates), reloads on file change and SIGHUP
//! (unchanged devices untouched), declarations on topics, writes back to
//! the device.

use super::mapped::*;
use super::world::*;
use zbus::Variant;

const SETTINGS: &str = "com.victronenergy.settings";

fn float(v: zbus::OwnedVariant) -> f64 {
    f64::try_from(v).expect("a double")
}

const PLUG_AND_HEATER: &str = r#"
[[device]]
id = "plug"
service = "acload"
preset = "tasmota-energy"
topic = "tasmota_8A1B2C"
name = "Fridge plug"
instance = 30

[[device]]
id = "heater"
service = "acload"
name = "Heater"
availability = { topic = "heater/status" }
[[device.source]]
topic = "heater/power"
"/Ac/Power" = "$"
"/Ac/Energy/Forward" = { integrate = "/Ac/Power" }
"#;

#[tokio::test]
async fn a_restart_keeps_instance_the_users_name_and_the_integrated_energy() {
    let mut world = world_declaring(PLUG_AND_HEATER).await;
    world.start_daemon().await;
    let feed = feeder(&world).await;
    let plug = svc("acload", "plug");
    let heater = svc("acload", "heater");

    expect_text(&world, &plug, "/CustomName", "Fridge plug").await;
    expect_f64(&world, &plug, "/DeviceInstance", 30.0).await;
    // The user names it on the GX: stored in localsettings.
    let code = set_value(
        &world.conn,
        &plug,
        "/CustomName",
        Variant::from("Galley fridge"),
    )
    .await;
    assert_eq!(code, 0);
    expect_text(
        &world,
        SETTINGS,
        "/Settings/MqttDevices/mqtt_plug/CustomName",
        "Galley fridge",
    )
    .await;
    expect_text(
        &world,
        SETTINGS,
        "/Settings/Devices/mqtt_plug/ClassAndVrmInstance",
        "acload:30",
    )
    .await;

    // The user moves it to another instance on the GX: served again under it.
    let mut log = NameLog::start(&world.conn).await;
    let code = set_value(
        &world.conn,
        SETTINGS,
        "/Settings/Devices/mqtt_plug/ClassAndVrmInstance",
        Variant::from("acload:33"),
    )
    .await;
    assert_eq!(code, 0);
    log.until_seen("the plug registered again", |l| {
        l.released.contains(&plug) && l.owned.contains(&plug)
    })
    .await;
    expect_f64(&world, &plug, "/DeviceInstance", 33.0).await;
    expect_text(&world, &plug, "/CustomName", "Galley fridge").await;

    // Energy integrated from power (3.6 MW: a kWh a second, so the few
    // milliseconds between two messages count).
    feed.publish_retained("heater/status", "online").await;
    expect_connected(&world, &heater, true).await;
    feed.publish("heater/power", "3600000").await;
    expect_f64(&world, &heater, "/Ac/Power", 3_600_000.0).await;
    feed.publish("heater/power", "3600000.5").await;
    let grown = wait_for_value(&world.conn, &heater, "/Ac/Energy/Forward", |v| {
        f64::try_from(v.try_clone().expect("clone")).is_ok_and(|x| x > 0.0)
    })
    .await;
    let grown = float(grown);

    world.stop_daemon().await;
    assert!(device_services(&world.conn).await.is_empty());
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.data_dir().join("mapped-energy.json")).expect("energy file"),
    )
    .expect("energy json");
    let saved = saved["heater"]["/Ac/Energy/Forward"]
        .as_f64()
        .expect("the heater's counter");
    assert!(saved >= grown, "saved {saved} < shown {grown}");

    // Declared again with another default name, then the daemon restarts.
    std::fs::write(
        world.data_dir().join("devices.toml"),
        PLUG_AND_HEATER.replace("Fridge plug", "Plug"),
    )
    .expect("devices.toml");
    world.start_daemon().await;
    expect_text(&world, &plug, "/CustomName", "Galley fridge").await;
    expect_f64(&world, &plug, "/DeviceInstance", 33.0).await;
    // The counter continues from what was saved (no power since: no growth).
    expect_f64(&world, &heater, "/Ac/Energy/Forward", saved).await;
    assert_eq!(device_services(&world.conn).await, [heater, plug]);
}

const THREE_NODES: &str = r#"
[[device]]
id = "node_a"
service = "temperature"
preset = "esphome"
topic = "node_a"
sensors = { "/Temperature" = "t" }

[[device]]
id = "node_c"
service = "temperature"
preset = "esphome"
topic = "node_c"
sensors = { "/Temperature" = "t" }
"#;

const NODE_B: &str = r#"
[[device]]
id = "node_b"
service = "tank"
preset = "esphome"
topic = "node_b"
sensors = { "/Level" = "level" }
"#;

#[tokio::test]
async fn files_are_reloaded_when_they_change_and_on_sighup_touching_only_what_changed() {
    let mut world = world_declaring(THREE_NODES).await;
    world.start_daemon().await;
    let feed = feeder(&world).await;
    let a = svc("temperature", "node_a");
    let b = svc("tank", "node_b");
    let c = svc("temperature", "node_c");
    feed.publish_retained("node_a/status", "online").await;
    expect_connected(&world, &a, true).await;
    feed.publish("node_a/sensor/t/state", "18.5").await;
    expect_f64(&world, &a, "/Temperature", 18.5).await;
    wait_name_owned(&world.conn, &c).await;
    let mut log = NameLog::start(&world.conn).await;

    // node_c removed, node_b added in devices.d, a broken file beside it.
    let only_a = THREE_NODES
        .split("[[device]]")
        .filter(|d| !d.contains("node_c"))
        .collect::<Vec<_>>()
        .join("[[device]]");
    let dir = world.data_dir();
    std::fs::create_dir_all(dir.join("devices.d")).expect("devices.d");
    std::fs::write(dir.join("devices.d/b.toml"), NODE_B).expect("b.toml");
    std::fs::write(
        dir.join("devices.d/broken.toml"),
        "[[device]]\nid = \"broken\"\nservice = \"tank\"\npreset = \"nope\"\n",
    )
    .expect("broken.toml");
    std::fs::write(dir.join("devices.toml"), &only_a).expect("devices.toml");
    log.until("node_b on D-Bus and node_c gone", |owned| {
        owned.contains(&b) && !owned.contains(&c)
    })
    .await;
    // node_a was not touched: never left D-Bus, its value still there.
    assert!(!log.released.contains(&a), "{:?}", log.released);
    expect_f64(&world, &a, "/Temperature", 18.5).await;
    assert_eq!(device_services(&world.conn).await, [b.clone(), a.clone()]);

    // SIGHUP: a change the file poll cannot see (same size, same mtime).
    let path = dir.join("devices.d/b.toml");
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let renamed = NODE_B.replace("node_b", "node_d");
    assert_eq!(renamed.len(), NODE_B.len());
    std::fs::write(&path, &renamed).expect("b.toml");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(modified))
        .expect("set mtime");
    let d = svc("tank", "node_d");
    // SAFETY: kill() with our own pid and a signal the daemon catches.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    log.until("node_d instead of node_b", |owned| {
        owned.contains(&d) && !owned.contains(&b)
    })
    .await;
    assert!(!log.released.contains(&a), "{:?}", log.released);
    assert_eq!(device_services(&world.conn).await, [d, a]);
}

#[tokio::test]
async fn declarations_on_topics_come_and_go_and_a_file_wins() {
    let mut world = world_declaring(
        "[[device]]\nid = \"filed\"\nservice = \"temperature\"\npreset = \"esphome\"\ntopic = \"node_f\"\nsensors = { \"/Temperature\" = \"t\" }\nname = \"From the file\"\n",
    )
    .await;
    let feed = feeder(&world).await;
    // Declared before the daemon starts, retained: served at start.
    feed.publish_retained(
        "dbus-mqtt-devices/mapped/early",
        r#"{"service": "tank", "preset": "esphome", "topic": "node_e", "sensors": {"/Level": "level"}}"#,
    )
    .await;
    world.start_daemon().await;
    let filed = svc("temperature", "filed");
    let early = svc("tank", "early");
    let topical = svc("temperature", "topical");
    wait_name_owned(&world.conn, &early).await;
    wait_name_owned(&world.conn, &filed).await;
    let mut log = NameLog::start(&world.conn).await;

    feed.publish_retained(
        "dbus-mqtt-devices/mapped/topical",
        r#"{"service": "temperature", "preset": "zigbee2mqtt", "topic": "zigbee2mqtt/cabin", "name": "Cabin"}"#,
    )
    .await;
    expect_text(&world, &topical, "/CustomName", "Cabin").await;
    feed.publish("zigbee2mqtt/cabin", r#"{"temperature": 19.25}"#)
        .await;
    expect_f64(&world, &topical, "/Temperature", 19.25).await;

    // The same id as a file's device: the file wins, the service is untouched.
    feed.publish_retained(
        "dbus-mqtt-devices/mapped/filed",
        r#"{"service": "tank", "preset": "esphome", "topic": "x", "sensors": {"/Level": "l"}}"#,
    )
    .await;
    // A broken declaration changes nothing else.
    feed.publish_retained("dbus-mqtt-devices/mapped/bad", r#"{"service": "nope"}"#)
        .await;
    // Withdrawn: an empty retained payload.
    feed.publish_retained("dbus-mqtt-devices/mapped/topical", "")
        .await;
    wait_name_gone(&world.conn, &topical).await;
    log.update();
    assert!(!log.released.contains(&filed));
    assert!(!log.ever.contains(&svc("tank", "filed")));
    expect_text(&world, &filed, "/CustomName", "From the file").await;
    assert_eq!(device_services(&world.conn).await, [early, filed]);
}

#[tokio::test]
async fn a_write_on_the_gx_is_published_to_the_device() {
    let mut world = world_declaring(
        "[[device]]\nid = \"hm800\"\nservice = \"pvinverter\"\npreset = \"opendtu\"\nserial = \"116181234567\"\n",
    )
    .await;
    world.start_daemon().await;
    let mut dtu =
        TestDevice::connect_with(world.port(), "opendtu", None, &["solar/116181234567/cmd/#"])
            .await;
    let s = svc("pvinverter", "hm800");
    wait_name_owned(&world.conn, &s).await;

    let code = set_value(&world.conn, &s, "/Ac/PowerLimit", Variant::from(250.0)).await;
    assert_eq!(code, 0);
    let sent = dtu
        .expect("solar/116181234567/cmd/limit_nonpersistent_absolute")
        .await;
    assert_eq!(sent.payload, "250");
    assert!(!sent.retained);

    // Below the declared minimum: raised to it, and shown as sent.
    let code = set_value(&world.conn, &s, "/Ac/PowerLimit", Variant::from(2.0)).await;
    assert_eq!(code, 0);
    let sent = dtu
        .expect("solar/116181234567/cmd/limit_nonpersistent_absolute")
        .await;
    assert_eq!(sent.payload, "5");
    expect_f64(&world, &s, "/Ac/PowerLimit", 5.0).await;
    // The inverter reports its limit: that is what D-Bus shows.
    dtu.publish("solar/116181234567/status/limit_absolute", "300")
        .await;
    expect_f64(&world, &s, "/Ac/PowerLimit", 300.0).await;
}
