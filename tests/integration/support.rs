//! Fixtures: a private dbus-daemon per test, and our settings service on it.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dbus_mqtt_devices::dbus::BusAddress;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Every test's overall limit.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` under [`TEST_TIMEOUT`], failing the test when it takes longer.
pub async fn timed<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(TEST_TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// A private dbus-daemon, killed on drop.
pub struct TestBus {
    child: Child,
    /// The bus address printed by the daemon.
    pub address: String,
    /// The bus's socket (and the configuration made for it, if any): removed with the bus.
    _dir: tempfile::TempDir,
}

/// The config of the private bus, checked in under tests/fixtures.
pub fn bus_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/private-bus.conf")
}

impl TestBus {
    /// Starts a daemon and waits for it to print its address.
    pub async fn start() -> TestBus {
        let dir = tempfile::tempdir().expect("temporary directory");
        TestBus::start_with(bus_config(), dir).await
    }

    /// Starts a daemon whose `max_connections_per_user` is `max` (the limit a system bus
    /// has, 256 by default, is what bounds the services of one machine).
    pub async fn start_with_connection_limit(max: usize) -> TestBus {
        TestBus::start_with_limits(&[("max_connections_per_user", max)]).await
    }

    /// Starts a daemon with the fixture's configuration but the given values of its
    /// `<limit>`s (each must be one the fixture names).
    pub async fn start_with_limits(limits: &[(&str, usize)]) -> TestBus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = std::fs::read_to_string(bus_config()).expect("the test bus config");
        for (name, value) in limits {
            let open = format!(r#"<limit name="{name}">"#);
            let start = config
                .find(&open)
                .unwrap_or_else(|| panic!("the fixture names {name}"))
                + open.len();
            let end = start + config[start..].find("</limit>").expect("a closed <limit>");
            config.replace_range(start..end, &value.to_string());
        }
        let path = dir.path().join("bus.conf");
        std::fs::write(&path, config).expect("writing the bus config");
        TestBus::start_with(path, dir).await
    }

    async fn start_with(config: PathBuf, dir: tempfile::TempDir) -> TestBus {
        // The socket in the test's own directory (the fixture's `tmpdir=/tmp` would leave
        // one file per bus behind in /tmp).
        let mut child = match Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg(format!("--address=unix:dir={}", dir.path().display()))
            .arg("--print-address")
            .arg("--nofork")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("dbus-daemon not found: install package dbus (apt-get install dbus)")
            }
            Err(e) => panic!("starting dbus-daemon: {e}"),
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("reading the bus address");
        let address = line.trim().to_string();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        TestBus {
            child,
            address,
            _dir: dir,
        }
    }

    /// The dbus-daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the bus is running")
    }

    /// The bus as the library names it.
    pub fn bus(&self) -> BusAddress {
        BusAddress::Address(self.address.clone())
    }

    /// A plain client connection.
    pub async fn client(&self) -> zbus::Connection {
        self.bus().connect().await.expect("client connection")
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Our settings service on a test bus, with its data in a temporary directory.
pub struct TestSettings {
    /// The running service (taken by `stop`).
    pub service: Option<dbus_mqtt_devices::settings::SettingsService>,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

impl TestSettings {
    /// Starts the settings service on `bus` with an empty data directory.
    pub async fn start(bus: &TestBus) -> TestSettings {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let service = dbus_mqtt_devices::settings::SettingsService::start(&bus.bus(), dir.path())
            .await
            .expect("starting the settings service");
        TestSettings {
            service: Some(service),
            dir,
        }
    }

    /// Stops the service (writing its file) and starts it again on the same directory.
    pub async fn restart(&mut self, bus: &TestBus) {
        if let Some(s) = self.service.take() {
            s.stop().await.expect("stopping the settings service");
        }
        self.service = Some(
            dbus_mqtt_devices::settings::SettingsService::start(&bus.bus(), self.dir.path())
                .await
                .expect("restarting the settings service"),
        );
    }
}
