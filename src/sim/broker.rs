//! The MQTT broker of `sim` (rumqttd, configured in code): the broker a GX runs on port 1883,
//! for the daemon, the gateway, the demo device and real devices on the LAN.
//! Knows nothing of the topics that pass through it.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest MQTT payload accepted: far above any Status or Values message a device sends.
const MAX_PAYLOAD: usize = 256 * 1024;

/// Starts the broker on `listen` on threads of its own. Its listener comes up a moment later;
/// the gateway's first connection is what tells that it accepts clients. It runs until the
/// process ends.
pub fn start(listen: SocketAddr) -> Result<()> {
    // rumqttd only logs a failed bind and carries on without a listener, so find out first.
    std::net::TcpListener::bind(listen)
        .with_context(|| format!("the MQTT address {listen} is not available (--listen)"))?;
    let server = ServerSettings {
        name: "sim".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("sim-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "the MQTT broker stopped");
            }
        })
        .context("starting the MQTT broker thread")?;
    Ok(())
}
