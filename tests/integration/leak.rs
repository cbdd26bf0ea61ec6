//! Register/unregister cycles leave nothing behind (issue 10: ~11 kB of RSS per cycle of a
//! device with two services, from settings subscriptions that were never pruned). The
//! daemon's live objects — tasks, registry entries, services, settings and MQTT
//! subscriptions, journal — are counted through its health probe after a warm-up and
//! after many more cycles: they must be the same.

use super::world::*;
use dbus_mqtt_devices::app::Tuning;
use dbus_mqtt_devices::health::Health;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const WARM_UP: usize = 5;
const CYCLES: usize = 100;

struct Probe(mpsc::Sender<oneshot::Sender<Health>>);

impl Probe {
    async fn health(&self) -> Health {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(tx)
            .await
            .expect("the daemon answers health requests");
        rx.await.expect("a health snapshot")
    }

    /// Waits until the last device has left: no device, none closing, no service.
    async fn left(&self) -> Health {
        let wait = async {
            loop {
                let h = self.health().await;
                if h.registry.devices == 0 && h.registry.closing == 0 && h.services == 0 {
                    return h;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("the device left")
    }

    /// Waits until the daemon holds no more than `bound` allows: the same registry,
    /// services, subscriptions and journal, and no more tasks. A device's task and the tasks
    /// of its closed connections end shortly after its names are released, so this is
    /// asked again until it holds (a leak never does).
    async fn settled_within(&self, bound: &Health) -> Health {
        let mut last = self.health().await;
        let wait = async {
            loop {
                let within = last.registry == bound.registry
                    && last.services == bound.services
                    && last.settings_subscriptions == bound.settings_subscriptions
                    && last.mqtt_subscriptions == bound.mqtt_subscriptions
                    && last.replays_in_flight == bound.replays_in_flight
                    && last.tasks <= bound.tasks;
                if within {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                last = self.health().await;
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            panic!("live objects {last:?}, after warm-up {bound:?}");
        }
        last
    }
}

async fn cycle(device: &mut TestDevice, names: &mut NameLog) {
    device
        .register(r#"{"t1": "temperature", "tk1": "tank"}"#)
        .await;
    device
        .send("Status", r#"{"clientId": "leak1", "connected": 0}"#)
        .await;
    names
        .until("both services gone", |o| {
            !o.iter().any(|s| s.contains("mqtt_leak1_"))
        })
        .await;
}

#[tokio::test]
async fn register_unregister_cycles_leave_no_live_objects_behind() {
    let mut world = World::start_without_daemon().await;
    let (tx, rx) = mpsc::channel(1);
    let tuning = Tuning {
        health: Some(rx),
        ..Tuning::default()
    };
    world.start_daemon_tuned(world.config(), tuning).await;
    let probe = Probe(tx);
    let mut names = NameLog::start(&world.conn).await;
    let mut device = world.device("leak1").await;
    for _ in 0..WARM_UP {
        cycle(&mut device, &mut names).await;
    }
    let before = probe.left().await;
    for _ in 0..CYCLES {
        cycle(&mut device, &mut names).await;
    }
    let after = probe.settled_within(&before).await;
    // What is held is what one registration subscribes, not what all of them did.
    assert!(after.settings_subscriptions <= 4, "{after:?}");
}
