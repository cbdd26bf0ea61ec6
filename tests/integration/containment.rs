//! A defect met while handling one device's message costs that device, not the daemon; and
//! a message that made the daemon fail is not replayed into the same failure after a restart
//! (issue 10). The failures are injected on purpose (feature `fault-injection`, see
//! src/fault.rs); the hard-crash variants, with the daemon as a process, are in `crash`.

use super::world::*;

fn status(id: &str, version: &str, services: &str) -> String {
    format!(
        r#"{{"clientId": "{id}", "connected": 1, "version": "{version}", "services": {services}}}"#
    )
}

/// Another device, registered before the failure, keeps serving: its name is owned and a
/// value sent now reaches D-Bus.
async fn still_serving(world: &World, device: &TestDevice, service: &str) {
    assert!(
        owner(&world.conn, service).await.is_some(),
        "{service} gone"
    );
    device.send("Values", r#"{"k1": {"Level": 42}}"#).await;
    let wait = async {
        loop {
            let v = get_value(&world.conn, service, "/Level").await;
            if f64::try_from(v).ok() == Some(42.0) {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("the other device's value reached D-Bus");
}

#[tokio::test]
async fn a_panic_in_a_device_task_costs_that_device_only() {
    let world = World::start().await;
    let mut names = NameLog::start(&world.conn).await;
    let keeper = world.device("keepc1").await;
    let mut keeper = keeper;
    keeper.register(r#"{"k1": "tank"}"#).await;
    let keeper_service = "com.victronenergy.tank.mqtt_keepc1_k1";

    let mut bad = world.device("badc1").await;
    bad.send(
        "Status",
        &status(
            "badc1",
            "inject:panic@device",
            r#"{"t1": "temperature", "t2": "temperature"}"#,
        ),
    )
    .await;
    let error = bad.expect_error().await;
    assert_eq!(error["error"], "internal_error", "{error}");
    assert_eq!(error["topic"], "device/badc1/Status", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("fault injected at device"), "{message}");
    // Its services were on D-Bus (the fault comes after they are registered) and are gone.
    let bad_services = [
        "com.victronenergy.temperature.mqtt_badc1_t1",
        "com.victronenergy.temperature.mqtt_badc1_t2",
    ];
    names
        .until_seen("the failed device's services up, then gone", |log| {
            bad_services
                .iter()
                .all(|s| log.ever.contains(*s) && !log.owned.contains(*s))
        })
        .await;
    // No reply for the failed registration.
    assert!(bad.drain().iter().all(|m| m.topic != "device/badc1/DBus"));

    still_serving(&world, &keeper, keeper_service).await;
    let mut fresh = world.device("freshc1").await;
    let reply = fresh.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
    // A live message is always handled: the device registers again with a sound Status.
    bad.send(
        "Status",
        &status("badc1", "v1.0", r#"{"t1": "temperature"}"#),
    )
    .await;
    let reply = bad.expect_dbus_reply().await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
}

#[tokio::test]
async fn a_panic_in_the_registry_costs_that_device_only() {
    let world = World::start().await;
    let mut keeper = world.device("keepc2").await;
    keeper.register(r#"{"k1": "tank"}"#).await;

    let mut bad = world.device("badc2").await;
    // Registered first, so that the failure has services to take away.
    bad.register(r#"{"t1": "temperature"}"#).await;
    let service = "com.victronenergy.temperature.mqtt_badc2_t1";
    bad.send(
        "Status",
        &status("badc2", "inject:panic@registry", r#"{"t1": "temperature"}"#),
    )
    .await;
    let error = bad.expect_error().await;
    assert_eq!(error["error"], "internal_error", "{error}");
    wait_name_gone(&world.conn, service).await;
    still_serving(&world, &keeper, "com.victronenergy.tank.mqtt_keepc2_k1").await;
}

#[tokio::test]
async fn a_retained_status_that_panicked_is_set_aside_after_a_restart() {
    let mut world = World::start().await;
    let mut keeper = world.device("keepc3").await;
    keeper.register(r#"{"k1": "tank"}"#).await;
    let mut bad = world.device("badc3").await;
    bad.publish_retained(
        "device/badc3/Status",
        &status("badc3", "inject:panic@device", r#"{"t1": "temperature"}"#),
    )
    .await;
    assert_eq!(bad.expect_error().await["error"], "internal_error");

    world.stop_daemon().await;
    let mut names = NameLog::start(&world.conn).await;
    world.start_daemon().await;
    let error = bad.expect_error().await;
    assert_eq!(error["error"], "internal_error", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("made the daemon fail before"), "{message}");
    // The keeper is back from the state file; the set-aside device never came up.
    names
        .until("the keeper restored", |o| {
            o.contains("com.victronenergy.tank.mqtt_keepc3_k1")
        })
        .await;
    assert!(!names
        .ever
        .contains("com.victronenergy.temperature.mqtt_badc3_t1"));
    // Clear the retained message, as a device owner would.
    bad.publish_retained("device/badc3/Status", "").await;
}
