//! Wires the daemon together and owns its lifetime: D-Bus and localsettings,
//! the portal id, the MQTT connection, the registry of devices, the state
//! file and the driver's presence topic. The only module that knows them all.
//!
//! Every message from the broker is handled inside a panic boundary
//! (`contained`); each device's own work has its boundary in its task
//! ([`crate::device::failure`]). Replays go through the quarantine
//! ([`crate::replay`]).

use crate::catalog::Catalog;
use crate::config::{BusChoice, Config};
use crate::data_dir::CATALOG_FILE;
use crate::portal::VENUS_UNIQUE_ID_FILE;
use crate::dbus::BusAddress;
use crate::device::error_reply::{self, Failure};
use crate::device::{DeviceContext, ServiceBudget};
use crate::health::{self, Health};
use crate::ids::PortalId;
use crate::mqtt::{self, BrokerEvent, Message, MqttHandle, Will};
use crate::operator::{
    self,
    service::{Operator, OperatorContext, Takedown},
};
use crate::persist::{self, SavedDevice};
use crate::portal;
use crate::protocol::DeviceTopic;
use crate::pyjson;
use crate::quarantine::MessageKey;
use crate::registry::Registry;
use crate::replay::{restore_key, Next, Replay, Replays};
use crate::settings::SettingsClient;
use crate::state::StateStore;
use anyhow::{Context, Result};
use serde_json::json;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The daemon's own retained presence topic (v3): devices may subscribe and
/// announce themselves again whenever it turns online.
pub const PRESENCE_TOPIC: &str = "dbus-mqtt-devices/status";


/// How often Values that wait for their slot are looked at.
const PACE_TICK: Duration = Duration::from_millis(20);

/// How often finished device tasks are pruned.
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

/// What a caller of [`run_with`] may change besides the configuration:
/// timings that tests shorten, and a way to ask for health figures.
pub struct Tuning {
    /// Longest wait between two attempts to reach the broker.
    pub mqtt_retry_max: Duration,
    /// How often the health figures are logged (debug level).
    pub health_log_interval: Duration,
    /// Health requests: each is answered with a snapshot.
    pub health: Option<mpsc::Receiver<oneshot::Sender<Health>>>,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            mqtt_retry_max: mqtt::BACKOFF_MAX,
            health_log_interval: health::LOG_INTERVAL,
            health: None,
        }
    }
}

/// Runs the daemon until `shutdown` completes, then removes every device
/// service from D-Bus and disconnects from the broker.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    run_with(config, Tuning::default(), shutdown).await
}

/// [`run`] with non-default [`Tuning`].
pub async fn run_with(
    config: Config,
    mut tuning: Tuning,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    let hangup = crate::mapped::runtime::catch_hangup();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "dbus-mqtt-devices starting"
    );

    // Files are read off the runtime thread, here as everywhere.
    let dir = config.data_dir.clone();
    let (catalog, errors) = tokio::task::spawn_blocking(move || {
        crate::data_dir::adopt_legacy_files(&dir);
        Catalog::load(Some(&dir.join(CATALOG_FILE)))
    })
    .await
    .context("reading the catalog")?;
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
    subscriptions.extend(operator::service::SUBSCRIPTIONS);
    if portal_id.is_none() {
        subscriptions.push(portal::SERIAL_SUBSCRIPTION);
    }
    let (mqtt, mut inbound, mqtt_task) = mqtt::start(
        options,
        &subscriptions,
        tuning.mqtt_retry_max,
        cancel.clone(),
    );

    let dir = config.data_dir.clone();
    let (saved, (mut replays, newly_set_aside)) = tokio::task::spawn_blocking(move || {
        let saved = load_state(&dir);
        (saved, Replays::open(&dir, env!("CARGO_PKG_VERSION")))
    })
    .await
    .context("reading the state and quarantine files")?;
    let (state, _state_task) = StateStore::start(config.data_dir.clone(), saved.clone());
    let (failures_tx, mut failures) = mpsc::unbounded_channel();
    let activity = Arc::new(operator::activity::Activity::default());
    let (takedown_tx, mut takedowns) = mpsc::channel(8);
    let (retire_tx, retire_rx) = mpsc::channel(8);
    let operator = Operator::start(OperatorContext {
        bus: bus.clone(),
        mqtt: mqtt.clone(),
        state: state.clone(),
        activity: activity.clone(),
        data_dir: config.data_dir.clone(),
        max_services: config.limits.max_services,
        takedown: takedown_tx,
        retire: retire_tx,
        portal: portal_rx.clone(),
    });
    let ctx = Arc::new(DeviceContext {
        catalog: Arc::new(catalog),
        bus,
        settings: settings.clone(),
        mqtt: mqtt.clone(),
        portal: portal_rx,
        budget: Arc::new(ServiceBudget::new(config.limits.max_services)),
        default_timeout: config.default_timeout,
        registrations: Arc::new(tokio::sync::Semaphore::new(
            crate::device::CONCURRENT_REGISTRATIONS,
        )),
        state: state.clone(),
        failures: failures_tx,
        broker: mqtt.connected(),
        activity,
    });
    let budget = ctx.budget.clone();
    let mapped = crate::mapped::runtime::start(
        ctx.clone(),
        config.data_dir.clone(),
        hangup,
        retire_rx,
    );
    let mut registry = Registry::new(ctx, config.limits.max_devices);
    for entry in &newly_set_aside {
        warn!(
            client_id = %entry.key.client_id().unwrap_or("?"),
            topic = %entry.key.topic,
            "the daemon stopped while handling this message last time; it is set aside and not handled again"
        );
        answer_internal_error(&mqtt, &entry.key, Failure::Before(&entry.reason));
    }
    if !saved.is_empty() {
        info!(
            devices = saved.len(),
            "restoring devices from the state file"
        );
    }
    let restores = saved.iter().map(|d| Replay::Restore(d.clone())).collect();
    let next = replays.admit(restores).await;
    replay(next, &mut registry, &mut replays, &mqtt, &state).await;

    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    // Armed only while a device's Values wait for their slot (see device::pace).
    let mut pace = tokio::time::interval(PACE_TICK);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health_log = tokio::time::interval(tuning.health_log_interval);
    let serial_wait = tokio::time::sleep(SERIAL_WAIT);
    tokio::pin!(serial_wait);
    let mut serial_waiting = portal_id.is_none();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut serial_wait, if serial_waiting => {
                serial_waiting = false;
                if portal_tx.borrow().is_none() {
                    match tokio::task::spawn_blocking(portal::from_network_interface).await.ok().flatten() {
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
                Some(BrokerEvent::Connected) => publish_presence(&mqtt, &portal_tx.borrow()),
                Some(BrokerEvent::Message(m)) => {
                    if operator.offer(&m) {
                        continue;
                    }
                    if portal_tx.borrow().is_none() {
                        if let Some(p) = portal::from_serial_topic(&m.topic) {
                            info!(portal_id = %p, "portal id learned from {}", m.topic);
                            mqtt.unsubscribe(portal::SERIAL_SUBSCRIPTION);
                            publish_presence(&mqtt, &Some(p.clone()));
                            let _ = portal_tx.send(Some(p));
                            continue;
                        }
                    }
                    // A mapped device's topic or a declaration: not a device of the
                    // protocol, unless one of them follows it as its lwt_topic.
                    if mapped.offer(&m) && !registry.follows_last_will(&m.topic) {
                        continue;
                    }
                    if m.retained {
                        let next = replays.admit(vec![Replay::Retained(m)]).await;
                        replay(next, &mut registry, &mut replays, &mqtt, &state).await;
                    } else {
                        replays.superseded(&m.topic);
                        contained(&m, &mut registry, &mut replays, &mqtt, |r| r.handle(&m, None)).await;
                    }
                }
            },
            Some(failure) = failures.recv() => {
                registry.on_failure(&failure);
                if let Some(key) = failure.key {
                    replays.set_aside(key, failure.reason).await;
                }
            }
            Some(Takedown { client, done }) = takedowns.recv() => {
                let _ = done.send(registry.remove_device(&client));
            }
            id = replays.completed() => {
                let next = replays.complete(id).await;
                replay(next, &mut registry, &mut replays, &mqtt, &state).await;
            }
            _ = housekeeping.tick() => {
                registry.prune();
            }
            _ = pace.tick(), if registry.has_paced() => {
                contained_paced(&mut registry);
            }
            _ = health_log.tick() => {
                health_of(&mut registry, &budget, &settings, &mqtt, &replays).log();
            }
            Some(reply) = next_request(&mut tuning.health) => {
                let _ = reply.send(health_of(&mut registry, &budget, &settings, &mqtt, &replays));
            }
        }
    }

    info!("stopping: removing device services from D-Bus");
    // The state is kept as it is, so a restart brings the devices back.
    mqtt.publish(PRESENCE_TOPIC, presence_payload(false, None), true);
    operator.stop().await;
    // Both within their grace, at the same time.
    tokio::join!(mapped.shutdown(), registry.shutdown());
    state.sync().await;
    replays.close().await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(600), mqtt_task).await;
    info!("stopped");
    Ok(())
}

/// The devices remembered in the state file. A file that cannot be used is
/// set aside with the reason logged, and the daemon starts without it:
/// devices with a retained Status still come back.
fn load_state(dir: &Path) -> Vec<SavedDevice> {
    let e = match persist::load(dir) {
        Ok(saved) => return saved,
        Err(e) => e,
    };
    let reason = crate::logging::error_chain(&e);
    match persist::set_aside(dir) {
        Ok(kept) => warn!(
            reason,
            kept_as = %kept.display(),
            "the state file cannot be used; it is set aside and the daemon starts without it (devices with a retained Status still come back)"
        ),
        Err(e) => warn!(
            reason,
            error = %crate::logging::error_chain(&e),
            "the state file cannot be used, nor set aside; the daemon starts without it"
        ),
    }
    Vec::new()
}

/// Handles a message, containing a panic of the registry: the message is set
/// aside, the device (if registered) loses its services and is told
/// `internal_error`; the daemon and the other devices go on.
async fn contained(
    message: &Message,
    registry: &mut Registry,
    replays: &mut Replays,
    mqtt: &MqttHandle,
    handle: impl FnOnce(&mut Registry),
) {
    contain(
        &message.topic,
        || MessageKey::of(&message.topic, &message.payload),
        registry,
        replays,
        mqtt,
        handle,
    )
    .await
}

/// [`contained`] for any message on `topic`, with `key` its key in the quarantine
/// (computed only when the message is blamed).
async fn contain(
    topic: &str,
    key: impl FnOnce() -> MessageKey,
    registry: &mut Registry,
    replays: &mut Replays,
    mqtt: &MqttHandle,
    handle: impl FnOnce(&mut Registry),
) {
    let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| handle(registry))) else {
        return;
    };
    let reason = crate::device::failure::panic_message(payload.as_ref());
    let key = key();
    error!(
        client_id = %key.client_id().unwrap_or("?"),
        topic,
        reason,
        "internal error while handling a message; it is set aside, other devices are not affected"
    );
    answer_internal_error(mqtt, &key, Failure::Now(&reason));
    if let Some(client) = key.client_id() {
        registry.drop_client(client);
    }
    replays.set_aside(key, reason).await;
}

/// Takes the Values that waited for their slot, containing a panic as
/// [`contained`] does (there is no one message to blame: nothing is set aside).
fn contained_paced(registry: &mut Registry) {
    let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| registry.take_paced())) else {
        return;
    };
    let reason = crate::device::failure::panic_message(payload.as_ref());
    error!(
        reason,
        "internal error while taking paced Values; other devices are not affected"
    );
}

/// Handles replays as the quarantine says: the set-aside ones are logged and
/// answered, the others handled with their journal tickets.
async fn replay(
    next: Vec<Next>,
    registry: &mut Registry,
    replays: &mut Replays,
    mqtt: &MqttHandle,
    state: &StateStore,
) {
    for n in next {
        match n {
            Next::Handle(Replay::Restore(saved), ticket) => {
                let key = restore_key(&saved);
                contain(
                    &key.topic,
                    || key.clone(),
                    registry,
                    replays,
                    mqtt,
                    |r| r.restore(saved, key.clone(), Some(ticket)),
                )
                .await
            }
            Next::Handle(Replay::Retained(m), ticket) => {
                contained(&m, registry, replays, mqtt, |r| r.handle(&m, Some(ticket))).await
            }
            Next::SetAside(replay, reason) => {
                let key = replay.key();
                warn!(
                    client_id = %key.client_id().unwrap_or("?"),
                    topic = %key.topic,
                    reason,
                    "a message that made the daemon fail before is not handled again"
                );
                answer_internal_error(mqtt, &key, Failure::Before(&reason));
                if let (Replay::Restore(_), Some(client)) = (&replay, key.client_id()) {
                    state.remove(client);
                }
            }
        }
    }
}

/// `device/<id>/Error` `internal_error` about the message `key`.
fn answer_internal_error(mqtt: &MqttHandle, key: &MessageKey, failure: Failure<'_>) {
    if let Some(client) = key.client_id() {
        error_reply::internal_error(mqtt, client, &key.topic, failure);
    }
}

fn health_of(
    registry: &mut Registry,
    budget: &ServiceBudget,
    settings: &SettingsClient,
    mqtt: &MqttHandle,
    replays: &Replays,
) -> Health {
    registry.prune();
    Health {
        tasks: health::alive_tasks(),
        registry: registry.counts(),
        services: budget.used(),
        settings_subscriptions: settings.subscription_count(),
        mqtt_subscriptions: mqtt.subscription_count(),
        replays_in_flight: replays.in_flight(),
    }
}

async fn next_request<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The command line, `/data/venus/unique-id`, then systemcalc's `/Serial`.
async fn find_portal_id(config: &Config, bus: &BusAddress) -> Option<PortalId> {
    if let Some(p) = &config.portal_id {
        return Some(p.clone());
    }
    let from_file =
        tokio::task::spawn_blocking(|| portal::from_file(Path::new(VENUS_UNIQUE_ID_FILE)));
    if let Some(p) = from_file.await.ok().flatten() {
        return Some(p);
    }
    let conn = bus.connect().await.ok()?;
    portal::from_system_service(&conn).await
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
