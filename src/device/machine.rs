//! The decisions of one device, with no I/O and no clock: `(state, input, env) → actions`.
//!
//! [`Machine::handle`] takes one input (a Status, Values or Proxy message, a write or a
//! settings change on the GX side, a timeout, the answer to a registration) with what the
//! world looks like at that instant ([`Env`]: the time, the portal id, the broker), and
//! returns what to do, as data ([`Action`]): register this service, close that one, set
//! these values, store this setting, publish this reply, refuse this field, persist this
//! Status, stop. The device task ([`super::task`]) carries the actions out against D-Bus,
//! localsettings and MQTT, in order, and wakes the machine at [`Machine::deadline`].
//!
//! A registration is the one action with an answer: it is always the last action of a
//! batch, and the executor hands its outcome back ([`Input::Registered`]) before anything
//! else, so a Status is reconciled one service at a time, as the device declared them.

use super::failure::leaf;
use super::venus_service::firmware_value;
use super::{Announce, DeviceEvent};
use crate::catalog::{Catalog, PathSpec, ServiceType};
use crate::dbus::{Value, ValueType};
use crate::fault;
use crate::ids::{ClientId, PortalId, ServiceId, UniqueId};
use crate::protocol::{
    self, device_topic, MessageKind, ProxyRequest, Rejection, RejectionCode, ServiceDecl,
    ServiceReply, Status, ValuesMessage,
};
use crate::pyjson;
use crate::settings::parse_class_and_instance;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, warn};

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

/// What the machine sees of the world when an input arrives.
#[derive(Debug, Clone)]
pub struct Env {
    pub now: Instant,
    /// The GX's portal id, once known (replies wait for it).
    pub portal: Option<PortalId>,
    /// Whether the broker connection is up.
    pub broker_connected: bool,
}

/// One input to the machine.
#[derive(Debug)]
pub enum Input {
    /// From the device (through the registry) or from the GX side.
    Event(DeviceEvent),
    /// The answer to the last [`Action::Register`].
    Registered(RegisterOutcome),
    /// [`Machine::deadline`] has come.
    Timeout,
    /// The broker connection went up or down ([`Machine::awaits_broker`]).
    BrokerChanged,
    /// The portal id changed ([`Machine::awaits_portal`]).
    PortalChanged,
    /// The daemon is stopping: the services leave D-Bus, the state file keeps the device.
    Shutdown,
}

/// How a registration went.
#[derive(Debug)]
pub enum RegisterOutcome {
    /// On D-Bus, with what localsettings answered.
    Registered(Registered),
    /// The configured limit of services is reached.
    NoSlot { max: usize },
    /// localsettings or D-Bus refused it (the error chain).
    Failed(String),
}

/// What a registered service got from localsettings.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub unique: UniqueId,
    pub instance: u32,
    /// D-Bus path (`/CustomName`) → localsettings path of each persisted path.
    pub persisted: HashMap<String, String>,
}

impl Registered {
    /// The localsettings path that keeps D-Bus path `path` (`/CustomName`), if persisted.
    pub fn setting_of(&self, path: &str) -> Option<&String> {
        self.persisted.get(path)
    }

    /// The D-Bus path kept by localsettings path `setting`, if any.
    pub fn path_of_setting(&self, setting: &str) -> Option<&String> {
        self.persisted
            .iter()
            .find(|(_, s)| *s == setting)
            .map(|(path, _)| path)
    }

    /// Whether `setting` changing to `value` moves the service to another
    /// device instance (the gateways read /DeviceInstance once per service
    /// appearance: it must register again).
    pub fn instance_moved(&self, setting: &str, value: &Value) -> bool {
        setting == self.unique.instance_setting()
            && value
                .as_str()
                .and_then(parse_class_and_instance)
                .is_some_and(|(_, i)| i != self.instance)
    }
}

/// A service to register: its settings, then its D-Bus service.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRequest {
    pub decl: ServiceDecl,
    pub service_type: ServiceType,
    /// `version` from the Status message (`/FirmwareVersion`).
    pub version: Option<serde_json::Value>,
}

/// What to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Register a service; answer with [`Input::Registered`] before anything else.
    Register(Box<RegisterRequest>),
    /// Remove a service from D-Bus (its settings stay).
    Close(ServiceId),
    /// Set one value on a service (`why` is logged if it fails).
    SetValue {
        service: ServiceId,
        path: String,
        value: Value,
        why: &'static str,
    },
    /// Set several values on a service, in one `ItemsChanged`.
    SetValues {
        service: ServiceId,
        changes: Vec<(String, Value)>,
        why: &'static str,
    },
    /// Set a value unless the service holds it already (a settings change that
    /// may be the echo of the service's own write).
    UpdateValue {
        service: ServiceId,
        path: String,
        value: Value,
    },
    /// Store a value in localsettings.
    StoreSetting {
        service: ServiceId,
        setting: String,
        value: Value,
    },
    /// Publish to the broker (not retained).
    Publish { topic: String, payload: String },
    /// Log a refusal and answer it on `device/<id>/Error`; `kind` is the leaf
    /// of the topic refused (`Status`, `Values`, `Proxy`).
    Reject {
        kind: &'static str,
        rejection: Rejection,
    },
    /// Put the device's Status in the state file, and wait until it is there.
    Record(serde_json::Value),
    /// Take the device out of the state file.
    Forget,
    /// Wait until the state file holds every change made so far.
    Sync,
    /// The device's task ends; every service still registered leaves D-Bus.
    Stop,
}

/// A registered service, as the machine knows it.
#[derive(Debug, Clone)]
struct ServiceState {
    decl: ServiceDecl,
    service_type: ServiceType,
    registered: Registered,
}

impl ServiceState {
    fn id(&self) -> &ServiceId {
        &self.decl.id
    }

    /// The catalog entry of a path given without the leading slash.
    fn path_spec(&self, path: &str) -> Option<&PathSpec> {
        self.service_type.path(path)
    }
}

/// A restored device waiting for a sign of life.
#[derive(Debug)]
struct RestoreWait {
    grace: Duration,
    /// Removed at this instant; none while the broker is away.
    deadline: Option<Instant>,
}

/// Registrations under way, one at a time, and what follows them.
#[derive(Debug)]
struct Pending {
    queue: VecDeque<(ServiceDecl, ServiceType)>,
    /// The one being registered now.
    current: Option<(ServiceDecl, ServiceType)>,
    rejections: Vec<Rejection>,
    finish: Finish,
}

#[derive(Debug)]
enum Finish {
    /// A Status: order the services, answer, persist, reply.
    Status {
        status: Box<Status>,
        /// What the state file keeps (none when registering again after a `remove` silence).
        payload: Option<serde_json::Value>,
        then: Then,
    },
    /// A service registered again under a new device instance: reply.
    Reregistered,
}

/// What comes after a Status is reconciled.
#[derive(Debug)]
enum Then {
    Nothing,
    /// Restored from the state file: wait for a sign of life.
    Restore {
        grace: Duration,
    },
    /// Registered again after a `remove` silence by these values: apply them.
    Values(ValuesMessage),
}

/// One device's state.
#[derive(Debug)]
pub struct Machine {
    client: ClientId,
    catalog: Arc<Catalog>,
    default_timeout: Option<Duration>,
    version: Option<serde_json::Value>,
    /// Registered services, in the order the device declared them.
    services: Vec<ServiceState>,
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
    pending: Option<Pending>,
    stopped: bool,
}

impl Machine {
    /// A device with no services yet.
    pub fn new(
        client: ClientId,
        catalog: Arc<Catalog>,
        default_timeout: Option<Duration>,
    ) -> Machine {
        Machine {
            client,
            catalog,
            default_timeout,
            version: None,
            services: Vec::new(),
            last_status: None,
            timeout: None,
            liveness: Liveness::Invalidate,
            deadline: None,
            silent: false,
            reply_pending: false,
            restore: None,
            pending: None,
            stopped: false,
        }
    }

    /// When to wake the machine with [`Input::Timeout`], if ever.
    pub fn deadline(&self) -> Option<Instant> {
        let restore = self.restore.as_ref().and_then(|r| r.deadline);
        match (self.deadline, restore) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True while a reply waits for the portal id ([`Input::PortalChanged`]).
    pub fn awaits_portal(&self) -> bool {
        self.reply_pending
    }

    /// True while a restored device waits for a sign of life, which counts
    /// only while the broker is up ([`Input::BrokerChanged`]).
    pub fn awaits_broker(&self) -> bool {
        self.restore.is_some()
    }

    /// True once [`Action::Stop`] was given.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The registered services, in the device's order.
    pub fn service_ids(&self) -> impl Iterator<Item = &ServiceId> {
        self.services.iter().map(ServiceState::id)
    }

    /// Takes one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input, env: &Env) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Event(event) => self.on_event(event, env, &mut out),
            Input::Registered(outcome) => self.on_registered(outcome, env, &mut out),
            Input::Timeout => self.on_timeout(env, &mut out),
            Input::BrokerChanged => {
                if let Some(wait) = &mut self.restore {
                    wait.deadline = env.broker_connected.then(|| env.now + wait.grace);
                }
            }
            Input::PortalChanged => {
                if self.reply_pending {
                    self.send_reply(env, &mut out);
                }
            }
            Input::Shutdown => self.stop(&mut out),
        }
        out
    }

    fn on_event(&mut self, event: DeviceEvent, env: &Env, out: &mut Vec<Action>) {
        match event {
            DeviceEvent::Announce(announce) => self.on_announce(*announce, env, out),
            DeviceEvent::Proxy(request) => self.on_proxy(request, env, out),
            DeviceEvent::Values(values) => self.on_values(values, env, out),
            DeviceEvent::Disconnect { reason } => {
                info!(client_id = %self.client, reason, "device disconnected");
                // Withdrawn: out of the state file before its services go,
                // so that it never comes back after a restart.
                out.push(Action::Forget);
                out.push(Action::Sync);
                self.stop(out);
            }
            DeviceEvent::RemoteWrite {
                service,
                path,
                value,
            } => self.on_remote_write(service, path, value, env, out),
            DeviceEvent::SettingChanged {
                service,
                path,
                value,
            } => self.on_setting_changed(service, path, value, env, out),
        }
    }

    fn stop(&mut self, out: &mut Vec<Action>) {
        for s in std::mem::take(&mut self.services) {
            out.push(Action::Close(s.decl.id));
        }
        self.pending = None;
        self.stopped = true;
        out.push(Action::Stop);
    }

    // ---- Status: register, reconcile -------------------------------------

    fn on_announce(&mut self, announce: Announce, env: &Env, out: &mut Vec<Action>) {
        let Announce {
            status,
            payload,
            restored,
        } = announce;
        let then = if restored {
            info!(client_id = %self.client, "restoring the device from the state file");
            fault::inject(fault::Stage::Restore, status.version.as_ref());
            let grace = status
                .timeout
                .and_then(|t| Duration::try_from_secs_f64(t).ok())
                .or(self.default_timeout)
                .unwrap_or(RESTORE_GRACE);
            Then::Restore { grace }
        } else {
            self.restore = None;
            Then::Nothing
        };
        self.begin_status(status, Some(payload), then, env, out);
    }

    /// Reconciles the declared services with the registered ones: those no
    /// longer declared go, new ones are registered (one at a time, see
    /// [`Machine::advance`]).
    fn begin_status(
        &mut self,
        status: Status,
        payload: Option<serde_json::Value>,
        then: Then,
        env: &Env,
        out: &mut Vec<Action>,
    ) {
        let mut rejections = status.rejections.clone();
        let mut refused: Vec<String> = status.refused_services.clone();
        let mut wanted: Vec<(ServiceDecl, ServiceType)> = Vec::new();
        for decl in &status.services {
            match self.catalog.get(&decl.service_type) {
                Some(t) => wanted.push((decl.clone(), t.clone())),
                None => {
                    refused.push(decl.id.to_string());
                    rejections.push(
                        Rejection::new(
                            RejectionCode::UnknownServiceType,
                            format!(
                                "unknown service type {:?}; known types: {}",
                                decl.service_type,
                                self.catalog.type_names().collect::<Vec<_>>().join(", ")
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
            .or(self.default_timeout);
        self.liveness = Liveness::parse(status.liveness.as_deref());
        let version_changed = self.version != status.version;
        self.version = status.version.clone();

        // Services the device no longer declares go; a service whose
        // declaration was refused in this message keeps its registration.
        let mut kept = Vec::new();
        for s in std::mem::take(&mut self.services) {
            let same = wanted
                .iter()
                .any(|(d, t)| *d == s.decl && t.name == s.service_type.name);
            if same || refused.iter().any(|r| r == s.id().as_str()) {
                kept.push(s);
            } else {
                info!(client_id = %self.client, service_id = %s.id(), "service removed or changed");
                out.push(Action::Close(s.decl.id));
            }
        }
        self.services = kept;
        if version_changed {
            for s in &self.services {
                out.push(Action::SetValue {
                    service: s.id().clone(),
                    path: "/FirmwareVersion".into(),
                    value: firmware_value(self.version.as_ref(), s.service_type.numeric_firmware),
                    why: "updating /FirmwareVersion",
                });
            }
        }

        let queue = wanted
            .into_iter()
            .filter(|(d, _)| !self.services.iter().any(|s| *s.id() == d.id))
            .collect();
        self.pending = Some(Pending {
            queue,
            current: None,
            rejections,
            finish: Finish::Status {
                status: Box::new(status),
                payload,
                then,
            },
        });
        self.advance(env, out);
    }

    /// Asks for the next registration, or finishes what started them.
    fn advance(&mut self, env: &Env, out: &mut Vec<Action>) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if let Some((decl, service_type)) = pending.queue.pop_front() {
            out.push(Action::Register(Box::new(RegisterRequest {
                decl: decl.clone(),
                service_type: service_type.clone(),
                version: self.version.clone(),
            })));
            pending.current = Some((decl, service_type));
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        match pending.finish {
            Finish::Status {
                status,
                payload,
                then,
            } => self.finish_status(*status, payload, then, pending.rejections, env, out),
            Finish::Reregistered => {
                self.reject_all(pending.rejections, MessageKind::Status, out);
                self.send_reply(env, out);
            }
        }
    }

    fn on_registered(&mut self, outcome: RegisterOutcome, env: &Env, out: &mut Vec<Action>) {
        let Some(pending) = &mut self.pending else {
            warn!(client_id = %self.client, "a registration finished that was not asked for");
            return;
        };
        let Some((decl, service_type)) = pending.current.take() else {
            return;
        };
        match outcome {
            RegisterOutcome::Registered(registered) => self.services.push(ServiceState {
                decl,
                service_type,
                registered,
            }),
            RegisterOutcome::NoSlot { max } => pending.rejections.push(
                Rejection::new(
                    RejectionCode::TooManyDevices,
                    format!(
                        "this GX already serves {max} MQTT device services, the configured limit"
                    ),
                )
                .for_service(decl.id.as_str()),
            ),
            RegisterOutcome::Failed(reason) => pending.rejections.push(
                Rejection::new(RejectionCode::RegistrationFailed, reason)
                    .for_service(decl.id.as_str()),
            ),
        }
        self.advance(env, out);
    }

    fn finish_status(
        &mut self,
        status: Status,
        payload: Option<serde_json::Value>,
        then: Then,
        rejections: Vec<Rejection>,
        env: &Env,
        out: &mut Vec<Action>,
    ) {
        // Keep the device's order: declared services first, as declared.
        let order: Vec<&ServiceId> = status.services.iter().map(|d| &d.id).collect();
        self.services.sort_by_key(|s| {
            order
                .iter()
                .position(|id| *id == s.id())
                .unwrap_or(usize::MAX)
        });

        fault::inject(fault::Stage::Device, status.version.as_ref());
        self.last_status = Some(status);
        // A Status is a sign of life too: a silent device's services are
        // connected again (the values come with the next message).
        self.on_activity(env, out);
        self.reject_all(rejections, MessageKind::Status, out);
        if let Some(payload) = payload {
            // Persist, then reply: a device that has its answer comes back
            // after a restart, even one the next instant.
            out.push(Action::Record(payload));
        }
        self.send_reply(env, out);
        match then {
            Then::Nothing => {}
            Then::Restore { grace } => {
                self.restore = Some(RestoreWait {
                    grace,
                    deadline: env.broker_connected.then(|| env.now + grace),
                });
            }
            Then::Values(values) => self.apply_values(values, env, out),
        }
    }

    /// The `DBus` (v2) and `DeviceInstance` (v1) replies.
    fn send_reply(&mut self, env: &Env, out: &mut Vec<Action>) {
        let Some(portal) = &env.portal else {
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
        let services: Vec<ServiceReply> = self
            .services
            .iter()
            .map(|s| ServiceReply {
                service_id: s.id().to_string(),
                service_type: s.service_type.name.clone(),
                device_instance: s.registered.instance,
            })
            .collect();
        let raw = self.client.raw();
        out.push(Action::Publish {
            topic: device_topic(raw, "DBus"),
            payload: protocol::dbus_reply(portal.as_str(), &services),
        });
        out.push(Action::Publish {
            topic: device_topic(raw, "DeviceInstance"),
            payload: protocol::device_instance_reply(&services),
        });
    }

    // ---- Proxy (v2) ------------------------------------------------------

    fn on_proxy(&mut self, request: ProxyRequest, env: &Env, out: &mut Vec<Action>) {
        let levels: Vec<&str> = request.topic_path.split('/').collect();
        let own = self.services.iter().any(|s| {
            levels.get(2) == Some(&s.service_type.name.as_str())
                && levels.get(3) == Some(&s.registered.instance.to_string().as_str())
                && env
                    .portal
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
            self.reject_all(vec![rejection], MessageKind::Proxy, out);
            return;
        }
        for (key, value) in &request.values {
            let mut payload = serde_json::Map::new();
            payload.insert("value".into(), value.clone());
            out.push(Action::Publish {
                topic: format!("{}/{key}", request.topic_path),
                payload: pyjson::dumps(&serde_json::Value::Object(payload)),
            });
        }
        debug!(client_id = %self.client, count = request.values.len(), "proxied values");
        self.on_activity(env, out);
    }

    // ---- Values (v3) -----------------------------------------------------

    fn on_values(&mut self, message: ValuesMessage, env: &Env, out: &mut Vec<Action>) {
        if self.services.is_empty() && self.silent && self.liveness == Liveness::Remove {
            if let Some(status) = self.last_status.clone() {
                // Back from a `remove` silence: registered again first.
                self.begin_status(status, None, Then::Values(message), env, out);
                return;
            }
        }
        self.apply_values(message, env, out);
    }

    fn apply_values(&mut self, message: ValuesMessage, env: &Env, out: &mut Vec<Action>) {
        let mut rejections = message.rejections;
        self.on_activity(env, out);
        for (service_id, paths) in message.services {
            let Some(s) = self.services.iter().find(|s| s.id().as_str() == service_id) else {
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
                match Value::from_json_as(&json, ValueType::from(spec.kind)) {
                    Ok(value) => {
                        let dbus_path = format!("/{path}");
                        if let Some(setting) = s.registered.persisted.get(&dbus_path) {
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
            out.push(Action::SetValues {
                service: s.id().clone(),
                changes,
                why: "setting values on D-Bus",
            });
            for (setting, value) in settings {
                out.push(Action::StoreSetting {
                    service: s.id().clone(),
                    setting,
                    value,
                });
            }
        }
        self.reject_all(rejections, MessageKind::Values, out);
    }

    // ---- GX side: D-Bus writes and settings changes ----------------------

    fn on_remote_write(
        &mut self,
        service: ServiceId,
        path: String,
        value: Value,
        env: &Env,
        out: &mut Vec<Action>,
    ) {
        self.on_activity(env, out);
        let Some(s) = self.services.iter().find(|s| *s.id() == service) else {
            return;
        };
        if let Some(setting) = s.registered.setting_of(&path) {
            out.push(Action::StoreSetting {
                service: service.clone(),
                setting: setting.clone(),
                value: value.clone(),
            });
        }
        // Two-way control (v3): a setpoint or switch set on the GX reaches
        // the device. Measured values are what the device itself writes, so
        // they are not echoed back.
        let key = path.trim_start_matches('/');
        if s.path_spec(key).is_some_and(|p| !p.measured) {
            out.push(Action::Publish {
                topic: device_topic(self.client.raw(), "Write"),
                payload: protocol::write_forward(service.as_str(), key, &value.to_json()),
            });
        }
    }

    fn on_setting_changed(
        &mut self,
        service: ServiceId,
        path: String,
        value: Value,
        env: &Env,
        out: &mut Vec<Action>,
    ) {
        let Some(index) = self.services.iter().position(|s| *s.id() == service) else {
            return;
        };
        let Some(s) = self.services.get(index) else {
            return;
        };
        if path == s.registered.unique.instance_setting() {
            if s.registered.instance_moved(&path, &value) {
                info!(client_id = %self.client, service_id = %service, "device instance changed in localsettings; registering again");
                let s = self.services.remove(index);
                out.push(Action::Close(service));
                self.pending = Some(Pending {
                    queue: VecDeque::from([(s.decl, s.service_type)]),
                    current: None,
                    rejections: Vec::new(),
                    finish: Finish::Reregistered,
                });
                self.advance(env, out);
            }
            return;
        }
        if let Some(dbus_path) = s.registered.path_of_setting(&path).cloned() {
            out.push(Action::UpdateValue {
                service,
                path: dbus_path,
                value,
            });
        }
    }

    // ---- Liveness (v3) ---------------------------------------------------

    fn on_activity(&mut self, env: &Env, out: &mut Vec<Action>) {
        self.deadline = self.timeout.map(|t| env.now + t);
        self.restore = None;
        if !self.silent {
            return;
        }
        self.silent = false;
        info!(client_id = %self.client, "device is sending again");
        for s in &self.services {
            out.push(Action::SetValue {
                service: s.id().clone(),
                path: "/Connected".into(),
                value: Value::I32(1),
                why: "setting /Connected",
            });
        }
    }

    fn on_timeout(&mut self, env: &Env, out: &mut Vec<Action>) {
        if self.deadline.is_some_and(|d| d <= env.now) {
            self.on_silence(out);
        }
        let restore_due = self
            .restore
            .as_ref()
            .and_then(|r| r.deadline)
            .is_some_and(|d| d <= env.now);
        if restore_due {
            warn!(client_id = %self.client, "restored device showed no sign of life; removing it");
            out.push(Action::Forget);
            self.stop(out);
        }
    }

    fn on_silence(&mut self, out: &mut Vec<Action>) {
        self.deadline = None;
        self.silent = true;
        warn!(
            client_id = %self.client,
            timeout_s = self.timeout.map(|t| t.as_secs_f64()),
            policy = ?self.liveness,
            "no value from the device within its timeout"
        );
        match self.liveness {
            Liveness::Remove => {
                for s in std::mem::take(&mut self.services) {
                    out.push(Action::Close(s.decl.id));
                }
            }
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
                    out.push(Action::SetValues {
                        service: s.id().clone(),
                        changes,
                        why: "marking the service silent",
                    });
                }
            }
        }
    }

    fn reject_all(&self, rejections: Vec<Rejection>, kind: MessageKind, out: &mut Vec<Action>) {
        out.extend(rejections.into_iter().map(|rejection| Action::Reject {
            kind: leaf(kind),
            rejection,
        }));
    }
}

#[cfg(test)]
mod tests {
    //! The machine driven input by input, as the protocol reads: no bus, no broker, no
    //! sleep; time is what each input says it is.

    use super::*;

    const PORTAL: &str = "c0ffee000001";

    fn client() -> ClientId {
        ClientId::parse("dev1").unwrap()
    }

    fn machine() -> Machine {
        Machine::new(client(), Arc::new(Catalog::embedded()), None)
    }

    fn env(now: Instant) -> Env {
        Env {
            now,
            portal: Some(PortalId::parse(PORTAL).unwrap()),
            broker_connected: true,
        }
    }

    fn announce(payload: &str, restored: bool) -> Input {
        let (status, payload) = Status::parse_keeping_json("dev1", payload.as_bytes()).unwrap();
        Input::Event(DeviceEvent::Announce(Box::new(Announce {
            status,
            payload,
            restored,
        })))
    }

    fn values(payload: &str) -> Input {
        Input::Event(DeviceEvent::Values(
            ValuesMessage::parse(payload.as_bytes()).unwrap(),
        ))
    }

    fn id(s: &str) -> ServiceId {
        ServiceId::parse(s).unwrap()
    }

    /// What localsettings answers for a service: instance `instance`, and the
    /// persisted paths of the type stored.
    fn registered(request: &RegisterRequest, instance: u32) -> RegisterOutcome {
        let unique = UniqueId::new(&client(), &request.decl.id);
        let persisted = request
            .service_type
            .persisted()
            .map(|p| (format!("/{}", p.path), unique.setting_path(&p.path)))
            .collect();
        RegisterOutcome::Registered(Registered {
            unique,
            instance,
            persisted,
        })
    }

    /// Handles `input` as the device task does: each registration is answered
    /// (instances 10, 11, … in order) before anything else. Returns every action.
    fn drive(m: &mut Machine, input: Input, env: &Env) -> Vec<Action> {
        drive_with(m, input, env, |request, n| registered(request, 10 + n))
    }

    fn drive_with(
        m: &mut Machine,
        input: Input,
        env: &Env,
        mut answer: impl FnMut(&RegisterRequest, u32) -> RegisterOutcome,
    ) -> Vec<Action> {
        let mut all = Vec::new();
        let mut next = Some(input);
        let mut n = 0;
        while let Some(input) = next.take() {
            let actions = m.handle(input, env);
            if let Some((last, rest)) = actions.split_last() {
                assert!(
                    !rest.iter().any(|a| matches!(a, Action::Register(_))),
                    "a registration is always the last action of a batch: {actions:?}"
                );
                if let Action::Register(request) = last {
                    next = Some(Input::Registered(answer(request, n)));
                    n += 1;
                }
            }
            all.extend(actions);
        }
        all
    }

    fn registers(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Register(r) => Some(r.decl.id.to_string()),
                _ => None,
            })
            .collect()
    }

    fn published(actions: &[Action]) -> Vec<(&str, &str)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Publish { topic, payload } => Some((topic.as_str(), payload.as_str())),
                _ => None,
            })
            .collect()
    }

    fn rejected(actions: &[Action]) -> Vec<(&'static str, &'static str, Option<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reject { kind, rejection } => {
                    Some((*kind, rejection.code.as_str(), rejection.service.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn position(actions: &[Action], what: impl Fn(&Action) -> bool) -> usize {
        actions.iter().position(what).expect("the action is there")
    }

    const TWO: &str = r#"{"clientId": "dev1", "connected": 1, "version": "v1.0", "services": {"t1": "temperature", "tk1": "tank"}}"#;

    #[test]
    fn a_status_registers_each_service_in_turn_then_persists_then_replies() {
        let mut m = machine();
        let now = Instant::now();
        let actions = drive(&mut m, announce(TWO, false), &env(now));
        assert_eq!(registers(&actions), ["t1", "tk1"]);
        let record = position(&actions, |a| matches!(a, Action::Record(_)));
        let reply = position(&actions, |a| matches!(a, Action::Publish { .. }));
        assert!(record < reply, "persist, then reply: {actions:?}");
        assert_eq!(
            published(&actions),
            [
                (
                    "device/dev1/DBus",
                    r#"{"portalId": "c0ffee000001", "deviceInstance": {"t1": 10, "tk1": 11}, "topicPath": {"t1": {"N": "N/c0ffee000001/temperature/10", "R": "R/c0ffee000001/temperature/10", "W": "W/c0ffee000001/temperature/10"}, "tk1": {"N": "N/c0ffee000001/tank/11", "R": "R/c0ffee000001/tank/11", "W": "W/c0ffee000001/tank/11"}}}"#
                ),
                ("device/dev1/DeviceInstance", r#"{"t1": 10, "tk1": 11}"#),
            ]
        );
        assert!(rejected(&actions).is_empty());
        assert_eq!(m.deadline(), None, "no timeout declared");
    }

    #[test]
    fn an_unknown_type_refuses_only_that_service() {
        let mut m = machine();
        let status = r#"{"clientId": "dev1", "connected": 1, "services": {"t1": "temperature", "x1": "toaster"}}"#;
        let actions = drive(&mut m, announce(status, false), &env(Instant::now()));
        assert_eq!(registers(&actions), ["t1"]);
        assert_eq!(
            rejected(&actions),
            [("Status", "unknown_service_type", Some("x1".into()))]
        );
        assert_eq!(published(&actions)[1].1, r#"{"t1": 10}"#);
    }

    #[test]
    fn a_failed_or_refused_registration_is_answered_and_the_others_still_register() {
        let mut m = machine();
        let actions = drive_with(
            &mut m,
            announce(TWO, false),
            &env(Instant::now()),
            |r, n| {
                if r.decl.id.as_str() == "t1" {
                    RegisterOutcome::Failed("registering on D-Bus: name taken".into())
                } else {
                    assert_eq!(n, 1);
                    RegisterOutcome::NoSlot { max: 1 }
                }
            },
        );
        assert_eq!(
            rejected(&actions),
            [
                ("Status", "registration_failed", Some("t1".into())),
                ("Status", "too_many_devices", Some("tk1".into())),
            ]
        );
        assert_eq!(published(&actions)[1].1, "{}");
    }

    #[test]
    fn the_reply_waits_for_the_portal_id() {
        let mut m = machine();
        let mut no_portal = env(Instant::now());
        no_portal.portal = None;
        let actions = drive(&mut m, announce(TWO, false), &no_portal);
        assert!(published(&actions).is_empty());
        assert!(actions.iter().any(|a| matches!(a, Action::Record(_))));
        assert!(m.awaits_portal());
        let actions = m.handle(Input::PortalChanged, &env(Instant::now()));
        assert_eq!(published(&actions).len(), 2);
        assert!(!m.awaits_portal());
    }

    #[test]
    fn a_second_status_closes_what_is_no_longer_declared_and_updates_the_firmware() {
        let mut m = machine();
        let now = Instant::now();
        drive(&mut m, announce(TWO, false), &env(now));
        let one = r#"{"clientId": "dev1", "connected": 1, "version": 12, "services": {"t1": "temperature"}}"#;
        let actions = drive(&mut m, announce(one, false), &env(now));
        assert!(registers(&actions).is_empty());
        assert_eq!(actions[0], Action::Close(id("tk1")));
        assert_eq!(
            actions[1],
            Action::SetValue {
                service: id("t1"),
                path: "/FirmwareVersion".into(),
                value: Value::int(12),
                why: "updating /FirmwareVersion",
            }
        );
        assert_eq!(published(&actions)[1].1, r#"{"t1": 10}"#);
    }

    #[test]
    fn a_silent_device_is_invalidated_then_connected_again_by_its_next_value() {
        let mut m = machine();
        let t0 = Instant::now();
        let status = r#"{"clientId": "dev1", "connected": 1, "timeout": 0.5, "services": {"t1": "temperature"}}"#;
        drive(&mut m, announce(status, false), &env(t0));
        let deadline = t0 + Duration::from_millis(500);
        assert_eq!(m.deadline(), Some(deadline));
        // Woken early (spuriously): nothing happens.
        assert!(m
            .handle(Input::Timeout, &env(deadline - Duration::from_millis(1)))
            .is_empty());
        let actions = m.handle(Input::Timeout, &env(deadline));
        let [Action::SetValues {
            service, changes, ..
        }] = actions.as_slice()
        else {
            panic!("one SetValues: {actions:?}");
        };
        assert_eq!(*service, id("t1"));
        assert_eq!(changes[0], ("/Connected".to_owned(), Value::I32(0)));
        assert!(changes.contains(&("/Temperature".to_owned(), Value::Invalid)));
        assert!(!changes.iter().any(|(p, _)| p == "/Status"), "not measured");
        assert_eq!(m.deadline(), None);

        let t1 = deadline + Duration::from_secs(7);
        let actions = m.handle(values(r#"{"t1": {"Temperature": 4.5}}"#), &env(t1));
        assert_eq!(
            actions,
            [
                Action::SetValue {
                    service: id("t1"),
                    path: "/Connected".into(),
                    value: Value::I32(1),
                    why: "setting /Connected",
                },
                Action::SetValues {
                    service: id("t1"),
                    changes: vec![("/Temperature".into(), Value::F64(4.5))],
                    why: "setting values on D-Bus",
                },
            ]
        );
        assert_eq!(m.deadline(), Some(t1 + Duration::from_millis(500)));
    }

    #[test]
    fn liveness_keep_only_marks_the_service_disconnected() {
        let mut m = machine();
        let t0 = Instant::now();
        let status = r#"{"clientId": "dev1", "connected": 1, "timeout": 1, "liveness": "keep", "services": {"t1": "temperature"}}"#;
        drive(&mut m, announce(status, false), &env(t0));
        let actions = m.handle(Input::Timeout, &env(t0 + Duration::from_secs(1)));
        assert_eq!(
            actions,
            [Action::SetValues {
                service: id("t1"),
                changes: vec![("/Connected".into(), Value::I32(0))],
                why: "marking the service silent",
            }]
        );
    }

    #[test]
    fn liveness_remove_closes_the_services_and_the_next_value_registers_them_again() {
        let mut m = machine();
        let t0 = Instant::now();
        let status = r#"{"clientId": "dev1", "connected": 1, "timeout": 0.3, "liveness": "remove", "services": {"t1": "temperature"}}"#;
        drive(&mut m, announce(status, false), &env(t0));
        let actions = m.handle(Input::Timeout, &env(t0 + Duration::from_millis(300)));
        assert_eq!(actions, [Action::Close(id("t1"))]);
        assert_eq!(m.service_ids().count(), 0);

        let actions = drive(
            &mut m,
            values(r#"{"t1": {"Temperature": 3}}"#),
            &env(t0 + Duration::from_secs(2)),
        );
        assert_eq!(registers(&actions), ["t1"]);
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Record(_))),
            "the state file already has it"
        );
        let reply = position(&actions, |a| matches!(a, Action::Publish { .. }));
        let applied = position(&actions, |a| matches!(a, Action::SetValues { .. }));
        assert!(
            reply < applied,
            "registered and answered, then the values: {actions:?}"
        );
    }

    #[test]
    fn a_restored_device_is_removed_when_it_shows_no_sign_of_life() {
        let mut m = machine();
        let t0 = Instant::now();
        let status = r#"{"clientId": "dev1", "connected": 1, "timeout": 5, "liveness": "keep", "services": {"t1": "temperature"}}"#;
        let actions = drive(&mut m, announce(status, true), &env(t0));
        assert_eq!(registers(&actions), ["t1"]);
        assert!(actions.iter().any(|a| matches!(a, Action::Record(_))));
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(5)));
        let actions = m.handle(Input::Timeout, &env(t0 + Duration::from_secs(5)));
        // The silence is noticed first, then the device goes.
        assert!(matches!(actions[0], Action::SetValues { .. }));
        assert_eq!(
            actions[1..],
            [Action::Forget, Action::Close(id("t1")), Action::Stop]
        );
        assert!(m.stopped());
    }

    #[test]
    fn a_restored_device_waits_its_grace_only_while_the_broker_is_up() {
        let mut m = machine();
        let t0 = Instant::now();
        let mut away = env(t0);
        away.broker_connected = false;
        let status = r#"{"clientId": "dev1", "connected": 1, "services": {"t1": "temperature"}}"#;
        drive(&mut m, announce(status, true), &away);
        assert!(m.awaits_broker());
        assert_eq!(
            m.deadline(),
            None,
            "nobody can be heard while the broker is away"
        );
        let t1 = t0 + Duration::from_secs(60);
        assert!(m.handle(Input::BrokerChanged, &env(t1)).is_empty());
        assert_eq!(m.deadline(), Some(t1 + RESTORE_GRACE));
        // A value is a sign of life: the device stays.
        m.handle(values(r#"{"t1": {"Temperature": 20}}"#), &env(t1));
        assert!(!m.awaits_broker());
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn a_disconnect_forgets_the_device_before_its_services_go() {
        let mut m = machine();
        drive(&mut m, announce(TWO, false), &env(Instant::now()));
        let actions = m.handle(
            Input::Event(DeviceEvent::Disconnect {
                reason: "connected: 0",
            }),
            &env(Instant::now()),
        );
        assert_eq!(
            actions,
            [
                Action::Forget,
                Action::Sync,
                Action::Close(id("t1")),
                Action::Close(id("tk1")),
                Action::Stop,
            ]
        );
    }

    #[test]
    fn values_are_refused_per_field_and_the_rest_applies() {
        let mut m = machine();
        drive(&mut m, announce(TWO, false), &env(Instant::now()));
        let actions = m.handle(
            values(r#"{"t1": {"Temperature": 21.5, "Nope": 1, "TemperatureType": 4, "Humidity": "wet"}, "zz": {"Level": 1}}"#),
            &env(Instant::now()),
        );
        assert_eq!(
            rejected(&actions),
            [
                ("Values", "invalid_field", Some("t1".into())),
                ("Values", "invalid_value", Some("t1".into())),
                ("Values", "not_registered", Some("zz".into())),
            ]
        );
        let unique = UniqueId::new(&client(), &id("t1"));
        assert_eq!(
            actions[..2],
            [
                Action::SetValues {
                    service: id("t1"),
                    changes: vec![
                        ("/Temperature".into(), Value::F64(21.5)),
                        ("/TemperatureType".into(), Value::I32(4)),
                    ],
                    why: "setting values on D-Bus",
                },
                Action::StoreSetting {
                    service: id("t1"),
                    setting: unique.setting_path("TemperatureType"),
                    value: Value::I32(4),
                },
            ]
        );
    }

    #[test]
    fn a_write_on_the_gx_is_stored_and_forwarded_unless_measured() {
        let mut m = machine();
        drive(&mut m, announce(TWO, false), &env(Instant::now()));
        let write = |path: &str, value: Value| {
            Input::Event(DeviceEvent::RemoteWrite {
                service: id("t1"),
                path: path.into(),
                value,
            })
        };
        let actions = m.handle(
            write("/TemperatureType", Value::I32(3)),
            &env(Instant::now()),
        );
        assert!(
            matches!(&actions[0], Action::StoreSetting { value, .. } if *value == Value::I32(3))
        );
        assert_eq!(
            published(&actions),
            [(
                "device/dev1/Write",
                r#"{"service": "t1", "path": "TemperatureType", "value": 3}"#
            )]
        );
        let actions = m.handle(write("/Temperature", Value::F64(1.0)), &env(Instant::now()));
        assert!(
            actions.is_empty(),
            "measured values are not echoed: {actions:?}"
        );
    }

    #[test]
    fn a_new_instance_in_localsettings_registers_the_service_again_and_replies() {
        let mut m = machine();
        drive(&mut m, announce(TWO, false), &env(Instant::now()));
        let unique = UniqueId::new(&client(), &id("t1"));
        let changed = |value: &str| {
            Input::Event(DeviceEvent::SettingChanged {
                service: id("t1"),
                path: unique.instance_setting(),
                value: Value::Str(value.into()),
            })
        };
        assert!(
            m.handle(changed("temperature:10"), &env(Instant::now()))
                .is_empty(),
            "the instance it has"
        );
        let actions = drive_with(
            &mut m,
            changed("temperature:33"),
            &env(Instant::now()),
            |r, _| registered(r, 33),
        );
        assert_eq!(actions[0], Action::Close(id("t1")));
        assert_eq!(registers(&actions), ["t1"]);
        assert!(!actions.iter().any(|a| matches!(a, Action::Record(_))));
        assert_eq!(published(&actions)[1].1, r#"{"tk1": 11, "t1": 33}"#);
    }

    #[test]
    fn a_settings_change_reaches_the_path_it_persists() {
        let mut m = machine();
        drive(&mut m, announce(TWO, false), &env(Instant::now()));
        let unique = UniqueId::new(&client(), &id("t1"));
        let actions = m.handle(
            Input::Event(DeviceEvent::SettingChanged {
                service: id("t1"),
                path: unique.setting_path("TemperatureType"),
                value: Value::I32(5),
            }),
            &env(Instant::now()),
        );
        assert_eq!(
            actions,
            [Action::UpdateValue {
                service: id("t1"),
                path: "/TemperatureType".into(),
                value: Value::I32(5),
            }]
        );
    }

    #[test]
    fn a_proxy_message_is_forwarded_only_for_the_devices_own_services() {
        let mut m = machine();
        drive(&mut m, announce(TWO, false), &env(Instant::now()));
        let proxy = |topic_path: &str| {
            let payload =
                format!(r#"{{"topicPath": "{topic_path}", "values": {{"Temperature": 5}}}}"#);
            Input::Event(DeviceEvent::Proxy(
                ProxyRequest::parse(payload.as_bytes()).unwrap(),
            ))
        };
        let actions = m.handle(proxy("W/c0ffee000001/temperature/10"), &env(Instant::now()));
        assert_eq!(
            published(&actions),
            [(
                "W/c0ffee000001/temperature/10/Temperature",
                r#"{"value": 5}"#
            )]
        );
        let actions = m.handle(proxy("W/c0ffee000001/temperature/99"), &env(Instant::now()));
        assert_eq!(rejected(&actions), [("Proxy", "invalid_topic_path", None)]);
    }

    #[test]
    fn shutdown_removes_the_services_and_keeps_the_state_file() {
        let mut m = machine();
        drive(&mut m, announce(TWO, false), &env(Instant::now()));
        assert_eq!(
            m.handle(Input::Shutdown, &env(Instant::now())),
            [
                Action::Close(id("t1")),
                Action::Close(id("tk1")),
                Action::Stop
            ]
        );
    }
}
