//! The MQTT gateway of `sim`, behaving like dbus-flashmq does on a GX for the services on the
//! private bus: `N/` on every change, `W/` → `SetValue`, `R/` → republish, keep-alive with
//! `full_publish_completed`, and the retained `N/<portal>/system/0/Serial`. It also reports what
//! it sees (services and values) to the live view. It is a peer on the bus and the broker like
//! any other: it knows nothing of the daemon's devices, only the BusItem dialect.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
    )
)]
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zbus::message::Type;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedVariant, Variant};

use crate::dbus::{BusAddress, Value, BUSITEM_INTERFACE};
use crate::ids::PortalId;

/// Services the gateway maps to topics (dbus-flashmq: the `com.victronenergy.` prefix).
const SERVICE_PREFIX: &str = "com.victronenergy.";
/// How long one keep-alive keeps `N/` publishing going (dbus-flashmq: 60 s).
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// How often `N/<portal>/heartbeat` goes out while alive (dbus-flashmq: 3 s).
const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long a new service may take to answer `GetItems` (dbus-flashmq: 25 s, then it is ignored).
const SCAN_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a `SetValue` or `GetValue` asked for over MQTT may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the broker may take to accept the gateway's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The daemon's retained presence topic (`app::PRESENCE_TOPIC`), watched to know it is up.
const PRESENCE_TOPIC: &str = crate::app::PRESENCE_TOPIC;
/// The only signature of a `GetItems` reply dbus-flashmq accepts.
const GET_ITEMS_SIGNATURE: &str = "a{sa{sv}}";

/// What the gateway saw on the bus or the broker, for the live view.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A service answered `GetItems` and is now mapped to `<type>/<instance>`.
    ServiceAdded {
        service: String,
        service_type: String,
        instance: i64,
        values: BTreeMap<String, Value>,
    },
    /// A service's name lost its owner.
    ServiceRemoved {
        service: String,
        service_type: String,
        instance: i64,
    },
    /// A value of a known service changed (ItemsChanged or PropertiesChanged).
    ValueChanged {
        service: String,
        service_type: String,
        instance: i64,
        path: String,
        value: Value,
    },
    /// The daemon's presence topic said online (true) or offline (false).
    DaemonOnline(bool),
}

/// Where the gateway connects and which portal id it speaks for.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub bus: BusAddress,
    pub mqtt_host: String,
    pub mqtt_port: u16,
    pub portal: PortalId,
}

/// A running gateway; [`Gateway::stop`] ends it.
pub struct Gateway {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Gateway {
    /// Connects to the broker (waiting for it to accept) and the bus, reads every service
    /// already there, and keeps following both until stopped.
    pub async fn start(
        config: GatewayConfig,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Gateway> {
        let cancel = CancellationToken::new();
        let (client, mut inbound, poller) = connect_mqtt(&config, cancel.clone())
            .context("configuring the gateway's MQTT client")?;
        // Any early return below also ends the MQTT poller.
        let stop_poller = cancel.clone().drop_guard();
        match tokio::time::timeout(CONNECT_TIMEOUT, inbound.recv()).await {
            Ok(Some(GatewayInput::Connected)) => {}
            _ => {
                bail!(
                    "the MQTT broker on {}:{} did not accept the gateway in {CONNECT_TIMEOUT:?}",
                    config.mqtt_host,
                    config.mqtt_port
                );
            }
        }
        let conn = config
            .bus
            .connect()
            .await
            .with_context(|| format!("connecting the gateway to the {}", config.bus))?;
        // Both streams exist before the names are listed, so no service is missed in between.
        let owners = MessageStream::for_match_rule(
            MatchRule::builder()
                .msg_type(Type::Signal)
                .sender("org.freedesktop.DBus")
                .interface("org.freedesktop.DBus")
                .member("NameOwnerChanged")
                .build()
                .context("building a match rule")?,
            &conn,
            std::num::NonZeroUsize::new(1024),
        )
        .await
        .context("subscribing to NameOwnerChanged")?;
        let signals = MessageStream::for_match_rule(
            MatchRule::builder()
                .msg_type(Type::Signal)
                .interface(BUSITEM_INTERFACE)
                .build()
                .context("building a match rule")?,
            &conn,
            std::num::NonZeroUsize::new(4096),
        )
        .await
        .context("subscribing to BusItem signals")?;

        let (scans_tx, scans) = mpsc::unbounded_channel();
        let worker = Worker {
            conn: conn.clone(),
            client: client.clone(),
        };
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let mut state = State {
            portal: config.portal.as_str().to_string(),
            client,
            conn,
            events,
            services: HashMap::new(),
            scanning: HashMap::new(),
            by_topic: HashMap::new(),
            alive_until: None,
            scans_tx,
            ops: ops_tx,
        };
        state.on_connected().await;
        let names: Vec<String> = state
            .conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "ListNames",
                &(),
            )
            .await
            .and_then(|m| m.body().deserialize())
            .context("listing the names on the bus")?;
        for name in names.into_iter().filter(|n| n.starts_with(SERVICE_PREFIX)) {
            let owner: zbus::Result<String> = state
                .conn
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "GetNameOwner",
                    &(name.as_str(),),
                )
                .await
                .and_then(|m| m.body().deserialize());
            if let Ok(owner) = owner {
                state.scan(name, owner);
            }
        }
        stop_poller.disarm();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            let worker = tokio::spawn(worker.run(ops_rx));
            state.run(owners, signals, scans, &mut inbound, token).await;
            worker.abort();
            let _ = poller.await;
        });
        Ok(Gateway { cancel, task })
    }

    /// Disconnects from the broker and stops following the bus.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// What the MQTT poller hands to the gateway.
enum GatewayInput {
    Connected,
    Message { topic: String, payload: Vec<u8> },
}

fn connect_mqtt(
    config: &GatewayConfig,
    cancel: CancellationToken,
) -> Result<(
    AsyncClient,
    mpsc::UnboundedReceiver<GatewayInput>,
    JoinHandle<()>,
)> {
    let mut options = MqttOptions::new(
        format!("sim-gateway-{}", std::process::id()),
        config.mqtt_host.clone(),
        config.mqtt_port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    // Small packets one by one: without TCP_NODELAY each waits ~40 ms for an ACK (Nagle).
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    // Unbounded, so the poller never waits for the gateway while the gateway waits to publish.
    let (tx, rx) = mpsc::unbounded_channel();
    let poller = tokio::spawn(async move {
        let mut connected_once = false;
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => break,
                e = eventloop.poll() => e,
            };
            match event {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    connected_once = true;
                    if tx.send(GatewayInput::Connected).is_err() {
                        break;
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(GatewayInput::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "gateway MQTT connection; reconnecting");
                    // At start the broker's listener (another thread) may not be up yet: the
                    // first connection is retried quickly, later reconnects calmly.
                    let pause = if connected_once { 200 } else { 10 };
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
                    }
                }
            }
        }
        // Let the DISCONNECT go out.
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    });
    Ok((client, rx, poller))
}

/// A service the gateway has read.
struct Known {
    name: String,
    service_type: String,
    instance: i64,
    items: BTreeMap<String, Value>,
}

/// The outcome of reading a new service.
struct Scan {
    owner: String,
    items: Result<BTreeMap<String, Value>, String>,
}

/// Calls asked for over MQTT, run one after the other so writes keep their order.
enum Op {
    Write {
        owner: String,
        path: String,
        value: Variant<'static>,
    },
    Read {
        owner: String,
        path: String,
        /// The topic of `path`: `N/<portal>/<type>/<instance><path>`.
        topic: String,
        /// True when `path` is an item; else it is a node and every leaf below it is published.
        leaf: bool,
    },
}

struct State {
    portal: String,
    client: AsyncClient,
    conn: Connection,
    events: mpsc::UnboundedSender<Event>,
    /// Unique owner → service (one service per connection, the Venus rule).
    services: HashMap<String, Known>,
    /// Unique owner → (name, signals that came before its `GetItems` reply was handled).
    scanning: HashMap<String, (String, Vec<Message>)>,
    /// `<type>/<instance>` → unique owner; the last service to appear wins, as in flashmq.
    by_topic: HashMap<String, String>,
    alive_until: Option<Instant>,
    scans_tx: mpsc::UnboundedSender<Scan>,
    ops: mpsc::UnboundedSender<Op>,
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `{"value":…}` as dbus-flashmq writes it: compact, invalid → `null`.
fn value_payload(value: &Value) -> String {
    json!({ "value": value.to_json() }).to_string()
}

impl State {
    async fn run(
        &mut self,
        mut owners: MessageStream,
        mut signals: MessageStream,
        mut scans: mpsc::UnboundedReceiver<Scan>,
        inbound: &mut mpsc::UnboundedReceiver<GatewayInput>,
        cancel: CancellationToken,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(Ok(msg)) = owners.next() => self.on_name_owner_changed(&msg).await,
                Some(Ok(msg)) = signals.next() => self.on_signal(msg).await,
                Some(scan) = scans.recv() => self.on_scan(scan).await,
                m = inbound.recv() => match m {
                    Some(GatewayInput::Connected) => self.on_connected().await,
                    Some(GatewayInput::Message { topic, payload }) => self.on_mqtt(&topic, &payload).await,
                    None => break,
                },
                _ = heartbeat.tick() => {
                    if self.alive() {
                        let topic = format!("N/{}/heartbeat", self.portal);
                        self.publish(&topic, json!({ "value": unix_time() }).to_string(), false).await;
                    }
                }
            }
        }
        let _ = self.client.disconnect().await;
    }

    fn alive(&self) -> bool {
        self.alive_until.is_some_and(|t| Instant::now() < t)
    }

    async fn publish(&self, topic: &str, payload: String, retain: bool) {
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtMostOnce, retain, payload.into_bytes())
            .await
        {
            tracing::warn!(topic, error = %e, "gateway could not publish");
        }
    }

    /// Every (re)connect: the subscriptions, and the retained serial that devices and the
    /// daemon use to learn the portal id.
    async fn on_connected(&self) {
        for topic in [
            format!("W/{}/#", self.portal),
            format!("R/{}/#", self.portal),
            PRESENCE_TOPIC.to_string(),
        ] {
            if let Err(e) = self
                .client
                .subscribe(topic.as_str(), QoS::AtLeastOnce)
                .await
            {
                tracing::warn!(topic, error = %e, "gateway could not subscribe");
            }
        }
        let topic = format!("N/{}/system/0/Serial", self.portal);
        self.publish(&topic, json!({ "value": self.portal }).to_string(), true)
            .await;
    }

    /// Reads a new owner's items in a task of its own, so a slow service stalls nothing.
    fn scan(&mut self, name: String, owner: String) {
        self.scanning.insert(owner.clone(), (name, Vec::new()));
        let conn = self.conn.clone();
        let tx = self.scans_tx.clone();
        tokio::spawn(async move {
            let items = match tokio::time::timeout(SCAN_TIMEOUT, get_items(&conn, &owner)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no GetItems reply within {SCAN_TIMEOUT:?}")),
            };
            let _ = tx.send(Scan { owner, items });
        });
    }

    async fn on_scan(&mut self, scan: Scan) {
        let Some((name, buffered)) = self.scanning.remove(&scan.owner) else {
            return; // The owner left meanwhile.
        };
        let items = match scan.items {
            Ok(items) => items,
            Err(e) => {
                // As dbus-flashmq: ignored until the name's owner changes.
                tracing::warn!(service = %name, error = %e, "service ignored by the gateway");
                return;
            }
        };
        let service_type = name
            .strip_prefix(SERVICE_PREFIX)
            .and_then(|rest| rest.split('.').next())
            .unwrap_or_default()
            .to_string();
        let instance = ["/DeviceInstance", "/Identifier"]
            .iter()
            .find_map(|p| items.get(*p).and_then(Value::as_i64))
            .unwrap_or(0);
        let key = format!("{service_type}/{instance}");
        if let Some(previous) = self.by_topic.insert(key.clone(), scan.owner.clone()) {
            if previous != scan.owner {
                tracing::warn!(topic = %key, service = %name, "two services on one type/instance; the newer one wins");
            }
        }
        let known = Known {
            name: name.clone(),
            service_type: service_type.clone(),
            instance,
            items,
        };
        self.services.insert(scan.owner.clone(), known);
        for msg in buffered {
            self.apply_signal(&scan.owner, &msg, false).await;
        }
        if let Some(k) = self.services.get(&scan.owner) {
            let _ = self.events.send(Event::ServiceAdded {
                service: k.name.clone(),
                service_type: k.service_type.clone(),
                instance: k.instance,
                values: k.items.clone(),
            });
            if self.alive() {
                self.publish_service(k).await;
            }
        }
    }

    async fn publish_service(&self, k: &Known) {
        for (path, value) in &k.items {
            let topic = format!(
                "N/{}/{}/{}{}",
                self.portal, k.service_type, k.instance, path
            );
            self.publish(&topic, value_payload(value), false).await;
        }
    }

    async fn on_name_owner_changed(&mut self, msg: &Message) {
        let Ok((name, old, new)) = msg.body().deserialize::<(String, String, String)>() else {
            return;
        };
        if !name.starts_with(SERVICE_PREFIX) {
            return;
        }
        if !old.is_empty() {
            self.scanning.remove(&old);
            if let Some(k) = self.services.remove(&old) {
                let key = format!("{}/{}", k.service_type, k.instance);
                if self.by_topic.get(&key) == Some(&old) {
                    self.by_topic.remove(&key);
                }
                if self.alive() {
                    // dbus-flashmq: every topic of a vanished service once with an empty payload.
                    for path in k.items.keys() {
                        let topic = format!(
                            "N/{}/{}/{}{}",
                            self.portal, k.service_type, k.instance, path
                        );
                        self.publish(&topic, String::new(), false).await;
                    }
                }
                let _ = self.events.send(Event::ServiceRemoved {
                    service: k.name,
                    service_type: k.service_type,
                    instance: k.instance,
                });
            }
        }
        if !new.is_empty() {
            self.scan(name, new);
        }
    }

    async fn on_signal(&mut self, msg: Message) {
        let Some(sender) = msg.header().sender().map(|s| s.as_str().to_string()) else {
            return;
        };
        if let Some((_, buffered)) = self.scanning.get_mut(&sender) {
            buffered.push(msg);
        } else if self.services.contains_key(&sender) {
            self.apply_signal(&sender, &msg, true).await;
        }
    }

    /// Applies an ItemsChanged (absolute keys, on `/`) or a PropertiesChanged (on the item).
    async fn apply_signal(&mut self, owner: &str, msg: &Message, publish: bool) {
        let header = msg.header();
        let changes: Vec<(String, Value)> = match header.member().map(|m| m.as_str()) {
            Some("ItemsChanged") => {
                let Ok(body) = msg
                    .body()
                    .deserialize::<HashMap<String, HashMap<String, OwnedVariant>>>()
                else {
                    return;
                };
                body.into_iter()
                    .filter_map(|(path, entry)| {
                        let v = Value::from_variant(entry.get("Value")?).ok()?;
                        Some((path, v))
                    })
                    .collect()
            }
            Some("PropertiesChanged") => {
                let Some(path) = header.path().map(|p| p.as_str().to_string()) else {
                    return;
                };
                let Ok(body) = msg.body().deserialize::<HashMap<String, OwnedVariant>>() else {
                    return;
                };
                match body.get("Value").map(|v| Value::from_variant(v)) {
                    Some(Ok(v)) => vec![(path, v)],
                    _ => return,
                }
            }
            _ => return,
        };
        let alive = self.alive();
        let Some(k) = self.services.get_mut(owner) else {
            return;
        };
        let mut to_publish = Vec::new();
        for (path, value) in changes {
            let changed = k.items.get(&path) != Some(&value);
            k.items.insert(path.clone(), value.clone());
            if publish && alive {
                let topic = format!(
                    "N/{}/{}/{}{}",
                    self.portal, k.service_type, k.instance, path
                );
                to_publish.push((topic, value_payload(&value)));
            }
            if changed && publish {
                let _ = self.events.send(Event::ValueChanged {
                    service: k.name.clone(),
                    service_type: k.service_type.clone(),
                    instance: k.instance,
                    path,
                    value,
                });
            }
        }
        for (topic, payload) in to_publish {
            self.publish(&topic, payload, false).await;
        }
    }

    async fn on_mqtt(&mut self, topic: &str, payload: &[u8]) {
        if topic == PRESENCE_TOPIC {
            let online = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v.get("online").and_then(serde_json::Value::as_i64))
                == Some(1);
            let _ = self.events.send(Event::DaemonOnline(online));
            return;
        }
        let mut parts = topic.splitn(3, '/');
        let (Some(kind), Some(portal), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if portal != self.portal {
            return;
        }
        match (kind, rest) {
            ("R", "keepalive") => self.keepalive(payload, true).await,
            ("R", "system/0/Serial") => {
                // dbus-flashmq: the legacy keep-alive, and a read of the serial.
                self.keepalive(payload, true).await;
                let topic = format!("N/{}/system/0/Serial", self.portal);
                self.publish(&topic, json!({ "value": self.portal }).to_string(), true)
                    .await;
            }
            ("R", rest) => self.read(rest),
            ("W", rest) => self.write(rest, payload),
            _ => {}
        }
    }

    /// Finds `<type>/<instance>/<path>`: the owner, the service and the D-Bus path.
    fn resolve(&self, rest: &str) -> Option<(String, &Known, String)> {
        let mut parts = rest.splitn(3, '/');
        let service_type = parts.next()?;
        let instance = parts.next()?;
        let path = format!("/{}", parts.next().unwrap_or(""));
        let owner = self.by_topic.get(&format!("{service_type}/{instance}"))?;
        let known = self.services.get(owner)?;
        Some((owner.clone(), known, path.trim_end_matches('/').to_string()))
    }

    async fn keepalive(&mut self, payload: &[u8], republish: bool) {
        self.alive_until = Instant::now().checked_add(KEEPALIVE);
        // dbus-flashmq's options: {"keepalive-options": ["suppress-republish",
        // {"full-publish-completed-echo": "…"}]}.
        let options = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("keepalive-options").cloned())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let suppress = options.iter().any(|o| o == "suppress-republish");
        if !republish || suppress {
            return;
        }
        for k in self.services.values() {
            self.publish_service(k).await;
        }
        let mut done = serde_json::Map::new();
        if let Some(echo) = options
            .iter()
            .find_map(|o| o.get("full-publish-completed-echo"))
        {
            done.insert("full-publish-completed-echo".into(), echo.clone());
        }
        done.insert("value".into(), json!(unix_time()));
        let topic = format!("N/{}/full_publish_completed", self.portal);
        self.publish(&topic, serde_json::Value::Object(done).to_string(), false)
            .await;
    }

    fn read(&self, rest: &str) {
        let Some((owner, known, path)) = self.resolve(rest) else {
            tracing::debug!(topic = rest, "read for an unknown service");
            return;
        };
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let leaf = known.items.contains_key(&path);
        let topic = format!(
            "N/{}/{}/{}{}",
            self.portal,
            known.service_type,
            known.instance,
            if path == "/" { "" } else { path.as_str() }
        );
        let _ = self.ops.send(Op::Read {
            owner,
            path,
            topic,
            leaf,
        });
    }

    fn write(&self, rest: &str, payload: &[u8]) {
        let Some((owner, known, path)) = self.resolve(rest) else {
            tracing::warn!(topic = rest, "W/ for a service that is not on the bus");
            return;
        };
        if !known.items.contains_key(&path) {
            // dbus-flashmq only writes to items it has seen.
            tracing::warn!(service = %known.name, path, "W/: can't find item");
            return;
        }
        let value = match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(serde_json::Value::Object(o)) if o.contains_key("value") => {
                match o.get("value").and_then(json_to_variant) {
                    Some(v) => v,
                    None => {
                        tracing::warn!(service = %known.name, path, "W/: value of an unsupported type");
                        return;
                    }
                }
            }
            _ => {
                tracing::warn!(service = %known.name, path, "W/: payload is not {{\"value\": …}}");
                return;
            }
        };
        let _ = self.ops.send(Op::Write { owner, path, value });
    }
}

/// dbus-flashmq's JSON → D-Bus typing for `W/`: [`Value::from_json`]'s (integer → `i`, `x`
/// outside int32, float → `d`, string → `s`, bool → `b`, null → empty `ai` (invalid), arrays
/// → `av`), except that a non-empty array of int32 is `ai`, a number beyond int64 is a double
/// and objects are refused.
pub fn json_to_variant(v: &serde_json::Value) -> Option<Variant<'static>> {
    match v {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Number(n) if n.as_i64().is_none() => Some(Variant::F64(n.as_f64()?)),
        _ => Some(match Value::from_json(v).ok()? {
            Value::List(items) if !items.is_empty() => {
                let ints: Option<Vec<i32>> = items
                    .iter()
                    .map(|i| match i {
                        Value::I32(i) => Some(*i),
                        _ => None,
                    })
                    .collect();
                match ints {
                    Some(ints) => Variant::from(ints),
                    None => Value::List(items).to_variant(),
                }
            }
            value => value.to_variant(),
        }),
    }
}

/// `GetItems` on `/`; on `UnknownMethod` only, node `GetValue` on `/` (keys relative), as
/// dbus-flashmq. Any other failure means the service is ignored.
async fn get_items(conn: &Connection, owner: &str) -> Result<BTreeMap<String, Value>, String> {
    let reply = conn
        .call_method(Some(owner), "/", Some(BUSITEM_INTERFACE), "GetItems", &())
        .await;
    match reply {
        Ok(msg) => {
            let body = msg.body();
            let signature = body.signature().to_string();
            if signature != GET_ITEMS_SIGNATURE {
                return Err(format!(
                    "GetItems replied `{signature}`, not `{GET_ITEMS_SIGNATURE}`"
                ));
            }
            let items: HashMap<String, HashMap<String, OwnedVariant>> = body
                .deserialize()
                .map_err(|e| format!("GetItems reply: {e}"))?;
            Ok(items
                .into_iter()
                .filter_map(|(path, entry)| {
                    let v = entry.get("Value").map(|v| Value::from_variant(v));
                    match v {
                        Some(Ok(v)) => Some((path, v)),
                        _ => None,
                    }
                })
                .collect())
        }
        Err(e) if is_unknown_method(&e) => {
            let reply = conn
                .call_method(Some(owner), "/", Some(BUSITEM_INTERFACE), "GetValue", &())
                .await
                .map_err(|e| format!("GetValue on /: {e}"))?;
            let value: OwnedVariant = reply
                .body()
                .deserialize()
                .map_err(|e| format!("GetValue on /: {e}"))?;
            match Value::from_variant(&value) {
                Ok(Value::Dict(d)) => {
                    Ok(d.into_iter().map(|(k, v)| (format!("/{k}"), v)).collect())
                }
                Ok(_) => Err("GetValue on / is not a dictionary".into()),
                Err(e) => Err(format!("GetValue on /: {e}")),
            }
        }
        Err(e) => Err(format!("GetItems: {e}")),
    }
}

/// `org.freedesktop.DBus.Error.UnknownMethod`, however zbus reports it (standard error names
/// arrive as [`zbus::fdo::Error`]).
fn is_unknown_method(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::FDO(fdo) => matches!(**fdo, zbus::fdo::Error::UnknownMethod(_)),
        zbus::Error::MethodError(name, _, _) => {
            name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod"
        }
        _ => false,
    }
}

/// Runs the calls asked for over MQTT, in order.
struct Worker {
    conn: Connection,
    client: AsyncClient,
}

impl Worker {
    async fn run(self, mut ops: mpsc::UnboundedReceiver<Op>) {
        while let Some(op) = ops.recv().await {
            match op {
                Op::Write { owner, path, value } => {
                    let body = (&value,);
                    let call = self.conn.call_method(
                        Some(owner.as_str()),
                        path.as_str(),
                        Some(BUSITEM_INTERFACE),
                        "SetValue",
                        &body,
                    );
                    match tokio::time::timeout(CALL_TIMEOUT, call).await {
                        Ok(Ok(reply)) => {
                            let code: i32 = reply.body().deserialize().unwrap_or(-1);
                            // dbus-flashmq ignores the code; a refusal is worth a line here.
                            if code != 0 {
                                tracing::info!(path, code, "W/: SetValue refused");
                            }
                        }
                        Ok(Err(e)) => tracing::warn!(path, error = %e, "W/: SetValue failed"),
                        Err(_) => tracing::warn!(path, "W/: SetValue got no reply"),
                    }
                }
                Op::Read {
                    owner,
                    path,
                    topic,
                    leaf,
                } => {
                    let call = self.conn.call_method(
                        Some(owner.as_str()),
                        path.as_str(),
                        Some(BUSITEM_INTERFACE),
                        "GetValue",
                        &(),
                    );
                    let value = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                        Ok(Ok(reply)) => reply
                            .body()
                            .deserialize::<OwnedVariant>()
                            .ok()
                            .and_then(|v| Value::from_variant(&v).ok()),
                        _ => None,
                    };
                    let Some(value) = value else {
                        tracing::debug!(path, "R/: GetValue failed");
                        continue;
                    };
                    let mut out = Vec::new();
                    match value {
                        Value::Dict(d) if !leaf => {
                            for (k, v) in d {
                                out.push((format!("{topic}/{k}"), value_payload(&v)));
                            }
                        }
                        v => out.push((topic, value_payload(&v))),
                    }
                    for (topic, payload) in out {
                        let _ = self
                            .client
                            .publish(topic, QoS::AtMostOnce, false, payload.into_bytes())
                            .await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w_payloads_are_typed_like_dbus_flashmq() {
        let cases = [
            ("22", "i"),
            ("22.5", "d"),
            ("22.0", "d"),
            ("\"txt\"", "s"),
            ("true", "b"),
            ("null", "ai"),
            ("[1,2]", "ai"),
            ("4294967296", "x"),
        ];
        for (json, signature) in cases {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let variant = json_to_variant(&v).unwrap();
            assert_eq!(variant.value_signature().to_string(), signature, "{json}");
        }
        assert!(json_to_variant(&json!({"a": 1})).is_none());
    }

    #[test]
    fn text_a_d_bus_string_cannot_hold_is_refused() {
        // The bus daemon disconnects a connection that sends a NUL in a string.
        assert!(json_to_variant(&json!("a\u{0}b")).is_none());
        assert!(json_to_variant(&json!(["a\u{0}b"])).is_none());
    }

    #[test]
    fn null_is_an_empty_int_array() {
        let v = json_to_variant(&serde_json::Value::Null).unwrap();
        assert_eq!(Value::from_variant(&v).unwrap(), Value::Invalid);
    }

    #[test]
    fn n_payloads_are_compact() {
        assert_eq!(value_payload(&Value::F64(21.5)), r#"{"value":21.5}"#);
        assert_eq!(value_payload(&Value::Invalid), r#"{"value":null}"#);
        assert_eq!(value_payload(&Value::I32(3)), r#"{"value":3}"#);
    }
}
