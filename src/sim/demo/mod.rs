//! The demo of `sim --demo`: simulated devices inside the process that talk to the embedded
//! broker exactly as the real ones do, so that a PC shows what a GX would.
//!
//! - [`native`]: an ESP32 that speaks our protocol (v3): a fridge thermometer and a tank.
//! - [`shelly_pro3em`]: a Shelly Pro 3EM used as grid meter, publishing its own topics.
//! - [`opendtu`]: a Hoymiles inverter behind OpenDTU, publishing its own topics and obeying
//!   the power limit it is sent.
//!
//! The last two cannot speak our protocol; the daemon serves them as mapped devices from the
//! declarations [`declarations`] puts into the data directory. The meter measures what the
//! house takes minus what the inverter makes, so a power limit shows on both. Each simulated
//! device knows only its own side of MQTT.

pub mod declarations;
pub mod native;
pub mod opendtu;
pub mod shelly_pro3em;

use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Runs every demo device against the broker at `host:port` until `cancel`; each says
/// goodbye as its real counterpart would.
pub async fn run(host: String, port: u16, cancel: CancellationToken) -> Result<()> {
    // What the inverter feeds in, in W, for the meter's L1.
    let (pv_power, pv_seen) = watch::channel(0.0);
    let (native, meter, inverter) = tokio::join!(
        native::run(host.clone(), port, cancel.clone()),
        shelly_pro3em::run(host.clone(), port, pv_seen, cancel.clone()),
        opendtu::run(host, port, pv_power, cancel),
    );
    native.context("the demo ESP32")?;
    meter.context("the demo Shelly Pro 3EM")?;
    inverter.context("the demo OpenDTU")?;
    Ok(())
}

/// An MQTT connection as device firmware opens it: small packets go out at once (not after
/// Nagle's ~40 ms), with a last will when the device has one.
fn connect(id: &str, host: &str, port: u16, will: Option<LastWill>) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(10));
    if let Some(will) = will {
        options.set_last_will(will);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Disconnects cleanly (the broker sends no will after a DISCONNECT), waiting briefly for the
/// packets queued before it to leave.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(e) = eventloop.poll().await {
            if let rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect) = e {
                break;
            }
        }
    })
    .await;
}

/// A gently changing figure: `mean` plus slow and faster waves, so that values look alive
/// without a random number generator (and tests see the same run each time).
fn wave(t: f64, mean: f64, slow: f64, fast: f64, phase: f64) -> f64 {
    mean + slow * (t / 97.0 + phase).sin() + fast * (t / 7.3 + 2.0 * phase).sin()
}

/// `x` rounded to `decimals`.
fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}
