//! A simulated Shelly Pro 3EM (Gen2, triphase profile) with "Generic status update over MQTT"
//! on: the full `em:0` status every second (what users get with the usual Shelly script),
//! `emdata:0` every ten seconds, and `<prefix>/online` as its retained birth and last will.
//! Payloads have the shape of the device's own (research captures): power signed, negative
//! when exporting; energy in Wh, per-phase sums.
//!
//! It measures a house between the grid and the demo inverter: each phase draws a changing
//! load, and L1 gets what the inverter makes subtracted, so enough sun makes L1 export.

use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{Event, LastWill, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{round, wave};

/// The Shelly's MQTT topic prefix (its device id, as Shellies default to).
pub const TOPIC: &str = "shellypro3em-c0ffee3e0001";
/// How often `em:0` is published.
const PERIOD: Duration = Duration::from_secs(1);
/// `emdata:0` every this many `em:0`.
const ENERGY_EVERY: u64 = 10;
/// Phase names in the Shelly's keys.
const PHASES: [&str; 3] = ["a", "b", "c"];

/// The meter's counters, Wh as the Shelly keeps them.
#[derive(Clone, Debug)]
pub struct Meter {
    /// Per phase: imported, exported.
    energy: [(f64, f64); 3],
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            energy: [(1_075_513.08, 231_402.5), (1_776_542.72, 0.0), (412_087.3, 0.0)],
        }
    }
}

impl Meter {
    /// Advances to second `t` (counting `dt` seconds since the last step) with `pv` W fed in
    /// on L1, and returns the `em:0` status.
    pub fn step(&mut self, t: u64, dt: f64, pv: f64) -> Value {
        let tf = t as f64;
        let load = [
            wave(tf, 420.0, 160.0, 60.0, 0.0).max(40.0),
            wave(tf, 260.0, 90.0, 30.0, 2.1).max(20.0),
            wave(tf, 150.0, 60.0, 25.0, 4.2).max(10.0),
        ];
        let mut status = serde_json::Map::new();
        status.insert("id".into(), json!(0));
        let (mut total_power, mut total_current, mut total_aprt) = (0.0, 0.0, 0.0);
        let phases = PHASES.iter().zip(load).zip(self.energy.iter_mut());
        for (i, ((name, load), (forward, reverse))) in phases.enumerate() {
            // Power is positive importing, negative exporting; the inverter is on L1.
            let power = if i == 0 { load - pv } else { load };
            *forward += power.max(0.0) * dt / 3600.0;
            *reverse += (-power).max(0.0) * dt / 3600.0;
            let voltage = wave(tf, 230.5, 1.8, 0.6, 1.3 * i as f64);
            // Inductive loads lag a little; the sign follows the direction of the power.
            let pf = wave(tf, 0.93, 0.04, 0.01, i as f64).min(1.0).copysign(power);
            let apparent = power.abs() / pf.abs();
            let current = apparent / voltage;
            status.insert(format!("{name}_current"), json!(round(current, 3)));
            status.insert(format!("{name}_voltage"), json!(round(voltage, 1)));
            status.insert(format!("{name}_act_power"), json!(round(power, 1)));
            status.insert(format!("{name}_aprt_power"), json!(round(apparent, 1)));
            status.insert(format!("{name}_pf"), json!(round(pf, 2)));
            status.insert(format!("{name}_freq"), json!(50.0));
            total_power += power;
            total_current += current;
            total_aprt += apparent;
        }
        status.insert("n_current".into(), Value::Null);
        status.insert("total_current".into(), json!(round(total_current, 3)));
        status.insert("total_act_power".into(), json!(round(total_power, 3)));
        status.insert("total_aprt_power".into(), json!(round(total_aprt, 3)));
        status.insert("user_calibrated_phase".into(), json!([]));
        Value::Object(status)
    }

    /// The `emdata:0` status: per-phase counters and their sums (not net metered, as the
    /// Shelly's own `total_act` and `total_act_ret`).
    pub fn emdata(&self) -> Value {
        let mut status = serde_json::Map::new();
        status.insert("id".into(), json!(0));
        for (name, (forward, reverse)) in PHASES.iter().zip(self.energy) {
            status.insert(format!("{name}_total_act_energy"), json!(round(forward, 2)));
            status.insert(
                format!("{name}_total_act_ret_energy"),
                json!(round(reverse, 2)),
            );
        }
        let forward: f64 = self.energy.iter().map(|e| e.0).sum();
        let reverse: f64 = self.energy.iter().map(|e| e.1).sum();
        status.insert("total_act".into(), json!(round(forward, 2)));
        status.insert("total_act_ret".into(), json!(round(reverse, 2)));
        Value::Object(status)
    }
}

/// Runs the meter until `cancel`; `pv` is what the inverter feeds in on L1, in W.
pub async fn run(
    host: String,
    port: u16,
    pv: watch::Receiver<f64>,
    cancel: CancellationToken,
) -> Result<()> {
    let online = format!("{TOPIC}/online");
    let em = format!("{TOPIC}/status/em:0");
    let emdata = format!("{TOPIC}/status/emdata:0");
    let will = LastWill::new(&online, "false", QoS::AtLeastOnce, true);
    let (client, mut eventloop) = super::connect(TOPIC, &host, port, Some(will));
    let mut meter = Meter::default();
    let mut connected = false;
    let mut t = 0u64;
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .publish(&online, QoS::AtLeastOnce, true, "true")
                        .await
                        .context("publishing online")?;
                    connected = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "demo Shelly connection; reconnecting");
                    connected = false;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = tick.tick(), if connected => {
                let status = meter.step(t, PERIOD.as_secs_f64(), *pv.borrow());
                client
                    .publish(&em, QoS::AtMostOnce, false, status.to_string())
                    .await
                    .context("publishing em:0")?;
                if t.is_multiple_of(ENERGY_EVERY) {
                    client
                        .publish(&emdata, QoS::AtMostOnce, false, meter.emdata().to_string())
                        .await
                        .context("publishing emdata:0")?;
                }
                t += 1;
            }
        }
    }
    // Switched off: what its last will would say.
    let _ = client
        .publish(&online, QoS::AtLeastOnce, true, "false")
        .await;
    super::disconnect(&client, &mut eventloop).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_is_the_sum_of_the_phases_and_l1_exports_when_the_sun_is_strong() {
        let mut meter = Meter::default();
        let quiet = meter.step(0, 1.0, 0.0);
        let sum: f64 = ["a", "b", "c"]
            .iter()
            .map(|p| quiet[format!("{p}_act_power")].as_f64().unwrap())
            .sum();
        let total = quiet["total_act_power"].as_f64().unwrap();
        assert!((sum - total).abs() < 0.2, "{sum} vs {total}");
        assert!(quiet["a_act_power"].as_f64().unwrap() > 0.0);

        let sunny = meter.step(1, 1.0, 2000.0);
        assert!(sunny["a_act_power"].as_f64().unwrap() < 0.0, "{sunny}");
        assert!(sunny["a_pf"].as_f64().unwrap() < 0.0);
        assert!(sunny["b_act_power"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn counters_only_grow_and_export_counts_as_returned() {
        let mut meter = Meter::default();
        let before = meter.emdata();
        for t in 0..600 {
            meter.step(t, 1.0, if t < 300 { 0.0 } else { 2000.0 });
        }
        let after = meter.emdata();
        for key in ["a_total_act_energy", "b_total_act_energy", "total_act", "total_act_ret"] {
            assert!(
                after[key].as_f64().unwrap() > before[key].as_f64().unwrap(),
                "{key}: {before} → {after}"
            );
        }
        assert_eq!(after["b_total_act_ret_energy"], 0.0, "L2 never exports");
        for t in 0..600 {
            let s = meter.step(t, 1.0, 300.0);
            for p in ["a", "b", "c"] {
                let v = s[format!("{p}_voltage")].as_f64().unwrap();
                assert!((220.0..240.0).contains(&v), "{v}");
            }
        }
    }
}
