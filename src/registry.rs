//! Client id → device task. Parses what arrives on the device topics, refuses
//! what is malformed (with an answer on `device/<id>/Error`), follows the
//! `lwt_topic`s, and hands the rest to the device's own task.
//!
//! Never waits on a device: a full device queue drops that device's message
//! with a warning, so one flooding or stuck device cannot block the others.

use crate::device::overflow::ValuesOverflow;
use crate::device::{self, DeviceContext, DeviceEvent};
use crate::ids::ClientId;
use crate::mqtt::Message;
use crate::persist::SavedDevice;
use crate::protocol::{
    self, device_topic, DeviceTopic, MessageKind, ProxyRequest, Rejection, RejectionCode, Status,
    ValuesMessage,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long a stopping daemon waits for its devices to leave D-Bus.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

struct DeviceEntry {
    client: ClientId,
    tx: mpsc::Sender<DeviceEvent>,
    task: JoinHandle<()>,
    overflow: Arc<ValuesOverflow>,
    lwt_topic: Option<String>,
    /// The Status that registered the device (for the state file).
    status_payload: serde_json::Value,
}

struct LwtRoute {
    legal: String,
    value: String,
}

/// The set of devices known to this daemon.
pub struct Registry {
    ctx: Arc<DeviceContext>,
    max_devices: usize,
    devices: HashMap<String, DeviceEntry>,
    /// Tasks of disconnected devices still removing their services.
    closing: HashMap<String, JoinHandle<()>>,
    lwt: HashMap<String, LwtRoute>,
    /// Set while a remembered Status is being replayed.
    restoring: bool,
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
            restoring: false,
        }
    }

    /// Number of devices with a running task.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The Status payloads of the connected devices (for the state file).
    pub fn saved_devices(&self) -> Vec<SavedDevice> {
        let mut all: Vec<_> = self
            .devices
            .values()
            .map(|d| SavedDevice {
                client_id: d.client.raw().to_owned(),
                status: d.status_payload.clone(),
            })
            .collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        all
    }

    /// Registers a device remembered in the state file, as if its Status had
    /// just arrived; it is removed again if it shows no sign of life.
    pub fn restore(&mut self, saved: &SavedDevice) {
        let payload = saved.status.to_string();
        let message = Message {
            topic: device_topic(&saved.client_id, "Status"),
            payload: payload.into_bytes().into(),
            retained: false,
        };
        self.restoring = true;
        self.handle(&message);
        self.restoring = false;
    }

    /// Forgets devices whose task ended by itself (a restored device that
    /// never showed up). Returns true when any was removed.
    pub fn prune(&mut self) -> bool {
        let before = self.devices.len();
        let ended: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for legal in ended {
            if let Some(entry) = self.devices.remove(&legal) {
                if let Some(topic) = &entry.lwt_topic {
                    self.lwt.remove(topic);
                    self.ctx.mqtt.unsubscribe(topic);
                }
            }
        }
        self.closing.retain(|_, task| !task.is_finished());
        self.devices.len() != before
    }

    /// Handles one message from the broker. Returns true when the set of
    /// connected devices may have changed.
    pub fn handle(&mut self, message: &Message) -> bool {
        if let Some(route) = self.lwt.get(&message.topic) {
            if message.payload.as_ref() == route.value.as_bytes() {
                let legal = route.legal.clone();
                info!(client_id = %legal, topic = %message.topic, "last will received");
                self.disconnect(&legal, "last will");
                return true;
            }
            return false;
        }
        let Some(topic) = DeviceTopic::parse(&message.topic) else {
            debug!(topic = %message.topic, "ignoring a message on an unknown topic");
            return false;
        };
        if message.payload.is_empty() {
            // An empty payload clears a retained message; it says nothing.
            debug!(topic = %message.topic, "ignoring an empty payload");
            return false;
        }
        let kind_name = leaf(topic.kind);
        let client = match ClientId::parse(topic.client_id) {
            Ok(c) => c,
            Err(e) => {
                let rejection = Rejection::new(RejectionCode::InvalidClientId, e.to_string());
                self.reject(topic.client_id, kind_name, &rejection);
                return false;
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
                self.reject(client.raw(), kind_name, &rejection);
                return false;
            }
        }
        match topic.kind {
            MessageKind::Status => self.on_status(client, &message.payload),
            MessageKind::Proxy => {
                match ProxyRequest::parse(&message.payload) {
                    Ok(p) => self.route(&client, DeviceEvent::Proxy(p), kind_name),
                    Err(r) => self.reject(client.raw(), kind_name, &r),
                }
                false
            }
            MessageKind::Values => {
                match ValuesMessage::parse(&message.payload) {
                    Ok(v) => self.route_values(&client, v),
                    Err(r) => self.reject(client.raw(), kind_name, &r),
                }
                false
            }
        }
    }

    fn on_status(&mut self, client: ClientId, payload: &[u8]) -> bool {
        let status = match Status::parse(client.raw(), payload) {
            Ok(s) => s,
            Err(r) => {
                self.reject(client.raw(), "Status", &r);
                return false;
            }
        };
        if !status.connected {
            if self.devices.contains_key(client.legal()) {
                self.disconnect(client.legal(), "connected: 0");
                return true;
            }
            debug!(client_id = %client, "disconnect from a device that is not registered");
            return false;
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
                return false;
            }
            if client.is_mapped() {
                info!(client_id = %client, legal_id = client.legal(), "client id has characters D-Bus does not allow; using the mapped id");
            }
            self.closing.retain(|_, task| !task.is_finished());
            let previous = self.closing.remove(client.legal());
            let handle = device::spawn(self.ctx.clone(), client.clone(), previous);
            self.devices.insert(
                client.legal().to_owned(),
                DeviceEntry {
                    client: client.clone(),
                    tx: handle.tx,
                    task: handle.task,
                    overflow: handle.overflow,
                    lwt_topic: None,
                    status_payload: serde_json::Value::Null,
                },
            );
        }
        self.update_lwt(&client, status.lwt.clone());
        if let Some(entry) = self.devices.get_mut(client.legal()) {
            entry.status_payload = serde_json::from_slice(payload).unwrap_or_default();
        }
        let event = if self.restoring {
            DeviceEvent::Restore(Box::new(status))
        } else {
            DeviceEvent::Status(Box::new(status))
        };
        self.route(&client, event, "Status");
        true
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
            let _ = tx.send(DeviceEvent::Disconnect { reason }).await;
        });
        self.closing.retain(|_, task| !task.is_finished());
        self.closing.insert(legal.to_owned(), entry.task);
    }

    fn route(&self, client: &ClientId, event: DeviceEvent, kind: &str) {
        let Some(entry) = self.devices.get(client.legal()) else {
            let rejection = Rejection::new(
                RejectionCode::NotRegistered,
                "the device is not registered; send a Status with \"connected\": 1 first",
            );
            self.reject(client.raw(), kind, &rejection);
            return;
        };
        if let Err(e) = entry.tx.try_send(event) {
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
    fn route_values(&self, client: &ClientId, values: ValuesMessage) {
        let Some(entry) = self.devices.get(client.legal()) else {
            return self.route(client, DeviceEvent::Values(values), "Values");
        };
        if entry.overflow.is_pending() {
            return entry.overflow.push(client.raw(), values);
        }
        match entry.tx.try_send(DeviceEvent::Values(values)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(DeviceEvent::Values(values))) => {
                entry.overflow.push(client.raw(), values)
            }
            Err(_) => {
                warn!(client_id = %client, "device task has stopped; message dropped")
            }
        }
    }

    fn reject(&self, raw_client: &str, kind: &str, rejection: &Rejection) {
        let topic = device_topic(raw_client, kind);
        warn!(client_id = %raw_client, topic, "rejected: {rejection}");
        if !raw_client.is_empty() {
            self.ctx.mqtt.publish(
                &device_topic(raw_client, "Error"),
                protocol::error_reply(rejection, &topic),
                false,
            );
        }
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

fn leaf(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Status => "Status",
        MessageKind::Proxy => "Proxy",
        MessageKind::Values => "Values",
    }
}
