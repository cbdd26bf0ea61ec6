//! One device: a task that owns the device's D-Bus services and applies what
//! the device sends (Status, Proxy, Values) and what happens on the GX side
//! (D-Bus writes, settings changes), one event at a time.
//!
//! Each device runs in its own task, so a slow settings call or a stuck bus
//! call for one device never stalls another, and a defect met while handling
//! one device's event costs that device only ([`failure`]). Knows no rumqttc:
//! it publishes through [`MqttHandle`] and receives parsed messages from the
//! registry.

#![deny(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

pub mod budget;
pub mod convert;
pub mod failure;
pub mod overflow;
pub mod pace;
pub mod service;

use crate::catalog::{Catalog, ServiceType};
use crate::dbus::{BusAddress, Value};
use crate::fault;
use crate::ids::{ClientId, PortalId, ServiceId};
use crate::mqtt::MqttHandle;
use crate::persist::SavedDevice;
use crate::protocol::{
    self, device_topic, ProxyRequest, Rejection, RejectionCode, ServiceDecl, ServiceReply, Status,
    ValuesMessage,
};
use crate::pyjson;
use crate::settings::{parse_class_and_instance, SettingsClient};
use crate::state::StateStore;
pub use budget::{ServiceBudget, ServiceSlot};
use convert::json_to_value;
use failure::{DeviceFailure, Origin, Panic};
use overflow::ValuesOverflow;
use service::{DeviceService, Registration};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// Events queued per device; past this the registry drops messages of that
/// device (with a warning) instead of letting one device exhaust memory.
pub const DEVICE_QUEUE: usize = 64;

/// What the device task is told.
#[derive(Debug)]
pub enum DeviceEvent {
    /// A Status message with `connected: 1` (parsed; may carry rejections),
    /// or one remembered in the state file. Boxed: it is much larger than the
    /// other events, and every queued event takes the size of the largest.
    Announce(Box<Announce>),
    /// A Proxy message.
    Proxy(ProxyRequest),
    /// A Values message (v3).
    Values(ValuesMessage),
    /// `connected: 0`, the `lwt_value` on `lwt_topic`, or the daemon stopping.
    Disconnect { reason: &'static str },
    /// A D-Bus write to one of the device's paths was accepted.
    RemoteWrite {
        service: ServiceId,
        path: String,
        value: Value,
    },
    /// A setting of one of the device's services changed in localsettings.
    SettingChanged {
        service: ServiceId,
        path: String,
        value: Value,
    },
}

/// A registration: a Status with `connected: 1`.
#[derive(Debug)]
pub struct Announce {
    pub status: Status,
    /// The payload as the state file keeps it.
    pub payload: serde_json::Value,
    /// Remembered in the state file from before the daemon's restart, not
    /// sent now: registered again, and removed if the device shows no sign of
    /// life within its timeout (or [`RESTORE_GRACE`]) of the broker being there.
    pub restored: bool,
}

/// An event with where it came from (none for events from the GX side).
#[derive(Debug)]
pub struct Envelope {
    pub event: DeviceEvent,
    pub origin: Option<Origin>,
}

/// How long a device restored from the state file may stay without any sign
/// of life (a value or a Status) when it declared no timeout of its own. It
/// counts while the broker is connected only: a device cannot be heard
/// while the broker is away.
pub const RESTORE_GRACE: Duration = Duration::from_secs(300);

/// What happens when a device with a timeout goes silent (v3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Measured values become invalid and `/Connected` 0 (the default).
    Invalidate,
    /// Values stay; `/Connected` 0.
    Keep,
    /// The services leave D-Bus until the device sends a value or a Status.
    Remove,
}

impl Liveness {
    fn parse(s: Option<&str>) -> Liveness {
        match s {
            Some("keep") => Liveness::Keep,
            Some("remove") => Liveness::Remove,
            _ => Liveness::Invalidate,
        }
    }
}

/// What every device task shares.
pub struct DeviceContext {
    pub catalog: Arc<Catalog>,
    pub bus: BusAddress,
    pub settings: SettingsClient,
    pub mqtt: MqttHandle,
    pub portal: watch::Receiver<Option<PortalId>>,
    pub budget: Arc<ServiceBudget>,
    pub default_timeout: Option<Duration>,
    /// Registrations talking to localsettings at once. All of them share one
    /// bus connection, and dbus-daemon refuses calls past a per-connection
    /// limit of pending replies (128 by default): a burst of devices, or a
    /// restart restoring many, must queue here instead of failing there.
    pub registrations: Arc<tokio::sync::Semaphore>,
    /// The state file (persist, then reply).
    pub state: StateStore,
    /// Where a device task that failed reports it.
    pub failures: mpsc::UnboundedSender<DeviceFailure>,
    /// Whether the broker connection is up.
    pub broker: watch::Receiver<bool>,
}

/// Default for [`DeviceContext::registrations`]: well under dbus-daemon's
/// default `max_replies_per_connection` of 128.
pub const CONCURRENT_REGISTRATIONS: usize = 32;

/// Starts the task of one device. It first waits for `previous`, the task of
/// the same client id that is still removing its services, so that a fast
/// reconnect never races a disconnect for the same bus names. `generation`
/// tells this task from other tasks of the same client id in failure reports.
pub fn spawn(
    ctx: Arc<DeviceContext>,
    client: ClientId,
    generation: u64,
    previous: Option<JoinHandle<()>>,
) -> DeviceHandle {
    let (tx, rx) = mpsc::channel(DEVICE_QUEUE);
    let overflow = Arc::new(ValuesOverflow::default());
    let device_overflow = overflow.clone();
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let device = Device::new(ctx.clone(), client.clone(), generation, device_overflow);
        if let Err(panic) = failure::contain(device.run(rx)).await {
            // A panic outside the handling of one event: the device was
            // dropped while unwinding, which took its services off the bus.
            report_failure(&ctx, generation, &client, None, None, &panic);
        }
    });
    DeviceHandle { tx, task, overflow }
}

/// Logs a device's failure, answers it `internal_error`, forgets it in the
/// state file and tells the registry.
fn report_failure(
    ctx: &DeviceContext,
    generation: u64,
    client: &ClientId,
    origin: Option<&Origin>,
    services: Option<usize>,
    panic: &Panic,
) {
    let key = origin.map(|o| o.key(client));
    let topic = key
        .as_ref()
        .map_or_else(|| device_topic(client.raw(), "Status"), |k| k.topic.clone());
    error!(
        client_id = %client,
        topic,
        reason = %panic.0,
        services,
        "internal error while handling this device; its services are removed, other devices are not affected"
    );
    let rejection = Rejection::new(
        RejectionCode::InternalError,
        format!(
            "the daemon failed while handling this message ({}); the device's services were removed. This is a defect of the daemon: please report it. Send a Status to register again.",
            panic.0
        ),
    );
    ctx.mqtt.publish(
        &device_topic(client.raw(), "Error"),
        protocol::error_reply(&rejection, &topic),
        false,
    );
    ctx.state.remove(client.raw());
    let _ = ctx.failures.send(DeviceFailure {
        generation,
        client: client.clone(),
        key,
        reason: panic.0.clone(),
    });
}

/// What the registry keeps of a device task.
pub struct DeviceHandle {
    /// The device's queue.
    pub tx: mpsc::Sender<Envelope>,
    pub task: JoinHandle<()>,
    /// Where Values go when the queue is full.
    pub overflow: Arc<ValuesOverflow>,
}

/// A restored device waiting for a sign of life.
struct RestoreWait {
    grace: Duration,
    /// Removed at this instant; none while the broker is away.
    deadline: Option<Instant>,
}

/// What the device task does next (each step is contained on its own).
enum Work {
    Event(DeviceEvent),
    Silence,
    ReplyDue,
    Overflow(ValuesMessage),
    BrokerChanged,
}

struct Device {
    ctx: Arc<DeviceContext>,
    client: ClientId,
    generation: u64,
    version: Option<serde_json::Value>,
    /// Registered services, in the order the device declared them.
    services: Vec<DeviceService>,
    /// The last accepted Status, to register again after a `remove` silence.
    last_status: Option<Status>,
    timeout: Option<Duration>,
    liveness: Liveness,
    deadline: Option<Instant>,
    silent: bool,
    /// A reply is owed but no portal id is known yet.
    reply_pending: bool,
    /// Restored from the state file and not heard from since.
    restore: Option<RestoreWait>,
    bus_tx: mpsc::Sender<DeviceEvent>,
    bus_rx: mpsc::Receiver<DeviceEvent>,
    overflow: Arc<ValuesOverflow>,
}

impl Device {
    fn new(
        ctx: Arc<DeviceContext>,
        client: ClientId,
        generation: u64,
        overflow: Arc<ValuesOverflow>,
    ) -> Device {
        let (bus_tx, bus_rx) = mpsc::channel(DEVICE_QUEUE);
        Device {
            ctx,
            client,
            generation,
            version: None,
            services: Vec::new(),
            last_status: None,
            timeout: None,
            liveness: Liveness::Invalidate,
            deadline: None,
            silent: false,
            reply_pending: false,
            restore: None,
            bus_tx,
            bus_rx,
            overflow,
        }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Envelope>) {
        let mut portal = self.ctx.portal.clone();
        let mut broker = self.ctx.broker.clone();
        loop {
            let deadline = self.deadline;
            let restore_deadline = self.restore.as_ref().and_then(|r| r.deadline);
            let waiting_for_broker = self.restore.is_some();
            let overflow = self.overflow.clone();
            let (work, origin) = tokio::select! {
                // In this order: GX-side events are few and go first;
                // overflowed values are newer than anything queued, so they
                // are applied only once the queue is empty.
                biased;
                Some(event) = self.bus_rx.recv() => (Work::Event(event), None),
                envelope = inbox.recv() => match envelope {
                    Some(Envelope { event: DeviceEvent::Disconnect { reason }, .. }) => {
                        info!(client_id = %self.client, reason, "device disconnected");
                        // Withdrawn: out of the state file before its services go,
                        // so that it never comes back after a restart.
                        self.ctx.state.remove(self.client.raw());
                        self.ctx.state.sync().await;
                        break;
                    }
                    Some(Envelope { event, origin }) => (Work::Event(event), origin),
                    // The registry is gone: the daemon is stopping.
                    None => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => (Work::Silence, None),
                _ = sleep_until(restore_deadline), if restore_deadline.is_some() => {
                    warn!(client_id = %self.client, "restored device showed no sign of life; removing it");
                    self.ctx.state.remove(self.client.raw());
                    break;
                }
                Ok(()) = broker.changed(), if waiting_for_broker => (Work::BrokerChanged, None),
                Ok(()) = portal.changed(), if self.reply_pending => (Work::ReplyDue, None),
                _ = overflow.pushed() => match self.overflow.take() {
                    Some(values) => (Work::Overflow(values), None),
                    None => continue,
                },
            };
            if let Err(panic) = failure::contain(self.perform(work)).await {
                self.fail(origin.as_ref(), &panic).await;
                return;
            }
            // A replay's journal ticket is dropped here: handled.
            drop(origin);
        }
        self.remove_all().await;
    }

    async fn perform(&mut self, work: Work) {
        match work {
            Work::Event(event) => self.handle(event).await,
            Work::Silence => self.on_silence().await,
            Work::ReplyDue => self.send_reply(),
            Work::Overflow(values) => self.on_values(values).await,
            Work::BrokerChanged => {
                let connected = *self.ctx.broker.borrow();
                if let Some(wait) = &mut self.restore {
                    wait.deadline = connected.then(|| Instant::now() + wait.grace);
                }
            }
        }
    }

    /// A panic was caught while handling `origin`: the device's services go,
    /// the device is told, the registry forgets it. Other devices go on.
    async fn fail(&mut self, origin: Option<&Origin>, panic: &Panic) {
        let services = std::mem::take(&mut self.services);
        let count = services.len();
        // Closing releases the names at once; if that panics too, what is
        // left is dropped, which closes the connections all the same.
        let closed = failure::contain(async {
            for s in services {
                s.close().await;
            }
        })
        .await;
        if let Err(again) = closed {
            warn!(client_id = %self.client, reason = %again.0, "closing the services of a failed device failed; they were dropped");
        }
        report_failure(
            &self.ctx,
            self.generation,
            &self.client,
            origin,
            Some(count),
            panic,
        );
    }

    async fn handle(&mut self, event: DeviceEvent) {
        match event {
            DeviceEvent::Announce(announce) => {
                let Announce {
                    status,
                    payload,
                    restored,
                } = *announce;
                if restored {
                    info!(client_id = %self.client, "restoring the device from the state file");
                    fault::inject(fault::Stage::Restore, status.version.as_ref());
                    let grace = status
                        .timeout
                        .and_then(|t| Duration::try_from_secs_f64(t).ok())
                        .or(self.ctx.default_timeout)
                        .unwrap_or(RESTORE_GRACE);
                    self.on_status(status, Some(payload)).await;
                    let connected = *self.ctx.broker.borrow();
                    self.restore = Some(RestoreWait {
                        grace,
                        deadline: connected.then(|| Instant::now() + grace),
                    });
                } else {
                    self.restore = None;
                    self.on_status(status, Some(payload)).await;
                }
            }
            DeviceEvent::Proxy(request) => self.on_proxy(request).await,
            DeviceEvent::Values(values) => self.on_values(values).await,
            DeviceEvent::RemoteWrite {
                service,
                path,
                value,
            } => self.on_remote_write(service, path, value).await,
            DeviceEvent::SettingChanged {
                service,
                path,
                value,
            } => self.on_setting_changed(service, path, value).await,
            DeviceEvent::Disconnect { .. } => {}
        }
    }

    // ---- Status: register, reconcile -------------------------------------

    /// Registers and reconciles the declared services; `payload` (what the
    /// state file keeps) is recorded there before the device is answered.
    async fn on_status(&mut self, status: Status, payload: Option<serde_json::Value>) {
        let mut rejections = status.rejections.clone();
        let mut refused: Vec<String> = status.refused_services.clone();
        let mut wanted: Vec<(ServiceDecl, ServiceType)> = Vec::new();
        for decl in &status.services {
            match self.ctx.catalog.get(&decl.service_type) {
                Some(t) => wanted.push((decl.clone(), t.clone())),
                None => {
                    refused.push(decl.id.to_string());
                    rejections.push(
                        Rejection::new(
                            RejectionCode::UnknownServiceType,
                            format!(
                                "unknown service type {:?}; known types: {}",
                                decl.service_type,
                                self.ctx.catalog.type_names().collect::<Vec<_>>().join(", ")
                            ),
                        )
                        .for_service(decl.id.as_str()),
                    );
                }
            }
        }

        self.timeout = status
            .timeout
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .or(self.ctx.default_timeout);
        self.liveness = Liveness::parse(status.liveness.as_deref());
        let version_changed = self.version != status.version;
        self.version = status.version.clone();

        // Services the device no longer declares go; a service whose
        // declaration was refused in this message keeps its registration.
        let mut kept = Vec::new();
        for s in std::mem::take(&mut self.services) {
            let same = wanted
                .iter()
                .any(|(d, t)| d.id == s.id && *d == s.decl && t.name == s.service_type.name);
            if same || refused.iter().any(|r| r == s.id.as_str()) {
                kept.push(s);
            } else {
                info!(client_id = %self.client, service_id = %s.id, "service removed or changed");
                s.close().await;
            }
        }
        self.services = kept;
        if version_changed {
            for s in &self.services {
                let value =
                    service::firmware_value(self.version.as_ref(), s.service_type.numeric_firmware);
                if let Err(e) = s.service.set_value("/FirmwareVersion", value).await {
                    warn!(client_id = %self.client, service_id = %s.id, error = %e, "updating /FirmwareVersion");
                }
            }
        }

        for (decl, service_type) in &wanted {
            if self.services.iter().any(|s| s.id == decl.id) {
                continue;
            }
            if let Err(r) = self.register(decl, service_type).await {
                rejections.push(r);
            }
        }
        // Keep the device's order: declared services first, as declared.
        let order: Vec<&ServiceId> = status.services.iter().map(|d| &d.id).collect();
        self.services.sort_by_key(|s| {
            order
                .iter()
                .position(|id| **id == s.id)
                .unwrap_or(usize::MAX)
        });

        fault::inject(fault::Stage::Device, status.version.as_ref());
        self.last_status = Some(status);
        // A Status is a sign of life too: a silent device's services are
        // connected again (the values come with the next message).
        self.on_activity().await;
        self.reject_all(&rejections, "Status");
        if let Some(payload) = payload {
            // Persist, then reply: a device that has its answer comes back
            // after a restart, even one the next instant.
            self.ctx
                .state
                .record(SavedDevice {
                    client_id: self.client.raw().to_owned(),
                    status: payload,
                })
                .await;
        }
        self.send_reply();
    }

    async fn register(
        &mut self,
        decl: &ServiceDecl,
        service_type: &ServiceType,
    ) -> Result<(), Rejection> {
        let Some(slot) = self.ctx.budget.reserve() else {
            return Err(Rejection::new(
                RejectionCode::TooManyDevices,
                format!(
                    "this GX already serves {} MQTT device services, the configured limit",
                    self.ctx.budget.max()
                ),
            )
            .for_service(decl.id.as_str()));
        };
        // The semaphore is never closed, so acquiring only fails if it were.
        let _permit = self.ctx.registrations.clone().acquire_owned().await.ok();
        let registration = Registration {
            bus: &self.ctx.bus,
            settings: &self.ctx.settings,
            client: &self.client,
            version: self.version.as_ref(),
            events: self.bus_tx.clone(),
            slot,
        };
        match DeviceService::register(registration, decl, service_type).await {
            Ok(s) => {
                self.services.push(s);
                Ok(())
            }
            Err(e) => Err(
                Rejection::new(RejectionCode::RegistrationFailed, error_chain(&e))
                    .for_service(decl.id.as_str()),
            ),
        }
    }

    async fn remove_all(&mut self) {
        for s in std::mem::take(&mut self.services) {
            s.close().await;
        }
    }

    /// Publishes the `DBus` (v2) and `DeviceInstance` (v1) replies.
    fn send_reply(&mut self) {
        let portal = self.ctx.portal.borrow().clone();
        let Some(portal) = portal else {
            if !self.reply_pending {
                warn!(
                    client_id = %self.client,
                    "no portal id known yet: the reply waits (set --portal-id, or run where /data/venus/unique-id exists)"
                );
            }
            self.reply_pending = true;
            return;
        };
        self.reply_pending = false;
        let services = self.service_replies();
        let raw = self.client.raw();
        self.ctx.mqtt.publish(
            &device_topic(raw, "DBus"),
            protocol::dbus_reply(portal.as_str(), &services),
            false,
        );
        self.ctx.mqtt.publish(
            &device_topic(raw, "DeviceInstance"),
            protocol::device_instance_reply(&services),
            false,
        );
    }

    fn service_replies(&self) -> Vec<ServiceReply> {
        self.services
            .iter()
            .map(|s| ServiceReply {
                service_id: s.id.to_string(),
                service_type: s.service_type.name.clone(),
                device_instance: s.instance,
            })
            .collect()
    }

    // ---- Proxy (v2) ------------------------------------------------------

    async fn on_proxy(&mut self, request: ProxyRequest) {
        let levels: Vec<&str> = request.topic_path.split('/').collect();
        let portal = self.ctx.portal.borrow().clone();
        let own = self.services.iter().any(|s| {
            levels.get(2) == Some(&s.service_type.name.as_str())
                && levels.get(3) == Some(&s.instance.to_string().as_str())
                && portal
                    .as_ref()
                    .is_none_or(|p| levels.get(1) == Some(&p.as_str()))
        });
        if !own {
            let rejection = Rejection::new(
                RejectionCode::InvalidTopicPath,
                format!(
                    "topicPath {:?} is not the W path of one of this device's registered services",
                    request.topic_path
                ),
            );
            self.reject_all(&[rejection], "Proxy");
            return;
        }
        for (key, value) in &request.values {
            let mut payload = serde_json::Map::new();
            payload.insert("value".into(), value.clone());
            self.ctx.mqtt.publish(
                &format!("{}/{key}", request.topic_path),
                pyjson::dumps(&serde_json::Value::Object(payload)),
                false,
            );
        }
        debug!(client_id = %self.client, count = request.values.len(), "proxied values");
        self.on_activity().await;
    }

    // ---- Values (v3) -----------------------------------------------------

    async fn on_values(&mut self, message: ValuesMessage) {
        if self.services.is_empty() && self.silent && self.liveness == Liveness::Remove {
            if let Some(status) = self.last_status.clone() {
                self.on_status(status, None).await;
            }
        }
        let mut rejections = message.rejections;
        self.on_activity().await;
        for (service_id, paths) in message.services {
            let Some(s) = self.services.iter().find(|s| s.id.as_str() == service_id) else {
                rejections.push(
                    Rejection::new(
                        RejectionCode::NotRegistered,
                        "no registered service with this id; send a Status first",
                    )
                    .for_service(service_id.as_str()),
                );
                continue;
            };
            let mut changes = Vec::with_capacity(paths.len());
            let mut settings = Vec::new();
            for (path, json) in paths {
                let Some(spec) = s.path_spec(&path) else {
                    rejections.push(
                        Rejection::new(
                            RejectionCode::InvalidField,
                            format!("{} services have no path /{path}", s.service_type.name),
                        )
                        .for_service(service_id.as_str())
                        .for_path(path.as_str()),
                    );
                    continue;
                };
                match json_to_value(&json, spec.kind) {
                    Ok(value) => {
                        let dbus_path = format!("/{path}");
                        if let Some(setting) = s.persisted.get(&dbus_path) {
                            settings.push((setting.clone(), value.clone()));
                        }
                        changes.push((dbus_path, value));
                    }
                    Err(reason) => rejections.push(
                        Rejection::new(RejectionCode::InvalidValue, reason)
                            .for_service(service_id.as_str())
                            .for_path(path.as_str()),
                    ),
                }
            }
            if let Err(e) = s.service.set_values(changes).await {
                warn!(client_id = %self.client, service_id, error = %e, "setting values on D-Bus");
            }
            for (setting, value) in settings {
                if let Err(e) = self.ctx.settings.set_value(&setting, value).await {
                    warn!(client_id = %self.client, path = %setting, error = %e, "storing a setting");
                }
            }
        }
        self.reject_all(&rejections, "Values");
    }

    // ---- GX side: D-Bus writes and settings changes ----------------------

    async fn on_remote_write(&mut self, service: ServiceId, path: String, value: Value) {
        self.on_activity().await;
        let Some(s) = self.services.iter().find(|s| s.id == service) else {
            return;
        };
        if let Some(setting) = s.persisted.get(&path) {
            if let Err(e) = self.ctx.settings.set_value(setting, value.clone()).await {
                warn!(client_id = %self.client, service_id = %service, path = %setting, error = %e, "storing a setting");
            }
        }
        // Two-way control (v3): a setpoint or switch set on the GX reaches
        // the device. Measured values are what the device itself writes, so
        // they are not echoed back.
        let key = path.trim_start_matches('/');
        let forward = s.path_spec(key).is_some_and(|p| !p.measured);
        if forward {
            self.ctx.mqtt.publish(
                &device_topic(self.client.raw(), "Write"),
                protocol::write_forward(service.as_str(), key, &value.to_json()),
                false,
            );
        }
    }

    async fn on_setting_changed(&mut self, service: ServiceId, path: String, value: Value) {
        let Some(index) = self.services.iter().position(|s| s.id == service) else {
            return;
        };
        let Some(s) = self.services.get(index) else {
            return;
        };
        if path == s.unique.instance_setting() {
            let new_instance = value
                .as_str()
                .and_then(parse_class_and_instance)
                .map(|(_, i)| i);
            if new_instance.is_some_and(|i| i != s.instance) {
                // The gateways read /DeviceInstance once per service
                // appearance: register again under the new instance.
                info!(client_id = %self.client, service_id = %service, "device instance changed in localsettings; registering again");
                let s = self.services.remove(index);
                let (decl, service_type) = (s.decl.clone(), s.service_type.clone());
                s.close().await;
                if let Err(r) = self.register(&decl, &service_type).await {
                    self.reject_all(&[r], "Status");
                }
                self.send_reply();
            }
            return;
        }
        let dbus_path = s
            .persisted
            .iter()
            .find(|(_, setting)| **setting == path)
            .map(|(dbus_path, _)| dbus_path.clone());
        if let Some(dbus_path) = dbus_path {
            if s.service.value(&dbus_path).as_ref() != Some(&value) {
                if let Err(e) = s.service.set_value(&dbus_path, value).await {
                    warn!(client_id = %self.client, service_id = %service, path = %dbus_path, error = %e, "applying a settings change");
                }
            }
        }
    }

    // ---- Liveness (v3) ---------------------------------------------------

    fn touch(&mut self) {
        self.deadline = self.timeout.map(|t| Instant::now() + t);
    }

    async fn on_activity(&mut self) {
        self.touch();
        self.restore = None;
        if !self.silent {
            return;
        }
        self.silent = false;
        info!(client_id = %self.client, "device is sending again");
        for s in &self.services {
            if let Err(e) = s.service.set_value("/Connected", Value::I32(1)).await {
                warn!(client_id = %self.client, service_id = %s.id, error = %e, "setting /Connected");
            }
        }
    }

    async fn on_silence(&mut self) {
        self.deadline = None;
        self.silent = true;
        warn!(
            client_id = %self.client,
            timeout_s = self.timeout.map(|t| t.as_secs_f64()),
            policy = ?self.liveness,
            "no value from the device within its timeout"
        );
        match self.liveness {
            Liveness::Remove => self.remove_all().await,
            policy => {
                for s in &self.services {
                    let mut changes = vec![("/Connected".to_owned(), Value::I32(0))];
                    if policy == Liveness::Invalidate {
                        changes.extend(
                            s.service_type
                                .paths
                                .iter()
                                .filter(|p| p.measured)
                                .map(|p| (format!("/{}", p.path), Value::Invalid)),
                        );
                    }
                    if let Err(e) = s.service.set_values(changes).await {
                        warn!(client_id = %self.client, service_id = %s.id, error = %e, "marking the service silent");
                    }
                }
            }
        }
    }

    // ---- Rejections --------------------------------------------------------

    /// Logs each rejection with the client id and answers it on `device/<id>/Error`.
    fn reject_all(&self, rejections: &[Rejection], kind: &str) {
        let topic = device_topic(self.client.raw(), kind);
        for r in rejections {
            warn!(client_id = %self.client, topic, "rejected: {r}");
            self.ctx.mqtt.publish(
                &device_topic(self.client.raw(), "Error"),
                protocol::error_reply(r, &topic),
                false,
            );
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// "what failed: why: deeper cause", for messages to devices and logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
