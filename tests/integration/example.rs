//! The example device client (`examples/device.py`, Python with paho-mqtt)
//! registers, sends values and leaves through its last will.

use super::world::*;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The interpreter with Debian's python3-paho-mqtt.
const PYTHON: &str = "/usr/bin/python3";

fn example() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/device.py")
}

#[tokio::test]
async fn example_device_registers_sends_values_and_leaves_by_its_last_will() {
    let paho = std::process::Command::new(PYTHON)
        .args(["-c", "import paho.mqtt"])
        .status();
    assert!(
        matches!(paho, Ok(s) if s.success()),
        "{PYTHON} cannot import paho.mqtt: install package python3-paho-mqtt"
    );
    let world = World::start().await;
    let mut child = tokio::process::Command::new(PYTHON)
        .arg(example())
        .args([
            "--port",
            &world.port().to_string(),
            "--id",
            "example1",
            "--v3",
        ])
        .args(["--interval", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("running the example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut registered = None;
    let mut sent = 0;
    let read = async {
        while let Some(line) = lines.next_line().await.expect("reading its output") {
            if let Some(reply) = line.strip_prefix("registered: ") {
                registered = Some(serde_json::from_str::<serde_json::Value>(reply).unwrap());
            }
            if line.starts_with("sent ") {
                sent += 1;
                if sent == 3 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("example output");
    let reply = registered.expect("the example printed its DBus reply");
    assert_eq!(reply["portalId"], PORTAL);

    let t1 = "com.victronenergy.temperature.mqtt_example1_t1";
    let tk1 = "com.victronenergy.tank.mqtt_example1_tk1";
    let name = String::try_from(get_value(&world.conn, t1, "/CustomName").await).unwrap();
    assert_eq!(name, "Example fridge");
    let level =
        f64::try_from(get_value(&world.conn, tk1, "/Level").await).expect("a level arrived");
    assert!((40.0..=60.0).contains(&level), "{level}");

    // Killed without a goodbye: the broker publishes its last will.
    child.start_kill().unwrap();
    let _ = child.wait().await;
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        wait_name_gone(&world.conn, t1),
    )
    .await
    .expect("the last will removed the device");
}
