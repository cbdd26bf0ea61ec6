//! Mapped devices at run time: the declarations in effect (files of the data
//! directory and retained declaration topics), one task per device
//! ([`task`]), the subscriptions (one per distinct topic filter) and the
//! routing of each message to the devices it is for. Reloads on SIGHUP and
//! when the files change, touching only the devices whose declaration
//! changed.
//!
//! The daemon's main loop hands every message to [`MappedHandle::offer`]
//! first; a message on a mapped device's topic (or a declaration topic) is
//! taken here and goes nowhere else.

pub mod energy_file;
pub mod files;
pub mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use self::energy_file::Energies;
use self::task::{Command, EnergySave, TaskHandle};
use super::declaration::{Declaration, MappedId};
use super::diagnostic::Diagnostic;
use super::load::{
    self, combine, declaration_topic_id, parse_topic_declaration, LoadedDevice, TopicDeclaration,
    DECLARATION_TOPIC_FILTER, DECLARATION_TOPIC_PREFIX,
};
use super::preset::Presets;
use super::routes::Routes;
use crate::device::DeviceContext;
use crate::mqtt::{Message, MqttHandle, Owner};
use crate::operator::mapped_activity::DeclarationNote;
use crate::protocol::DeviceTopic;

/// How often the declaration files are looked at for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// Messages queued towards the runtime; past this a message is dropped with
/// a warning (the broker connection is never held up).
const INBOX: usize = 1024;

/// The main loop's side of the runtime.
pub struct MappedHandle {
    routes: watch::Receiver<Arc<Routes>>,
    tx: mpsc::Sender<Message>,
    /// Messages are being dropped (warned once per flood).
    dropping: AtomicBool,
    stop: tokio_util::sync::CancellationToken,
    task: JoinHandle<()>,
}

impl MappedHandle {
    /// Takes `message` if it is for a mapped device or declares one; returns
    /// whether it did. Never waits.
    pub fn offer(&self, message: &Message) -> bool {
        // The protocol's own topics stay its own, whatever a declaration says.
        if DeviceTopic::parse(&message.topic).is_some() {
            return false;
        }
        let ours = declaration_topic_id(&message.topic).is_some()
            || self.routes.borrow().route(&message.topic).next().is_some();
        if ours {
            match self.tx.try_send(message.clone()) {
                Ok(()) => self.dropping.store(false, Ordering::Relaxed),
                Err(e) => {
                    // Once per flood, not once per message.
                    if !self.dropping.swap(true, Ordering::Relaxed) {
                        warn!(topic = %message.topic, error = %e, "dropping messages for mapped devices: they are far behind");
                    }
                }
            }
        }
        ours
    }

    /// Takes every mapped device off D-Bus and saves their integrated energy.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The operator's `remove` of a mapped device: its topic declaration is
/// cleared, it leaves D-Bus, its integrated energy is forgotten. Refused for
/// a device declared in a file (the file would bring it back).
#[derive(Debug)]
pub struct Retire {
    pub id: String,
    pub done: oneshot::Sender<Result<Retired, String>>,
}

/// What a [`Retire`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retired {
    /// The retained declaration topic cleared, if the device was declared there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declaration_cleared: Option<String>,
    /// Its integrated energy was forgotten (`mapped-energy.json`).
    pub energy_forgotten: bool,
}

/// Starts serving the declarations of the data directory and of the
/// declaration topics; `hangup` (from [`catch_hangup`]) makes it read the
/// files again; `retire` brings the operator's removals.
pub fn start(
    ctx: Arc<DeviceContext>,
    data_dir: PathBuf,
    hangup: Hangup,
    retire: mpsc::Receiver<Retire>,
) -> MappedHandle {
    let (routes_tx, routes) = watch::channel(Arc::new(Routes::default()));
    let (tx, rx) = mpsc::channel(INBOX);
    let stop = tokio_util::sync::CancellationToken::new();
    let (saves_tx, saves) = mpsc::unbounded_channel();
    let runtime = Runtime {
        subscriptions: ctx.mqtt.for_owner(Owner::Mapped),
        ctx,
        data_dir,
        presets: Presets::default(),
        file_devices: Vec::new(),
        file_diagnostics: Vec::new(),
        topic_devices: BTreeMap::new(),
        topic_refusals: BTreeMap::new(),
        devices: BTreeMap::new(),
        closing: BTreeMap::new(),
        routes: Arc::new(Routes::default()),
        routes_tx,
        dropping: BTreeSet::new(),
        energies: Energies::new(),
        energies_dirty: false,
        saves_tx,
    };
    let task = tokio::spawn(runtime.run(rx, saves, hangup, retire, stop.clone()));
    MappedHandle {
        routes,
        tx,
        dropping: AtomicBool::new(false),
        stop,
        task,
    }
}

/// A device being served.
struct Running {
    declaration: Declaration,
    handle: TaskHandle,
}

struct Runtime {
    ctx: Arc<DeviceContext>,
    /// The connection, subscribing for mapped devices: a filter the
    /// protocol's devices need too stays subscribed when they are removed.
    subscriptions: MqttHandle,
    data_dir: PathBuf,
    presets: Presets,
    file_devices: Vec<LoadedDevice>,
    /// What the last reading of the files found wrong (shown by the operator tools).
    file_diagnostics: Vec<Diagnostic>,
    topic_devices: BTreeMap<MappedId, Declaration>,
    /// Declaration topics whose last message was refused, with why.
    topic_refusals: BTreeMap<String, Vec<Diagnostic>>,
    devices: BTreeMap<MappedId, Running>,
    /// Tasks of devices leaving D-Bus, so a new declaration of the same id
    /// waits for its bus name.
    closing: BTreeMap<MappedId, JoinHandle<()>>,
    routes: Arc<Routes>,
    routes_tx: watch::Sender<Arc<Routes>>,
    /// Devices whose queue was full at their last message.
    dropping: BTreeSet<MappedId>,
    energies: Energies,
    /// Energy received since the file was last written.
    energies_dirty: bool,
    saves_tx: mpsc::UnboundedSender<EnergySave>,
}

impl Runtime {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Message>,
        mut saves: mpsc::UnboundedReceiver<EnergySave>,
        mut hangup: Hangup,
        mut retire: mpsc::Receiver<Retire>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let dir = self.data_dir.clone();
        self.energies = tokio::task::spawn_blocking(move || energy_file::load(&dir))
            .await
            .unwrap_or_default();
        let mut fingerprint = self.fingerprint().await;
        self.reload("start").await;
        self.subscriptions.subscribe(DECLARATION_TOPIC_FILTER);
        let mut poll = tokio::time::interval(FILE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(message) = inbox.recv() => self.on_message(message).await,
                Some(save) = saves.recv() => self.save(save).await,
                Some(r) = retire.recv() => {
                    let done = self.retire(&r.id, &mut saves).await;
                    let _ = r.done.send(done);
                }
                Some(()) = hangup.next() => {
                    fingerprint = self.fingerprint().await;
                    self.reload("SIGHUP").await;
                }
                _ = poll.tick() => {
                    let now = self.fingerprint().await;
                    if now != fingerprint {
                        fingerprint = now;
                        self.reload("the declaration files changed").await;
                    }
                }
            }
        }
        // Stopping: every device leaves D-Bus and hands in its energy.
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        for (_, running) in std::mem::take(&mut self.devices) {
            running.handle.stop.cancel();
            tasks.push(running.handle.task);
        }
        tasks.extend(std::mem::take(&mut self.closing).into_values());
        // All at once, each within the grace.
        futures_util::future::join_all(tasks.into_iter().map(task::finish)).await;
        while let Ok(save) = saves.try_recv() {
            self.energies.insert(save.id.to_string(), save.state);
            self.energies_dirty = true;
        }
        if self.energies_dirty {
            self.write_energies().await;
        }
    }

    async fn fingerprint(&self) -> files::Fingerprint {
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || files::fingerprint(&dir))
            .await
            .unwrap_or_default()
    }

    /// Reads the files again and serves what they declare now.
    async fn reload(&mut self, why: &str) {
        let dir = self.data_dir.clone();
        let catalog = self.ctx.catalog.clone();
        let loaded =
            tokio::task::spawn_blocking(move || load::load_data_dir(&dir, &catalog)).await;
        let Ok((presets, loaded)) = loaded else {
            error!("reading the declaration files failed; the devices served are kept");
            return;
        };
        report(&loaded.diagnostics);
        let kept = load::kept_through_mistakes(&self.file_devices, &loaded);
        for d in &kept {
            warn!(mapped_id = %d.declaration.id, "its declaration has a mistake now (see above); still served as declared before");
        }
        info!(
            reason = why,
            devices = loaded.devices.len() + kept.len(),
            "mapped device declarations read"
        );
        self.presets = presets;
        self.file_diagnostics = loaded.diagnostics;
        self.file_devices = loaded.devices;
        self.file_devices.extend(kept);
        self.reconcile();
    }

    async fn on_message(&mut self, message: Message) {
        if declaration_topic_id(&message.topic).is_some() {
            return self.on_declaration(&message);
        }
        for route in self.routes.route(&message.topic) {
            let Some(running) = self.devices.get(&route.device) else {
                continue;
            };
            let command = Command::Message {
                input: route.input,
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                retained: message.retained,
            };
            match running.handle.tx.try_send(command) {
                Ok(()) => {
                    self.dropping.remove(&route.device);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Once per flood, not once per message.
                    if self.dropping.insert(route.device.clone()) {
                        warn!(mapped_id = %route.device, topic = %message.topic, "dropping messages: the device's queue is full (more come than it can handle)")
                    }
                }
                // Its task failed (logged then); a reload serves it again.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// A message on `dbus-mqtt-devices/mapped/<id>`.
    fn on_declaration(&mut self, message: &Message) {
        let parsed = parse_topic_declaration(
            &message.topic,
            &message.payload,
            &self.presets,
            &self.ctx.catalog,
        );
        match parsed {
            TopicDeclaration::Withdrawn(id) => {
                let refused = self.topic_refusals.remove(&message.topic).is_some();
                if self.topic_devices.remove(&id).is_none() && !refused {
                    return;
                }
                info!(mapped_id = %id, topic = %message.topic, "declaration withdrawn");
            }
            TopicDeclaration::Declared(declaration) => {
                let refused = self.topic_refusals.remove(&message.topic).is_some();
                if self.topic_devices.get(&declaration.id) == Some(&declaration) && !refused {
                    return;
                }
                info!(mapped_id = %declaration.id, topic = %message.topic, "declaration received");
                self.topic_devices
                    .insert(declaration.id.clone(), *declaration);
            }
            TopicDeclaration::Refused(id, diagnostics) => {
                report(&diagnostics);
                let diagnostics = match &id {
                    Some(id) => diagnostics
                        .into_iter()
                        .map(|d| d.for_device(id.as_str()))
                        .collect(),
                    None => diagnostics,
                };
                self.topic_refusals
                    .insert(message.topic.clone(), diagnostics);
                if let Some(id) = id.filter(|id| self.topic_devices.contains_key(id)) {
                    warn!(mapped_id = %id, topic = %message.topic, "the device keeps its earlier declaration from this topic");
                }
            }
        }
        self.reconcile();
    }

    /// Serves the declarations in effect: unchanged devices are untouched;
    /// changed ones keep their service when they are the same service
    /// ([`Declaration::same_service`]) and are served anew otherwise;
    /// removed ones leave D-Bus. The subscriptions follow, and a device
    /// read anew gets the retained messages of its topics again.
    fn reconcile(&mut self) {
        let (wanted, conflicts) = combine(&self.file_devices, &self.topic_devices);
        report(&conflicts);
        self.tell_operator(&wanted, &conflicts);
        let wanted: BTreeMap<MappedId, Declaration> = wanted
            .into_iter()
            .map(|d| (d.declaration.id.clone(), d.declaration))
            .collect();

        let mut started = Vec::new();
        // Changed, but the same service: the task keeps it and reads anew.
        for (id, declaration) in &wanted {
            let Some(running) = self.devices.get_mut(id) else {
                continue;
            };
            if running.declaration == *declaration
                || !running.declaration.same_service(declaration)
                || running.handle.task.is_finished()
            {
                continue;
            }
            let command = Command::Redeclare(Box::new(declaration.clone()));
            if running.handle.tx.try_send(command).is_ok() {
                running.declaration = declaration.clone();
                started.push(declaration.clone());
            }
        }
        let gone: Vec<MappedId> = self
            .devices
            .iter()
            .filter(|(id, running)| {
                // A task that ended by itself (a failure) is served anew.
                wanted.get(*id) != Some(&running.declaration) || running.handle.task.is_finished()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(running) = self.devices.remove(&id) {
                if wanted.contains_key(&id) {
                    info!(mapped_id = %id, "declaration changed; serving it anew");
                } else {
                    info!(mapped_id = %id, "no longer declared; leaving D-Bus");
                }
                running.handle.stop.cancel();
                self.closing.insert(id, running.handle.task);
            }
        }
        self.closing.retain(|_, task| !task.is_finished());

        for (id, declaration) in wanted {
            if self.devices.contains_key(&id) {
                continue;
            }
            let Some(service_type) = self.ctx.catalog.get(&declaration.service).cloned() else {
                error!(mapped_id = %id, service = declaration.service, "not a service type of the catalog; not served");
                continue;
            };
            let handle = task::spawn(
                self.ctx.clone(),
                declaration.clone(),
                service_type,
                self.energies.get(id.as_str()).cloned(),
                self.saves_tx.clone(),
                self.closing.remove(&id),
            );
            started.push(declaration.clone());
            self.devices.insert(
                id,
                Running {
                    declaration,
                    handle,
                },
            );
        }

        let routes = Arc::new(Routes::new(self.devices.values().map(|r| &r.declaration)));
        let (_, unsubscribe) = self.routes.diff(&routes);
        self.routes = routes.clone();
        // Routes first, so that what the subscriptions bring finds its device.
        let _ = self.routes_tx.send(routes);
        for filter in unsubscribe {
            self.subscriptions.unsubscribe(filter.as_str());
        }
        // A device served or read anew needs the retained messages of all
        // its topics, also those that other devices keep subscribed.
        let started_routes = Routes::new(&started);
        for filter in started_routes.filters() {
            self.subscriptions.resubscribe(filter.as_str());
        }
    }

    /// Tells the operator tools which declarations are served and which are
    /// refused, with every diagnostic about each.
    fn tell_operator(&self, wanted: &[LoadedDevice], conflicts: &[Diagnostic]) {
        let topics = self.topic_refusals.values().flatten();
        let diagnostics = self.file_diagnostics.iter().chain(topics).chain(conflicts);
        let (notes, unattributed) = declaration_notes(wanted, diagnostics, true);
        self.ctx.activity.mapped.declarations(notes, unattributed);
    }

    /// The operator removes device `id` (see [`Retire`]).
    async fn retire(
        &mut self,
        id: &str,
        saves: &mut mpsc::UnboundedReceiver<EnergySave>,
    ) -> Result<Retired, String> {
        let in_file = self
            .file_devices
            .iter()
            .find(|d| d.declaration.id.as_str() == id)
            .map(|d| d.origin.clone())
            .or_else(|| {
                self.file_diagnostics
                    .iter()
                    .find(|d| d.is_error() && d.device.as_deref() == Some(id))
                    .map(|d| d.place.clone())
            });
        if let Some(origin) = in_file {
            return Err(format!(
                "{id} is declared in {origin}: delete its declaration there first (the daemon \
                 notices within a few seconds), then remove it here to free its instance"
            ));
        }
        let mapped_id = MappedId::parse(id).map_err(|e| format!("{id}: {e}"))?;
        let topic = format!("{DECLARATION_TOPIC_PREFIX}{id}");
        let mut retired = Retired::default();
        let declared = self.topic_devices.remove(&mapped_id).is_some();
        let refused = self.topic_refusals.remove(&topic).is_some();
        if declared || refused {
            // Cleared first, so that nothing brings it back at the next start.
            self.ctx.mqtt.publish(&topic, "", true);
            info!(mapped_id = %id, topic, "declaration cleared by the operator");
            retired.declaration_cleared = Some(topic);
            self.reconcile();
        }
        if let Some(task) = self.closing.remove(&mapped_id) {
            task::finish(task).await;
        }
        // The last save of its task, if it just ended, is forgotten with the rest.
        let mut forgotten = false;
        while let Ok(save) = saves.try_recv() {
            if save.id == mapped_id {
                forgotten = true;
            } else {
                self.energies.insert(save.id.to_string(), save.state);
                self.energies_dirty = true;
            }
        }
        forgotten |= self.energies.remove(id).is_some();
        if forgotten || self.energies_dirty {
            self.write_energies().await;
        }
        retired.energy_forgotten = forgotten;
        self.ctx.activity.mapped.forget(id);
        Ok(retired)
    }

    async fn save(&mut self, save: EnergySave) {
        self.energies.insert(save.id.to_string(), save.state);
        self.write_energies().await;
    }

    async fn write_energies(&mut self) {
        self.energies_dirty = false;
        let dir = self.data_dir.clone();
        let energies = self.energies.clone();
        match tokio::task::spawn_blocking(move || energy_file::save(&dir, &energies)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = e, "saving the integrated energy counters"),
            Err(e) => warn!(error = %e, "saving the integrated energy counters"),
        }
    }
}

/// What the operator tools are told of declarations: one note per device in
/// `wanted` (`served` by a running daemon), one per device refused for an
/// error in `diagnostics`, and the errors that name no device.
pub fn declaration_notes<'a>(
    wanted: &[LoadedDevice],
    diagnostics: impl Iterator<Item = &'a Diagnostic>,
    served: bool,
) -> (Vec<DeclarationNote>, Vec<String>) {
    let mut by_id: BTreeMap<&str, Vec<&Diagnostic>> = BTreeMap::new();
    let mut unattributed = Vec::new();
    for d in diagnostics {
        match &d.device {
            Some(id) => by_id.entry(id.as_str()).or_default().push(d),
            None if d.is_error() => unattributed.push(d.to_string()),
            None => {}
        }
    }
    let text = |ds: Vec<&Diagnostic>| ds.iter().map(ToString::to_string).collect();
    let valid = |ds: &[&Diagnostic]| !ds.iter().any(|d| d.is_error());
    let mut notes = Vec::with_capacity(wanted.len());
    for d in wanted {
        let id = d.declaration.id.as_str();
        let ds = by_id.remove(id).unwrap_or_default();
        let topics = Routes::new(std::iter::once(&d.declaration))
            .filters()
            .map(|f| f.as_str().to_owned())
            .collect();
        notes.push(DeclarationNote {
            id: id.to_owned(),
            origin: d.origin.clone(),
            by_topic: d.origin.starts_with(DECLARATION_TOPIC_PREFIX),
            service_type: Some(d.declaration.service.clone()),
            topics,
            valid: valid(&ds),
            diagnostics: text(ds),
            served,
        });
    }
    // Not served: declarations with an error, under the id they give.
    for (id, ds) in by_id {
        let Some(first) = ds.iter().find(|d| d.is_error()) else {
            continue;
        };
        notes.push(DeclarationNote {
            id: id.to_owned(),
            origin: first.place.clone(),
            by_topic: first.place.starts_with(DECLARATION_TOPIC_PREFIX),
            service_type: None,
            topics: Vec::new(),
            diagnostics: text(ds),
            served: false,
            valid: false,
        });
    }
    (notes, unattributed)
}

/// Logs what was found wrong in declarations, with the device's id.
fn report(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        let device = d.device.as_deref().unwrap_or("-");
        warn!(mapped_id = device, "{d}");
    }
}

/// SIGHUP (`svc -h /service/dbus-mqtt-devices`): read the declaration files again.
pub struct Hangup(Option<tokio::signal::unix::Signal>);

impl Hangup {
    async fn next(&mut self) -> Option<()> {
        match &mut self.0 {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    }
}

/// Catches SIGHUP from now on (its default would end the daemon). Called
/// first thing at start, so a reload asked for while the daemon waits for
/// localsettings does not stop it.
pub fn catch_hangup() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Hangup(Some(s)),
        Err(e) => {
            warn!(error = %e, "SIGHUP cannot be caught; declaration files are still reloaded when they change");
            Hangup(None)
        }
    }
}
