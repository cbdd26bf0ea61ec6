//! Faults around the daemon, each with real processes, and nothing lost (issue 10):
//! localsettings away and back, the broker away at boot and restarting under load, a data
//! directory that refuses writes, an unusable state file, a SIGKILL in a burst of
//! registrations, a bus that refuses a connection.

use super::support::TestBus;
use super::world::*;
use dbus_mqtt_devices::app::Tuning;
use dbus_mqtt_devices::health::Health;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use zbus::Variant;

fn int(v: &zbus::OwnedVariant) -> i64 {
    i32::try_from(v.clone())
        .map(i64::from)
        .or_else(|_| i64::try_from(v.clone()))
        .expect("an integer")
}

fn text(v: &zbus::OwnedVariant) -> String {
    String::try_from(v.clone()).expect("a string")
}

/// Asks the daemon for health snapshots until `done` holds for one.
async fn health_until(
    probe: &mpsc::Sender<oneshot::Sender<Health>>,
    what: &str,
    done: impl Fn(&Health) -> bool,
) -> Health {
    let wait = async {
        loop {
            let (tx, rx) = oneshot::channel();
            probe.send(tx).await.expect("health request");
            let h = rx.await.expect("health");
            if done(&h) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("waited {WAIT:?} for {what}"))
}

#[tokio::test]
async fn localsettings_stops_and_comes_back() {
    let mut world = World::start_without_daemon().await;
    let (probe, rx) = mpsc::channel(1);
    let tuning = Tuning {
        health: Some(rx),
        ..Tuning::default()
    };
    world.start_daemon_tuned(world.config(), tuning).await;
    let mut a = world.device("lsa").await;
    let first = a.register(r#"{"t1": "temperature"}"#).await;
    let a1 = "com.victronenergy.temperature.mqtt_lsa_t1";
    let instance_a = first["deviceInstance"]["t1"].as_i64().expect("instance");

    world
        .settings
        .take()
        .expect("settings running")
        .stop()
        .await;
    wait_name_gone(&world.conn, "com.victronenergy.settings").await;

    // A registration while it is away waits for it: its service has its slot, no name, no
    // answer, and no made-up instance.
    let mut b = world.device("lsb").await;
    b.send(
        "Status",
        r#"{"clientId": "lsb", "connected": 1, "services": {"t1": "temperature"}}"#,
    )
    .await;
    health_until(&probe, "the registration waiting", |h| h.services == 2).await;
    let b1 = "com.victronenergy.temperature.mqtt_lsb_t1";
    assert!(owner(&world.conn, b1).await.is_none());
    // The service registered before serves on.
    a.send("Values", r#"{"t1": {"Temperature": 7.5}}"#).await;
    wait_for_value(&world.conn, a1, "/Temperature", |v| {
        f64::try_from(v.clone()).ok() == Some(7.5)
    })
    .await;

    let settings_dir = world.dir.path().join("settings");
    world.settings = Some(Settings::start(&world.bus, &settings_dir).await);
    let reply = b.expect_dbus_reply().await;
    let instance_b = reply["deviceInstance"]["t1"].as_i64().expect("instance");
    assert!(
        b.drain().iter().all(|m| !m.topic.ends_with("/Error")),
        "no refusal while waiting"
    );
    let stored = text(
        &get_value(
            &world.conn,
            "com.victronenergy.settings",
            "/Settings/Devices/mqtt_lsb_t1/ClassAndVrmInstance",
        )
        .await,
    );
    assert_eq!(stored, format!("temperature:{instance_b}"));
    assert_eq!(
        int(&get_value(&world.conn, b1, "/DeviceInstance").await),
        instance_b
    );
    assert_ne!(instance_a, instance_b);
    // The first service kept its instance, and follows its settings again.
    assert_eq!(
        int(&get_value(&world.conn, a1, "/DeviceInstance").await),
        instance_a
    );
    let code = set_value(
        &world.conn,
        "com.victronenergy.settings",
        "/Settings/MqttDevices/mqtt_lsa_t1/CustomName",
        Variant::from("Cellar"),
    )
    .await;
    assert_eq!(code, 0);
    wait_for_value(&world.conn, a1, "/CustomName", |v| {
        String::try_from(v.clone()).ok().as_deref() == Some("Cellar")
    })
    .await;
}

/// Retries of the broker connection in these tests: short, so that a broker coming back is
/// found at once (the daemon's own default backs off to 15 s).
const QUICK_RETRY: Duration = Duration::from_millis(100);

#[tokio::test]
async fn the_broker_away_at_boot_takes_no_device_away() {
    let mut world = World::start().await;
    let port = world.port();
    let mut device = world.device("bootb").await;
    // A short timeout: restored, it would be removed after 0.3 s without a sign of life.
    let status = r#"{"clientId": "bootb", "connected": 1, "timeout": 0.3, "liveness": "keep", "services": {"t1": "temperature"}}"#;
    device.send("Status", status).await;
    let first = device.expect_dbus_reply().await;
    world.stop_daemon().await;
    device.disconnect().await;
    world.broker.take().expect("broker").kill().await;

    let mut names = NameLog::start(&world.conn).await;
    let tuning = Tuning {
        mqtt_retry_max: QUICK_RETRY,
        ..Tuning::default()
    };
    world.daemon = Some(Daemon::start_tuned(
        Daemon::config(&world.bus, port, &world.data_dir()),
        tuning,
    ));
    let t1 = "com.victronenergy.temperature.mqtt_bootb_t1";
    names
        .until("restored from the state file", |o| o.contains(t1))
        .await;
    // The broker stays away for several times the device's timeout: the device cannot be
    // heard, so that is no reason to remove it. (Time passing is the point here.)
    tokio::time::sleep(Duration::from_millis(1000)).await;
    names.update();
    assert!(
        !names.released.contains(t1),
        "removed while the broker was away"
    );

    world.broker = Some(TestBroker::start_on(port).await);
    let mut device = world.device("bootb").await;
    device.send("Status", status).await;
    let again = device.expect_dbus_reply().await;
    assert_eq!(again["deviceInstance"], first["deviceInstance"]);
    names.update();
    assert!(
        names.owned.contains(t1) && !names.released.contains(t1),
        "the service stayed on D-Bus through it all"
    );
}

fn status(id: &str, services: &str) -> String {
    format!(r#"{{"clientId": "{id}", "connected": 1, "services": {services}}}"#)
}

/// Publishes a Status for each id over `publisher` and collects the `DBus` replies that
/// `watcher` (subscribed to `device/+/DBus`) sees: device → its instances.
async fn register_all(
    publisher: &TestDevice,
    watcher: &mut TestDevice,
    ids: &[String],
    services: &str,
) -> BTreeMap<String, serde_json::Value> {
    for id in ids {
        publisher
            .publish(&format!("device/{id}/Status"), &status(id, services))
            .await;
    }
    let mut replies = BTreeMap::new();
    for id in ids {
        let m = watcher.expect(&format!("device/{id}/DBus")).await;
        let reply: serde_json::Value = serde_json::from_str(&m.payload).expect("JSON reply");
        replies.insert(id.clone(), reply["deviceInstance"].clone());
    }
    replies
}

#[tokio::test]
async fn a_broker_restart_under_load_loses_nothing() {
    const DEVICES: usize = 100;
    let mut world = World::start_without_daemon().await;
    let mut config = world.config();
    config.limits.max_devices = 2 * DEVICES;
    config.limits.max_services = 4 * DEVICES;
    let tuning = Tuning {
        mqtt_retry_max: QUICK_RETRY,
        ..Tuning::default()
    };
    world.start_daemon_tuned(config, tuning).await;
    let port = world.port();
    let ids: Vec<String> = (0..DEVICES).map(|i| format!("load{i:03}")).collect();
    let two = r#"{"t1": "temperature", "tk1": "tank"}"#;
    let publisher = TestDevice::connect_with(port, "fleet", None, &[]).await;
    let mut watcher = TestDevice::connect_with(port, "fleet-watch", None, &["device/+/DBus"]).await;
    let before = register_all(&publisher, &mut watcher, &ids, two).await;
    let mut names = NameLog::start(&world.conn).await;
    names
        .until("every service owned", |o| {
            o.iter().filter(|n| n.contains(".mqtt_load")).count() == 2 * DEVICES
        })
        .await;

    // Load: values from every device, round robin, through the whole restart.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = TestDevice::connect_with(port, "loader", None, &[]).await;
    let (flag, load_ids) = (stop.clone(), ids.clone());
    let load = tokio::spawn(async move {
        let mut n = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let id = &load_ids[(n as usize) % load_ids.len()];
            loader
                .publish(
                    &format!("device/{id}/Values"),
                    &format!(
                        r#"{{"t1": {{"Temperature": {}}}, "tk1": {{"Level": 50}}}}"#,
                        n % 100
                    ),
                )
                .await;
            n += 1;
            if n.is_multiple_of(20) {
                tokio::task::yield_now().await;
            }
        }
        n
    });
    values_flow(&world, &ids[0]).await;

    world.broker.take().expect("broker").kill().await;
    world.broker = Some(TestBroker::start_on(port).await);
    let mut presence =
        TestDevice::connect_with(port, "presence", None, &["dbus-mqtt-devices/status"]).await;
    loop {
        let m = presence.expect("dbus-mqtt-devices/status").await;
        if m.payload.contains("\"online\": 1") {
            break;
        }
    }
    // Devices announce themselves again after a reconnect, as they do.
    let publisher = TestDevice::connect_with(port, "fleet2", None, &[]).await;
    let mut watcher =
        TestDevice::connect_with(port, "fleet-watch2", None, &["device/+/DBus"]).await;
    let after = register_all(&publisher, &mut watcher, &ids, two).await;
    assert_eq!(after, before, "every device keeps its instances");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = load.await.expect("load task");
    assert!(sent > 0);
    // Values reach D-Bus after the restart. A path the load does not set: the loader's
    // last messages may still be on their way (another client, so in no order with these).
    publisher
        .publish("device/load042/Values", r#"{"t1": {"Humidity": 12.5}}"#)
        .await;
    wait_for_value(
        &world.conn,
        "com.victronenergy.temperature.mqtt_load042_t1",
        "/Humidity",
        |v| f64::try_from(v.clone()).ok() == Some(12.5),
    )
    .await;
    names.update();
    assert_eq!(
        names
            .released
            .iter()
            .filter(|n| n.contains(".mqtt_load"))
            .count(),
        0,
        "no service left D-Bus: {:?}",
        names.released
    );
}

/// Waits until a value the loader sends for `id` shows on D-Bus.
async fn values_flow(world: &World, id: &str) {
    let service = format!("com.victronenergy.tank.mqtt_{id}_tk1");
    wait_for_value(&world.conn, &service, "/Level", |v| {
        f64::try_from(v.clone()).ok() == Some(50.0)
    })
    .await;
}

#[tokio::test]
async fn a_data_dir_that_refuses_writes_costs_one_warning_a_minute_and_no_service() {
    let world = World::start_without_daemon().await;
    let data = world.data_dir();
    // What the daemon writes first cannot be created: as on a read-only or full data
    // directory, the write fails (the tests run as root, for whom permissions are no
    // obstacle, so a directory stands where the file goes).
    let obstacle = data.join("state.json.tmp");
    std::fs::create_dir_all(obstacle.join("in-the-way")).expect("obstacle");
    let mut daemon = world.start_process(&[]).await.expect("daemon online");
    let publisher = TestDevice::connect_with(world.port(), "ro-fleet", None, &[]).await;
    let mut watcher =
        TestDevice::connect_with(world.port(), "ro-watch", None, &["device/+/DBus"]).await;
    // Each registration is a failed write; each device is answered all the same.
    for i in 0..10 {
        let ids = [format!("ro{i}")];
        let replies =
            register_all(&publisher, &mut watcher, &ids, r#"{"t1": "temperature"}"#).await;
        assert!(replies[&ids[0]]["t1"].is_u64());
    }
    daemon.expect_log("could not write the state file").await;
    assert_eq!(
        daemon.log_count("could not write the state file"),
        1,
        "{:#?}",
        daemon.log()
    );
    // Writable again: the next change writes everything, and says so.
    std::fs::remove_dir_all(&obstacle).expect("obstacle removed");
    let ids = ["ro10".to_string()];
    register_all(&publisher, &mut watcher, &ids, r#"{"t1": "temperature"}"#).await;
    daemon.expect_log("the state file is written again").await;
    let saved = std::fs::read_to_string(data.join("state.json")).expect("state file");
    for i in 0..=10 {
        assert!(saved.contains(&format!("\"ro{i}\"")), "ro{i} in {saved}");
    }
    assert!(daemon.signal(libc::SIGTERM).await.success());
}

#[tokio::test]
async fn an_unusable_state_file_is_set_aside_and_retained_status_still_restores() {
    let valid = r#"{"format": 1, "devices": [{"clientId": "gone1", "status": {"clientId": "gone1", "connected": 1, "services": {"t1": "temperature"}}}]}"#;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "truncated",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
            "is not valid",
        ),
        (
            "corrupted",
            vec![0xff, 0xfe, 0x00, b'{', 0x80, 0x81],
            "is not valid",
        ),
        (
            "future",
            br#"{"format": 7, "devices": {"shape": "unknown"}}"#.to_vec(),
            "has format 7",
        ),
    ];
    let world = World::start_without_daemon().await;
    let device = world.device("sf1").await;
    device
        .publish_retained(
            "device/sf1/Status",
            &status("sf1", r#"{"t1": "temperature"}"#),
        )
        .await;
    let t1 = "com.victronenergy.temperature.mqtt_sf1_t1";
    let data = world.data_dir();
    for (what, content, reason) in cases {
        for entry in std::fs::read_dir(&data).expect("data dir").flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("state.json")
            {
                std::fs::remove_file(entry.path()).expect("clean data dir");
            }
        }
        std::fs::write(data.join("state.json"), &content).expect("state file");
        let mut daemon = world.start_process(&[]).await.expect("the daemon starts");
        wait_name_owned(&world.conn, t1).await;
        daemon.expect_log("the state file cannot be used").await;
        assert_eq!(daemon.log_count(reason), 1, "{what}: {:#?}", daemon.log());
        let kept: Vec<_> = std::fs::read_dir(&data)
            .expect("data dir")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.set-aside-")
            })
            .collect();
        assert_eq!(kept.len(), 1, "{what}: set aside, not deleted");
        assert_eq!(
            std::fs::read(kept[0].path()).expect("kept file"),
            content,
            "{what}"
        );
        assert!(daemon.signal(libc::SIGTERM).await.success());
        wait_name_gone(&world.conn, t1).await;
        // The new file holds the device restored from its retained Status.
        let saved = std::fs::read_to_string(data.join("state.json")).expect("new state");
        assert!(saved.contains("\"sf1\""), "{what}: {saved}");
    }
    device.publish_retained("device/sf1/Status", "").await;
}

/// A seed from the clock, or `TEST_SEED` to replay a run; printed either way.
fn seed() -> u64 {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("TEST_SEED={seed}");
    seed
}

#[tokio::test]
async fn sigkill_in_a_burst_of_registrations_loses_no_answered_device() {
    const DEVICES: usize = 100;
    let world = World::start_without_daemon().await;
    let mut names = NameLog::start(&world.conn).await;
    let limits = ["--max-devices", "200", "--max-services", "400"];
    let daemon = world.start_process(&limits).await.expect("daemon online");
    let port = world.port();
    let publisher = TestDevice::connect_with(port, "kill-fleet", None, &[]).await;
    let mut watcher = TestDevice::connect_with(
        port,
        "kill-watch",
        None,
        &["device/+/DBus", "dbus-mqtt-devices/status"],
    )
    .await;
    // The kill comes after a random number of replies, 1 to 99.
    let kill_after = 1 + (seed() % (DEVICES as u64 - 1)) as usize;
    let ids: Vec<String> = (0..DEVICES).map(|i| format!("kill{i:03}")).collect();
    let two = r#"{"t1": "temperature", "tk1": "tank"}"#;
    for id in &ids {
        publisher
            .publish(&format!("device/{id}/Status"), &status(id, two))
            .await;
    }
    let mut answered: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut daemon = Some(daemon);
    loop {
        let m = watcher.next().await;
        if m.topic == "dbus-mqtt-devices/status" {
            // The broker publishes the will once it has passed on everything the
            // killed daemon sent: every answer is in by then.
            if m.payload.contains("\"online\": 0") {
                break;
            }
            continue;
        }
        let id = m
            .topic
            .trim_start_matches("device/")
            .trim_end_matches("/DBus");
        let reply: serde_json::Value = serde_json::from_str(&m.payload).expect("JSON");
        answered.insert(id.to_string(), reply["deviceInstance"].clone());
        if answered.len() == kill_after {
            let status = daemon.take().expect("running").signal(libc::SIGKILL).await;
            assert!(!status.success());
        }
    }
    assert!(answered.len() >= kill_after);
    // The killed daemon's connections are gone, and every name with them.
    names
        .until("nothing left of the killed daemon", |o| {
            !o.iter().any(|n| n.contains(".mqtt_"))
        })
        .await;

    let restarted = world.start_process(&limits).await.expect("restarted");
    names
        .until("every answered device back", |o| {
            answered.keys().all(|id| {
                o.contains(&format!("com.victronenergy.temperature.mqtt_{id}_t1"))
                    && o.contains(&format!("com.victronenergy.tank.mqtt_{id}_tk1"))
            })
        })
        .await;
    for (id, instances) in &answered {
        for (service, kind) in [("t1", "temperature"), ("tk1", "tank")] {
            let name = format!("com.victronenergy.{kind}.mqtt_{id}_{service}");
            let instance = int(&get_value(&world.conn, &name, "/DeviceInstance").await);
            assert_eq!(
                Some(instance),
                instances[service].as_i64(),
                "{name} kept its instance"
            );
        }
    }
    // Every service on the bus is whole, and no (type, instance) is there twice.
    let mut seen = BTreeSet::new();
    for name in names.device_services() {
        let reply = world
            .conn
            .call_method(
                Some(name.as_str()),
                "/",
                Some("com.victronenergy.BusItem"),
                "GetItems",
                &(),
            )
            .await
            .expect("GetItems");
        let items: std::collections::HashMap<
            String,
            std::collections::HashMap<String, zbus::OwnedVariant>,
        > = reply.body().deserialize().expect("a{sa{sv}}");
        for path in [
            "/DeviceInstance",
            "/ProductName",
            "/Mgmt/Connection",
            "/Connected",
        ] {
            assert!(items.contains_key(path), "{name} has {path}");
        }
        let kind = name.split('.').nth(2).expect("type").to_string();
        let instance = int(&items["/DeviceInstance"]["Value"]);
        assert!(
            seen.insert((kind, instance)),
            "{name}: instance {instance} twice"
        );
    }
    assert!(restarted.signal(libc::SIGTERM).await.success());
}

#[tokio::test]
async fn a_connection_the_bus_refuses_fails_that_registration_only() {
    // The test's own connection, the settings service and the daemon's settings client,
    // then room for three services.
    let bus = TestBus::start_with_connection_limit(6).await;
    let world = World::start_on(bus).await;
    let mut world = world;
    world.start_daemon().await;
    let mut devices = Vec::new();
    let mut refused = None;
    for i in 0..6 {
        let id = format!("cl{i}");
        let mut device = world.device(&id).await;
        let reply = device.register(r#"{"t1": "temperature"}"#).await;
        if reply["deviceInstance"]["t1"].is_u64() {
            devices.push(device);
        } else {
            let error = device.expect_error().await;
            refused = Some((device, error));
            break;
        }
    }
    let (mut refused, error) = refused.expect("the bus refused a connection");
    assert!(!devices.is_empty());
    assert_eq!(error["error"], "registration_failed", "{error}");
    assert_eq!(error["service"], "t1", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("connecting to the d-bus"),
        "the reason: {message}"
    );
    // The others are unaffected: on the bus, taking values.
    for (i, device) in devices.iter().enumerate() {
        let service = format!("com.victronenergy.temperature.mqtt_cl{i}_t1");
        device
            .send("Values", r#"{"t1": {"Temperature": 4.5}}"#)
            .await;
        wait_for_value(&world.conn, &service, "/Temperature", |v| {
            f64::try_from(v.clone()).ok() == Some(4.5)
        })
        .await;
    }
    // Room again: the refused device registers when it announces itself again.
    let first = devices.remove(0);
    first
        .send("Status", r#"{"clientId": "cl0", "connected": 0}"#)
        .await;
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_cl0_t1").await;
    let id = refused.id.clone();
    let reply = refused.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{id}: {reply}");
}
