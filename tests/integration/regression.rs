//! One test per fixed defect, named `issue_<n>_<what>`, each through the real
//! broker, bus and settings service.

use super::world::*;

/// The Status from issue 10: a multibyte string in a refused field.
fn multibyte_status(id: &str) -> String {
    format!(
        r#"{{"clientId":"{id}","connected":"{}","services":{{"t1":"temperature"}}}}"#,
        "é".repeat(48)
    )
}

/// See: issue 10. The text of a refused field was cut by bytes inside a
/// multibyte character, which panicked: one message took the daemon down.
#[tokio::test]
async fn issue_10_multibyte_text_in_a_status_is_refused_not_fatal() {
    let world = World::start().await;
    let mut keeper = world.device("keeper10").await;
    keeper.register(r#"{"k1": "tank"}"#).await;

    let mut x1 = world.device("x1").await;
    x1.send("Status", &multibyte_status("x1")).await;
    let error = x1.expect_error().await;
    assert_eq!(error["error"], "invalid_field", "{error}");
    assert!(
        error["message"].as_str().unwrap_or_default().contains('é'),
        "the reason quotes the value: {error}"
    );

    let mut good = world.device("good10").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
    assert!(
        owner(&world.conn, "com.victronenergy.tank.mqtt_keeper10_k1")
            .await
            .is_some()
    );
}

/// See: issue 10. Published retained, the same message reached the daemon
/// again at every start: a crash loop. After a restart the daemon must come
/// online, answer it again, restore its other devices and serve new ones.
#[tokio::test]
async fn issue_10_retained_multibyte_status_does_not_stop_a_restart() {
    let mut world = World::start().await;
    let mut keeper = world.device("keeper10r").await;
    keeper.register(r#"{"k1": "tank"}"#).await;
    let mut x1 = world.device("x1r").await;
    x1.publish_retained("device/x1r/Status", &multibyte_status("x1r"))
        .await;
    assert_eq!(x1.expect_error().await["error"], "invalid_field");

    world.stop_daemon().await;
    world.start_daemon().await;
    // The retained message is delivered to the new daemon and refused again.
    assert_eq!(x1.expect_error().await["error"], "invalid_field");
    wait_name_owned(&world.conn, "com.victronenergy.tank.mqtt_keeper10r_k1").await;
    let mut good = world.device("good10r").await;
    let reply = good.register(r#"{"t1": "temperature"}"#).await;
    assert!(reply["deviceInstance"]["t1"].is_u64(), "{reply}");
}
