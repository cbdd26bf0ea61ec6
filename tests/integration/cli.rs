//! The binary as a supervisor runs it: flags, exit codes, SIGTERM.

use super::support::TestBus;
use super::world::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_dbus-mqtt-devices");

#[test]
fn version_names_the_program() {
    let out = std::process::Command::new(BINARY)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("dbus-mqtt-devices {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unusable_configuration_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("config.toml");
    std::fs::write(&bad_file, "mqtt-hots = \"typo\"\n").unwrap();
    let cases: [&[&str]; 4] = [
        &["--mqtt-port", "0"],
        &["--portal-id", "a/b"],
        &["--default-timeout=-5"],
        &["--config", bad_file.to_str().unwrap()],
    ];
    for args in cases {
        let out = std::process::Command::new(BINARY)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("dbus-mqtt-devices: "), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test]
async fn sigterm_unregisters_and_exits_0_within_two_seconds() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::start(&bus, &dir.path().join("settings")).await;
    let broker = TestBroker::start().await;
    let conn = bus.client().await;
    let mut watcher =
        TestDevice::connect_with(broker.port, "watch", None, &["dbus-mqtt-devices/status"]).await;

    let mut child = tokio::process::Command::new(BINARY)
        .args(["--dbus-address", &bus.address])
        .args(["--mqtt-port", &broker.port.to_string()])
        .args(["--portal-id", PORTAL])
        .arg("--data-dir")
        .arg(dir.path().join("daemon"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let online = watcher.expect("dbus-mqtt-devices/status").await;
    assert!(online.payload.contains("\"online\": 1"));

    let mut device = TestDevice::connect(broker.port, "sig1").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    assert_eq!(device_services(&conn).await.len(), 1);

    let pid = child.id().unwrap() as i32;
    let started = Instant::now();
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .expect("exited within 2 s")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(device_services(&conn).await.is_empty());
    settings.stop().await;
}

#[tokio::test]
async fn the_daemon_connects_to_a_tls_broker() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::start(&bus, &dir.path().join("settings")).await;
    let broker = TestBroker::start_tls().await;
    let (tls_port, ca) = broker.tls.clone().unwrap();
    let mut config = Daemon::config(&bus, tls_port, &dir.path().join("daemon"));
    config.mqtt.tls = true;
    config.mqtt.ca_file = Some(ca);
    let mut watcher =
        TestDevice::connect_with(broker.port, "watch", None, &["dbus-mqtt-devices/status"]).await;
    let daemon = Daemon::start(config);
    let online = watcher.expect("dbus-mqtt-devices/status").await;
    assert!(online.payload.contains("\"online\": 1"));
    // A device on the plain listener of the same broker registers.
    let mut device = TestDevice::connect(broker.port, "tls1").await;
    let reply = device.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64());
    daemon.stop().await;
    settings.stop().await;
}
