//! The private D-Bus of `sim`: a `dbus-daemon` started with a generated configuration in a
//! temporary directory when one is installed, else a bus embedded in this process (busd).
//! Knows nothing of Venus services, MQTT or the daemon: it only hands out an address.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::cli::BusKind;

/// How long the bus gets to print or report its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running private bus; stopped by [`PrivateBus::stop`] (or, for dbus-daemon, when dropped).
pub struct PrivateBus {
    address: String,
    running: Running,
    // Holds the socket (and the daemon's configuration) until the bus is gone.
    _dir: tempfile::TempDir,
}

enum Running {
    Daemon(Child),
    Embedded {
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// The configuration of the spawned dbus-daemon: a session-type bus on one socket where every
/// peer may own any name, as Venus' system bus allows root; limits raised for many devices.
fn daemon_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_connections_per_user">10000</limit>
  <limit name="max_completed_connections">10000</limit>
  <limit name="max_match_rules_per_connection">1024</limit>
</busconfig>
"#,
        socket.display()
    )
}

impl PrivateBus {
    /// Starts a bus of `kind` and returns once clients can connect to it.
    pub async fn start(kind: BusKind) -> Result<PrivateBus> {
        let dir = tempfile::Builder::new()
            .prefix("dbus-mqtt-devices-sim-")
            .tempdir()
            .context("creating a temporary directory for the private bus")?;
        match kind {
            BusKind::DbusDaemon => Self::spawn_daemon(dir).await,
            BusKind::Embedded => Self::embedded(dir).await,
            BusKind::Auto => match Self::spawn_daemon_or_missing(&dir).await? {
                Some((child, address)) => Ok(PrivateBus {
                    address,
                    running: Running::Daemon(child),
                    _dir: dir,
                }),
                None => {
                    tracing::info!("dbus-daemon is not installed; using the embedded bus");
                    Self::embedded(dir).await
                }
            },
        }
    }

    async fn spawn_daemon(dir: tempfile::TempDir) -> Result<PrivateBus> {
        match Self::spawn_daemon_or_missing(&dir).await? {
            Some((child, address)) => Ok(PrivateBus {
                address,
                running: Running::Daemon(child),
                _dir: dir,
            }),
            None => bail!(
                "dbus-daemon not found: install dbus-daemon (apt install dbus), \
                 or run with --bus embedded"
            ),
        }
    }

    /// `Ok(None)` when dbus-daemon is not installed.
    async fn spawn_daemon_or_missing(dir: &tempfile::TempDir) -> Result<Option<(Child, String)>> {
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, daemon_config(&dir.path().join("bus")))
            .context("writing the private bus configuration")?;
        let mut command = Command::new("dbus-daemon");
        command
            .arg(format!("--config-file={}", config.display()))
            .arg("--print-address")
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its only complaint on a PC is the fd limit it may not raise as a user.
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C in the terminal goes to `sim` alone, which stops
            // the daemon (releasing its names) before it ends the bus.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours. It makes the kernel
        // end the bus if this process dies without running its cleanup (SIGKILL, abort on
        // panic), so no dbus-daemon is ever left behind.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("starting dbus-daemon"),
        };
        let Some(stdout) = child.stdout.take() else {
            bail!("dbus-daemon's output is not readable");
        };
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
            .await
            .context("dbus-daemon printed no address in time")?;
        read.context("reading the address dbus-daemon printed")?;
        let address = line.trim().to_string();
        if address.is_empty() {
            let status = child.try_wait().ok().flatten();
            bail!("dbus-daemon exited without an address ({status:?})");
        }
        Ok(Some((child, address)))
    }

    async fn embedded(dir: tempfile::TempDir) -> Result<PrivateBus> {
        let address = format!("unix:path={}", dir.path().join("bus").display());
        let (ready_tx, ready_rx) = oneshot::channel::<Result<String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        // busd runs on its own runtime (zruntime), which needs a thread of its own.
        let thread = std::thread::Builder::new()
            .name("sim-bus".into())
            .spawn(move || zruntime::block_on(serve_embedded(address, ready_tx, stop_rx)))
            .context("starting the embedded bus thread")?;
        let address = tokio::time::timeout(START_TIMEOUT, ready_rx)
            .await
            .context("the embedded bus did not start in time")?
            .context("the embedded bus thread ended")??;
        Ok(PrivateBus {
            address,
            running: Running::Embedded {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            _dir: dir,
        })
    }

    /// The address clients connect to (`unix:path=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `dbus-daemon` or `embedded`, as shown to the user.
    pub fn kind(&self) -> &'static str {
        match self.running {
            Running::Daemon(_) => "dbus-daemon",
            Running::Embedded { .. } => "embedded",
        }
    }

    /// The pid of the spawned dbus-daemon, if one runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        match &self.running {
            Running::Daemon(child) => child.id(),
            Running::Embedded { .. } => None,
        }
    }

    /// Ends the bus: kills and reaps the dbus-daemon, or stops the embedded bus' thread.
    pub async fn stop(mut self) {
        match &mut self.running {
            Running::Daemon(child) => {
                if let Err(e) = child.kill().await {
                    tracing::warn!(error = %e, "stopping dbus-daemon");
                }
            }
            Running::Embedded { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    // Joining blocks, so it happens off the runtime's thread.
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            }
        }
    }
}

/// Runs busd on `address` until `stop`, reporting the address clients use (with its guid).
async fn serve_embedded(
    address: String,
    ready: oneshot::Sender<Result<String>>,
    stop: oneshot::Receiver<()>,
) {
    let mut bus = match busd::bus::Bus::for_address(Some(&address)).await {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(
                e.context(format!("starting the embedded bus on {address}"))
            ));
            return;
        }
    };
    let _ = ready.send(Ok(bus.address().to_string()));
    {
        let run = Box::pin(bus.run());
        if let futures_util::future::Either::Left((Err(e), _)) =
            futures_util::future::select(run, stop).await
        {
            tracing::error!(error = %format!("{e:#}"), "the embedded bus stopped");
        }
    }
    let _ = bus.cleanup().await;
}
