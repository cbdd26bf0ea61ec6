//! The executor of one mapped device: it hands the device's messages, the
//! GX side's writes and settings changes, and the clock to its
//! [`MappedDevice`], and carries the [`Effect`]s out through the device
//! room: the service is registered by [`DeviceService::register_as`] (the
//! same localsettings layout, instance and name persistence, budget and
//! registration queue as a device of the protocol), values are set on it,
//! writes are published to the device.
//!
//! One task per device, so a slow registration of one never stalls the
//! others, and a defect met while handling one device costs that device only.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::catalog::ServiceType;
use crate::dbus::Value;
use crate::device::failure;
use crate::device::machine::Registered;
use crate::device::venus_service::{DeviceService, Identity, RegistrationContext};
use crate::device::{DeviceContext, DeviceEvent};
use crate::ids::{ClientId, IdError, ServiceId};
use crate::logging::error_chain;
use crate::mapped::declaration::{Declaration, MappedId};
use crate::mapped::device::{MappedDevice, WriteOutcome};
use crate::mapped::effect::{Effect, EnergyState, LogLevel};
use crate::mapped::routes::Input as SourceInput;
use crate::protocol::ServiceDecl;

/// Inputs queued per mapped device; past this a message is dropped with a
/// warning (a wildcard source flooding one device must not block the others).
pub const MAPPED_QUEUE: usize = 256;

/// The client id the device room's logs show for a mapped device.
const MAPPED_CLIENT: &str = "mapped";

/// How long after a failed registration it is tried again; doubled after
/// each failure in a row, up to [`REGISTER_RETRY_MAX`].
const REGISTER_RETRY: Duration = Duration::from_secs(10);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(300);

/// What the runtime hands a mapped device's task.
#[derive(Debug)]
pub enum Command {
    /// A message on one of its topics, for this input of its declaration.
    Message {
        input: SourceInput,
        topic: String,
        payload: Bytes,
        retained: bool,
    },
    /// A new declaration for the same service ([`Declaration::same_service`]):
    /// the service stays on D-Bus, the device is read anew (integrated
    /// energy continues; paths no longer mapped become invalid).
    Redeclare(Box<Declaration>),
}

/// The integrated energy of a device, to save.
#[derive(Debug)]
pub struct EnergySave {
    pub id: MappedId,
    pub state: EnergyState,
}

/// What the runtime keeps of a device's task.
pub struct TaskHandle {
    pub tx: mpsc::Sender<Command>,
    /// Makes the task leave D-Bus and end.
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

/// Starts the task of one mapped device. It first waits for `previous` (the
/// task of an earlier declaration of the same id, leaving D-Bus), so the
/// new service never races the old one for the bus name.
pub fn spawn(
    ctx: Arc<DeviceContext>,
    declaration: Declaration,
    service_type: ServiceType,
    energy: Option<EnergyState>,
    saves: mpsc::UnboundedSender<EnergySave>,
    previous: Option<JoinHandle<()>>,
) -> TaskHandle {
    let (tx, rx) = mpsc::channel(MAPPED_QUEUE);
    let stop = CancellationToken::new();
    let task_stop = stop.clone();
    let id = declaration.id.clone();
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            finish(previous).await;
        }
        ctx.activity.mapped.serving(id.as_str());
        let mut device = MappedDevice::new(declaration.clone(), &service_type);
        if let Some(energy) = &energy {
            device.restore_energy(energy);
        }
        let activity = ctx.activity.clone();
        let task = match MappedTask::new(ctx, declaration, service_type, device, saves) {
            Ok(t) => t,
            Err(e) => {
                activity.mapped.refused(id.as_str(), format!("not served: {e}"));
                return error!(mapped_id = %id, error = %e, "not served");
            }
        };
        if let Err(panic) = failure::contain(task.run(rx, task_stop)).await {
            // Its service was dropped while unwinding, which took it off the bus.
            error!(mapped_id = %id, reason = %panic.0, "internal error while serving this mapped device; it is removed from D-Bus, other devices are not affected");
            activity.mapped.registered(id.as_str(), false);
            activity.mapped.refused(id.as_str(), format!("internal error: {}", panic.0));
        }
    });
    TaskHandle { tx, stop, task }
}

struct MappedTask {
    ctx: Arc<DeviceContext>,
    id: MappedId,
    device: MappedDevice,
    service_type: ServiceType,
    identity: Identity,
    decl: ServiceDecl,
    /// The service on D-Bus, and what localsettings answered for it.
    service: Option<(DeviceService, Registered)>,
    /// The device wants to be on D-Bus (between `Register` and `Remove`).
    wanted: bool,
    retry_at: Option<Instant>,
    /// Registrations failed in a row.
    failures: u32,
    /// The name conflict was logged (once, not at every retry).
    name_conflict_logged: bool,
    bus_tx: mpsc::Sender<DeviceEvent>,
    bus_rx: mpsc::Receiver<DeviceEvent>,
    saves: mpsc::UnboundedSender<EnergySave>,
}

impl MappedTask {
    fn new(
        ctx: Arc<DeviceContext>,
        declaration: Declaration,
        service_type: ServiceType,
        device: MappedDevice,
        saves: mpsc::UnboundedSender<EnergySave>,
    ) -> Result<MappedTask, IdError> {
        let (bus_tx, bus_rx) = mpsc::channel(crate::device::DEVICE_QUEUE);
        let identity = identity_of(&declaration);
        Ok(MappedTask {
            decl: service_decl(&declaration)?,
            id: declaration.id.clone(),
            ctx,
            device,
            service_type,
            identity,
            service: None,
            wanted: false,
            retry_at: None,
            failures: 0,
            name_conflict_logged: false,
            bus_tx,
            bus_rx,
            saves,
        })
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Command>, stop: CancellationToken) {
        let start = self.device.start(Instant::now().into_std());
        self.apply(start).await;
        loop {
            let tick = self.device.next_tick().map(Instant::from_std);
            let deadline = match (tick, self.retry_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                // GX-side events are few and go first.
                biased;
                _ = stop.cancelled() => break,
                Some(event) = self.bus_rx.recv() => self.on_gx(event).await,
                command = inbox.recv() => match command {
                    Some(Command::Message { input, topic, payload, retained }) => {
                        let now = Instant::now().into_std();
                        let effects = self.device.on_message(input, &topic, &payload, retained, now);
                        let values = self.values_from(&input);
                        self.ctx.activity.mapped.message(self.id.as_str(), &topic, &payload, values);
                        self.apply(effects).await;
                    }
                    Some(Command::Redeclare(declaration)) => self.redeclare(*declaration).await,
                    None => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let now = Instant::now();
                    if self.retry_at.is_some_and(|r| r <= now) {
                        self.retry_at = None;
                        self.register().await;
                    }
                    if tick.is_some_and(|t| t <= now) {
                        let effects = self.device.on_tick(now.into_std());
                        self.apply(effects).await;
                    }
                }
            }
        }
        // What was integrated since the last save is kept.
        let state = self.device.energy_state();
        if !state.0.is_empty() {
            let _ = self.saves.send(EnergySave {
                id: self.id.clone(),
                state,
            });
        }
        self.close().await;
    }

    /// Carries out the effects in order. A registration takes every value
    /// the device knows at that moment, so the service appears with them
    /// (the `Set` and `Connected` that follow then change nothing).
    async fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Register => {
                    self.wanted = true;
                    // Values set before are the device's; they come again with `Set`.
                    self.close().await;
                    self.register().await;
                }
                Effect::Remove => {
                    self.wanted = false;
                    self.retry_at = None;
                    info!(mapped_id = %self.id, "stale: leaving D-Bus until the device is back (on_stale = \"remove\")");
                    self.close().await;
                }
                Effect::Set(changes) => self.set(changes).await,
                Effect::Connected(c) => {
                    self.ctx.activity.mapped.available(self.id.as_str(), c);
                    self.set(vec![("/Connected".into(), Value::I32(i32::from(c)))])
                        .await
                }
                Effect::Publish(p) => self.ctx.mqtt.publish(&p.topic, p.payload, p.retain),
                Effect::Log(log) => match log.level {
                    LogLevel::Info => info!(mapped_id = %self.id, "{}", log.message),
                    LogLevel::Warn => {
                        warn!(mapped_id = %self.id, "{}", log.message);
                        self.ctx.activity.mapped.error(self.id.as_str(), log.message);
                    }
                },
                Effect::SaveEnergy(state) => {
                    let _ = self.saves.send(EnergySave {
                        id: self.id.clone(),
                        state,
                    });
                }
            }
        }
    }

    /// Serves a new declaration of the same service (see [`Command::Redeclare`]).
    async fn redeclare(&mut self, declaration: Declaration) {
        let old = self.device.declaration().clone();
        if let Ok(decl) = service_decl(&declaration) {
            self.decl = decl;
        }
        let identity = identity_of(&declaration);
        let mut shown = Vec::new();
        if identity.serial != self.identity.serial {
            shown.push(("/Serial".to_string(), Value::Str(identity.serial.clone())));
        }
        if identity.connection != self.identity.connection {
            let connection = Value::Str(identity.connection.clone());
            shown.push(("/Mgmt/Connection".to_string(), connection));
        }
        if declaration.product != old.product {
            let product = declaration
                .product
                .clone()
                .unwrap_or_else(|| self.service_type.product_name.clone());
            shown.push(("/ProductName".to_string(), Value::Str(product)));
        }
        self.identity = identity;
        self.set(shown).await;
        if declaration.name != old.name {
            self.rename(old.name.as_deref(), declaration.name.as_deref())
                .await;
        }

        let before = declared_paths(self.device.declaration());
        let after = declared_paths(&declaration);
        self.ctx.activity.mapped.keep_paths(self.id.as_str(), &after);
        let unmapped: Vec<(String, Value)> = before
            .difference(&after)
            .map(|p| (p.clone(), Value::Invalid))
            .collect();
        self.set(unmapped).await;
        let mut effects = self.device.redeclare(declaration, &self.service_type);
        if self.service.is_some() {
            effects.retain(|e| *e != Effect::Register);
        }
        info!(mapped_id = %self.id, "declaration changed; served by the same service");
        self.apply(effects).await;
    }

    /// The stored name and the declared name it was stored under (the
    /// setting's default), before registering updates that default; `None`
    /// when the device has no stored name yet.
    async fn stored_name(&self) -> Option<(Value, Value)> {
        let setting = self.identity.unique.setting_path("CustomName");
        let value = self.ctx.settings.get_value(&setting).await.ok()?;
        let default = self.ctx.settings.get_default(&setting).await.ok()?;
        Some((value, default))
    }

    /// After a restart, as on a reload: a name declared anew while the
    /// daemon was stopped is taken unless the user named the device on the
    /// GX (its stored name is not the declared name it was stored under).
    async fn apply_declared_name(&mut self, value: Value, old_default: Value) {
        let declared = self.device.declaration().name.clone();
        let new_default = Value::Str(declared.unwrap_or_else(|| self.service_type.custom_name.clone()));
        if value != old_default || old_default == new_default {
            return;
        }
        let Some((_, registered)) = &self.service else {
            return;
        };
        let Some(setting) = registered.setting_of("/CustomName") else {
            return;
        };
        info!(mapped_id = %self.id, "the declared name changed while stopped; the service takes it");
        if let Err(e) = self.ctx.settings.set_value(setting, new_default).await {
            warn!(mapped_id = %self.id, path = %setting, error = %e, "storing the declared name");
        }
    }

    /// The declared name changed: the service takes it unless the user
    /// named it on the GX (its name is not the old default any more).
    async fn rename(&mut self, old: Option<&str>, new: Option<&str>) {
        let Some((service, registered)) = &self.service else {
            return;
        };
        let Some(setting) = registered.setting_of("/CustomName") else {
            return;
        };
        let default = |name: Option<&str>| {
            Value::Str(
                name.map_or_else(|| self.service_type.custom_name.clone(), str::to_string),
            )
        };
        if service.service.value("/CustomName") != Some(default(old)) {
            info!(mapped_id = %self.id, "the declared name changed; the name given on the GX is kept");
            return;
        }
        // The settings change comes back as an event and updates the service.
        if let Err(e) = self.ctx.settings.set_value(setting, default(new)).await {
            warn!(mapped_id = %self.id, path = %setting, error = %e, "storing the declared name");
        }
    }

    /// The paths a message on `input` feeds, with their values now (for the
    /// operator tools).
    fn values_from(&self, input: &SourceInput) -> Vec<(String, serde_json::Value)> {
        let SourceInput::Source(i) = input else {
            return Vec::new();
        };
        let source = self.device.declaration().sources.get(*i);
        source
            .into_iter()
            .flat_map(|s| &s.mappings)
            .filter_map(|m| {
                let value = self.device.value(&m.path)?;
                Some((m.path.clone(), value.to_json()))
            })
            .collect()
    }

    /// Registers the service with every value the device knows now.
    async fn register(&mut self) {
        if self.service.is_some() || !self.wanted {
            return;
        }
        let Some(slot) = self.ctx.budget.reserve() else {
            let why = format!(
                "this GX already serves {} MQTT device services, the configured limit",
                self.ctx.budget.max()
            );
            return self.retry_later(&why);
        };
        let initial = self.current_values();
        let stored_name = self.stored_name().await;
        // The semaphore is never closed, so acquiring only fails if it were.
        let _permit = self.ctx.registrations.clone().acquire_owned().await.ok();
        // In the device room's logs: client "mapped", service the device's id.
        let client = match ClientId::parse(MAPPED_CLIENT) {
            Ok(c) => c,
            Err(e) => {
                warn!(mapped_id = %self.id, error = %e, "not registered");
                return;
            }
        };
        let registration = RegistrationContext {
            bus: &self.ctx.bus,
            settings: &self.ctx.settings,
            client: &client,
            version: None,
            events: self.bus_tx.clone(),
            slot,
        };
        match DeviceService::register_as(
            registration,
            &self.identity,
            &self.decl,
            &self.service_type,
            &initial,
        )
        .await
        {
            Ok(registered) => {
                self.retry_at = None;
                self.failures = 0;
                self.name_conflict_logged = false;
                self.service = Some(registered);
                self.ctx.activity.mapped.registered(self.id.as_str(), true);
                if let Some((value, old_default)) = stored_name {
                    self.apply_declared_name(value, old_default).await;
                }
            }
            Err(e) => {
                if let Some(name) = name_taken(&e) {
                    if !self.name_conflict_logged {
                        self.name_conflict_logged = true;
                        error!(mapped_id = %self.id, "{}", name_conflict(&self.id, name));
                    }
                }
                self.retry_later(&error_chain(&e))
            }
        }
    }

    /// A registration failed: logged, and tried again later (the name may
    /// be held by another service, localsettings may refuse for a while).
    fn retry_later(&mut self, why: &str) {
        let wait = REGISTER_RETRY
            .saturating_mul(1u32.checked_shl(self.failures).unwrap_or(u32::MAX))
            .min(REGISTER_RETRY_MAX);
        self.failures = self.failures.saturating_add(1);
        let note = format!("not registered: {why} (tried again in {} s)", wait.as_secs());
        self.ctx.activity.mapped.refused(self.id.as_str(), note);
        warn!(mapped_id = %self.id, reason = why, retry_in_s = wait.as_secs(), "not registered; tried again later");
        self.retry_at = Some(Instant::now() + wait);
    }

    /// Every value the device has for D-Bus now, and `/Connected`.
    fn current_values(&self) -> Vec<(String, Value)> {
        let mut values: Vec<(String, Value)> = self
            .device
            .declaration()
            .constants
            .keys()
            .chain(self.device.declaration().mappings().map(|m| &m.path))
            .chain(self.device.declaration().writes.iter().map(|w| &w.path))
            .filter_map(|p| self.device.value(p).map(|v| (p.clone(), v.clone())))
            .collect();
        values.push((
            "/Connected".into(),
            Value::I32(i32::from(self.device.is_alive())),
        ));
        values
    }

    async fn set(&mut self, changes: Vec<(String, Value)>) {
        let Some((service, registered)) = &self.service else {
            return;
        };
        // A path the service lacks is left out with a warning, so one
        // mistake does not hold back the other values.
        let (known, unknown): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|(p, _)| service.service.value(p).is_some());
        for (path, _) in unknown {
            warn!(mapped_id = %self.id, path, "the service has no such path; the value is not shown");
        }
        if known.is_empty() {
            return;
        }
        // A fixed value (`const`) of a persisted path is stored too, so
        // localsettings and the service agree.
        for (path, value) in &known {
            let Some(setting) = registered.setting_of(path) else {
                continue;
            };
            if service.service.value(path).as_ref() != Some(value) {
                if let Err(e) = self.ctx.settings.set_value(setting, value.clone()).await {
                    warn!(mapped_id = %self.id, path = %setting, error = %e, "storing a setting");
                }
            }
        }
        if let Err(e) = service.service.set_values(known).await {
            warn!(mapped_id = %self.id, error = %e, "setting values on D-Bus");
        }
    }

    /// A D-Bus write or a settings change of the service.
    async fn on_gx(&mut self, event: DeviceEvent) {
        match event {
            DeviceEvent::RemoteWrite { path, value, .. } => self.on_write(path, value).await,
            DeviceEvent::SettingChanged { path, value, .. } => {
                self.on_setting_changed(path, value).await
            }
            other => debug!(mapped_id = %self.id, event = ?other, "not for a mapped device"),
        }
    }

    async fn on_write(&mut self, path: String, value: Value) {
        if let Some((_, registered)) = &self.service {
            if let Some(setting) = registered.setting_of(&path) {
                if let Err(e) = self.ctx.settings.set_value(setting, value.clone()).await {
                    warn!(mapped_id = %self.id, path = %setting, error = %e, "storing a setting");
                }
            }
        }
        let now = Instant::now().into_std();
        match self.device.on_write(&path, &value, now) {
            WriteOutcome::NotForwarded => {}
            WriteOutcome::Refused(why) => {
                warn!(mapped_id = %self.id, path, reason = why, "a D-Bus write is not sent to the device")
            }
            WriteOutcome::Forwarded(effects) => {
                self.apply(effects).await;
                // The path shows what was sent (clamped), even where the
                // device's value did not change.
                if let Some(sent) = self.device.value(&path).cloned() {
                    self.set(vec![(path, sent)]).await;
                }
            }
        }
    }

    async fn on_setting_changed(&mut self, path: String, value: Value) {
        let Some((service, registered)) = &self.service else {
            return;
        };
        if registered.instance_moved(&path, &value) {
            info!(mapped_id = %self.id, "device instance changed in localsettings; registering again");
            self.close().await;
            self.register().await;
            return;
        }
        if let Some(dbus_path) = registered.path_of_setting(&path).cloned() {
            if service.service.value(&dbus_path).as_ref() != Some(&value) {
                if let Err(e) = service.service.set_value(&dbus_path, value).await {
                    warn!(mapped_id = %self.id, path = dbus_path, error = %e, "applying a settings change");
                }
            }
        }
    }

    async fn close(&mut self) {
        if let Some((service, _)) = self.service.take() {
            service.close().await;
            self.ctx.activity.mapped.registered(self.id.as_str(), false);
        }
    }
}

/// Who a mapped device's service is: `mqtt_<id>`, where its data comes
/// from, its serial (the declared one, else its unique id).
fn identity_of(declaration: &Declaration) -> Identity {
    let unique = declaration.id.unique_id();
    Identity {
        connection: declaration.connection.clone(),
        device_name: format!("mapped:{}", declaration.id),
        serial: declaration
            .serial
            .clone()
            .unwrap_or_else(|| unique.to_string()),
        unique,
    }
}

/// The bus name another service already owns, when that is why a
/// registration failed.
fn name_taken(e: &crate::device::venus_service::Error) -> Option<&str> {
    match e {
        crate::device::venus_service::Error::Dbus {
            source: crate::dbus::Error::NameTaken { name },
            ..
        } => Some(name),
        _ => None,
    }
}

/// What to tell the user when a mapped device's bus name is taken: most
/// likely a device of the MQTT protocol whose `<client>_<service>` equals
/// the mapped id, and which also shares its settings.
fn name_conflict(id: &MappedId, name: &str) -> String {
    format!(
        "{name} is owned by another service: most likely a device of the MQTT protocol whose \
         <client>_<service> is '{id}', which also shares the settings /Settings/MqttDevices/mqtt_{id}/ \
         and /Settings/Devices/mqtt_{id}/; give the mapped device another id (tried again by itself)"
    )
}

/// The D-Bus paths a declaration gives values to.
fn declared_paths(d: &Declaration) -> BTreeSet<String> {
    d.constants
        .keys()
        .chain(d.mappings().map(|m| &m.path))
        .chain(d.writes.iter().map(|w| &w.path))
        .cloned()
        .collect()
}

/// What the device room needs of a declaration to register its service: the
/// type, the default name, the preferred instance, the initial settings and
/// the product name.
fn service_decl(declaration: &Declaration) -> Result<ServiceDecl, IdError> {
    Ok(ServiceDecl {
        // Only the mapped task's own events and the logs carry it; a mapped
        // id longer than a service id may be is shown as "mapped".
        id: ServiceId::parse(declaration.id.as_str()).or_else(|_| ServiceId::parse(MAPPED_CLIENT))?,
        service_type: declaration.service.clone(),
        name: declaration.name.clone(),
        instance: declaration.instance,
        settings: declaration
            .settings
            .iter()
            .map(|(path, value)| (path.trim_start_matches('/').to_string(), value.to_json()))
            .collect(),
        product: declaration.product.clone(),
    })
}

/// How long a stopped task may take to leave D-Bus before it is aborted
/// (dropping its service releases the name all the same).
pub const STOP_GRACE: Duration = Duration::from_millis(1500);

/// Waits for a stopped task to end; aborts it past [`STOP_GRACE`] (a
/// registration waiting for localsettings does not end by itself).
pub async fn finish(mut task: JoinHandle<()>) {
    if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
        task.abort();
        let _ = task.await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::venus_service::Error;

    #[test]
    fn a_taken_bus_name_is_explained_as_a_conflict_with_a_protocol_device() {
        let name = "com.victronenergy.temperature.mqtt_fe_t1";
        let taken = Error::Dbus {
            name: name.into(),
            source: crate::dbus::Error::NameTaken { name: name.into() },
        };
        assert_eq!(name_taken(&taken), Some(name));
        let other = Error::BadInstance {
            path: "/Settings/Devices/mqtt_fe_t1/ClassAndVrmInstance".into(),
            value: "x".into(),
        };
        assert_eq!(name_taken(&other), None);
        let id = MappedId::parse("fe_t1").unwrap();
        let message = name_conflict(&id, name);
        assert!(message.starts_with(&format!("{name} is owned by another service")), "{message}");
        assert!(message.contains("<client>_<service> is 'fe_t1'"), "{message}");
        assert!(message.contains("/Settings/MqttDevices/mqtt_fe_t1/"), "{message}");
    }
}
