//! The command line's connection to the broker: asks the daemon (a request, then its answer
//! on a response topic of our own), clears retained topics, and watches the MQTT gateway's
//! `N/` topics after a keepalive. Every wait has a time limit.

use super::request::{Verb, REQUEST_PREFIX};
use crate::config::MqttConfig;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::Value as Json;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long to wait for the broker to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long to wait for the daemon's answer (a listing reads every service on D-Bus).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's retained presence topic.
pub const PRESENCE_TOPIC: &str = "dbus-mqtt-devices/status";

enum Incoming {
    Publish {
        topic: String,
        payload: bytes::Bytes,
    },
    SubAck,
    PubAck,
}

/// A connection to the broker.
pub struct Broker {
    client: AsyncClient,
    incoming: mpsc::Receiver<Incoming>,
    /// Unique per run: our response topic.
    id: String,
}

impl Broker {
    /// Connects; fails when the broker does not accept within [`CONNECT_TIMEOUT`].
    pub async fn connect(config: &MqttConfig) -> Result<Broker, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("dbus-mqtt-devices-cli-{}-{nanos:08x}", std::process::id());
        let options = crate::mqtt::options(config, &id, None)?;
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, mut incoming) = mpsc::channel(1024);
        let (ready_tx, ready) = tokio::sync::oneshot::channel::<Result<(), String>>();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                let event = eventloop.poll().await;
                let forward = match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(Ok(()));
                        }
                        None
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => Some(Incoming::Publish {
                        topic: p.topic,
                        payload: p.payload,
                    }),
                    Ok(Event::Incoming(Packet::SubAck(_))) => Some(Incoming::SubAck),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Some(Incoming::PubAck),
                    Ok(_) => None,
                    Err(e) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(Err(e.to_string()));
                        }
                        break;
                    }
                };
                if let Some(f) = forward {
                    if tx.send(f).await.is_err() {
                        break;
                    }
                }
            }
        });
        let broker = format!("{}:{}", config.host, config.port);
        match tokio::time::timeout(CONNECT_TIMEOUT, ready).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("MQTT broker {broker}: {e}")),
            _ => {
                return Err(format!(
                    "MQTT broker {broker}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            }
        }
        // Nothing is lost between connecting and the first subscription: nothing is subscribed.
        while incoming.try_recv().is_ok() {}
        Ok(Broker {
            client,
            incoming,
            id,
        })
    }

    async fn subscribe(&mut self, topic: &str) -> Result<(), String> {
        self.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(Incoming::SubAck)) => return Ok(()),
                Ok(Some(_)) => {}
                _ => return Err(format!("subscribing to {topic}: no answer")),
            }
        }
    }

    /// Whether the daemon says it is online (its retained presence topic).
    pub async fn daemon_online(&mut self) -> bool {
        if self.subscribe(PRESENCE_TOPIC).await.is_err() {
            return false;
        }
        // A retained message comes right after the subscription is acknowledged.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut online = false;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.incoming.recv()).await {
            if let Incoming::Publish { topic, payload } = m {
                if topic == PRESENCE_TOPIC {
                    online = serde_json::from_slice::<Json>(&payload)
                        .ok()
                        .and_then(|v| v.get("online")?.as_i64())
                        == Some(1);
                    break;
                }
            }
        }
        let _ = self.client.unsubscribe(PRESENCE_TOPIC).await;
        online
    }

    /// Sends a request to the daemon and waits for its answer.
    pub async fn ask(
        &mut self,
        verb: Verb,
        mut body: serde_json::Map<String, Json>,
    ) -> Result<Json, String> {
        let response_topic = format!("{}{}", super::request::RESPONSE_PREFIX, self.id);
        self.subscribe(&response_topic).await?;
        body.insert(
            "response_topic".into(),
            Json::String(response_topic.clone()),
        );
        self.client
            .publish(
                format!("{REQUEST_PREFIX}{}", verb.as_str()),
                QoS::AtLeastOnce,
                false,
                Json::Object(body).to_string(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(Incoming::Publish { topic, payload })) if topic == response_topic => {
                    return serde_json::from_slice(&payload)
                        .map_err(|e| format!("the daemon's answer is not JSON: {e}"));
                }
                Ok(Some(_)) => {}
                _ => {
                    return Err(format!(
                        "the daemon did not answer within {} s",
                        ANSWER_TIMEOUT.as_secs()
                    ))
                }
            }
        }
    }

    /// Clears a retained topic and waits until the broker has it.
    pub async fn clear_retained(&mut self, topic: &str) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, Vec::<u8>::new())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(Incoming::PubAck)) => return Ok(()),
                Ok(Some(_)) => {}
                _ => return Err(format!("clearing {topic}: no answer from the broker")),
            }
        }
    }

    /// The portal id from the gateway's retained `N/<id>/system/0/Serial`, if any.
    pub async fn retained_portal_id(&mut self) -> Option<String> {
        let topic = crate::portal::SERIAL_SUBSCRIPTION;
        self.subscribe(topic).await.ok()?;
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut found = None;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.incoming.recv()).await {
            if let Incoming::Publish { topic, .. } = m {
                if let Some(p) = crate::portal::from_serial_topic(&topic) {
                    found = Some(p.as_str().to_owned());
                    break;
                }
            }
        }
        let _ = self.client.unsubscribe(topic).await;
        found
    }

    /// Sends `R/<portal>/keepalive` and collects the `<type>/<instance>` of every `N/` topic
    /// the gateway publishes, until it says it has published everything (dbus-flashmq) or
    /// `wait` passes.
    pub async fn gateway_topics(
        &mut self,
        portal: &str,
        wait: Duration,
    ) -> Result<std::collections::BTreeSet<String>, String> {
        let filter = format!("N/{portal}/#");
        self.subscribe(&filter).await?;
        self.client
            .publish(
                format!("R/{portal}/keepalive"),
                QoS::AtLeastOnce,
                false,
                Vec::<u8>::new(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let prefix = format!("N/{portal}/");
        let done = format!("N/{portal}/full_publish_completed");
        let deadline = Instant::now() + wait;
        let mut seen = std::collections::BTreeSet::new();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.incoming.recv()).await {
            if let Incoming::Publish { topic, .. } = m {
                if topic == done {
                    break;
                }
                if let Some(rest) = topic.strip_prefix(&prefix) {
                    let mut levels = rest.splitn(3, '/');
                    if let (Some(t), Some(i)) = (levels.next(), levels.next()) {
                        seen.insert(format!("{t}/{i}"));
                    }
                }
            }
        }
        let _ = self.client.unsubscribe(&filter).await;
        Ok(seen)
    }

    /// Disconnects cleanly.
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}
