//! Every kind of bad input from protocol.md's "Rules for input": each gets a
//! reason on `device/<id>/Error` (where the id is usable), the daemon keeps
//! running, and a good registration afterwards still works; registrations
//! made before are never dropped.

use super::world::*;

/// Sends `payload` on `device/<id>/<leaf>`, expects an Error with `code`,
/// then checks that a good device still registers.
async fn refused(world: &World, device: &mut TestDevice, leaf: &str, payload: &str, code: &str) {
    device.send(leaf, payload).await;
    let error = device.expect_error().await;
    assert_eq!(error["error"], code, "{payload} → {error}");
    assert!(
        !error["message"].as_str().unwrap_or_default().is_empty(),
        "a reason in words: {error}"
    );
    assert_eq!(
        error["topic"].as_str().unwrap(),
        format!("device/{}/{leaf}", device.id)
    );
    let mut good = world.device("good_after").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
    good.disconnect().await;
}

#[tokio::test]
async fn malformed_status_messages_are_answered_and_harmless() {
    let world = World::start().await;
    // A registration made before the bad input must survive all of it.
    let mut keeper = world.device("keeper").await;
    keeper.register(r#"{"k1": "tank"}"#).await;
    let keeper_name = "com.victronenergy.tank.mqtt_keeper_k1";

    let mut bad = world.device("bad1").await;
    let cases = [
        ("not json at all", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (
            r#"{"clientId": "bad1", "connected": 1, "services": {"t1": NaN}}"#,
            "invalid_json",
        ),
        (
            r#"{"connected": 1, "services": {"t1": "temperature"}}"#,
            "invalid_client_id",
        ),
        (
            r#"{"clientId": "other", "connected": 1, "services": {"t1": "temperature"}}"#,
            "client_id_mismatch",
        ),
        (
            r#"{"clientId": "bad1", "connected": "1", "services": {"t1": "temperature"}}"#,
            "invalid_field",
        ),
        (
            r#"{"clientId": "bad1", "connected": 1, "services": []}"#,
            "invalid_field",
        ),
        (r#"{"clientId": "bad1", "connected": 1}"#, "invalid_field"),
        (
            r#"{"clientId": "bad1", "connected": 1, "services": {"t1": "toaster"}}"#,
            "unknown_service_type",
        ),
        (
            r#"{"clientId": "bad1", "connected": 1, "services": {"t-1": "temperature"}}"#,
            "invalid_service_id",
        ),
        (
            r#"{"clientId": "bad1", "connected": 1, "services": {"t1": 42}}"#,
            "invalid_field",
        ),
    ];
    for (payload, code) in cases {
        refused(&world, &mut bad, "Status", payload, code).await;
    }
    let huge = format!(
        r#"{{"clientId": "bad1", "connected": 1, "services": {{}}, "pad": "{}"}}"#,
        "x".repeat(20_000)
    );
    refused(&world, &mut bad, "Status", &huge, "payload_too_large").await;

    assert!(owner(&world.conn, keeper_name).await.is_some());
}

#[tokio::test]
async fn a_bad_service_does_not_stop_the_good_ones() {
    let world = World::start().await;
    let mut device = world.device("mixed1").await;
    device
        .send(
            "Status",
            r#"{"clientId": "mixed1", "connected": 1, "services": {"t1": "temperature", "t2": "toaster"}}"#,
        )
        .await;
    let error = device.expect_error().await;
    assert_eq!(error["error"], "unknown_service_type");
    assert_eq!(error["service"], "t2");
    let reply = device.expect_dbus_reply().await;
    let ids: Vec<&String> = reply["deviceInstance"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(ids, ["t1"]);
}

#[tokio::test]
async fn a_refused_declaration_keeps_the_registration_it_had() {
    let world = World::start().await;
    let mut device = world.device("typo1").await;
    device.register(r#"{"t1": "temperature"}"#).await;
    let name = "com.victronenergy.temperature.mqtt_typo1_t1";
    let before = owner(&world.conn, name).await.unwrap();
    device
        .send(
            "Status",
            r#"{"clientId": "typo1", "connected": 1, "services": {"t1": "temprature"}}"#,
        )
        .await;
    assert_eq!(device.expect_error().await["service"], "t1");
    let reply = device.expect_dbus_reply().await;
    assert!(reply["deviceInstance"]["t1"].is_u64());
    assert_eq!(owner(&world.conn, name).await.unwrap(), before);
}

#[tokio::test]
async fn over_long_client_ids_are_refused() {
    let world = World::start().await;
    let id = "x".repeat(101);
    let mut device = world.device(&id).await;
    let status =
        format!(r#"{{"clientId": "{id}", "connected": 1, "services": {{"t1": "temperature"}}}}"#);
    refused(&world, &mut device, "Status", &status, "invalid_client_id").await;
}

#[tokio::test]
async fn proxy_and_values_from_unregistered_devices_are_refused() {
    let world = World::start().await;
    let mut device = world.device("ghost").await;
    refused(
        &world,
        &mut device,
        "Proxy",
        r#"{"topicPath": "W/c0ffee000001/temperature/1", "values": {"Temperature": 1}}"#,
        "not_registered",
    )
    .await;
    refused(
        &world,
        &mut device,
        "Values",
        r#"{"t1": {"Temperature": 1}}"#,
        "not_registered",
    )
    .await;
}

#[tokio::test]
async fn a_flood_from_one_device_does_not_block_another() {
    let world = World::start().await;
    let flood = world.device("flood").await;
    for i in 0..2000 {
        flood.send("Status", &format!("garbage {i}")).await;
    }
    let mut good = world.device("calm").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64());
}
