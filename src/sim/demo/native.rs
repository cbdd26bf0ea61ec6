//! The native demo device of `sim --demo`: a simulated ESP32 that speaks protocol v3, exactly as
//! a real one would (a rich Status with a last will, then direct Values every second). Knows
//! only the device side of the protocol.

use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{Event, LastWill, Packet, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The demo's MQTT client id.
pub const CLIENT_ID: &str = "demo";
/// How often the demo sends values.
const PERIOD: Duration = Duration::from_secs(1);
/// How long the demo waits for its `DBus` reply before announcing itself again.
const REPLY_WAIT: Duration = Duration::from_secs(5);

/// The v3 Status: two services with types, default names and initial settings.
pub fn status() -> serde_json::Value {
    json!({
        "clientId": CLIENT_ID,
        "connected": 1,
        "version": "1.0",
        "timeout": 30,
        "services": {
            "t1": {"type": "temperature", "name": "Demo fridge", "settings": {"TemperatureType": 1}},
            "tk1": {"type": "tank", "name": "Demo water tank", "settings": {"FluidType": 1}}
        }
    })
}

/// The values at `t` seconds after start: a fridge cycling around 4 °C, a tank slowly
/// emptying and refilled when low.
pub fn values(t: u64) -> serde_json::Value {
    let t = t as f64;
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let temperature = round1(4.2 + 1.5 * (t / 20.0).sin());
    let humidity = (61.0 + 4.0 * (t / 33.0).sin()).round() as i64;
    let level = round1(80.0 - (t * 0.5) % 60.0);
    json!({"t1": {"Temperature": temperature, "Humidity": humidity}, "tk1": {"Level": level}})
}

/// Runs the demo device against the broker at `host:port` until `cancel`, then says goodbye
/// with `connected: 0` so its services leave the bus.
pub async fn run(host: String, port: u16, cancel: CancellationToken) -> Result<()> {
    let status_topic = format!("device/{CLIENT_ID}/Status");
    let reply_topic = format!("device/{CLIENT_ID}/DBus");
    let values_topic = format!("device/{CLIENT_ID}/Values");
    let goodbye = json!({"clientId": CLIENT_ID, "connected": 0}).to_string();
    let will = LastWill::new(&status_topic, goodbye.clone(), QoS::AtLeastOnce, false);
    let (client, mut eventloop) = super::connect(CLIENT_ID, &host, port, Some(will));
    let mut registered = false;
    let mut t = 0u64;
    let mut tick = tokio::time::interval(PERIOD);
    let mut announce =
        tokio::time::interval_at(tokio::time::Instant::now() + REPLY_WAIT, REPLY_WAIT);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // Subscribed before announcing, so the reply cannot be missed.
                    client.subscribe(&reply_topic, QoS::AtLeastOnce).await.context("subscribing")?;
                    registered = false;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    client
                        .publish(&status_topic, QoS::AtLeastOnce, false, status().to_string())
                        .await
                        .context("publishing the Status")?;
                    announce.reset();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == reply_topic => {
                    if !registered {
                        tracing::info!(reply = %String::from_utf8_lossy(&p.payload), "demo device registered");
                    }
                    registered = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "demo device connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = tick.tick(), if registered => {
                client
                    .publish(&values_topic, QoS::AtMostOnce, false, values(t).to_string())
                    .await
                    .context("publishing values")?;
                t += 1;
            }
            _ = announce.tick(), if !registered => {
                // No reply yet (the daemon may still be starting): announce again, as a device
                // that subscribes to the daemon's presence topic would.
                let _ = client
                    .publish(&status_topic, QoS::AtLeastOnce, false, status().to_string())
                    .await;
            }
        }
    }
    // A clean goodbye: the broker sends no will after a DISCONNECT.
    let _ = client
        .publish(&status_topic, QoS::AtLeastOnce, false, goodbye)
        .await;
    super::disconnect(&client, &mut eventloop).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_change_and_stay_in_range() {
        let a = values(0);
        let b = values(5);
        assert_ne!(a, b);
        for t in 0..500 {
            let v = values(t);
            let level = v["tk1"]["Level"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&level), "{level}");
        }
    }
}
