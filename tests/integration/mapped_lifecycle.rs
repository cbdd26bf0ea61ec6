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

    // Another name (and product) in the file while the daemon runs: the
    // product shows once the file is read again, the user's name stays.
    let mut log = NameLog::start(&world.conn).await;
    std::fs::write(
        world.data_dir().join("devices.toml"),
        PLUG_AND_HEATER.replace(
            "name = \"Fridge plug\"",
            "name = \"Plug\"\nproduct = \"Sonoff S26\"",
        ),
    )
    .expect("devices.toml");
    expect_text(&world, &plug, "/ProductName", "Sonoff S26").await;
    expect_text(&world, &plug, "/CustomName", "Galley fridge").await;
    log.update();
    assert!(!log.released.contains(&plug), "{:?}", log.released);

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
        PLUG_AND_HEATER
            .replace("Fridge plug", "Plug")
            .replace("name = \"Heater\"", "name = \"Water heater\""),
    )
    .expect("devices.toml");
    world.start_daemon().await;
    // Not renamed on the GX: the new declared name, as on a reload.
    expect_text(&world, &heater, "/CustomName", "Water heater").await;
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
    // Each step waits for the daemon's next look at the files (every 2 s).
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

    // node_a reads one more sensor: the same service, kept on D-Bus, and the
    // sensor's retained value arrives (its topics are subscribed again).
    feed.publish_retained("node_a/sensor/h/state", "61.5").await;
    let more = only_a.replace(
        r#"sensors = { "/Temperature" = "t" }"#,
        r#"sensors = { "/Temperature" = "t", "/Humidity" = "h" }"#,
    );
    assert_ne!(more, only_a);
    std::fs::write(dir.join("devices.toml"), &more).expect("devices.toml");
    expect_f64(&world, &a, "/Humidity", 61.5).await;
    // Named in the file now (not on the GX before): the service takes the name.
    let named = more.replace(
        "topic = \"node_a\"",
        "topic = \"node_a\"\nname = \"Outside\"",
    );
    assert_ne!(named, more);
    std::fs::write(dir.join("devices.toml"), &named).expect("devices.toml");
    expect_text(&world, &a, "/CustomName", "Outside").await;
    log.update();
    assert!(!log.released.contains(&a), "{:?}", log.released);

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
    assert_eq!(device_services(&world.conn).await, [d.clone(), a.clone()]);

    // devices.toml saved half-edited (it does not parse): node_a stays
    // served as before. node_e, added after it, shows the files were read.
    std::fs::write(dir.join("devices.toml"), "[[device]\nid = \"node_a").expect("devices.toml");
    std::fs::write(
        dir.join("devices.d/e.toml"),
        NODE_B.replace("node_b", "node_e"),
    )
    .expect("e.toml");
    let e = svc("tank", "node_e");
    log.until("node_e on D-Bus", |owned| owned.contains(&e))
        .await;
    assert!(!log.released.contains(&a), "{:?}", log.released);
    expect_f64(&world, &a, "/Humidity", 61.5).await;
    assert_eq!(device_services(&world.conn).await, [d, e, a]);
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

#[tokio::test]
async fn a_device_that_leaves_d_bus_when_offline_comes_back_under_its_instance() {
    let mut world = world_declaring(
        "[[device]]\nid = \"meter\"\nservice = \"acload\"\npreset = \"tasmota-energy\"\ntopic = \"t1\"\non_stale = \"remove\"\ninstance = 55\n",
    )
    .await;
    world.start_daemon().await;
    let feed = feeder(&world).await;
    let s = svc("acload", "meter");
    feed.publish_retained("tele/t1/LWT", "Online").await;
    expect_connected(&world, &s, true).await;
    expect_f64(&world, &s, "/DeviceInstance", 55.0).await;
    feed.publish("tele/t1/LWT", "Offline").await;
    wait_name_gone(&world.conn, &s).await;
    // Online again (Tasmota says so first when it reconnects): back, with
    // its instance, and its values come.
    feed.publish("tele/t1/LWT", "Online").await;
    expect_connected(&world, &s, true).await;
    expect_f64(&world, &s, "/DeviceInstance", 55.0).await;
    feed.publish(
        "tele/t1/SENSOR",
        r#"{"ENERGY":{"Power":56,"Voltage":234,"Current":0.392,"Total":514.153}}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", 56.0).await;
}

#[tokio::test]
async fn the_subscriptions_are_renewed_when_the_broker_comes_back() {
    let mut world = world_declaring(
        "[[device]]\nid = \"node\"\nservice = \"temperature\"\npreset = \"esphome\"\ntopic = \"node\"\nsensors = { \"/Temperature\" = \"t\" }\n",
    )
    .await;
    world.start_daemon().await;
    let s = svc("temperature", "node");
    let feed = feeder(&world).await;
    feed.publish_retained("node/status", "online").await;
    expect_connected(&world, &s, true).await;
    feed.publish("node/status", "offline").await;
    expect_connected(&world, &s, false).await;

    let port = world.port();
    if let Some(broker) = world.broker.take() {
        broker.kill().await;
    }
    world.broker = Some(TestBroker::start_on(port).await);
    // A new broker knows no subscription: only a renewed one brings this.
    let feed = feeder(&world).await;
    feed.publish_retained("node/status", "online").await;
    expect_connected(&world, &s, true).await;
    feed.publish("node/sensor/t/state", "7.5").await;
    expect_f64(&world, &s, "/Temperature", 7.5).await;
}

#[tokio::test]
async fn a_device_that_goes_quiet_is_marked_stale_after_its_time() {
    let mut world = world_declaring(
        "[[device]]\nid = \"quiet\"\nservice = \"temperature\"\npreset = \"esphome\"\ntopic = \"quiet\"\nsensors = { \"/Temperature\" = \"t\" }\nstale_after = 1\n",
    )
    .await;
    world.start_daemon().await;
    let s = svc("temperature", "quiet");
    wait_name_owned(&world.conn, &s).await;
    let feed = feeder(&world).await;
    // Retained: the subscription is there once it is shown.
    feed.publish_retained("quiet/sensor/t/state", "4.5").await;
    expect_f64(&world, &s, "/Temperature", 4.5).await;
    feed.publish("quiet/sensor/t/state", "5.5").await;
    expect_connected(&world, &s, true).await;
    // Nothing fresh for 1 s: stale, the value invalid (the default policy).
    expect_connected(&world, &s, false).await;
    expect_invalid(&world, &s, "/Temperature").await;
    feed.publish("quiet/sensor/t/state", "6.5").await;
    expect_connected(&world, &s, true).await;
    expect_f64(&world, &s, "/Temperature", 6.5).await;
}

/// A Shelly's `online` topic, followed by a mapped device and, as its
/// `lwt_topic`, by a device of the protocol.
const SHARED_TOPIC_PLUG: &str = "[[device]]\nid = \"plug\"\nservice = \"acload\"\npreset = \"shelly-pm\"\ntopic = \"shelly1\"\n";

fn shelly_status(lwt_topic: &str) -> String {
    format!(
        r#"{{"clientId": "shelly1", "connected": 1, "lwt_topic": "{lwt_topic}", "lwt_value": "false", "services": {{"g1": "grid"}}}}"#
    )
}

#[tokio::test]
async fn a_topic_a_device_of_the_protocol_follows_too_stays_subscribed_until_neither_needs_it() {
    let mut world = world_declaring(SHARED_TOPIC_PLUG).await;
    world.start_daemon().await;
    let plug = svc("acload", "plug");
    let native = "com.victronenergy.grid.mqtt_shelly1_g1";
    let feed = feeder(&world).await;
    feed.publish_retained("shelly1/online", "true").await;
    expect_connected(&world, &plug, true).await;
    let mut device = world.device("shelly1").await;
    device
        .send("Status", &shelly_status("shelly1/online"))
        .await;
    device.expect_dbus_reply().await;
    wait_name_owned(&world.conn, native).await;

    // The device of the protocol follows another topic now (the reply
    // comes after the subscriptions changed): the mapped device still
    // hears its availability.
    device.send("Status", &shelly_status("shelly1/lwt")).await;
    device.expect_dbus_reply().await;
    feed.publish("shelly1/online", "false").await;
    expect_connected(&world, &plug, false).await;
    feed.publish("shelly1/online", "true").await;
    expect_connected(&world, &plug, true).await;

    // Both follow it again: the last will reaches both.
    device
        .send("Status", &shelly_status("shelly1/online"))
        .await;
    device.expect_dbus_reply().await;
    feed.publish("shelly1/online", "false").await;
    wait_name_gone(&world.conn, native).await;
    expect_connected(&world, &plug, false).await;

    // The device comes back; a reload removes the mapped device. The node
    // the same reload adds subscribes after the plug's topics were let go:
    // its retained availability shows the broker had both requests.
    device
        .send("Status", &shelly_status("shelly1/online"))
        .await;
    device.expect_dbus_reply().await;
    wait_name_owned(&world.conn, native).await;
    let node = svc("temperature", "node");
    feed.publish_retained("node/status", "online").await;
    std::fs::write(
        world.data_dir().join("devices.toml"),
        "[[device]]\nid = \"node\"\nservice = \"temperature\"\npreset = \"esphome\"\ntopic = \"node\"\nsensors = { \"/Temperature\" = \"t\" }\n",
    )
    .expect("devices.toml");
    expect_connected(&world, &node, true).await;
    wait_name_gone(&world.conn, &plug).await;
    // The last will of the device of the protocol still arrives.
    feed.publish("shelly1/online", "false").await;
    wait_name_gone(&world.conn, native).await;
}

#[tokio::test]
async fn renaming_a_device_in_its_file_keeps_it_connected() {
    const METER: &str = "[[device]]\nid = \"meter\"\nservice = \"acload\"\n[[device.source]]\ntopic = \"meter/power\"\n\"/Ac/Power\" = \"$\"\n";
    let mut world = world_declaring(METER).await;
    world.start_daemon().await;
    let s = svc("acload", "meter");
    wait_name_owned(&world.conn, &s).await;
    let feed = feeder(&world).await;
    // Retained: the subscription is there once it is shown.
    feed.publish_retained("meter/power", "10").await;
    expect_f64(&world, &s, "/Ac/Power", 10.0).await;
    feed.publish("meter/power", "12").await;
    expect_connected(&world, &s, true).await;
    std::fs::write(
        world.data_dir().join("devices.toml"),
        METER.replace(
            "service = \"acload\"",
            "service = \"acload\"\nname = \"Boat\"",
        ),
    )
    .expect("devices.toml");
    expect_text(&world, &s, "/CustomName", "Boat").await;
    // No message since, and none needed: still connected.
    let connected = get_value(&world.conn, &s, "/Connected").await;
    assert_eq!(i32::try_from(connected).ok(), Some(1));
}
