//! `dbus-mqtt-devices sim` as a user runs it: the binary as a subprocess on a free port with a
//! temporary data directory and `--json`, driven over MQTT like a device and a gateway client.

use super::world::{TestDevice, WAIT};
use serde_json::Value as Json;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Overall limit of one sim test (each wait inside has its own, shorter one).
const SIM_TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary running `sim --json`, with its stdout parsed line by line.
pub(super) struct Sim {
    child: Child,
    lines: mpsc::UnboundedReceiver<Json>,
    seen: Vec<Json>,
    pub(super) port: u16,
    pub(super) portal: String,
    pub(super) ready: Json,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local addr").port()
}

impl Sim {
    /// Starts `sim` with `extra` arguments and waits for its "ready" line.
    pub(super) async fn start(data_dir: &Path, extra: &[&str], path_env: Option<&str>) -> Sim {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dbus-mqtt-devices"));
        command
            .args(["--log-level", "warn", "sim", "--json", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(path) = path_env {
            command.env("PATH", path);
        }
        let mut child = command.spawn().expect("starting dbus-mqtt-devices sim");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let json: Json = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("--json printed a line that is not JSON ({e}): {line}")
                });
                if tx.send(json).is_err() {
                    break;
                }
            }
        });
        let mut sim = Sim {
            child,
            lines,
            seen: Vec::new(),
            port,
            portal: String::new(),
            ready: Json::Null,
        };
        let ready = sim.expect_line("ready", |l| l["event"] == "ready").await;
        assert_eq!(ready["port"], port, "ready line: {ready}");
        sim.portal = ready["portalId"].as_str().expect("portalId").to_owned();
        sim.ready = ready;
        sim
    }

    /// The next line (seen or coming) that `pred` accepts; earlier lines are kept.
    pub(super) async fn expect_line(&mut self, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let seen = &mut self.seen;
        let lines = &mut self.lines;
        let wait = async {
            loop {
                let line = lines.recv().await.expect("sim's output ended");
                if pred(&line) {
                    return line;
                }
                seen.push(line);
            }
        };
        match tokio::time::timeout(WAIT, wait).await {
            Ok(l) => l,
            Err(_) => panic!(
                "no {what} line within {WAIT:?}; lines seen: {:#?}",
                self.seen
            ),
        }
    }

    /// Sends `signal` (TERM or INT) and expects exit code 0.
    pub(super) async fn stop_with(mut self, signal: &str) -> Sim {
        let pid = self.child.id().expect("sim is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("sim did not stop within {WAIT:?} after SIG{signal}"))
            .expect("waiting for sim");
        assert_eq!(
            exit.code(),
            Some(0),
            "sim's exit after SIG{signal}: {exit:?}"
        );
        self
    }

    /// The pid of the dbus-daemon sim reported, if it spawned one.
    fn dbus_daemon_pid(&self) -> Option<u64> {
        self.ready["dbusDaemonPid"].as_u64()
    }
}

/// Waits for a message on `topic` whose payload is `payload`, skipping others.
async fn expect_payload(client: &mut TestDevice, topic: &str, payload: &str) -> bool {
    let wait = async {
        loop {
            let m = client.expect(topic).await;
            if m.payload == payload {
                return m.retained;
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no {payload} on {topic} within {WAIT:?}"))
}

fn assert_process_gone(pid: u64) {
    let proc = format!("/proc/{pid}");
    // A zombie would still have a status file; a reaped process has none.
    assert!(
        !Path::new(&proc).exists(),
        "dbus-daemon (pid {pid}) is still there after sim stopped"
    );
}

pub(super) async fn timed<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(SIM_TEST_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {SIM_TEST_TIMEOUT:?}"))
}

#[tokio::test]
async fn sim_serves_registration_writes_proxy_and_keepalive_then_stops_on_sigterm() {
    timed(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sim = Sim::start(dir.path(), &[], None).await;
        assert_eq!(
            sim.portal, "5157e0000001",
            "the documented default portal id"
        );
        let daemon_pid = sim
            .dbus_daemon_pid()
            .expect("dbus-daemon is installed here, so sim spawns it");
        let portal = sim.portal.clone();

        // A GUI-like client: keep-alive first, as on a GX, then everything under N/.
        let mut app =
            TestDevice::connect_with(sim.port, "app", None, &[&format!("N/{portal}/#")]).await;
        app.publish(&format!("R/{portal}/keepalive"), "").await;
        let done = app
            .expect(&format!("N/{portal}/full_publish_completed"))
            .await;
        let done: Json = serde_json::from_str(&done.payload).expect("JSON");
        assert!(
            done["value"].as_u64().is_some(),
            "full_publish_completed: {done}"
        );

        let mut device = TestDevice::connect(sim.port, "simdev").await;
        let reply = device.register(r#"{"t1": "temperature"}"#).await;
        assert_eq!(reply["portalId"], portal.as_str());
        let instance = reply["deviceInstance"]["t1"].as_i64().expect("instance");
        let service = "com.victronenergy.temperature.mqtt_simdev_t1";
        let added = sim
            .expect_line("service_added", |l| {
                l["event"] == "service_added" && l["service"] == service
            })
            .await;
        assert_eq!(added["type"], "temperature");
        assert_eq!(added["instance"], instance);

        let n = format!("N/{portal}/temperature/{instance}");
        let w = format!("W/{portal}/temperature/{instance}");
        // W/ → SetValue: 21.5 goes as a double, 22 as an int32 the float path coerces.
        device
            .publish(&format!("{w}/Temperature"), r#"{"value": 21.5}"#)
            .await;
        expect_payload(&mut app, &format!("{n}/Temperature"), r#"{"value":21.5}"#).await;
        device
            .publish(&format!("{w}/Temperature"), r#"{"value": 22}"#)
            .await;
        expect_payload(&mut app, &format!("{n}/Temperature"), r#"{"value":22.0}"#).await;
        device
            .publish(&format!("{w}/Temperature"), r#"{"value": null}"#)
            .await;
        expect_payload(&mut app, &format!("{n}/Temperature"), r#"{"value":null}"#).await;

        // Proxy (v2): the daemon republishes to W/, the gateway writes, N/ shows it.
        device
            .send(
                "Proxy",
                &format!(
                    r#"{{"topicPath": "{w}", "values": {{"Temperature": 23, "Humidity": 56.5}}}}"#
                ),
            )
            .await;
        expect_payload(&mut app, &format!("{n}/Temperature"), r#"{"value":23.0}"#).await;
        expect_payload(&mut app, &format!("{n}/Humidity"), r#"{"value":56.5}"#).await;
        let changed = sim
            .expect_line("value /Humidity", |l| {
                l["event"] == "value" && l["service"] == service && l["path"] == "/Humidity"
            })
            .await;
        assert_eq!(changed["value"], 56.5);

        // R/ reads an item, and a node's whole sub-tree.
        app.drain();
        app.publish(&format!("R/{portal}/temperature/{instance}/Humidity"), "")
            .await;
        expect_payload(&mut app, &format!("{n}/Humidity"), r#"{"value":56.5}"#).await;
        app.drain();
        app.publish(&format!("R/{portal}/temperature/{instance}/Mgmt"), "")
            .await;
        expect_payload(
            &mut app,
            &format!("{n}/Mgmt/Connection"),
            r#"{"value":"MQTT:simdev"}"#,
        )
        .await;

        // A second keep-alive republishes everything, then says so.
        app.drain();
        app.publish(&format!("R/{portal}/keepalive"), "").await;
        expect_payload(&mut app, &format!("{n}/Humidity"), r#"{"value":56.5}"#).await;
        app.expect(&format!("N/{portal}/full_publish_completed"))
            .await;

        // The serial is retained: a client that comes later still gets it.
        let mut late =
            TestDevice::connect_with(sim.port, "late", None, &["N/+/system/0/Serial"]).await;
        let retained = expect_payload(
            &mut late,
            &format!("N/{portal}/system/0/Serial"),
            &format!(r#"{{"value":"{portal}"}}"#),
        )
        .await;
        assert!(retained, "N/<portal>/system/0/Serial must be retained");

        // The device says goodbye: every topic of its service once with an empty payload.
        device
            .send("Status", r#"{"clientId": "simdev", "connected": 0}"#)
            .await;
        expect_payload(&mut app, &format!("{n}/Temperature"), "").await;
        expect_payload(&mut app, &format!("{n}/Mgmt/Connection"), "").await;
        sim.expect_line("service_removed", |l| {
            l["event"] == "service_removed" && l["service"] == service
        })
        .await;

        sim.stop_with("TERM").await;
        assert_process_gone(daemon_pid);
    })
    .await;
}

#[tokio::test]
async fn sim_demo_device_appears_and_its_values_change_then_stops_on_sigint() {
    timed(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sim = Sim::start(dir.path(), &["--demo"], None).await;
        assert_eq!(sim.ready["demo"], true);
        let fridge = sim
            .expect_line("demo temperature service", |l| {
                l["event"] == "service_added"
                    && l["service"] == "com.victronenergy.temperature.mqtt_demo_t1"
            })
            .await;
        assert_eq!(fridge["customName"], "Demo fridge");
        assert_eq!(fridge["values"]["/TemperatureType"], 1);
        let tank = sim
            .expect_line("demo tank service", |l| {
                l["event"] == "service_added"
                    && l["service"] == "com.victronenergy.tank.mqtt_demo_tk1"
            })
            .await;
        assert_eq!(tank["customName"], "Demo water tank");
        assert_eq!(tank["values"]["/FluidType"], 1);

        let is_level = |l: &Json| {
            l["event"] == "value"
                && l["service"] == "com.victronenergy.tank.mqtt_demo_tk1"
                && l["path"] == "/Level"
        };
        let first = sim.expect_line("a tank level", is_level).await["value"].clone();
        let second = sim.expect_line("another tank level", is_level).await["value"].clone();
        assert!(first.is_number() && second.is_number());
        assert_ne!(first, second, "the demo's level changes");
        sim.expect_line("a temperature", |l| {
            l["event"] == "value"
                && l["service"] == "com.victronenergy.temperature.mqtt_demo_t1"
                && l["path"] == "/Temperature"
                && l["value"].is_number()
        })
        .await;

        let pid = sim.dbus_daemon_pid();
        sim.stop_with("INT").await;
        if let Some(pid) = pid {
            assert_process_gone(pid);
        }
    })
    .await;
}

#[tokio::test]
async fn sim_uses_its_embedded_bus_where_no_dbus_daemon_is_installed() {
    timed(async {
        let dir = tempfile::tempdir().expect("temp dir");
        // No dbus-daemon on this PATH (and nothing else sim needs is a program).
        let mut sim = Sim::start(dir.path(), &[], Some("/nonexistent")).await;
        assert_eq!(sim.ready["bus"], "embedded", "ready line: {}", sim.ready);
        assert!(sim.ready["dbusDaemonPid"].is_null());
        let portal = sim.portal.clone();

        let mut app =
            TestDevice::connect_with(sim.port, "app", None, &[&format!("N/{portal}/#")]).await;
        app.publish(&format!("R/{portal}/keepalive"), "").await;
        app.expect(&format!("N/{portal}/full_publish_completed"))
            .await;
        let mut device = TestDevice::connect(sim.port, "embdev").await;
        let reply = device.register(r#"{"tk": "tank"}"#).await;
        let instance = reply["deviceInstance"]["tk"].as_i64().expect("instance");
        sim.expect_line("service_added", |l| {
            l["event"] == "service_added" && l["service"] == "com.victronenergy.tank.mqtt_embdev_tk"
        })
        .await;
        device
            .publish(
                &format!("W/{portal}/tank/{instance}/Level"),
                r#"{"value": 42.5}"#,
            )
            .await;
        expect_payload(
            &mut app,
            &format!("N/{portal}/tank/{instance}/Level"),
            r#"{"value":42.5}"#,
        )
        .await;
        sim.stop_with("TERM").await;
    })
    .await;
}

#[tokio::test]
async fn sim_keeps_device_instances_across_restarts() {
    timed(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = Sim::start(dir.path(), &[], None).await;
        let mut first = TestDevice::connect(sim.port, "first").await;
        let a = first.register(r#"{"t1": "temperature"}"#).await["deviceInstance"]["t1"].clone();
        let mut second = TestDevice::connect(sim.port, "second").await;
        let b = second.register(r#"{"t1": "temperature"}"#).await["deviceInstance"]["t1"].clone();
        assert_ne!(a, b);
        first.disconnect().await;
        second.disconnect().await;
        sim.stop_with("TERM").await;

        let sim = Sim::start(dir.path(), &[], None).await;
        // The second device alone, first this time: it keeps its instance.
        let mut second = TestDevice::connect(sim.port, "second").await;
        let again =
            second.register(r#"{"t1": "temperature"}"#).await["deviceInstance"]["t1"].clone();
        assert_eq!(again, b, "instance after a restart of sim");
        second.disconnect().await;
        sim.stop_with("TERM").await;
    })
    .await;
}

/// A service like an old driver: no `GetItems` (UnknownMethod), node `GetValue` on `/` with
/// relative keys, and `SetValue` whose argument's D-Bus type is reported to the test.
async fn legacy_service(
    bus: &super::support::TestBus,
    name: &str,
) -> (zbus::Connection, mpsc::UnboundedReceiver<String>) {
    use futures_util::StreamExt;
    use zbus::message::Type;
    let conn = bus.client().await;
    let rule = zbus::MatchRule::builder()
        .msg_type(Type::MethodCall)
        .build()
        .expect("match rule");
    let mut calls = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .expect("method call stream");
    let (tx, rx) = mpsc::unbounded_channel();
    let serving = conn.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = calls.next().await {
            let hdr = msg.header();
            let path = hdr
                .path()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let reply = match hdr.member().map(|m| m.as_str()) {
                Some("GetItems") => {
                    zbus::Message::error(&hdr, "org.freedesktop.DBus.Error.UnknownMethod")
                        .build(&("no GetItems here",))
                }
                Some("GetValue") if path == "/" => {
                    let mut d = std::collections::HashMap::new();
                    d.insert("DeviceInstance", zbus::Variant::from(7i32));
                    d.insert("Level", zbus::Variant::from(12.5f64));
                    zbus::Message::method_return(&hdr).build(&(zbus::Variant::from(d),))
                }
                Some("GetValue") => {
                    zbus::Message::method_return(&hdr).build(&(zbus::Variant::from(12.5f64),))
                }
                Some("SetValue") => {
                    let v: zbus::OwnedVariant =
                        msg.body().deserialize().expect("SetValue argument");
                    let _ = tx.send(v.value_signature().to_string());
                    zbus::Message::method_return(&hdr).build(&(0i32,))
                }
                _ => continue,
            };
            let _ = serving.send(&reply.expect("reply")).await;
        }
    });
    conn.request_name(name).await.expect("owning the name");
    (conn, rx)
}

#[tokio::test]
async fn gateway_reads_a_service_without_getitems_and_types_writes_like_flashmq() {
    use dbus_mqtt_devices::sim::gateway::{Event, Gateway, GatewayConfig};
    timed(async {
        let bus = super::support::TestBus::start().await;
        let broker = super::world::TestBroker::start().await;
        let (_service, mut set_values) =
            legacy_service(&bus, "com.victronenergy.tank.legacy").await;
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let gateway = Gateway::start(
            GatewayConfig {
                bus: bus.bus(),
                mqtt_host: "127.0.0.1".into(),
                mqtt_port: broker.port,
                portal: dbus_mqtt_devices::ids::PortalId::parse("c0ffee000001").expect("portal"),
            },
            events_tx,
        )
        .await
        .expect("starting the gateway");
        let added = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(Event::ServiceAdded {
                    service_type,
                    instance,
                    values,
                    ..
                }) = events.recv().await
                {
                    return (service_type, instance, values);
                }
            }
        })
        .await
        .expect("the legacy service was read");
        assert_eq!(added.0, "tank");
        assert_eq!(added.1, 7, "DeviceInstance from node GetValue");
        assert!(
            added.2.contains_key("/Level"),
            "absolute paths: {:?}",
            added.2
        );

        let client = TestDevice::connect_with(broker.port, "writer", None, &[]).await;
        for (payload, signature) in [
            (r#"{"value": 22}"#, "i"),
            (r#"{"value": 22.5}"#, "d"),
            (r#"{"value": 22.0}"#, "d"),
            (r#"{"value": "txt"}"#, "s"),
            (r#"{"value": true}"#, "b"),
            (r#"{"value": null}"#, "ai"),
        ] {
            client.publish("W/c0ffee000001/tank/7/Level", payload).await;
            let got = tokio::time::timeout(WAIT, set_values.recv())
                .await
                .unwrap_or_else(|_| panic!("no SetValue for {payload}"))
                .expect("service running");
            assert_eq!(got, signature, "W/ payload {payload}");
        }
        gateway.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_example_device_registers_and_writes_through_the_gateway() {
    timed(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Sim::start(dir.path(), &[], None).await;
        let example =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/device.py");
        // Protocol v2: values go to the W/ topics of the DBus reply, and
        // sim's gateway turns them into SetValue, as dbus-flashmq does.
        let output = tokio::process::Command::new("/usr/bin/python3")
            .arg(example)
            .args(["--port", &sim.port.to_string(), "--id", "example2"])
            .args(["--count", "5", "--interval", "0.2"])
            .output()
            .await
            .expect("running the example (needs python3-paho-mqtt)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "example failed: {stdout}");
        assert!(stdout.contains("registered: "), "{stdout}");
        assert!(stdout.ends_with("unregistered\n"), "{stdout}");

        let service = "com.victronenergy.temperature.mqtt_example2_t1";
        sim.expect_line("service_added", |l| {
            l["event"] == "service_added" && l["service"] == service
        })
        .await;
        let value = sim
            .expect_line("value", |l| {
                l["event"] == "value" && l["service"] == service && l["path"] == "/Temperature"
            })
            .await;
        assert!(value["value"].as_f64().is_some(), "{value}");
        sim.expect_line("service_removed", |l| {
            l["event"] == "service_removed" && l["service"] == service
        })
        .await;
        sim.stop_with("TERM").await;
    })
    .await
}

#[tokio::test]
async fn mapped_devices_reach_the_gateway_and_a_gateway_write_reaches_the_device() {
    timed(async {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("devices.toml"),
            r#"
[[device]]
id = "grid_meter"
service = "grid"
preset = "shelly-pro3em"
topic = "shellypro3em-08f9e0eb4dd0"
instance = 41

[[device]]
id = "hm800"
service = "pvinverter"
preset = "opendtu"
serial = "116181234567"
instance = 42
"#,
        )
        .expect("devices.toml");
        let mut sim = Sim::start(dir.path(), &[], None).await;
        let portal = sim.portal.clone();
        for service in [
            "com.victronenergy.grid.mqtt_grid_meter",
            "com.victronenergy.pvinverter.mqtt_hm800",
        ] {
            sim.expect_line("service_added", |l| {
                l["event"] == "service_added" && l["service"] == service
            })
            .await;
        }
        let mut app =
            TestDevice::connect_with(sim.port, "app", None, &[&format!("N/{portal}/#")]).await;
        app.publish(&format!("R/{portal}/keepalive"), "").await;
        app.expect(&format!("N/{portal}/full_publish_completed"))
            .await;

        let mut devices =
            TestDevice::connect_with(sim.port, "devices", None, &["solar/116181234567/cmd/#"])
                .await;
        devices
            .publish_retained("shellypro3em-08f9e0eb4dd0/online", "true")
            .await;
        expect_payload(
            &mut app,
            &format!("N/{portal}/grid/41/Connected"),
            r#"{"value":1}"#,
        )
        .await;
        devices
            .publish(
                "shellypro3em-08f9e0eb4dd0/status/em:0",
                r#"{"id":0,"a_act_power":-342.8,"total_act_power":-512.6}"#,
            )
            .await;
        expect_payload(
            &mut app,
            &format!("N/{portal}/grid/41/Ac/Power"),
            r#"{"value":-512.6}"#,
        )
        .await;

        // A write on the gateway (as ESS limits an inverter) reaches OpenDTU.
        app.publish(
            &format!("W/{portal}/pvinverter/42/Ac/PowerLimit"),
            r#"{"value": 400}"#,
        )
        .await;
        let sent = devices
            .expect("solar/116181234567/cmd/limit_nonpersistent_absolute")
            .await;
        assert_eq!(sent.payload, "400");
        sim.stop_with("TERM").await;
    })
    .await
}
