//! A simulated OpenDTU with one Hoymiles HM-800: plain values on `solar/<serial>/0/…` and
//! `solar/<serial>/status/…` every five seconds, retained (OpenDTU's defaults), its own
//! birth and last will on `solar/dtu/status`, and the non-persistent power limit command it
//! obeys: `solar/<serial>/cmd/limit_nonpersistent_absolute` (W) or `…_relative` (%). After a
//! limit it reports at once, as the inverter has answered by the next poll.

use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{round, wave};

/// OpenDTU's base topic (its default, `solar/`, without the slash).
pub const BASE: &str = "solar";
/// The inverter's serial number.
pub const SERIAL: &str = "116181000001";
/// The inverter's rated power, W.
pub const MAX_POWER: f64 = 800.0;
/// OpenDTU's publish interval (its default).
const PERIOD: Duration = Duration::from_secs(5);
/// The MQTT client id.
const CLIENT_ID: &str = "opendtu-c0ffee";

/// The inverter: what the panels could give, the limit it was sent, and its counters.
#[derive(Clone, Debug)]
pub struct Inverter {
    /// W.
    limit: f64,
    /// kWh.
    yield_total: f64,
    /// Wh.
    yield_day: f64,
    /// The latest AC power, W.
    power: f64,
}

impl Default for Inverter {
    fn default() -> Self {
        Inverter {
            limit: MAX_POWER,
            yield_total: 1523.456,
            yield_day: 0.0,
            power: 0.0,
        }
    }
}

impl Inverter {
    /// Takes a limit command; `relative` in % of the rated power, else W. Returns whether it
    /// was a number.
    pub fn set_limit(&mut self, payload: &[u8], relative: bool) -> bool {
        let Some(x) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite())
        else {
            return false;
        };
        let watts = if relative { x / 100.0 * MAX_POWER } else { x };
        self.limit = watts.clamp(0.0, MAX_POWER);
        true
    }

    /// AC power at second `t`: what the sun gives, at most the limit.
    fn produce(&mut self, t: f64) -> f64 {
        let sun = wave(t, 540.0, 220.0, 35.0, 0.7).clamp(0.0, MAX_POWER);
        sun.min(self.limit)
    }

    /// Advances to second `t` (counting `dt` seconds) and returns the topics below
    /// `<base>/<serial>/` with their values, as OpenDTU publishes them.
    pub fn step(&mut self, t: u64, dt: f64) -> Vec<(&'static str, String)> {
        let tf = t as f64;
        self.power = round(self.produce(tf), 1);
        self.yield_day += self.power * dt / 3600.0;
        self.yield_total += self.power * dt / 3_600_000.0;
        let voltage = round(wave(tf, 231.0, 1.5, 0.5, 0.3), 1);
        let efficiency = 96.2;
        let producing = if self.power > 0.0 { "1" } else { "0" };
        vec![
            ("0/power", self.power.to_string()),
            ("0/voltage", voltage.to_string()),
            ("0/current", round(self.power / voltage, 2).to_string()),
            ("0/frequency", round(wave(tf, 50.0, 0.02, 0.01, 0.0), 2).to_string()),
            ("0/powerfactor", "99.8".to_string()),
            ("0/temperature", round(25.0 + self.power / 40.0, 1).to_string()),
            ("0/yieldday", round(self.yield_day, 0).to_string()),
            ("0/yieldtotal", round(self.yield_total, 3).to_string()),
            ("0/powerdc", round(self.power * 100.0 / efficiency, 1).to_string()),
            ("0/efficiency", efficiency.to_string()),
            ("status/reachable", "1".to_string()),
            ("status/producing", producing.to_string()),
            ("status/limit_absolute", round(self.limit, 0).to_string()),
            (
                "status/limit_relative",
                round(self.limit / MAX_POWER * 100.0, 1).to_string(),
            ),
        ]
    }

    /// The latest AC power, W.
    pub fn power(&self) -> f64 {
        self.power
    }
}

/// Runs OpenDTU until `cancel`; what the inverter feeds in goes to `power`.
pub async fn run(
    host: String,
    port: u16,
    power: watch::Sender<f64>,
    cancel: CancellationToken,
) -> Result<()> {
    let dtu_status = format!("{BASE}/dtu/status");
    let absolute = format!("{BASE}/{SERIAL}/cmd/limit_nonpersistent_absolute");
    let relative = format!("{BASE}/{SERIAL}/cmd/limit_nonpersistent_relative");
    let will = LastWill::new(&dtu_status, "offline", QoS::AtLeastOnce, true);
    let (client, mut eventloop) = super::connect(CLIENT_ID, &host, port, Some(will));
    let mut inverter = Inverter::default();
    let mut connected = false;
    let started = tokio::time::Instant::now();
    let mut last = started;
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        let publish_now = tokio::select! {
            _ = cancel.cancelled() => break,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(format!("{BASE}/{SERIAL}/cmd/+"), QoS::AtLeastOnce)
                        .await
                        .context("subscribing to the commands")?;
                    client
                        .publish(&dtu_status, QoS::AtLeastOnce, true, "online")
                        .await
                        .context("publishing online")?;
                    client
                        .publish(format!("{BASE}/{SERIAL}/name"), QoS::AtLeastOnce, true, "HM-800")
                        .await
                        .context("publishing the name")?;
                    connected = true;
                    true
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let taken = (p.topic == absolute && inverter.set_limit(&p.payload, false))
                        || (p.topic == relative && inverter.set_limit(&p.payload, true));
                    tracing::info!(
                        topic = %p.topic,
                        payload = %String::from_utf8_lossy(&p.payload),
                        taken,
                        "demo OpenDTU command"
                    );
                    taken && connected
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::debug!(error = %e, "demo OpenDTU connection; reconnecting");
                    connected = false;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    false
                }
            },
            _ = tick.tick() => connected,
        };
        if publish_now {
            let now = tokio::time::Instant::now();
            let t = now.duration_since(started).as_secs();
            let dt = now.duration_since(last).as_secs_f64();
            last = now;
            publish(&client, &mut inverter, t, dt).await?;
            power.send_replace(inverter.power());
        }
    }
    let _ = client
        .publish(&dtu_status, QoS::AtLeastOnce, true, "offline")
        .await;
    super::disconnect(&client, &mut eventloop).await;
    Ok(())
}

/// One round of OpenDTU's topics, retained as OpenDTU does by default.
async fn publish(client: &AsyncClient, inverter: &mut Inverter, t: u64, dt: f64) -> Result<()> {
    for (topic, value) in inverter.step(t, dt) {
        client
            .publish(format!("{BASE}/{SERIAL}/{topic}"), QoS::AtMostOnce, true, value)
            .await
            .context("publishing a value")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(topics: &[(&str, String)], key: &str) -> f64 {
        let (_, v) = topics.iter().find(|(k, _)| *k == key).expect(key);
        v.parse().expect("a number")
    }

    #[test]
    fn power_follows_the_limit_and_the_counters_grow() {
        let mut inverter = Inverter::default();
        let free = inverter.step(0, 5.0);
        let power = value(&free, "0/power");
        assert!(power > 100.0 && power <= MAX_POWER, "{power}");
        assert_eq!(value(&free, "status/limit_absolute"), MAX_POWER);

        assert!(inverter.set_limit(b"100", false));
        let limited = inverter.step(5, 5.0);
        assert_eq!(value(&limited, "0/power"), 100.0);
        assert_eq!(value(&limited, "status/limit_absolute"), 100.0);
        assert_eq!(value(&limited, "status/limit_relative"), 12.5);
        // yieldtotal has OpenDTU's resolution, 1 Wh: give it a minute.
        let later = inverter.step(65, 60.0);
        assert!(value(&later, "0/yieldtotal") > value(&free, "0/yieldtotal"));
        assert!(value(&later, "0/yieldday") > value(&free, "0/yieldday"));

        assert!(inverter.set_limit(b"50", true));
        assert!(value(&inverter.step(10, 5.0), "0/power") <= 400.0);
        assert!(!inverter.set_limit(b"lots", false));
        assert!(inverter.set_limit(b"0", false));
        let off = inverter.step(15, 5.0);
        assert_eq!(value(&off, "0/power"), 0.0);
        assert_eq!(value(&off, "status/producing"), 0.0);
        assert!(inverter.set_limit(b"99999", false));
        assert_eq!(value(&inverter.step(20, 5.0), "status/limit_absolute"), MAX_POWER);
    }
}
