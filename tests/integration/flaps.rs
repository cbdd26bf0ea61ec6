//! A device that connects and disconnects as fast as it can leaves nothing
//! behind: no service on the bus, no extra bus connection, no task.

use super::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_flaps_leave_no_service_connection_or_task_behind() {
    let world = World::start().await;
    let mut device = world.device("flappy").await;
    // Warm up once, so that every lazily started task already exists.
    device
        .register(r#"{"t1": "temperature", "t2": "tank"}"#)
        .await;
    device
        .send("Status", r#"{"clientId": "flappy", "connected": 0}"#)
        .await;
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_flappy_t1").await;
    wait_name_gone(&world.conn, "com.victronenergy.tank.mqtt_flappy_t2").await;
    let names_before = names(&world.conn).await.len();
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    let services = r#"{"t1": "temperature", "t2": "tank"}"#;
    let disconnect = r#"{"clientId": "flappy", "connected": 0}"#;
    // Each registration is followed at once by its disconnect and the next
    // registration, so removal and re-creation of the same names overlap.
    // Awaiting each reply keeps the flood within the device's queue (a
    // faster flood is dropped by design, see bad_input).
    for _ in 0..200 {
        let reply = device.register(services).await;
        assert!(reply["deviceInstance"]["t2"].is_u64());
        device.send("Status", disconnect).await;
    }
    // The daemon still serves, and the last disconnect removes everything.
    let reply = device.register(services).await;
    assert!(reply["deviceInstance"]["t1"].is_u64());
    device.send("Status", disconnect).await;
    wait_name_gone(&world.conn, "com.victronenergy.temperature.mqtt_flappy_t1").await;
    wait_name_gone(&world.conn, "com.victronenergy.tank.mqtt_flappy_t2").await;

    assert!(device_services(&world.conn).await.is_empty());
    // Every unique connection name of a closed service is gone too. The
    // daemon closes connections asynchronously; wait for the count by
    // watching NameOwnerChanged rather than sleeping.
    wait_until_names(&world.conn, names_before).await;
    // Tasks end just after their last bus call returns; there is no event
    // for that, so poll the count, bounded.
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.num_alive_tasks() > tasks_before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let tasks_after = metrics.num_alive_tasks();
    assert!(
        tasks_after <= tasks_before,
        "tasks before {tasks_before}, after {tasks_after}"
    );
}

/// Waits until the bus has at most `count` names, re-checking on every
/// NameOwnerChanged signal.
async fn wait_until_names(conn: &zbus::Connection, count: usize) {
    use futures_util::StreamExt;
    let proxy = zbus::fdo::DBusProxy::new(conn).await.unwrap();
    let mut changes = proxy.receive_name_owner_changed().await.unwrap();
    let wait = async {
        loop {
            let now = names(conn).await.len();
            if now <= count {
                return;
            }
            changes.next().await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("bus connections not released: expected at most {count}"));
}
