//! No poison replay after a hard crash (issue 10): the daemon, as a process under a test
//! acting as its supervisor, aborts on purpose (feature `fault-injection`) while handling a
//! message. Restarted, it must stop failing within a few starts, set the message aside,
//! tell the device `internal_error`, and keep every other device.

use super::world::*;

/// Most starts a supervisor needs before the daemon stays up (see src/quarantine.rs: a
/// crash, a crash with the replays in flight, at most one more with them one at a time).
const MAX_STARTS: usize = 4;

/// The daemon under a supervisor: started again whenever it dies, as daemontools does.
struct Supervisor {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Supervisor {
    fn start(world: &World) -> Supervisor {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (bus, port, dir) = (world.bus.address.clone(), world.port(), world.data_dir());
        let task = tokio::spawn(async move {
            let mut log = Vec::new();
            for start in 1..=MAX_STARTS {
                let mut daemon = DaemonProcess::spawn_at(&bus, port, &dir, &[]);
                tokio::select! {
                    _ = daemon.exited() => log.extend(daemon.log()),
                    _ = &mut stopped => {
                        let status = daemon.signal(libc::SIGTERM).await;
                        assert!(status.success(), "a clean stop: {status:?}");
                        return (start, log);
                    }
                }
            }
            panic!("the daemon still crashes after {MAX_STARTS} starts: {log:#?}");
        });
        Supervisor {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the daemon; returns how many times it was started and the log of those that
    /// died.
    async fn stop(mut self) -> (usize, Vec<String>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the supervisor stops")
            .expect("the supervisor")
    }
}

fn status(id: &str, version: &str) -> String {
    format!(
        r#"{{"clientId": "{id}", "connected": 1, "version": "{version}", "services": {{"t1": "temperature"}}}}"#
    )
}

#[tokio::test]
async fn a_retained_status_that_aborts_the_daemon_is_set_aside_after_restarts() {
    let world = World::start_without_daemon().await;
    let mut daemon = world.start_process(&[]).await.expect("daemon online");
    let mut keeper = world.device("keepx1").await;
    keeper.register(r#"{"k1": "tank"}"#).await;

    let mut bad = world.device("badx1").await;
    bad.publish_retained(
        "device/badx1/Status",
        &status("badx1", "inject:abort@device"),
    )
    .await;
    let exit = daemon.wait().await;
    assert!(!exit.success(), "the daemon aborted: {exit:?}");

    let mut names = NameLog::start(&world.conn).await;
    let supervisor = Supervisor::start(&world);
    let error = bad.expect_error().await;
    assert_eq!(error["error"], "internal_error", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("made the daemon fail before"), "{message}");
    names
        .until("the keeper back", |o| {
            o.contains("com.victronenergy.tank.mqtt_keepx1_k1")
        })
        .await;
    let mut fresh = world.device("freshx1").await;
    assert!(fresh.register(r#"{"t1": "temperature"}"#).await["deviceInstance"]["t1"].is_u64());
    let (starts, _) = supervisor.stop().await;
    assert!(
        (2..=MAX_STARTS).contains(&starts),
        "the retained message was replayed into a crash at least once: {starts} starts"
    );

    // Remembered: a clean start sets it aside again at once.
    let mut daemon = world
        .start_process(&[])
        .await
        .expect("the daemon starts at once");
    assert_eq!(bad.expect_error().await["error"], "internal_error");
    daemon.expect_log("is not handled again").await;
    assert!(
        daemon.log_count("client_id=badx1") >= 1,
        "{:?}",
        daemon.log()
    );
    assert!(daemon.signal(libc::SIGTERM).await.success());
    bad.publish_retained("device/badx1/Status", "").await;
}

#[tokio::test]
async fn a_state_file_entry_that_aborts_the_daemon_at_restore_is_set_aside() {
    let world = World::start_without_daemon().await;
    let daemon = world.start_process(&[]).await.expect("daemon online");
    let mut keeper = world.device("keepx2").await;
    keeper.register(r#"{"k1": "tank"}"#).await;
    // Works live; fails only when restored from the state file.
    let mut bad = world.device("badx2").await;
    bad.send("Status", &status("badx2", "inject:abort@restore"))
        .await;
    bad.expect_dbus_reply().await;
    assert!(daemon.signal(libc::SIGTERM).await.success());

    let mut names = NameLog::start(&world.conn).await;
    let supervisor = Supervisor::start(&world);
    let error = bad.expect_error().await;
    assert_eq!(error["error"], "internal_error", "{error}");
    names
        .until("the keeper back", |o| {
            o.contains("com.victronenergy.tank.mqtt_keepx2_k1")
        })
        .await;
    let (starts, _) = supervisor.stop().await;
    assert!((2..=MAX_STARTS).contains(&starts), "{starts} starts");
    // The entry has left the state file's devices (its last-seen time may stay); the
    // keeper's is there.
    let saved = std::fs::read_to_string(world.data_dir().join("state.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let devices = file["devices"].to_string();
    assert!(!devices.contains("badx2"), "{saved}");
    assert!(devices.contains("keepx2"), "{saved}");
}
