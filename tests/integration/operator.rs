//! The operator tools (`list`, `remove`, `doctor`) as a user runs them: the binary against
//! the daemon on a real broker, bus and settings service, and the same over MQTT.

use super::world::*;
use dbus_mqtt_devices::dbus::{Item, Value};
use dbus_mqtt_devices::settings::{SettingSpec, SettingsClient};
use serde_json::{json, Value as Json};
use std::path::Path;

const BINARY: &str = env!("CARGO_BIN_EXE_dbus-mqtt-devices");

/// What a command printed, and how it exited.
pub(super) struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs the binary with the world's bus, broker, portal id and data directory, then `args`.
async fn run_in(world: &World, port: u16, data_dir: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(BINARY)
        .args(["--dbus-address", &world.bus.address])
        .args(["--mqtt-port", &port.to_string()])
        .args(["--portal-id", PORTAL])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .await
        .expect("running the binary");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(super) async fn run(world: &World, args: &[&str]) -> Run {
    run_in(world, world.port(), &world.data_dir(), args).await
}

fn service<'a>(listing: &'a Json, client: &str, service: &str) -> &'a Json {
    listing["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["clientId"] == client))
        .and_then(|d| d["services"].as_array())
        .and_then(|s| s.iter().find(|s| s["serviceId"] == service))
        .unwrap_or_else(|| panic!("no {client}/{service} in {listing:#}"))
}

/// A listing asked for over MQTT, as a tool without SSH would.
pub(super) async fn ask(world: &World, verb: &str, body: Json) -> Json {
    let mut tool = TestDevice::connect_with(world.port(), "tool", None, &["tools/answer"]).await;
    let mut body = body;
    body["response_topic"] = json!("tools/answer");
    body["request_id"] = json!("r1");
    tool.publish(
        &format!("dbus-mqtt-devices/request/{verb}"),
        &body.to_string(),
    )
    .await;
    let answer = tool.expect("tools/answer").await;
    tool.disconnect().await;
    let answer: Json = serde_json::from_str(&answer.payload).unwrap();
    assert_eq!(answer["requestId"], "r1");
    answer
}

#[tokio::test]
async fn list_shows_online_refused_and_offline_services_on_the_cli_and_over_mqtt() {
    let world = World::start().await;
    let mut fe = world.device("fe001").await;
    fe.register(r#"{"t1": "temperature", "x1": "no_such_type"}"#)
        .await;
    fe.expect_error().await;
    let mut old = world.device("old").await;
    old.register(r#"{"t1": "temperature"}"#).await;
    old.send("Status", r#"{"clientId": "old", "connected": 0}"#)
        .await;
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_old_t1").await;

    let cli = run(&world, &["list", "--json"]).await;
    assert_eq!(cli.code, Some(0), "{}", cli.stderr);
    let listing = cli.json();
    assert_eq!(listing["fromDaemon"], true);
    let t1 = service(&listing, "fe001", "t1");
    assert_eq!(t1["state"], "online");
    assert_eq!(
        t1["dbusName"],
        "com.victronenergy.temperature.mqtt_fe001_t1"
    );
    assert!(t1["instance"].is_u64());
    let x1 = service(&listing, "fe001", "x1");
    assert_eq!(x1["state"], "refused");
    assert!(
        x1["lastError"]
            .as_str()
            .unwrap()
            .contains("unknown_service_type"),
        "{x1}"
    );
    let gone = service(&listing, "old", "t1");
    assert_eq!(gone["state"], "offline");
    assert!(gone["instance"].is_u64(), "the instance is kept: {gone}");

    // The same JSON over MQTT.
    let answer = ask(&world, "list", json!({})).await;
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["devices"], listing["devices"]);

    // The human table fits 100 columns.
    let table = run(&world, &["list"]).await;
    assert_eq!(table.code, Some(0));
    assert!(table.stdout.contains("fe001/t1"), "{}", table.stdout);
    assert!(table.stdout.lines().all(|l| l.chars().count() <= 100));

    // The per-device state: published (now or before), then retained for later subscribers.
    let topic = "dbus-mqtt-devices/devices/fe001";
    let mut watcher = TestDevice::connect_with(world.port(), "devices-watch", None, &[topic]).await;
    // Updated on change: it may first show fe001 while it was still registering.
    watcher
        .expect_where("fe001 online on its device topic", |m| {
            m.topic == topic && m.payload.contains(r#""state":"online""#)
        })
        .await;
    let mut later = TestDevice::connect_with(world.port(), "devices-later", None, &[topic]).await;
    let retained = later.expect(topic).await;
    assert!(retained.retained);
    let state: Json = serde_json::from_str(&retained.payload).unwrap();
    assert_eq!(state["clientId"], "fe001");
    assert_eq!(state["services"][0]["state"], "online");
}

#[tokio::test]
async fn removing_a_device_frees_its_instance_for_the_next_device_of_its_class() {
    let world = World::start().await;
    let mut a = world.device("a").await;
    let reply = a.register(r#"{"t1": "temperature"}"#).await;
    let instance = reply["deviceInstance"]["t1"].as_u64().unwrap();

    // Without --yes nothing goes.
    let preview = run(&world, &["remove", "a"]).await;
    assert_eq!(preview.code, Some(0), "{}", preview.stderr);
    assert!(
        preview.stdout.contains("Would remove a"),
        "{}",
        preview.stdout
    );
    wait_name_owned(&world.conn, "com.victronenergy.temperature.mqtt_a_t1").await;

    let done = run(&world, &["remove", "a", "--yes", "--json"]).await;
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let removed = &done.json()["removed"][0];
    assert_eq!(removed["takenOffDbus"], 1);
    assert!(
        removed["settingsRemoved"].as_u64().unwrap() >= 1,
        "{removed}"
    );
    assert!(names(&world.conn)
        .await
        .iter()
        .all(|n| !n.ends_with(".mqtt_a_t1")));

    let mut b = world.device("b").await;
    let reply = b.register(r#"{"t1": "temperature"}"#).await;
    assert_eq!(reply["deviceInstance"]["t1"].as_u64(), Some(instance));

    // And it is gone from the listing.
    let listing = run(&world, &["list", "--json"]).await.json();
    assert!(listing["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["clientId"] != "a"));
}

#[tokio::test]
async fn a_device_removed_over_mqtt_with_a_retained_status_stays_removed_after_a_restart() {
    let mut world = World::start().await;
    let mut r = world.device("r1").await;
    r.publish_retained(
        "device/r1/Status",
        r#"{"clientId": "r1", "connected": 1, "services": {"t1": "temperature"}}"#,
    )
    .await;
    r.expect("device/r1/DBus").await;
    r.disconnect().await;

    let answer = ask(&world, "remove", json!({"target": "r1"})).await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["removed"][0]["retainedStatusCleared"], true);
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_r1_t1").await;

    // Nothing is left to bring it back: the state file...
    let state = std::fs::read_to_string(world.data_dir().join("state.json")).unwrap();
    assert!(!state.contains("\"r1\""), "{state}");
    // ... and the broker: a retained Status would arrive before a message sent after subscribing.
    let mut probe = TestDevice::connect_with(
        world.port(),
        "probe",
        None,
        &["device/r1/Status", "probe/marker"],
    )
    .await;
    probe.publish("probe/marker", "x").await;
    assert_eq!(probe.next().await.topic, "probe/marker");

    world.stop_daemon().await;
    world.start_daemon().await;
    let mut z = world.device("z").await;
    z.register(r#"{"t1": "temperature"}"#).await;
    assert!(device_services(&world.conn)
        .await
        .iter()
        .all(|n| !n.contains("mqtt_r1_")));
    let listing = run(&world, &["list", "--json"]).await.json();
    assert!(listing["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["clientId"] != "r1"));
}

#[tokio::test]
async fn a_device_that_left_is_removed_by_its_own_client_id_and_stays_removed() {
    // Neither its client id (`-`) nor its service id (`_`) splits back from the unique id.
    let mut world = World::start().await;
    let mut d = world.device("ESP32-ABC").await;
    d.publish_retained(
        "device/ESP32-ABC/Status",
        r#"{"clientId": "ESP32-ABC", "connected": 1, "services": {"t_1": "temperature"}}"#,
    )
    .await;
    d.expect("device/ESP32-ABC/DBus").await;
    let names = device_services(&world.conn).await;
    let name = names.iter().find(|n| n.contains("ESP32")).unwrap().clone();
    // It leaves; its retained Status (connected) stays on the broker.
    d.publish(
        "device/ESP32-ABC/Status",
        r#"{"clientId": "ESP32-ABC", "connected": 0}"#,
    )
    .await;
    wait_name_gone(&world.conn, &name).await;
    d.disconnect().await;

    let listing = run(&world, &["list", "--json"]).await.json();
    assert_eq!(service(&listing, "ESP32-ABC", "t_1")["state"], "offline");
    let done = run(&world, &["remove", "ESP32-ABC", "--yes", "--json"]).await;
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let removed = &done.json()["removed"][0];
    assert_eq!(removed["retainedStatusCleared"], true, "{removed}");
    assert!(
        removed["settingsRemoved"].as_u64().unwrap() >= 1,
        "{removed}"
    );

    world.stop_daemon().await;
    world.start_daemon().await;
    let mut z = world.device("z").await;
    z.register(r#"{"t1": "temperature"}"#).await;
    assert!(!device_services(&world.conn).await.contains(&name));
    let listing = run(&world, &["list", "--json"]).await.json();
    assert!(
        listing["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| !d["clientId"].as_str().unwrap().contains("ESP32")),
        "{listing:#}"
    );
}

#[tokio::test]
async fn remove_with_the_daemon_down_clears_settings_state_and_retained_status() {
    let mut world = World::start().await;
    let mut d = world.device("down").await;
    d.publish_retained(
        "device/down/Status",
        r#"{"clientId": "down", "connected": 1, "services": {"t1": "temperature"}}"#,
    )
    .await;
    d.expect("device/down/DBus").await;
    d.disconnect().await;
    world.stop_daemon().await;

    let done = run(&world, &["remove", "down", "--yes", "--json"]).await;
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let removed = &done.json()["removed"][0];
    assert_eq!(removed["retainedStatusCleared"], true, "{removed}");
    assert_eq!(removed["stateFileUpdated"], true);
    assert!(removed["settingsRemoved"].as_u64().unwrap() >= 1);
    let state = std::fs::read_to_string(world.data_dir().join("state.json")).unwrap();
    assert!(!state.contains("\"down\""), "{state}");

    world.start_daemon().await;
    let listing = run(&world, &["list", "--json"]).await.json();
    assert!(listing["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["clientId"] != "down"));
}

#[tokio::test]
async fn not_seen_for_selects_only_devices_silent_that_long() {
    let mut world = World::start().await;
    let mut gone = world.device("gone").await;
    gone.register(r#"{"t1": "temperature"}"#).await;
    gone.send("Status", r#"{"clientId": "gone", "connected": 0}"#)
        .await;
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_gone_t1").await;
    let mut here = world.device("here").await;
    here.register(r#"{"t1": "temperature"}"#).await;

    // Both were seen moments ago: a day's silence matches nothing.
    let day = run(&world, &["remove", "--not-seen-for", "1d", "--json"]).await;
    assert_eq!(day.code, Some(0), "{}", day.stderr);
    assert_eq!(day.json()["plan"], json!([]));
    // Zero seconds: the device not connected, never the connected one.
    let now = run(&world, &["remove", "--not-seen-for", "0s", "--json"]).await;
    let plan = now.json()["plan"].clone();
    assert_eq!(plan.as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan[0]["clientId"], "gone");
    // A bad duration is a usage error.
    let bad = run(&world, &["remove", "--not-seen-for", "soon"]).await;
    assert_eq!(bad.code, Some(2));
    let none = run(&world, &["remove"]).await;
    assert_eq!(none.code, Some(2));

    // Last-seen times survive the daemon: after a clean stop they are in the state file, and
    // `remove` without the daemon selects by them.
    world.stop_daemon().await;
    let state: Json = serde_json::from_str(
        &std::fs::read_to_string(world.data_dir().join("state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["lastSeen"]["gone"].is_u64(), "{state}");
    let day = run(&world, &["remove", "--not-seen-for", "1d", "--json"]).await;
    assert_eq!(day.json()["plan"], json!([]), "{}", day.stderr);
    let now = run(&world, &["remove", "--not-seen-for", "0s", "--json"]).await;
    let ids: Vec<String> = now.json()["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["clientId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["gone", "here"]);
}

/// The checks of a doctor run, by (device, check).
pub(super) fn checks(run: &Run) -> Vec<(String, String, bool)> {
    run.json()["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", run.stdout))
        .iter()
        .map(|c| {
            (
                c["device"].as_str().unwrap_or("").to_owned(),
                c["check"].as_str().unwrap().to_owned(),
                c["ok"].as_bool().unwrap(),
            )
        })
        .collect()
}

pub(super) fn outcome(checks: &[(String, String, bool)], device: &str, check: &str) -> bool {
    checks
        .iter()
        .find(|(d, c, _)| d == device && c == check)
        .unwrap_or_else(|| panic!("no {device} {check} in {checks:?}"))
        .2
}

/// Plays the MQTT gateway for doctor: answers a keepalive with the `N/` topics of `devices`
/// (`<type>/<instance>`), then `full_publish_completed`.
async fn fake_gateway(port: u16, devices: Vec<String>) -> tokio::task::JoinHandle<()> {
    let keepalive = format!("R/{PORTAL}/keepalive");
    let mut gw = TestDevice::connect_with(port, "gateway", None, &[&keepalive]).await;
    tokio::spawn(async move {
        gw.expect(&keepalive).await;
        for d in devices {
            gw.publish(&format!("N/{PORTAL}/{d}/Connected"), r#"{"value":1}"#)
                .await;
        }
        gw.publish(&format!("N/{PORTAL}/full_publish_completed"), "{}")
            .await;
    })
}

#[tokio::test]
async fn doctor_fails_values_refused_or_invalid_and_names_an_unknown_service() {
    let world = World::start().await;
    let name = "com.victronenergy.temperature.mqtt_v_t1";
    // Asked over MQTT: the daemon's own checks, without waiting for a gateway.
    let values = |answer: Json| {
        answer["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .find(|c| c["device"] == "v/t1" && c["check"] == "values")
            .cloned()
            .unwrap_or_else(|| panic!("no values check in {answer}"))
    };
    let mut v = world.device("v").await;
    v.register(r#"{"t1": "temperature"}"#).await;
    v.send("Values", r#"{"t1": {"Temperature": 4.5}}"#).await;
    wait_for_value(&world.conn, name, "/Temperature", |x| {
        f64::try_from(x.clone()) == Ok(4.5)
    })
    .await;
    let good = values(ask(&world, "doctor", json!({"target": "v"})).await);
    assert_eq!(good["ok"], true, "{good}");

    // Refused values are still values that arrived: the check is about what got through.
    v.send("Values", r#"{"t1": {"Temperature": "hot"}}"#).await;
    assert_eq!(v.expect_error().await["error"], "invalid_value");
    let refused = values(ask(&world, "doctor", json!({"target": "v"})).await);
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("refused"),
        "{refused}"
    );

    // Accepted again (the refusal's second is over: times are in seconds), but the main
    // value is invalid: the GX shows ---.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    v.send("Values", r#"{"t1": {"Temperature": null}}"#).await;
    wait_for_value(&world.conn, name, "/Temperature", |x| {
        f64::try_from(x.clone()).is_err()
    })
    .await;
    let invalid = values(ask(&world, "doctor", json!({"target": "v"})).await);
    assert_eq!(invalid["ok"], false, "{invalid}");
    assert!(
        invalid["detail"]
            .as_str()
            .unwrap()
            .contains("/Temperature is invalid"),
        "{invalid}"
    );

    let unknown = run(&world, &["doctor", "v/nope", "--json"]).await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.stdout);
    assert!(
        unknown.stdout.contains("no service nope"),
        "{}",
        unknown.stdout
    );
}

#[tokio::test]
async fn an_unknown_request_verb_is_answered_with_an_error() {
    let world = World::start().await;
    let mut tool = TestDevice::connect_with(world.port(), "tool", None, &["tools/answer"]).await;
    tool.publish(
        "dbus-mqtt-devices/request/lsit",
        r#"{"response_topic": "tools/answer", "request_id": "r9"}"#,
    )
    .await;
    let answer: Json = serde_json::from_str(&tool.expect("tools/answer").await.payload).unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["requestId"], "r9");
    assert!(
        answer["error"].as_str().unwrap().contains("lsit"),
        "{answer}"
    );
}

#[tokio::test]
async fn doctor_passes_on_a_healthy_gx_and_names_each_device_fault() {
    let world = World::start().await;
    let settings = SettingsClient::connect(&world.bus.bus()).await.unwrap();
    settings
        .add_settings(&[SettingSpec::new(
            "/Settings/SystemSetup/AcInput1",
            Value::I32(2),
        )])
        .await
        .unwrap();
    let mut ok = world.device("ok").await;
    let reply = ok.register(r#"{"t1": "temperature"}"#).await;
    let instance = reply["deviceInstance"]["t1"].as_u64().unwrap();
    ok.send("Values", r#"{"t1": {"Temperature": 4.5}}"#).await;
    wait_for_value(
        &world.conn,
        "com.victronenergy.temperature.mqtt_ok_t1",
        "/Temperature",
        |v| f64::try_from(v.clone()) == Ok(4.5),
    )
    .await;
    let root = tempfile::tempdir().unwrap();

    // Healthy: only the good device, a gateway that serves it.
    let gateway = fake_gateway(world.port(), vec![format!("temperature/{instance}")]).await;
    let root_arg = root.path().to_str().unwrap();
    let healthy = run(&world, &["doctor", "ok", "--json", "--root", root_arg]).await;
    gateway.await.unwrap();
    assert_eq!(healthy.code, Some(0), "{}", healthy.stdout);

    // Faults: a grid meter while AC input 1 is a generator, a refused service, a device that
    // left, a battery systemcalc did not pick, a stale service, and no gateway at all.
    let mut grid = world.device("gm").await;
    grid.register(r#"{"g1": "grid"}"#).await;
    let mut bad = world.device("bad").await;
    bad.register(r#"{"t1": "temperature", "x1": "no_such_type"}"#)
        .await;
    let mut left = world.device("left").await;
    left.register(r#"{"t1": "temperature"}"#).await;
    left.send("Status", r#"{"clientId": "left", "connected": 0}"#)
        .await;
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_left_t1").await;
    let mut bat = world.device("bat").await;
    bat.register(r#"{"b1": "battery"}"#).await;
    let mut quiet = world.device("quiet").await;
    quiet
        .send(
            "Status",
            r#"{"clientId": "quiet", "connected": 1, "timeout": 1, "services": {"t1": "temperature"}}"#,
        )
        .await;
    quiet.expect("device/quiet/DBus").await;
    wait_for_value(
        &world.conn,
        "com.victronenergy.temperature.mqtt_quiet_t1",
        "/Connected",
        |v| i32::try_from(v.clone()) == Ok(0),
    )
    .await;

    // A PV inverter with no /Position, a thermometer with no type.
    let mut pv = world.device("pv").await;
    pv.register(r#"{"p1": "pvinverter", "t1": "temperature"}"#)
        .await;
    pv.send(
        "Values",
        r#"{"p1": {"Position": null}, "t1": {"TemperatureType": null}}"#,
    )
    .await;
    for (service, path) in [
        ("com.victronenergy.pvinverter.mqtt_pv_p1", "/Position"),
        (
            "com.victronenergy.temperature.mqtt_pv_t1",
            "/TemperatureType",
        ),
    ] {
        wait_for_value(&world.conn, service, path, |v| {
            v.value_signature().to_string() == "ai"
        })
        .await;
    }

    let sick = run(
        &world,
        &[
            "doctor",
            "--json",
            "--root",
            root_arg,
            "--gateway-wait-ms",
            "300",
        ],
    )
    .await;
    assert_eq!(sick.code, Some(1), "{}", sick.stdout);
    let c = checks(&sick);
    assert!(outcome(&c, "ok/t1", "registered"));
    assert!(!outcome(&c, "gm/g1", "grid-ac-input"));
    assert!(!outcome(&c, "bad/x1", "registered"));
    assert!(!outcome(&c, "left/t1", "registered"));
    assert!(!outcome(&c, "bat/b1", "active-battery"));
    assert!(!outcome(&c, "quiet/t1", "registered"));
    assert!(!outcome(&c, "pv/p1", "pvinverter-position"));
    assert!(!outcome(&c, "pv/t1", "temperature-type"));
    assert!(
        !outcome(&c, "gm/g1", "values"),
        "a grid meter that never sent a value"
    );
    assert!(outcome(&c, "ok/t1", "values"));
    assert!(outcome(&c, "ok/t1", "temperature-type"));
    assert!(!outcome(&c, "", "mqtt-gateway"));
    assert!(outcome(&c, "", "python-driver"));
    assert!(outcome(&c, "", "localsettings"));

    // The text output: one line per check, the fix under a failed one, 100 columns.
    let text = run(
        &world,
        &[
            "doctor",
            "gm",
            "--root",
            root_arg,
            "--gateway-wait-ms",
            "100",
        ],
    )
    .await;
    assert!(
        text.stdout.contains("✗ gm/g1: grid-ac-input"),
        "{}",
        text.stdout
    );
    assert!(text
        .stdout
        .contains("fix: Settings → System setup → AC input 1"));
    assert!(
        text.stdout.lines().all(|l| l.chars().count() <= 100),
        "{}",
        text.stdout
    );

    // Over MQTT: the device checks, the same names.
    let answer = ask(&world, "doctor", json!({"target": "gm"})).await;
    assert_eq!(answer["healthy"], false, "{answer}");
    let over_mqtt = answer["checks"].as_array().unwrap();
    assert!(over_mqtt
        .iter()
        .any(|c| c["check"] == "grid-ac-input" && c["ok"] == false));
    for host in [
        "dbus",
        "localsettings",
        "python-driver",
        "data-dir",
        "portal-id",
    ] {
        assert!(
            over_mqtt
                .iter()
                .any(|c| c["check"] == host && c["ok"] == true),
            "{host} in {answer}"
        );
    }
}

#[tokio::test]
async fn doctor_finds_host_faults() {
    let mut world = World::start().await;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // The Python driver still installed, started from rc.local.
    std::fs::create_dir_all(r.join("data/drivers/dbus-mqtt-devices")).unwrap();
    std::fs::write(
        r.join("data/rc.local"),
        "#!/bin/bash\nln -s /data/drivers/dbus-mqtt-devices/bin/service /service/dbus-mqtt-devices\n",
    )
    .unwrap();
    // A bus that allows fewer connections than --max-services needs.
    std::fs::create_dir_all(r.join("etc/dbus-1")).unwrap();
    std::fs::write(
        r.join("etc/dbus-1/system.conf"),
        r#"<busconfig><limit name="max_connections_per_user">8</limit></busconfig>"#,
    )
    .unwrap();
    let root_arg = r.to_str().unwrap();
    let c = checks(
        &run(
            &world,
            &[
                "doctor",
                "--json",
                "--root",
                root_arg,
                "--gateway-wait-ms",
                "100",
            ],
        )
        .await,
    );
    assert!(!outcome(&c, "", "python-driver"));
    assert!(!outcome(&c, "", "bus-headroom"));
    assert!(outcome(&c, "", "name-conflict"));
    assert!(outcome(&c, "", "data-dir"));
    assert!(outcome(&c, "", "clock"));
    assert!(outcome(&c, "", "daemon"));

    // The Python driver running beside us: a service of our form from another process.
    let (_python, _writes) = dbus_mqtt_devices::dbus::Service::register(
        &world.bus.bus(),
        "com.victronenergy.temperature.mqtt_py_t1",
        vec![
            Item::new(
                "/Mgmt/ProcessName",
                Value::Str("dbus_mqtt_devices.py".into()),
            ),
            Item::new("/DeviceInstance", Value::I32(50)),
        ],
        None,
    )
    .await
    .unwrap();
    let c = checks(
        &run(
            &world,
            &[
                "doctor",
                "--json",
                "--root",
                root_arg,
                "--gateway-wait-ms",
                "100",
            ],
        )
        .await,
    );
    assert!(!outcome(&c, "", "name-conflict"));

    // The daemon and localsettings stopped, a data directory that cannot be written.
    world.stop_daemon().await;
    if let Some(s) = world.settings.take() {
        s.stop().await;
    }
    let file = world.dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let c = checks(
        &run_in(
            &world,
            world.port(),
            &file,
            &[
                "doctor",
                "--json",
                "--root",
                root_arg,
                "--gateway-wait-ms",
                "100",
            ],
        )
        .await,
    );
    assert!(!outcome(&c, "", "daemon"));
    assert!(!outcome(&c, "", "localsettings"));
    assert!(!outcome(&c, "", "data-dir"));

    // No broker, no D-Bus.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = tokio::process::Command::new(BINARY)
        .args(["--dbus-address", "unix:path=/nonexistent/bus"])
        .args(["--mqtt-port", &port.to_string()])
        .args(["doctor", "--json", "--root", root_arg])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for check in ["broker", "dbus", "portal-id"] {
        assert!(failed.contains(&check), "{check} not in {failed:?}");
    }
    // And nothing to list from: exit 1 with the reason.
    let out = tokio::process::Command::new(BINARY)
        .args(["--dbus-address", "unix:path=/nonexistent/bus"])
        .args(["--mqtt-port", &port.to_string()])
        .arg("list")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("D-Bus"));
}

/// `remove` relies on RemoveSettings behaving as localsettings' does: `as` → `ai` (0 removed,
/// -1 not there), and each removed setting announcing an empty value on its own path.
#[tokio::test]
async fn remove_settings_behaves_as_localsettings() {
    use futures_util::StreamExt;
    let world = World::start_without_daemon().await;
    let client = SettingsClient::connect(&world.bus.bus()).await.unwrap();
    let path = "/Settings/Devices/mqtt_x_t1/ClassAndVrmInstance";
    client
        .add_settings(&[SettingSpec::new(path, Value::Str("temperature:1".into()))])
        .await
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(path)
        .build()
        .unwrap();
    let mut signals = zbus::MessageStream::for_match_rule(rule, &world.conn, None)
        .await
        .unwrap();
    let codes = client
        .remove_settings(&[path.into(), "/Settings/Devices/nope/X".into()])
        .await
        .unwrap();
    assert_eq!(codes, vec![0, -1]);
    let signal = tokio::time::timeout(WAIT, signals.next())
        .await
        .expect("a signal")
        .unwrap()
        .unwrap();
    let header = signal.header();
    assert_eq!(header.member().unwrap().as_str(), "PropertiesChanged");
    assert_eq!(header.path().unwrap().as_str(), path);
    let body: std::collections::HashMap<String, zbus::OwnedVariant> =
        signal.body().deserialize().unwrap();
    assert_eq!(body["Value"].value_signature().to_string(), "ai");
    assert_eq!(
        String::try_from(body["Text"].try_clone().unwrap()).unwrap(),
        ""
    );
}
