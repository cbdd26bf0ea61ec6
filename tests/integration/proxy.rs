//! The Proxy message (v2): values republished to the gateway's W/ topics,
//! only for the device's own services.

use super::world::*;

#[tokio::test]
async fn proxy_republishes_each_value_to_the_w_topic() {
    let world = World::start().await;
    let mut device = world.device("px1").await;
    let reply = device.register(r#"{"t1": "temperature"}"#).await;
    let w = reply["topicPath"]["t1"]["W"].as_str().unwrap().to_owned();

    let mut gateway = TestDevice::connect_with(world.port(), "gw", None, &["W/#"]).await;
    device
        .send(
            "Proxy",
            &format!(
                r#"{{"topicPath": "{w}", "values": {{"Temperature": 23, "Humidity": 56.5}}}}"#
            ),
        )
        .await;
    let t = gateway.expect(&format!("{w}/Temperature")).await;
    assert_eq!(t.payload, r#"{"value": 23}"#);
    let h = gateway.expect(&format!("{w}/Humidity")).await;
    assert_eq!(h.payload, r#"{"value": 56.5}"#);
    assert!(!t.retained);
}

#[tokio::test]
async fn proxy_refuses_another_devices_topic_path() {
    let world = World::start().await;
    let mut owner_device = world.device("px_owner").await;
    let reply = owner_device.register(r#"{"inv": "pvinverter"}"#).await;
    let foreign = reply["topicPath"]["inv"]["W"].as_str().unwrap().to_owned();

    let mut intruder = world.device("px_intruder").await;
    let own_reply = intruder.register(r#"{"t1": "temperature"}"#).await;
    let own = own_reply["topicPath"]["t1"]["W"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut gateway = TestDevice::connect_with(world.port(), "gw2", None, &["W/#"]).await;
    intruder
        .send(
            "Proxy",
            &format!(r#"{{"topicPath": "{foreign}", "values": {{"Ac/Power": 5000}}}}"#),
        )
        .await;
    let error = intruder.expect_error().await;
    assert_eq!(error["error"], "invalid_topic_path");
    // The intruder's own path still works, and nothing went to the foreign one.
    intruder
        .send(
            "Proxy",
            &format!(r#"{{"topicPath": "{own}", "values": {{"Temperature": 1}}}}"#),
        )
        .await;
    let m = gateway.expect(&format!("{own}/Temperature")).await;
    assert_eq!(m.payload, r#"{"value": 1}"#);
    let foreign_prefix = format!("{foreign}/");
    assert!(gateway
        .drain()
        .iter()
        .all(|m| !m.topic.starts_with(&foreign_prefix)));
}

#[tokio::test]
async fn proxy_refuses_malformed_messages() {
    let world = World::start().await;
    let mut device = world.device("px2").await;
    let reply = device.register(r#"{"t1": "temperature"}"#).await;
    let w = reply["topicPath"]["t1"]["W"].as_str().unwrap().to_owned();
    let cases = [
        ("{", "invalid_json"),
        (r#"{"values": {"Temperature": 1}}"#, "invalid_topic_path"),
        (
            &format!(r#"{{"topicPath": "{w}", "values": {{}}}}"#) as &str,
            "invalid_field",
        ),
        (
            &format!(r#"{{"topicPath": "{w}", "values": {{"temperature": 1}}}}"#),
            "invalid_field",
        ),
        (
            &format!(r#"{{"topicPath": "{w}", "values": {{"Temperature": Infinity}}}}"#),
            "invalid_json",
        ),
    ];
    for (payload, code) in cases {
        device.send("Proxy", payload).await;
        assert_eq!(device.expect_error().await["error"], code, "{payload}");
    }
}
