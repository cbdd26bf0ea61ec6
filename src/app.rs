//! Wires the daemon together and owns its lifetime: D-Bus and localsettings,
//! the portal id, the MQTT connection, the registry of devices, the state
//! file and the driver's presence topic. The only module that knows them all.

use crate::catalog::Catalog;
use crate::config::{BusChoice, Config, VENUS_UNIQUE_ID_FILE};
use crate::dbus::BusAddress;
use crate::device::{DeviceContext, ServiceBudget};
use crate::ids::PortalId;
use crate::mqtt::{self, Inbound, MqttHandle, Will};
use crate::persist;
use crate::portal;
use crate::protocol::DeviceTopic;
use crate::pyjson;
use crate::registry::Registry;
use crate::settings::SettingsClient;
use anyhow::{Context, Result};
use serde_json::json;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The daemon's own retained presence topic (v3): devices may subscribe and
/// announce themselves again whenever it turns online.
pub const PRESENCE_TOPIC: &str = "dbus-mqtt-devices/status";

/// Name of the user's catalog override in the data directory.
pub const CATALOG_FILE: &str = "catalog.toml";

/// How often the state file is written at most, and finished devices pruned.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// How long to wait for the gateway's retained `N/<id>/system/0/Serial`
/// before taking the portal id from the network interface, as velib does.
const SERIAL_WAIT: Duration = Duration::from_secs(3);

/// The D-Bus to use for a configuration.
pub fn bus_address(choice: &BusChoice) -> BusAddress {
    match choice {
        BusChoice::FromEnvironment => BusAddress::from_env(),
        BusChoice::Address(a) => BusAddress::Address(a.clone()),
    }
}

/// Runs the daemon until `shutdown` completes, then removes every device
/// service from D-Bus and disconnects from the broker.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    tokio::pin!(shutdown);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "dbus-mqtt-devices starting"
    );

    crate::data_dir::adopt_legacy_files(&config.data_dir);
    let (catalog, errors) = Catalog::load(Some(&config.data_dir.join(CATALOG_FILE)));
    for e in errors {
        warn!("catalog override: {e}");
    }
    let bus = bus_address(&config.bus);
    let settings = SettingsClient::connect(&bus)
        .await
        .context("connecting to D-Bus")?;
    tokio::select! {
        _ = &mut shutdown => return Ok(()),
        ready = settings.wait_for_service(None) => {
            ready.context("waiting for com.victronenergy.settings")?;
        }
    }

    let portal_id = find_portal_id(&config, &bus).await;
    match &portal_id {
        Some(p) => info!(portal_id = %p, "portal id"),
        None => info!(
            "portal id not known yet; waiting for the retained {}",
            portal::SERIAL_SUBSCRIPTION
        ),
    }
    let (portal_tx, portal_rx) = watch::channel(portal_id.clone());

    let cancel = CancellationToken::new();
    let will = Will {
        topic: PRESENCE_TOPIC.into(),
        payload: presence_payload(false, None),
        retain: true,
    };
    let options = mqtt::options(&config.mqtt, &mqtt_client_id(), Some(&will))
        .map_err(anyhow::Error::msg)
        .context("configuring the MQTT connection")?;
    let mut subscriptions: Vec<&str> = DeviceTopic::SUBSCRIPTIONS.to_vec();
    if portal_id.is_none() {
        subscriptions.push(portal::SERIAL_SUBSCRIPTION);
    }
    let (mqtt, mut inbound, mqtt_task) = mqtt::start(options, &subscriptions, cancel.clone());

    let ctx = Arc::new(DeviceContext {
        catalog: Arc::new(catalog),
        bus,
        settings,
        mqtt: mqtt.clone(),
        portal: portal_rx,
        budget: Arc::new(ServiceBudget::new(config.limits.max_services)),
        default_timeout: config.default_timeout,
        registrations: Arc::new(tokio::sync::Semaphore::new(
            crate::device::CONCURRENT_REGISTRATIONS,
        )),
    });
    let mut registry = Registry::new(ctx, config.limits.max_devices);
    match persist::load(&config.data_dir) {
        Ok(saved) => {
            if !saved.is_empty() {
                info!(
                    devices = saved.len(),
                    "restoring devices from the state file"
                );
            }
            for device in &saved {
                registry.restore(device);
            }
        }
        Err(e) => warn!(error = %crate::device::error_chain(&e), "state file ignored"),
    }

    let mut dirty = false;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let serial_wait = tokio::time::sleep(SERIAL_WAIT);
    tokio::pin!(serial_wait);
    let mut serial_waiting = portal_id.is_none();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut serial_wait, if serial_waiting => {
                serial_waiting = false;
                if portal_tx.borrow().is_none() {
                    match portal::from_network_interface() {
                        Some(p) => {
                            info!(portal_id = %p, "no retained {} yet: portal id from the network interface's MAC address, as velib does", portal::SERIAL_SUBSCRIPTION);
                            publish_presence(&mqtt, &Some(p.clone()));
                            let _ = portal_tx.send(Some(p));
                        }
                        None => warn!("no portal id found; replies wait for it (set --portal-id)"),
                    }
                }
            }
            event = inbound.recv() => match event {
                None => break,
                Some(Inbound::Connected) => publish_presence(&mqtt, &portal_tx.borrow()),
                Some(Inbound::Message(m)) => {
                    if portal_tx.borrow().is_none() {
                        if let Some(p) = portal::from_serial_topic(&m.topic) {
                            info!(portal_id = %p, "portal id learned from {}", m.topic);
                            mqtt.unsubscribe(portal::SERIAL_SUBSCRIPTION);
                            publish_presence(&mqtt, &Some(p.clone()));
                            let _ = portal_tx.send(Some(p));
                            continue;
                        }
                    }
                    dirty |= registry.handle(&m);
                }
            },
            _ = housekeeping.tick() => {
                dirty |= registry.prune();
                if dirty {
                    save_state(&config.data_dir, &registry);
                    dirty = false;
                }
            }
        }
    }

    info!("stopping: removing device services from D-Bus");
    // The state is kept as it is, so a restart brings the devices back.
    save_state(&config.data_dir, &registry);
    mqtt.publish(PRESENCE_TOPIC, presence_payload(false, None), true);
    registry.shutdown().await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(600), mqtt_task).await;
    info!("stopped");
    Ok(())
}

/// The command line, `/data/venus/unique-id`, then systemcalc's `/Serial`.
async fn find_portal_id(config: &Config, bus: &BusAddress) -> Option<PortalId> {
    if let Some(p) = &config.portal_id {
        return Some(p.clone());
    }
    if let Some(p) = portal::from_file(Path::new(VENUS_UNIQUE_ID_FILE)) {
        return Some(p);
    }
    let conn = bus.connect().await.ok()?;
    portal::from_system_service(&conn).await
}

fn save_state(dir: &Path, registry: &Registry) {
    if let Err(e) = persist::save(dir, &registry.saved_devices()) {
        warn!(error = %crate::device::error_chain(&e), "could not write the state file");
    }
}

/// `{"online": 1, "version": "0.1.0", "portalId": "c0ffee000001"}`.
fn presence_payload(online: bool, portal: Option<&PortalId>) -> String {
    let mut map = serde_json::Map::new();
    map.insert("online".into(), json!(u8::from(online)));
    map.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    if let Some(p) = portal {
        map.insert("portalId".into(), json!(p.as_str()));
    }
    pyjson::dumps(&serde_json::Value::Object(map))
}

fn publish_presence(mqtt: &MqttHandle, portal: &Option<PortalId>) {
    mqtt.publish(
        PRESENCE_TOPIC,
        presence_payload(true, portal.as_ref()),
        true,
    );
}

/// Unique per running daemon, so that two daemons (or this one beside the
/// Python driver) never take over each other's MQTT session.
fn mqtt_client_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "dbus-mqtt-devices-{}-{:05x}",
        std::process::id(),
        nanos & 0xfffff
    )
}
