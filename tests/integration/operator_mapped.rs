//! The operator tools and mapped devices, as a user runs them: `list` shows a mapped
//! device's last topic, raw payload and converted value, and a broken declaration as
//! refused with its place; `doctor` says when nothing came on a device's topics; `remove`
//! clears a topic declaration and frees the instance for good, and refuses a device a file
//! declares. Real broker, bus and settings service; the binary as the user runs it.

use super::mapped::{expect_connected, expect_f64, feeder, svc, world_declaring};
use super::operator::{ask, checks, outcome, run};
use super::world::*;
use serde_json::{json, Value as Json};

/// A device fed with a value before the daemon starts, one that never hears from its
/// device, and one whose declaration is broken (line 17: an unknown service type).
const DECLARED: &str = r#"[[device]]
id = "cabin_temp"
service = "temperature"
preset = "esphome"
topic = "node_c"
sensors = { "/Temperature" = "t" }

[[device]]
id = "silent"
service = "tank"
preset = "esphome"
topic = "node_s"
sensors = { "/Level" = "level" }

[[device]]
id = "broken"
service = "no_such_type"
preset = "esphome"
topic = "node_b"
sensors = { "/Level" = "level" }
"#;

fn device<'a>(listing: &'a Json, id: &str) -> &'a Json {
    listing["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["clientId"] == id))
        .unwrap_or_else(|| panic!("no {id} in {listing:#}"))
}

/// The instance `list` shows for mapped device `id`.
async fn instance_of(world: &World, id: &str) -> u64 {
    let listing = run(world, &["list", "--json"]).await.json();
    device(&listing, id)["services"][0]["instance"]
        .as_u64()
        .unwrap_or_else(|| panic!("no instance of {id} in {listing:#}"))
}

#[tokio::test]
async fn list_and_doctor_show_what_a_mapped_device_received_and_why_one_is_refused() {
    let mut world = world_declaring(DECLARED).await;
    let feed = feeder(&world).await;
    // Retained, as ESPHome sends it: the daemon gets it when it subscribes.
    feed.publish_retained("node_c/status", "online").await;
    feed.publish_retained("node_c/sensor/t/state", "21.5").await;
    world.start_daemon().await;
    let cabin = svc("temperature", "cabin_temp");
    // The status is noted before the value is set on D-Bus: seen there, it is listed.
    expect_f64(&world, &cabin, "/Temperature", 21.5).await;
    wait_name_owned(&world.conn, &svc("tank", "silent")).await;

    let cli = run(&world, &["list", "--json"]).await;
    assert_eq!(cli.code, Some(0), "{}", cli.stderr);
    let listing = cli.json();
    // The declaration's id, not a guess from `mqtt_cabin_temp`.
    let c = device(&listing, "cabin_temp");
    assert_eq!(c["kind"], "mapped");
    assert_eq!(c["connected"], true);
    let s = &c["services"][0];
    assert_eq!(s["state"], "online", "{s:#}");
    assert_eq!(s["dbusName"], cabin.as_str());
    assert!(s["lastValueAt"].is_u64(), "{s:#}");
    let m = &s["mapped"];
    let origin = m["origin"].as_str().unwrap_or_default();
    assert!(origin.ends_with("/devices.toml:1:1"), "{m:#}");
    assert_eq!(m["declaredBy"], "file");
    assert_eq!(m["declarationValid"], true);
    assert_eq!(
        m["topics"],
        json!(["node_c/sensor/t/state", "node_c/status"])
    );
    assert_eq!(m["lastTopic"], "node_c/sensor/t/state");
    assert_eq!(m["rawPayload"], "21.5");
    assert_eq!(m["convertedValue"], 21.5);
    let t = &m["paths"]["/Temperature"];
    assert_eq!(t["topic"], "node_c/sensor/t/state");
    assert_eq!(t["rawPayload"], "21.5");
    assert_eq!(t["convertedValue"], 21.5);
    assert!(t["at"].is_u64());

    // The broken declaration is listed, refused, with file, line and column.
    let b = device(&listing, "broken");
    assert_eq!(b["kind"], "mapped");
    assert_eq!(b["connected"], false);
    let bs = &b["services"][0];
    assert_eq!(bs["state"], "refused", "{b:#}");
    let why = bs["lastError"].as_str().unwrap_or_default();
    assert!(why.contains("/devices.toml:17:"), "{why}");
    assert!(why.contains("no_such_type"), "{why}");
    assert_eq!(bs["mapped"]["declarationValid"], false);

    // The same over MQTT.
    let answer = ask(&world, "list", json!({})).await;
    assert_eq!(answer["ok"], true);
    let over_mqtt = device(&answer, "cabin_temp");
    assert_eq!(
        over_mqtt["services"][0]["mapped"]["paths"], m["paths"],
        "{over_mqtt:#}"
    );

    // The table shows the last message under the device, within 100 columns.
    let table = run(&world, &["list"]).await;
    assert!(
        table.stdout.contains("cabin_temp (mapped)"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("node_c/sensor/t/state → 21.5 ("),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("devices.toml:17:"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.lines().all(|l| l.chars().count() <= 100));

    // The retained device state carries the same.
    let topic = "dbus-mqtt-devices/devices/cabin_temp";
    let mut watcher = TestDevice::connect_with(world.port(), "devices-watch", None, &[topic]).await;
    watcher
        .expect_where("cabin_temp's value on its device topic", |m| {
            m.topic == topic && m.payload.contains(r#""rawPayload":"21.5""#)
        })
        .await;

    // doctor: nothing came on the silent device's topics; the broken one's declaration.
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let args = ["--json", "--root", root_arg, "--gateway-wait-ms", "100"];
    let silent = run(&world, &[&["doctor", "silent"][..], &args].concat()).await;
    assert_eq!(silent.code, Some(1), "{}", silent.stdout);
    let c = checks(&silent);
    assert!(outcome(&c, "silent", "declaration"));
    assert!(outcome(&c, "silent", "subscribed"));
    assert!(!outcome(&c, "silent", "messages"));
    let report = silent.json();
    let messages = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "messages")
        .unwrap();
    assert!(
        messages["detail"]
            .as_str()
            .unwrap()
            .starts_with("no message on node_s/sensor/level/state"),
        "{messages}"
    );
    assert!(messages["fix"].as_str().unwrap().contains("topic prefix"));
    let text = run(
        &world,
        &[
            "doctor",
            "silent",
            "--root",
            root_arg,
            "--gateway-wait-ms",
            "100",
        ],
    )
    .await;
    assert!(
        text.stdout.contains("✗ silent: messages"),
        "{}",
        text.stdout
    );

    let good = run(&world, &[&["doctor", "cabin_temp"][..], &args].concat()).await;
    let c = checks(&good);
    assert!(outcome(&c, "cabin_temp", "registered"));
    assert!(outcome(&c, "cabin_temp", "messages"));
    assert!(outcome(&c, "cabin_temp", "value"));
    assert!(
        good.stdout
            .contains("/Temperature = 21.5 from node_c/sensor/t/state (21.5)"),
        "{}",
        good.stdout
    );
    // The type-specific checks run as for any device.
    assert!(c
        .iter()
        .any(|(d, k, _)| d == "cabin_temp" && k == "temperature-type"));

    let broken = run(&world, &[&["doctor", "broken"][..], &args].concat()).await;
    let c = checks(&broken);
    assert!(!outcome(&c, "broken", "declaration"));
    assert!(
        broken.stdout.contains("devices.toml:17:"),
        "{}",
        broken.stdout
    );
}

#[tokio::test]
async fn remove_clears_a_topic_declaration_for_good_and_refuses_a_file_declaration() {
    let mut world = world_declaring(DECLARED).await;
    world.start_daemon().await;
    let feed = feeder(&world).await;
    // A heater plug whose energy the daemon integrates from its power.
    feed.publish_retained("heater/status", "online").await;
    feed.publish_retained(
        "dbus-mqtt-devices/mapped/topical",
        r#"{"service": "acload", "availability": {"topic": "heater/status"},
            "source": [{"topic": "heater/power", "/Ac/Power": "$",
                        "/Ac/Energy/Forward": {"integrate": "/Ac/Power"}}]}"#,
    )
    .await;
    let topical = svc("acload", "topical");
    expect_connected(&world, &topical, true).await;
    // 3.6 MW: a kWh a second, so the milliseconds between two messages count.
    feed.publish("heater/power", "3600000").await;
    expect_f64(&world, &topical, "/Ac/Power", 3_600_000.0).await;
    feed.publish("heater/power", "3600000.5").await;
    wait_for_value(&world.conn, &topical, "/Ac/Energy/Forward", |v| {
        f64::try_from(v.try_clone().expect("clone")).is_ok_and(|x| x > 0.0)
    })
    .await;
    let instance = instance_of(&world, "topical").await;

    // Declared in a file: refused, naming the file.
    let refused = run(&world, &["remove", "cabin_temp", "--yes"]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("/devices.toml:1:1: delete its declaration there"),
        "{}",
        refused.stderr
    );
    wait_name_owned(&world.conn, &svc("temperature", "cabin_temp")).await;

    // Declared on a topic: the declaration goes, then the device, its settings, its state.
    let done = run(&world, &["remove", "topical", "--yes", "--json"]).await;
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let removed = &done.json()["removed"][0];
    assert_eq!(
        removed["declarationCleared"],
        "dbus-mqtt-devices/mapped/topical"
    );
    assert_eq!(removed["takenOffDbus"], 1, "{removed}");
    assert_eq!(removed["energyForgotten"], true, "{removed}");
    assert!(
        removed["settingsRemoved"].as_u64().unwrap() >= 1,
        "{removed}"
    );
    assert!(!names(&world.conn).await.contains(&topical));
    let listing = run(&world, &["list", "--json"]).await.json();
    assert!(listing["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["clientId"] != "topical"));

    // Nothing is retained to bring it back: a marker published after subscribing comes first.
    let mut probe = TestDevice::connect_with(
        world.port(),
        "probe",
        None,
        &["dbus-mqtt-devices/mapped/topical", "probe/marker"],
    )
    .await;
    probe.publish("probe/marker", "x").await;
    assert_eq!(probe.next().await.topic, "probe/marker");

    // After a restart it stays away, and the next new device of its class gets its instance.
    world.stop_daemon().await;
    let energies = std::fs::read_to_string(world.data_dir().join("mapped-energy.json"));
    assert!(
        !energies.as_deref().unwrap_or_default().contains("topical"),
        "{energies:?}"
    );
    world.start_daemon().await;
    feed.publish_retained(
        "dbus-mqtt-devices/mapped/next",
        r#"{"service": "acload", "source": [{"topic": "next/power", "/Ac/Power": "$"}]}"#,
    )
    .await;
    wait_name_owned(&world.conn, &svc("acload", "next")).await;
    assert!(!names(&world.conn).await.contains(&topical));
    assert_eq!(instance_of(&world, "next").await, instance);

    // The file's device, once its declaration is deleted, is removed like any old device:
    // by its id, though its settings alone cannot tell it (`mqtt_cabin_temp`).
    let cabin = svc("temperature", "cabin_temp");
    let only_others = DECLARED
        .split("[[device]]")
        .filter(|d| !d.contains("cabin_temp"))
        .collect::<Vec<_>>()
        .join("[[device]]");
    std::fs::write(world.data_dir().join("devices.toml"), only_others).unwrap();
    wait_name_gone(&world.conn, &cabin).await;
    let done = run(&world, &["remove", "cabin_temp", "--yes", "--json"]).await;
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let removed = &done.json()["removed"][0];
    assert_eq!(removed["services"], json!(["mqtt_cabin_temp"]), "{removed}");
    assert!(
        removed["settingsRemoved"].as_u64().unwrap() >= 1,
        "{removed}"
    );
    let listing = run(&world, &["list", "--json"]).await.json();
    assert!(
        !listing.to_string().contains("mqtt_cabin_temp"),
        "{listing:#}"
    );
}

#[tokio::test]
async fn remove_with_the_daemon_down_forgets_a_mapped_devices_settings_and_energy() {
    let mut world = world_declaring(
        r#"[[device]]
id = "old_heater"
service = "acload"
availability = { topic = "heater/status" }
[[device.source]]
topic = "heater/power"
"/Ac/Power" = "$"
"/Ac/Energy/Forward" = { integrate = "/Ac/Power" }

[[device]]
id = "typo"
service = "acload"
preset = "no_such_preset"
"#,
    )
    .await;
    world.start_daemon().await;
    let feed = feeder(&world).await;
    let heater = svc("acload", "old_heater");
    feed.publish_retained("heater/status", "online").await;
    expect_connected(&world, &heater, true).await;
    feed.publish("heater/power", "3600000").await;
    expect_f64(&world, &heater, "/Ac/Power", 3_600_000.0).await;
    feed.publish("heater/power", "3600000.5").await;
    wait_for_value(&world.conn, &heater, "/Ac/Energy/Forward", |v| {
        f64::try_from(v.try_clone().expect("clone")).is_ok_and(|x| x > 0.0)
    })
    .await;
    // Stopped, the energy is saved; then the user deletes the declaration.
    world.stop_daemon().await;
    let energy = world.data_dir().join("mapped-energy.json");
    assert!(std::fs::read_to_string(&energy)
        .unwrap()
        .contains("old_heater"));

    // Without the daemon, `list` reads the declarations itself.
    let listing = run(&world, &["list", "--json"]).await.json();
    assert_eq!(listing["fromDaemon"], false);
    let h = device(&listing, "old_heater");
    assert_eq!(h["kind"], "mapped");
    assert_eq!(h["connected"], false);
    assert_eq!(h["services"][0]["state"], "offline", "{h:#}");
    assert!(h["services"][0]["instance"].is_u64(), "{h:#}");
    let origin = h["services"][0]["mapped"]["origin"].as_str().unwrap();
    assert!(origin.ends_with("/devices.toml:1:1"), "{origin}");
    let typo = device(&listing, "typo");
    assert_eq!(typo["services"][0]["state"], "refused", "{typo:#}");
    let why = typo["services"][0]["lastError"].as_str().unwrap();
    assert!(why.contains("/devices.toml:13:"), "{why}");
    // Declared in the file: not removed.
    let refused = run(&world, &["remove", "old_heater", "--yes"]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("devices.toml:1:1"),
        "{}",
        refused.stderr
    );

    std::fs::remove_file(world.data_dir().join("devices.toml")).unwrap();

    // Its id, though its settings alone (`mqtt_old_heater`) cannot tell it.
    let done = run(&world, &["remove", "old_heater", "--yes", "--json"]).await;
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let removed = &done.json()["removed"][0];
    assert_eq!(removed["services"], json!(["mqtt_old_heater"]), "{removed}");
    assert_eq!(removed["energyForgotten"], true, "{removed}");
    assert!(
        removed["settingsRemoved"].as_u64().unwrap() >= 1,
        "{removed}"
    );
    assert!(!std::fs::read_to_string(&energy)
        .unwrap()
        .contains("old_heater"));
    let listing = run(&world, &["list", "--json"]).await.json();
    assert!(
        !listing.to_string().contains("mqtt_old_heater"),
        "{listing:#}"
    );
}
