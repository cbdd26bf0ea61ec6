//! The binary as separate processes, as a supervisor runs them on a GX: the daemon with its
//! log kept, the settings service (`settings-service`), a world made only of processes for
//! the benches, and what /proc tells of a process (CPU, memory, open files).

#![allow(dead_code)]

use super::support::TestBus;
use super::world::{
    until_online, wait_name_owned, NameLog, TestBroker, TestDevice, PORTAL, PRESENCE, WAIT,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary the tests and benches run as a process (built with the target's profile).
pub const BINARY: &str = env!("CARGO_BIN_EXE_dbus-mqtt-devices");

/// The daemon binary as a separate process (as a supervisor runs it), its log kept.
pub struct DaemonProcess {
    child: Child,
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
    /// Lines read so far, to await new ones.
    lines: tokio::sync::watch::Receiver<usize>,
}

impl DaemonProcess {
    /// Spawns the daemon on `bus` and the broker at `port` with its data in `data_dir`,
    /// plus `extra` arguments; returns at once.
    pub fn spawn(bus: &TestBus, port: u16, data_dir: &Path, extra: &[&str]) -> DaemonProcess {
        DaemonProcess::spawn_at(&bus.address, port, data_dir, extra)
    }

    /// [`DaemonProcess::spawn`] with the bus given by its address.
    pub fn spawn_at(bus: &str, port: u16, data_dir: &Path, extra: &[&str]) -> DaemonProcess {
        DaemonProcess::spawn_via(&[], bus, port, data_dir, extra)
    }

    /// [`DaemonProcess::spawn_at`] through `wrapper`, a command and its arguments that run
    /// the binary given after them in their own place (as `env LD_PRELOAD=… <binary>` does),
    /// so that the pid is the daemon's. No wrapper: the binary itself.
    pub fn spawn_via(
        wrapper: &[&str],
        bus: &str,
        port: u16,
        data_dir: &Path,
        extra: &[&str],
    ) -> DaemonProcess {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BINARY);
                command
            }
            None => Command::new(BINARY),
        };
        let mut child = command
            .args(["--dbus-address", bus])
            .args(["--mqtt-port", &port.to_string()])
            .args(["--portal-id", PORTAL])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning the daemon");
        let pid = child.id().expect("daemon pid");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (count_tx, lines) = tokio::sync::watch::channel(0);
        let kept = log.clone();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let mut kept = kept.lock().expect("log lock");
                kept.push(line);
                count_tx.send_replace(kept.len());
            }
        });
        DaemonProcess {
            child,
            pid,
            log,
            lines,
        }
    }

    /// Spawns the daemon and waits until it is online, or returns `None` if it exits first.
    pub async fn start(
        bus: &TestBus,
        port: u16,
        data_dir: &Path,
        extra: &[&str],
    ) -> Option<DaemonProcess> {
        let mut watcher = TestDevice::connect_with(port, "process-watch", None, &[PRESENCE]).await;
        let _ = watcher.drain();
        let mut daemon = DaemonProcess::spawn(bus, port, data_dir, extra);
        let started = tokio::time::timeout(WAIT, async {
            tokio::select! {
                _ = until_online(&mut watcher) => true,
                _ = daemon.child.wait() => false,
            }
        })
        .await
        .expect("the daemon neither came online nor exited");
        watcher.disconnect().await;
        started.then_some(daemon)
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Log lines containing `text`.
    pub fn log_count(&self, text: &str) -> usize {
        let log = self.log.lock().expect("log lock");
        log.iter().filter(|l| l.contains(text)).count()
    }

    /// The latest log line containing `text`.
    pub fn last_log(&self, text: &str) -> Option<String> {
        let log = self.log.lock().expect("log lock");
        log.iter().rev().find(|l| l.contains(text)).cloned()
    }

    /// Waits until a log line contains `text`.
    pub async fn expect_log(&mut self, text: &str) {
        let wait = async {
            while self.log_count(text) == 0 {
                if self.lines.changed().await.is_err() {
                    panic!("the daemon's log ended without {text:?}: {:?}", self.log());
                }
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            panic!(
                "no log line with {text:?} within {WAIT:?}: {:?}",
                self.log()
            );
        }
    }

    /// Completes when the process exits (no time limit).
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        self.child.wait().await.expect("waiting for the daemon")
    }

    /// Waits for the process to exit by itself.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the daemon did not exit")
            .expect("waiting for the daemon")
    }

    /// Sends `signal` and waits for the process to exit.
    pub async fn signal(mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child with a valid signal number.
        unsafe {
            libc::kill(self.pid as i32, signal);
        }
        self.wait().await
    }
}

/// Our settings service as its own process (the binary's `settings-service` subcommand),
/// killed on drop.
pub struct SettingsProcess {
    child: Child,
}

impl SettingsProcess {
    /// The well-known name of the settings service.
    pub const NAME: &str = "com.victronenergy.settings";

    /// Starts it on `bus`, persisting into `dir`, and waits until it owns its name
    /// (NameOwnerChanged, seen through `conn`).
    pub async fn start(bus: &TestBus, conn: &zbus::Connection, dir: &Path) -> SettingsProcess {
        let child = Command::new(BINARY)
            .args(["settings-service", "--dbus-address", &bus.address])
            .arg("--data-dir")
            .arg(dir)
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning the settings service");
        wait_name_owned(conn, SettingsProcess::NAME).await;
        SettingsProcess { child }
    }
}

/// A world made only of processes, as on a GX: a private bus, our settings service and
/// mosquitto, each its own process, a connection that follows the bus's names, and the data
/// directories. The daemon binary runs on it with [`ProcessWorld::spawn_daemon`]. The
/// benches measure it: only their own clients share their process.
pub struct ProcessWorld {
    pub bus: TestBus,
    pub broker: TestBroker,
    pub settings: SettingsProcess,
    /// A client connection of the bench.
    pub conn: zbus::Connection,
    /// The names on the bus, followed from before the settings service started.
    pub names: NameLog,
    dir: tempfile::TempDir,
}

impl ProcessWorld {
    /// Starts the settings service on `bus`, next to `broker`; the name log waits up to
    /// `wait` for what it is asked to await.
    pub async fn start(bus: TestBus, broker: TestBroker, wait: Duration) -> ProcessWorld {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["settings", "daemon"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("data dirs");
        }
        let conn = bus.client().await;
        let names = NameLog::start(&conn).await.with_wait(wait);
        let settings = SettingsProcess::start(&bus, &conn, &dir.path().join("settings")).await;
        ProcessWorld {
            bus,
            broker,
            settings,
            conn,
            names,
            dir,
        }
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.broker.port
    }

    /// The daemon's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("daemon")
    }

    /// Spawns the daemon (through `wrapper`, see [`DaemonProcess::spawn_via`]) with `extra`
    /// arguments; returns at once.
    pub fn spawn_daemon(&self, wrapper: &[&str], extra: &[&str]) -> DaemonProcess {
        DaemonProcess::spawn_via(
            wrapper,
            &self.bus.address,
            self.port(),
            &self.data_dir(),
            extra,
        )
    }
}

/// CPU seconds (user and system) process `pid` has used; 0 when it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces): the state is field 3 of the line,
    // utime 14 and stime 15.
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 {
        per_second as f64
    } else {
        100.0
    };
    (ticks(11) + ticks(12)) as f64 / per_second
}

/// Resident memory (VmRSS) of process `pid`, KiB; 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
