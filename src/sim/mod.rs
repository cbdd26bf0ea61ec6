//! `dbus-mqtt-devices sim`: the Venus side of a GX on a PC, in one process and without system
//! services: an MQTT broker, a private D-Bus, our settings service, a gateway that behaves like
//! dbus-flashmq, and the daemon itself through [`crate::app::run`], unchanged. A live view shows
//! what registered; `--demo` adds simulated devices (one speaking our protocol, a Shelly and an
//! OpenDTU served as mapped devices). Nothing else in the crate depends on it.

pub mod broker;
pub mod bus;
pub mod demo;
pub mod gateway;
pub mod view;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::SimArgs;
use crate::config::Config;
use crate::dbus::BusAddress;
use crate::ids::PortalId;
use crate::settings::SettingsService;
use bus::PrivateBus;
use gateway::{Gateway, GatewayConfig};
use view::{Mode, Ready, ViewEvent};

/// The portal id of `sim` unless `--portal-id` says otherwise: fixed, so device firmware and
/// scripts written against `sim` keep working from run to run.
pub const DEFAULT_PORTAL_ID: &str = "5157e0000001";

/// The directory under `$XDG_DATA_HOME` (or `~/.local/share`) where `sim` keeps its data.
pub const DATA_DIR_NAME: &str = "dbus-mqtt-devices-sim";

/// How long the daemon may take to come online on the broker.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the daemon may take to remove its services when stopping.
const DAEMON_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// `$XDG_DATA_HOME/dbus-mqtt-devices-sim`, else `~/.local/share/dbus-mqtt-devices-sim`.
pub fn default_data_dir() -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join(DATA_DIR_NAME));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share").join(DATA_DIR_NAME)),
        None => bail!("neither XDG_DATA_HOME nor HOME is set: give --data-dir"),
    }
}

/// Where clients in this process reach a broker listening on `listen`.
fn local_address(listen: SocketAddr) -> IpAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

/// Runs everything until `shutdown`, then stops it in reverse order: the demo devices, the
/// daemon (its services leave the bus), the gateway, the settings (flushed), the bus.
pub async fn run(config: Config, args: SimArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    let started = Instant::now();
    tokio::pin!(shutdown);
    let portal = match &config.portal_id {
        Some(p) => p.clone(),
        None => PortalId::parse(DEFAULT_PORTAL_ID).context("the default portal id")?,
    };
    // `main` puts the user's data dir here unless --data-dir was given (the
    // daemon's default, the GX's /data, is no place for a PC).
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    // Before the daemon starts, so that it reads the demo's mapped devices (or no longer does).
    if args.demo {
        if let demo::declarations::Prepared::Created(path) = demo::declarations::prepare(&data_dir)? {
            tracing::info!(file = %path.display(), "the demo's mapped devices declared");
        }
    } else if demo::declarations::withdraw(&data_dir)? {
        tracing::info!("the demo's unchanged declarations removed (no --demo)");
    }

    let (view_tx, view_rx) = mpsc::unbounded_channel();
    let view = view::spawn(Mode::pick(args.json), view_rx);

    let bus = PrivateBus::start(args.bus).await?;
    let stage = Stage {
        config: &config,
        args: &args,
        portal: &portal,
        data_dir: &data_dir,
        bus: &bus,
        started,
    };
    let result = run_on_bus(stage, view_tx, &mut shutdown).await;
    bus.stop().await;
    // The view prints what is left once every sender is gone.
    let _ = tokio::time::timeout(Duration::from_secs(1), view).await;
    result
}

/// What the sim's stages share: the options, and what earlier stages started.
#[derive(Clone, Copy)]
struct Stage<'a> {
    config: &'a Config,
    args: &'a SimArgs,
    portal: &'a PortalId,
    data_dir: &'a Path,
    bus: &'a PrivateBus,
    started: Instant,
}

async fn run_on_bus(
    stage: Stage<'_>,
    view_tx: mpsc::UnboundedSender<ViewEvent>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<()> {
    let bus_address = BusAddress::Address(stage.bus.address().to_string());
    let settings = SettingsService::start(&bus_address, &stage.data_dir.join("settings"))
        .await
        .context("starting the settings service")?;
    let result = run_with_settings(stage, view_tx, shutdown).await;
    if let Err(e) = settings.stop().await {
        tracing::warn!(error = %format!("{e:#}"), "settings not saved");
    }
    result
}

async fn run_with_settings(
    stage: Stage<'_>,
    view_tx: mpsc::UnboundedSender<ViewEvent>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<()> {
    let Stage {
        config,
        args,
        portal,
        data_dir,
        bus,
        started,
    } = stage;
    let local = SocketAddr::new(local_address(args.listen), args.listen.port());
    broker::start(args.listen)?;
    let host = local.ip().to_string();
    let port = local.port();

    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let gateway = Gateway::start(
        GatewayConfig {
            bus: BusAddress::Address(bus.address().to_string()),
            mqtt_host: host.clone(),
            mqtt_port: port,
            portal: portal.clone(),
        },
        events_tx,
    )
    .await?;

    // Exactly the production daemon, pointed at this bus and broker.
    let mut daemon_config = Config::for_local(bus.address(), port, data_dir);
    daemon_config.mqtt.host = host.clone();
    daemon_config.portal_id = Some(portal.clone());
    daemon_config.limits = config.limits.clone();
    daemon_config.default_timeout = config.default_timeout;
    daemon_config.log_level = config.log_level.clone();
    let stop_daemon = CancellationToken::new();
    let mut daemon = tokio::spawn(crate::app::run(
        daemon_config,
        stop_daemon.clone().cancelled_owned(),
    ));

    // Ready once the daemon says it is online: it subscribed to the device topics before that.
    let online = async {
        while let Some(e) = events_rx.recv().await {
            let online = matches!(e, gateway::Event::DaemonOnline(true));
            let _ = view_tx.send(ViewEvent::Gateway(e));
            if online {
                return true;
            }
        }
        false
    };
    let outcome = tokio::select! {
        _ = &mut *shutdown => Outcome::Stop,
        done = &mut daemon => Outcome::DaemonEnded(done),
        online = tokio::time::timeout(DAEMON_START_TIMEOUT, online) => match online {
            Ok(true) => Outcome::Running,
            _ => Outcome::Failed(anyhow::anyhow!("the daemon did not come online on the broker within {DAEMON_START_TIMEOUT:?}")),
        },
    };

    let demo_cancel = CancellationToken::new();
    let mut demo = None;
    let outcome = match outcome {
        Outcome::Running => {
            let _ = view_tx.send(ViewEvent::Ready(Ready {
                listen: args.listen,
                portal_id: portal.as_str().to_string(),
                bus: bus.address().to_string(),
                bus_kind: bus.kind(),
                dbus_daemon_pid: bus.daemon_pid(),
                data_dir: data_dir.to_path_buf(),
                demo: args.demo,
                startup: started.elapsed(),
            }));
            if args.demo {
                demo = Some(tokio::spawn(demo::run(
                    host.clone(),
                    port,
                    demo_cancel.clone(),
                )));
            }
            loop {
                tokio::select! {
                    _ = &mut *shutdown => break Outcome::Stop,
                    done = &mut daemon => break Outcome::DaemonEnded(done),
                    Some(e) = events_rx.recv() => { let _ = view_tx.send(ViewEvent::Gateway(e)); }
                }
            }
        }
        other => other,
    };

    let _ = view_tx.send(ViewEvent::Stopping);
    // Keep forwarding the removals the view should see while things stop.
    let forward = {
        let view_tx = view_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events_rx.recv().await {
                let _ = view_tx.send(ViewEvent::Gateway(e));
            }
        })
    };
    demo_cancel.cancel();
    if let Some(demo) = demo {
        match tokio::time::timeout(Duration::from_secs(2), demo).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "demo devices"),
            Err(_) => tracing::warn!("the demo devices did not stop in time"),
            _ => {}
        }
    }
    stop_daemon.cancel();
    let result = match outcome {
        Outcome::DaemonEnded(done) => daemon_result(done),
        Outcome::Failed(e) => Err(e),
        Outcome::Stop | Outcome::Running => {
            match tokio::time::timeout(DAEMON_STOP_TIMEOUT, &mut daemon).await {
                Ok(done) => daemon_result(done),
                Err(_) => {
                    daemon.abort();
                    tracing::warn!("the daemon did not stop within {DAEMON_STOP_TIMEOUT:?}");
                    Ok(())
                }
            }
        }
    };
    gateway.stop().await;
    forward.abort();
    result
}

enum Outcome {
    Running,
    Stop,
    DaemonEnded(std::result::Result<Result<()>, tokio::task::JoinError>),
    Failed(anyhow::Error),
}

fn daemon_result(done: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    match done {
        Ok(r) => r.context("the daemon stopped"),
        Err(e) => Err(anyhow::Error::new(e).context("the daemon task failed")),
    }
}
