//! Client id → device task. Parses what arrives on the device topics, refuses
//! what is malformed (with an answer on `device/<id>/Error`), follows the
//! `lwt_topic`s, and hands the rest to the device's own task.
//!
//! Never waits on a device: a full device queue drops that device's message
//! with a warning, so one flooding or stuck device cannot block the others.
//! A device whose task failed ([`crate::device::failure`]) is forgotten here
//! the moment it says so.

use crate::device::error_reply;
use crate::device::failure::{leaf, Blame, DeviceFailure, Origin};
use crate::device::overflow::ValuesOverflow;
use crate::device::pace::{Offer, Pace};
use crate::device::{self, Announce, DeviceContext, DeviceEvent, Envelope};
use crate::fault;
use crate::ids::ClientId;
use crate::mqtt::Message;
use crate::persist::SavedDevice;
use crate::protocol::{
    DeviceTopic, MessageKind, ProxyRequest, Rejection, RejectionCode, Status, ValuesMessage,
};
use crate::quarantine::{MessageKey, Ticket};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How long a stopping daemon waits for its devices to leave D-Bus.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

struct DeviceEntry {
    client: ClientId,
    generation: u64,
    tx: mpsc::Sender<Envelope>,
    task: JoinHandle<()>,
    overflow: Arc<ValuesOverflow>,
    /// How fast its Values are taken in.
    pace: Pace,
    lwt_topic: Option<String>,
}

struct LwtRoute {
    legal: String,
    value: String,
}

/// Counts of what the registry holds (for health figures and leak tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryCounts {
    /// Devices with a running task.
    pub devices: usize,
    /// Tasks of disconnected devices still removing their services.
    pub closing: usize,
    /// `lwt_topic`s followed.
    pub lwt_routes: usize,
}

/// The set of devices known to this daemon.
pub struct Registry {
    ctx: Arc<DeviceContext>,
    max_devices: usize,
    devices: HashMap<String, DeviceEntry>,
    /// Tasks of disconnected devices still removing their services.
    closing: HashMap<String, JoinHandle<()>>,
    lwt: HashMap<String, LwtRoute>,
    next_generation: u64,
    /// Devices with a Values message waiting for its slot.
    paced: BTreeSet<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new(ctx: Arc<DeviceContext>, max_devices: usize) -> Registry {
        Registry {
            ctx,
            max_devices,
            devices: HashMap::new(),
            closing: HashMap::new(),
            lwt: HashMap::new(),
            next_generation: 0,
            paced: BTreeSet::new(),
        }
    }

    /// What the registry holds now.
    pub fn counts(&self) -> RegistryCounts {
        RegistryCounts {
            devices: self.devices.len(),
            closing: self.closing.len(),
            lwt_routes: self.lwt.len(),
        }
    }

    /// Registers a device remembered in the state file, as if its Status had
    /// just arrived; it is removed again if it shows no sign of life. `key` is
    /// its Status' key in the quarantine ([`crate::replay::Replay::key`]).
    pub fn restore(&mut self, saved: SavedDevice, key: MessageKey, ticket: Option<Ticket>) {
        let Some(client) = self.client_for(&saved.client_id, "Status") else {
            return;
        };
        let origin = Origin {
            kind: MessageKind::Status,
            message: Blame::Saved(key),
            ticket,
        };
        match Status::from_json(client.raw(), &saved.status) {
            Ok(status) => self.on_status(client, status, saved.status, origin, true),
            Err(r) => self.reject(client.raw(), "Status", &r),
        }
    }

    /// Forgets devices whose task ended by itself (a restored device that
    /// never showed up, or one that failed). Returns true when any was removed.
    pub fn prune(&mut self) -> bool {
        let ended: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        let removed = !ended.is_empty();
        for legal in ended {
            self.forget(&legal);
        }
        self.closing.retain(|_, task| !task.is_finished());
        removed
    }

    /// A device task failed: it is forgotten (unless a newer task of the same
    /// client id runs by now). Its services are gone with the task.
    pub fn on_failure(&mut self, failure: &DeviceFailure) {
        let current = self
            .devices
            .get(failure.client.legal())
            .is_some_and(|d| d.generation == failure.generation);
        if current {
            self.forget(failure.client.legal());
        }
    }

    /// Handling a message from `client_raw` failed (a panic in the registry
    /// itself): the device, if registered, is disconnected, so its services go.
    pub fn drop_client(&mut self, client_raw: &str) {
        let legal = self
            .devices
            .iter()
            .find(|(_, d)| d.client.raw() == client_raw)
            .map(|(k, _)| k.clone());
        if let Some(legal) = legal {
            self.disconnect(&legal, "internal error");
        }
    }

    fn forget(&mut self, legal: &str) {
        self.paced.remove(legal);
        if let Some(entry) = self.devices.remove(legal) {
            if let Some(topic) = &entry.lwt_topic {
                self.lwt.remove(topic);
                self.ctx.mqtt.unsubscribe(topic);
            }
        }
    }

    /// Whether a device's `lwt_topic` is `topic`.
    pub fn follows_last_will(&self, topic: &str) -> bool {
        self.lwt.contains_key(topic)
    }

    /// Handles one message from the broker; `ticket` (a replay's journal
    /// entry) goes with it to the device and is dropped once it is handled.
    pub fn handle(&mut self, message: &Message, ticket: Option<Ticket>) {
        if let Some(route) = self.lwt.get(&message.topic) {
            if message.payload.as_ref() == route.value.as_bytes() {
                let legal = route.legal.clone();
                info!(client_id = %legal, topic = %message.topic, "last will received");
                self.disconnect(&legal, "last will");
            }
            return;
        }
        let Some(topic) = DeviceTopic::parse(&message.topic) else {
            debug!(topic = %message.topic, "ignoring a message on an unknown topic");
            return;
        };
        if message.payload.is_empty() {
            // An empty payload clears a retained message; it says nothing.
            debug!(topic = %message.topic, "ignoring an empty payload");
            return;
        }
        let kind_name = leaf(topic.kind);
        let Some(client) = self.client_for(topic.client_id, kind_name) else {
            return;
        };
        let origin = Origin {
            kind: topic.kind,
            message: Blame::Received(message.payload.clone()),
            ticket,
        };
        match topic.kind {
            MessageKind::Status => {
                match Status::parse_keeping_json(client.raw(), &message.payload) {
                    Ok((status, json)) => self.on_status(client, status, json, origin, false),
                    Err(r) => self.reject(client.raw(), "Status", &r),
                }
            }
            MessageKind::Proxy => match ProxyRequest::parse(&message.payload) {
                Ok(p) => self.route(&client, DeviceEvent::Proxy(p), origin),
                Err(r) => self.reject(client.raw(), kind_name, &r),
            },
            MessageKind::Values => {
                if let Some(entry) = self.devices.get_mut(client.legal()) {
                    if let Offer::Later(pushed_out) =
                        entry.pace.offer(Instant::now(), &message.payload)
                    {
                        if let Some(skipped) = entry.pace.skipped_to_report(Instant::now()) {
                            warn!(client_id = %client, skipped, "device sends Values faster than {} a second; messages superseded by newer ones with the same paths are skipped", crate::device::pace::RATE);
                        }
                        self.paced.insert(client.legal().to_owned());
                        if let Some(oldest) = pushed_out {
                            self.values(&client, oldest, None);
                        }
                        return;
                    }
                }
                self.values(&client, message.payload.clone(), origin.ticket);
            }
        }
    }

    /// The client id of a message on `device/<client_raw>/<kind>`, unless it is
    /// refused (not a usable id, or one whose D-Bus form another device has).
    fn client_for(&self, client_raw: &str, kind: &str) -> Option<ClientId> {
        let client = match ClientId::parse(client_raw) {
            Ok(c) => c,
            Err(e) => {
                let rejection = Rejection::new(RejectionCode::InvalidClientId, e.to_string());
                self.reject(client_raw, kind, &rejection);
                return None;
            }
        };
        if let Some(existing) = self.devices.get(client.legal()) {
            if existing.client != client {
                let rejection = Rejection::new(
                    RejectionCode::InvalidClientId,
                    format!(
                        "client id maps to {:?}, already used by the connected device {:?}",
                        client.legal(),
                        existing.client.raw()
                    ),
                );
                self.reject(client.raw(), kind, &rejection);
                return None;
            }
        }
        Some(client)
    }

    fn values(&mut self, client: &ClientId, payload: Bytes, ticket: Option<Ticket>) {
        let parsed = ValuesMessage::parse(&payload);
        let origin = Origin {
            kind: MessageKind::Values,
            message: Blame::Received(payload),
            ticket,
        };
        match parsed {
            Ok(v) => self.route_values(client, v, origin),
            Err(r) => self.reject(client.raw(), "Values", &r),
        }
    }

    /// True while a device's Values message waits for its slot ([`Registry::take_paced`]).
    pub fn has_paced(&self) -> bool {
        !self.paced.is_empty()
    }

    /// Takes the Values messages whose slot has come.
    pub fn take_paced(&mut self) {
        let now = Instant::now();
        for legal in std::mem::take(&mut self.paced) {
            let Some(entry) = self.devices.get_mut(&legal) else {
                continue;
            };
            let mut due = Vec::new();
            while let Some(payload) = entry.pace.due(now) {
                due.push(payload);
            }
            if entry.pace.is_waiting() {
                self.paced.insert(legal.clone());
            }
            let client = entry.client.clone();
            for payload in due {
                self.values(&client, payload, None);
            }
        }
    }

    fn on_status(
        &mut self,
        client: ClientId,
        status: Status,
        payload: serde_json::Value,
        origin: Origin,
        restored: bool,
    ) {
        fault::inject(fault::Stage::Registry, status.version.as_ref());
        if !status.connected {
            if self.devices.contains_key(client.legal()) {
                self.disconnect(client.legal(), "connected: 0");
            } else {
                debug!(client_id = %client, "disconnect from a device that is not registered");
            }
            return;
        }
        if !self.devices.contains_key(client.legal()) {
            if self.devices.len() >= self.max_devices {
                let rejection = Rejection::new(
                    RejectionCode::TooManyDevices,
                    format!(
                        "this GX already serves {} MQTT devices, the configured limit",
                        self.max_devices
                    ),
                );
                self.reject(client.raw(), "Status", &rejection);
                return;
            }
            if client.is_mapped() {
                info!(client_id = %client, legal_id = client.legal(), "client id has characters D-Bus does not allow; using the mapped id");
            }
            self.closing.retain(|_, task| !task.is_finished());
            let previous = self.closing.remove(client.legal());
            let generation = self.next_generation;
            self.next_generation += 1;
            let handle = device::spawn(self.ctx.clone(), client.clone(), generation, previous);
            self.devices.insert(
                client.legal().to_owned(),
                DeviceEntry {
                    client: client.clone(),
                    generation,
                    tx: handle.tx,
                    task: handle.task,
                    overflow: handle.overflow,
                    pace: Pace::new(Instant::now()),
                    lwt_topic: None,
                },
            );
        }
        self.update_lwt(&client, status.lwt.clone());
        let announce = Announce {
            status,
            payload,
            restored,
        };
        self.route(&client, DeviceEvent::Announce(Box::new(announce)), origin);
    }

    fn update_lwt(&mut self, client: &ClientId, lwt: Option<(String, String)>) {
        let Some(entry) = self.devices.get_mut(client.legal()) else {
            return;
        };
        let new_topic = lwt.as_ref().map(|(t, _)| t.clone());
        if entry.lwt_topic != new_topic {
            if let Some(old) = entry.lwt_topic.take() {
                self.lwt.remove(&old);
                self.ctx.mqtt.unsubscribe(&old);
            }
        }
        if let Some((topic, value)) = lwt {
            if let Some(other) = self.lwt.get(&topic) {
                if other.legal != client.legal() {
                    warn!(client_id = %client, topic, "lwt_topic is already followed for another device; it now belongs to this one");
                }
            }
            self.lwt.insert(
                topic.clone(),
                LwtRoute {
                    legal: client.legal().to_owned(),
                    value,
                },
            );
            self.ctx.mqtt.subscribe(&topic);
            entry.lwt_topic = Some(topic);
        }
    }

    fn disconnect(&mut self, legal: &str, reason: &'static str) {
        self.paced.remove(legal);
        let Some(entry) = self.devices.remove(legal) else {
            return;
        };
        if let Some(topic) = &entry.lwt_topic {
            self.lwt.remove(topic);
            self.ctx.mqtt.unsubscribe(topic);
        }
        // The Disconnect must arrive even when the queue is full: send it
        // from a task of its own rather than dropping it.
        let tx = entry.tx;
        tokio::spawn(async move {
            let envelope = Envelope {
                event: DeviceEvent::Disconnect { reason },
                origin: None,
            };
            let _ = tx.send(envelope).await;
        });
        self.closing.retain(|_, task| !task.is_finished());
        self.closing.insert(legal.to_owned(), entry.task);
    }

    fn route(&self, client: &ClientId, event: DeviceEvent, origin: Origin) {
        let kind = leaf(origin.kind);
        let Some(entry) = self.devices.get(client.legal()) else {
            let rejection = Rejection::new(
                RejectionCode::NotRegistered,
                "the device is not registered; send a Status with \"connected\": 1 first",
            );
            self.reject(client.raw(), kind, &rejection);
            return;
        };
        let envelope = Envelope {
            event,
            origin: Some(origin),
        };
        if let Err(e) = entry.tx.try_send(envelope) {
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    warn!(client_id = %client, topic = kind, "device sends faster than it can be served; message dropped")
                }
                mpsc::error::TrySendError::Closed(_) => {
                    warn!(client_id = %client, topic = kind, "device task has stopped; message dropped")
                }
            }
        }
    }

    /// Values go through the queue while it has room; when it is full (or
    /// values already wait beside it) they are folded into the device's
    /// overflow, so the newest value of each path is never lost.
    fn route_values(&self, client: &ClientId, values: ValuesMessage, origin: Origin) {
        let Some(entry) = self.devices.get(client.legal()) else {
            return self.route(client, DeviceEvent::Values(values), origin);
        };
        if entry.overflow.is_pending() {
            return entry.overflow.push(client.raw(), values);
        }
        let envelope = Envelope {
            event: DeviceEvent::Values(values),
            origin: Some(origin),
        };
        match entry.tx.try_send(envelope) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Envelope {
                event: DeviceEvent::Values(values),
                ..
            })) => entry.overflow.push(client.raw(), values),
            Err(_) => {
                warn!(client_id = %client, "device task has stopped; message dropped")
            }
        }
    }

    fn reject(&self, raw_client: &str, kind: &str, rejection: &Rejection) {
        error_reply::reject(&self.ctx.mqtt, raw_client, kind, rejection);
    }

    /// Removes every device from D-Bus; waits a bounded time.
    pub async fn shutdown(mut self) {
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        for (_, entry) in self.devices.drain() {
            drop(entry.tx);
            tasks.push(entry.task);
        }
        tasks.extend(self.closing.drain().map(|(_, t)| t));
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            warn!("some devices did not leave D-Bus in time");
        }
    }
}
