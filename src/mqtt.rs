//! The MQTT connection (rumqttc): connects, reconnects with backoff forever,
//! resubscribes after every reconnect, and hands received messages to the
//! registry through a bounded channel. Knows no D-Bus and no devices.
//!
//! A topic filter may be needed by the protocol's devices (an `lwt_topic`)
//! and by mapped devices at once; the broker holds one subscription per
//! filter, so each filter keeps the set of its [`Owner`]s and is
//! unsubscribed only when the last one lets it go.

use crate::config::MqttConfig;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Largest packet accepted from the broker. rumqttc drops the whole
/// connection on a larger one, so this is far above the protocol's own limit
/// (which rejects a single message instead) to keep one device from cutting
/// every other device off.
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// Requests (publish, subscribe) queued towards the broker. Past this,
/// publishes are dropped with a warning rather than piling up while the
/// broker is away.
const REQUEST_QUEUE: usize = 1024;

/// Received messages queued towards the registry.
const INBOUND_QUEUE: usize = 1024;

/// Reconnect backoff: first and (by default) longest wait.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// What the connection reports to its owner.
#[derive(Debug, Clone)]
pub enum BrokerEvent {
    /// The broker accepted the connection (first time or after a reconnect);
    /// subscriptions are renewed.
    Connected,
    /// A message arrived.
    Message(Message),
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: bytes::Bytes,
    pub retained: bool,
}

/// A message to publish when the connection is lost (the daemon's own presence topic).
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

/// Who needs a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// The protocol: its fixed topics, the portal id, devices' `lwt_topic`s.
    Protocol,
    /// Mapped devices and their declaration topics.
    Mapped,
}

/// The topic filters subscribed, each with the owners that need it.
#[derive(Debug, Default)]
struct Subscriptions(BTreeMap<String, BTreeSet<Owner>>);

impl Subscriptions {
    /// `owner` needs `topic`; `true` when nobody needed it before (the
    /// broker has to be asked).
    fn add(&mut self, owner: Owner, topic: &str) -> bool {
        let owners = self.0.entry(topic.to_owned()).or_default();
        let first = owners.is_empty();
        owners.insert(owner);
        first
    }

    /// `owner` no longer needs `topic`; `true` when nobody needs it any
    /// more (the broker has to be told).
    fn remove(&mut self, owner: Owner, topic: &str) -> bool {
        let Some(owners) = self.0.get_mut(topic) else {
            return false;
        };
        if !owners.remove(&owner) || !owners.is_empty() {
            return false;
        }
        self.0.remove(topic);
        true
    }

    fn topics(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

/// Publishes and subscribes for one [`Owner`]; cheap to clone. The handle
/// from [`start`] subscribes for [`Owner::Protocol`], [`MqttHandle::for_owner`]
/// gives one for another owner on the same connection.
#[derive(Clone)]
pub struct MqttHandle {
    client: AsyncClient,
    subscriptions: Arc<Mutex<Subscriptions>>,
    owner: Owner,
    connected: watch::Receiver<bool>,
}

impl MqttHandle {
    /// The same connection, subscribing for `owner`.
    pub fn for_owner(&self, owner: Owner) -> MqttHandle {
        MqttHandle {
            owner,
            ..self.clone()
        }
    }

    /// Whether the broker connection is up now, and its changes.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// Topics subscribed now (for health figures).
    pub fn subscription_count(&self) -> usize {
        lock(&self.subscriptions).0.len()
    }

    /// Queues a publish; drops it with a warning when the queue is full
    /// (the broker is away or far behind), so callers never block.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let payload = payload.into();
        debug!(topic, payload = %String::from_utf8_lossy(&payload), "publish");
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            warn!(topic, error = %e, "dropping a publish: the broker queue is full");
        }
    }

    /// Subscribes now (unless another owner already did) and after every
    /// reconnect.
    pub fn subscribe(&self, topic: &str) {
        let added = lock(&self.subscriptions).add(self.owner, topic);
        if added {
            if let Err(e) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
                warn!(topic, error = %e, "subscribe not sent now; it is renewed on reconnect");
            }
        }
    }

    /// Subscribes even where already subscribed: the broker then sends the
    /// topic's retained messages again (for a mapped device served anew
    /// while other devices keep the subscription).
    pub fn resubscribe(&self, topic: &str) {
        lock(&self.subscriptions).add(self.owner, topic);
        if let Err(e) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
            warn!(topic, error = %e, "subscribe not sent now; it is renewed on reconnect");
        }
    }

    /// Lets go of a subscription made with [`MqttHandle::subscribe`]; the
    /// broker is told once no owner needs the topic any more.
    pub fn unsubscribe(&self, topic: &str) {
        let removed = lock(&self.subscriptions).remove(self.owner, topic);
        if removed {
            if let Err(e) = self.client.try_unsubscribe(topic) {
                warn!(topic, error = %e, "unsubscribe not sent");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map half-updated
    // (no code that can panic runs between its changes), so a poisoned
    // lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the client options from the configuration.
pub fn options(
    config: &MqttConfig,
    client_id: &str,
    will: Option<&Will>,
) -> Result<MqttOptions, String> {
    let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
        .set_request_channel_capacity(REQUEST_QUEUE);
    if let (Some(user), password) = (&config.user, &config.password) {
        options.set_credentials(user.clone(), password.clone().unwrap_or_default());
    }
    if let Some(will) = will {
        options.set_last_will(LastWill::new(
            will.topic.clone(),
            will.payload.clone(),
            QoS::AtLeastOnce,
            will.retain,
        ));
    }
    if config.tls {
        options.set_transport(tls_transport(config)?);
    }
    Ok(options)
}

#[cfg(feature = "tls")]
fn tls_transport(config: &MqttConfig) -> Result<rumqttc::Transport, String> {
    // rustls needs one process-wide crypto provider; ring keeps the static
    // ARM builds small. Installing twice is harmless (the second call fails).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match &config.ca_file {
        Some(path) => {
            let ca = std::fs::read(path)
                .map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
            Ok(rumqttc::Transport::tls(ca, None, None))
        }
        None => Ok(rumqttc::Transport::tls_with_default_config()),
    }
}

#[cfg(not(feature = "tls"))]
fn tls_transport(_config: &MqttConfig) -> Result<rumqttc::Transport, String> {
    Err("this build has no TLS support (built without the `tls` feature)".into())
}

/// Starts the connection task. It runs until `cancel` fires, then sends
/// DISCONNECT and returns. Reconnects wait at most `retry_max`.
pub fn start(
    options: MqttOptions,
    subscriptions: &[&str],
    retry_max: Duration,
    cancel: CancellationToken,
) -> (
    MqttHandle,
    mpsc::Receiver<BrokerEvent>,
    tokio::task::JoinHandle<()>,
) {
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    // Replies are small packets answered one by one: without TCP_NODELAY,
    // Nagle's algorithm holds each one back ~40 ms waiting for an ACK.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let (connected_tx, connected) = watch::channel(false);
    let mut owned = Subscriptions::default();
    for topic in subscriptions {
        owned.add(Owner::Protocol, topic);
    }
    let handle = MqttHandle {
        client,
        subscriptions: Arc::new(Mutex::new(owned)),
        owner: Owner::Protocol,
        connected,
    };
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let link = Link {
        inbound: tx,
        connected: connected_tx,
        retry_max: retry_max.max(BACKOFF_MIN),
    };
    let task = tokio::spawn(run(handle.clone(), eventloop, link, cancel));
    (handle, rx, task)
}

/// What the connection task reports through.
struct Link {
    inbound: mpsc::Sender<BrokerEvent>,
    connected: watch::Sender<bool>,
    retry_max: Duration,
}

async fn run(handle: MqttHandle, mut eventloop: EventLoop, link: Link, cancel: CancellationToken) {
    let tx = &link.inbound;
    let mut backoff = BACKOFF_MIN;
    let mut connected_once = false;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = BACKOFF_MIN;
                info!(
                    broker = %broker(&eventloop),
                    "connected to the MQTT broker{}",
                    if connected_once { " again" } else { "" }
                );
                connected_once = true;
                link.connected.send_replace(true);
                let topics: Vec<String> = lock(&handle.subscriptions).topics().cloned().collect();
                for topic in topics {
                    if let Err(e) = handle.client.try_subscribe(&topic, QoS::AtLeastOnce) {
                        warn!(topic, error = %e, "could not queue a subscription");
                    }
                }
                if tx.send(BrokerEvent::Connected).await.is_err() {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let message = Message {
                    topic: p.topic,
                    payload: p.payload,
                    retained: p.retain,
                };
                if tx.send(BrokerEvent::Message(message)).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                link.connected.send_replace(false);
                warn!(
                    broker = %broker(&eventloop),
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "MQTT connection failed; retrying"
                );
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(link.retry_max);
            }
        }
    }
    // Send DISCONNECT and give it a moment to leave, so the broker does not
    // publish our last will for a clean stop.
    let _ = handle.client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn broker(eventloop: &EventLoop) -> String {
    let (host, port) = eventloop.mqtt_options.broker_address();
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_two_owners_need_is_unsubscribed_when_the_last_lets_go() {
        let mut s = Subscriptions::default();
        assert!(s.add(Owner::Protocol, "shelly1/online"), "first: subscribe");
        assert!(!s.add(Owner::Mapped, "shelly1/online"), "already subscribed");
        assert!(!s.remove(Owner::Mapped, "shelly1/online"), "still needed");
        assert_eq!(s.topics().collect::<Vec<_>>(), ["shelly1/online"]);
        assert!(s.remove(Owner::Protocol, "shelly1/online"), "nobody: unsubscribe");
        assert_eq!(s.topics().count(), 0);
        assert!(!s.remove(Owner::Protocol, "shelly1/online"), "already gone");
    }

    #[test]
    fn an_owner_holds_a_filter_once_however_often_it_subscribes() {
        let mut s = Subscriptions::default();
        assert!(s.add(Owner::Protocol, "a/lwt"));
        assert!(!s.add(Owner::Protocol, "a/lwt"));
        assert!(!s.remove(Owner::Mapped, "a/lwt"), "not the mapped devices' to drop");
        assert!(s.remove(Owner::Protocol, "a/lwt"));
        assert!(s.add(Owner::Mapped, "a/lwt"), "needed again: subscribe again");
    }
}
