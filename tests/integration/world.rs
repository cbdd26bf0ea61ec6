//! Fixtures for the daemon: a real mosquitto on a free port, the daemon
//! running in-process with its own stop handle, a test device that
//! speaks the protocol over a real MQTT connection, and what follows the bus
//! (names, values). The benches include this file too (with `support.rs` and
//! `processes.rs`): one world for tests and measurements.

#![allow(dead_code)]

pub use super::processes::DaemonProcess;
use super::support::TestBus;
use dbus_mqtt_devices::app::Tuning;
use dbus_mqtt_devices::config::Config;
use dbus_mqtt_devices::ids::PortalId;
use dbus_mqtt_devices::settings::SettingsService;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use zbus::{OwnedVariant, Variant};

/// How long a test waits for one expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// The portal id the daemon is given in tests.
pub const PORTAL: &str = "c0ffee000001";

/// A mosquitto broker on 127.0.0.1, killed on drop.
pub struct TestBroker {
    child: Child,
    pub port: u16,
    /// With [`TestBroker::start_tls`]: the TLS port and the CA that signed its certificate.
    pub tls: Option<(u16, PathBuf)>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts mosquitto on a free port and waits until it listens.
    pub async fn start() -> TestBroker {
        let port = free_port();
        TestBroker::start_on(port).await
    }

    /// Starts mosquitto on `port` (used to restart a broker on the same port).
    pub async fn start_on(port: u16) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        TestBroker::start_in(dir, port, "", None).await
    }

    /// Starts mosquitto with no limit on the QoS 1 messages in flight to one client (20 by
    /// default), so that the benches measure the daemon rather than that default.
    pub async fn start_unthrottled() -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        TestBroker::start_in(dir, free_port(), "max_inflight_messages 0\n", None).await
    }

    /// Starts mosquitto with a plain listener and a TLS listener whose
    /// certificate (for 127.0.0.1) is signed by a CA made for this test.
    pub async fn start_tls() -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl not found: install package openssl");
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        // Mosquitto started as root reads its files as the `mosquitto` user.
        for file in ["ca.crt", "server.crt", "server.key"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let tls_port = free_port();
        let extra = format!(
            "listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n",
            ca = d.join("ca.crt").display(),
            crt = d.join("server.crt").display(),
            key = d.join("server.key").display(),
        );
        let ca = d.join("ca.crt");
        TestBroker::start_in(dir, free_port(), &extra, Some((tls_port, ca))).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        port: u16,
        extra: &str,
        tls: Option<(u16, PathBuf)>,
    ) -> TestBroker {
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nlistener {port} 127.0.0.1\n{extra}"
            ),
        )
        .expect("writing mosquitto.conf");
        let binary = ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|b| !b.starts_with('/') || Path::new(b).exists())
            .unwrap_or("mosquitto");
        let mut child = match Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("mosquitto not found: install package mosquitto (apt-get install mosquitto)")
            }
            Err(e) => panic!("starting mosquitto: {e}"),
        };
        // Mosquitto says when its socket is open; wait for that line.
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let listeners = if tls.is_some() { 2 } else { 1 };
        let ready = tokio::time::timeout(WAIT, async {
            let mut opened = 0;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Opening ipv4 listen socket") {
                    opened += 1;
                    if opened == listeners {
                        return true;
                    }
                }
                if line.contains("Error") {
                    panic!("mosquitto failed: {line}");
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "mosquitto did not open its port {port}");
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TestBroker {
            child,
            port,
            tls,
            _dir: dir,
        }
    }

    /// Mosquitto's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the broker is running")
    }

    /// Kills the broker and waits until it has exited.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local addr").port()
}

/// Our settings service on a bus, with its data directory.
pub struct Settings {
    pub service: Option<SettingsService>,
    pub dir: PathBuf,
}

impl Settings {
    /// Starts the settings service, persisting into `dir`.
    pub async fn start(bus: &TestBus, dir: &Path) -> Settings {
        let service = SettingsService::start(&bus.bus(), dir)
            .await
            .expect("starting the settings service");
        Settings {
            service: Some(service),
            dir: dir.to_path_buf(),
        }
    }

    /// Stops it (flushing its file).
    pub async fn stop(mut self) {
        if let Some(s) = self.service.take() {
            s.stop().await.expect("stopping the settings service");
        }
    }
}

/// The daemon, running in this process on the test's runtime.
pub struct Daemon {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    /// The configuration tests use: the test bus and broker, a fixed portal id.
    pub fn config(bus: &TestBus, broker_port: u16, data_dir: &Path) -> Config {
        let mut config = Config::for_local(&bus.address, broker_port, data_dir);
        config.portal_id = Some(PortalId::parse(PORTAL).expect("portal id"));
        config
    }

    /// Starts the daemon with `config`.
    pub fn start(config: Config) -> Daemon {
        Daemon::start_tuned(config, Tuning::default())
    }

    /// Starts the daemon with `config` and non-default timings or probes.
    pub fn start_tuned(config: Config, tuning: Tuning) -> Daemon {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(dbus_mqtt_devices::app::run_with(config, tuning, async {
            let _ = stopped.await;
        }));
        Daemon {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the daemon as SIGTERM would and waits for it; it must finish
    /// within the 2 s a supervisor allows.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .expect("daemon did not stop within 2 s")
                .expect("daemon task panicked");
            result.expect("daemon returned an error");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: String,
    pub retained: bool,
}

/// The daemon's presence topic: `{"online": 1}` once it is connected to the broker.
pub const PRESENCE: &str = "dbus-mqtt-devices/status";

/// The options every test client starts from: the broker on 127.0.0.1 at `port`, packets of
/// up to 1 MiB.
pub fn mqtt_options(port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    options
}

/// A device (or any MQTT client) with its own connection.
pub struct TestDevice {
    pub id: String,
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Received>,
    /// Messages passed over by [`TestDevice::expect`], kept for [`TestDevice::drain`].
    skipped: Vec<Received>,
    /// How long one `expect` or `next` waits.
    wait: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl TestDevice {
    /// Connects with client id `test-<id>` and subscribes to `device/<id>/#`.
    pub async fn connect(port: u16, id: &str) -> TestDevice {
        TestDevice::connect_with(port, id, None, &[&format!("device/{id}/#")]).await
    }

    /// Connects with an optional last will and the given subscriptions,
    /// returning once they are acknowledged.
    pub async fn connect_with(
        port: u16,
        id: &str,
        will: Option<(&str, &str)>,
        subscriptions: &[&str],
    ) -> TestDevice {
        let mut options = mqtt_options(port, &format!("test-{id}"));
        options.set_keep_alive(Duration::from_secs(5));
        if let Some((topic, payload)) = will {
            options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, false));
        }
        TestDevice::connect_options(id, options, 100, subscriptions).await
    }

    /// Connects as device `id` with `options` (see [`mqtt_options`]) and room for `capacity`
    /// requests, subscribes to `subscriptions` and returns once they are acknowledged.
    pub async fn connect_options(
        id: &str,
        options: MqttOptions,
        capacity: usize,
        subscriptions: &[&str],
    ) -> TestDevice {
        let (client, mut eventloop) = AsyncClient::new(options, capacity);
        // Without TCP_NODELAY every small message waits ~40 ms for the previous one's ACK.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        for topic in subscriptions {
            client
                .subscribe(*topic, QoS::AtLeastOnce)
                .await
                .expect("queue subscribe");
        }
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Received {
                            topic: p.topic,
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retained: p.retain,
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for _ in subscriptions {
            tokio::time::timeout(WAIT, subscribed_rx.recv())
                .await
                .expect("subscription acknowledged");
        }
        TestDevice {
            id: id.to_owned(),
            client,
            rx,
            skipped: Vec::new(),
            wait: WAIT,
            task,
        }
    }

    /// The same client, waiting up to `wait` (instead of [`WAIT`]) for each expected message.
    pub fn with_wait(mut self, wait: Duration) -> TestDevice {
        self.wait = wait;
        self
    }

    /// The MQTT client, for what the helpers here do not cover (other QoS, `try_publish`).
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Publishes `payload` on `topic` (QoS 1, not retained).
    pub async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("publish");
    }

    /// Publishes `payload` on `topic`, retained.
    pub async fn publish_retained(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.as_bytes().to_vec())
            .await
            .expect("publish");
    }

    /// Publishes any bytes on `device/<id>/<leaf>` (QoS 1, not retained).
    pub async fn send_bytes(&self, leaf: &str, payload: &[u8]) {
        self.client
            .publish(
                format!("device/{}/{leaf}", self.id),
                QoS::AtLeastOnce,
                false,
                payload.to_vec(),
            )
            .await
            .expect("publish");
    }

    /// Publishes on `device/<id>/<leaf>`.
    pub async fn send(&self, leaf: &str, payload: &str) {
        self.publish(&format!("device/{}/{leaf}", self.id), payload)
            .await;
    }

    /// Waits for the next message on `topic`, skipping others.
    pub async fn expect(&mut self, topic: &str) -> Received {
        self.expect_where(&format!("message on {topic}"), |m| m.topic == topic)
            .await
    }

    /// Waits for the next message that satisfies `want` (`what` names it when it does not
    /// come), skipping others.
    pub async fn expect_where(&mut self, what: &str, want: impl Fn(&Received) -> bool) -> Received {
        if let Some(i) = self.skipped.iter().position(&want) {
            return self.skipped.remove(i);
        }
        let skipped = &mut self.skipped;
        let rx = &mut self.rx;
        let wait = async {
            loop {
                let m = rx.recv().await.expect("device connection ended");
                if want(&m) {
                    return m;
                }
                skipped.push(m);
            }
        };
        tokio::time::timeout(self.wait, wait)
            .await
            .unwrap_or_else(|_| panic!("no {what} within {:?}", self.wait))
    }

    /// Waits for the next message on any topic (after those passed over by `expect`).
    pub async fn next(&mut self) -> Received {
        if !self.skipped.is_empty() {
            return self.skipped.remove(0);
        }
        tokio::time::timeout(self.wait, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within {:?}", self.wait))
            .expect("device connection ended")
    }

    /// Waits, with no time limit, until a message is there for [`TestDevice::try_next`].
    pub async fn arrived(&mut self) {
        if self.skipped.is_empty() {
            let m = self.rx.recv().await.expect("device connection ended");
            self.skipped.push(m);
        }
    }

    /// The next message if one is there (after those passed over by `expect`).
    pub fn try_next(&mut self) -> Option<Received> {
        if !self.skipped.is_empty() {
            return Some(self.skipped.remove(0));
        }
        self.rx.try_recv().ok()
    }

    /// Waits for the `DBus` reply and returns it parsed.
    pub async fn expect_dbus_reply(&mut self) -> serde_json::Value {
        let topic = format!("device/{}/DBus", self.id);
        let m = self.expect(&topic).await;
        serde_json::from_str(&m.payload).expect("DBus reply is JSON")
    }

    /// Registers with a v2 Status and returns the `DBus` reply.
    pub async fn register(&mut self, services: &str) -> serde_json::Value {
        let status = format!(
            r#"{{"clientId": "{}", "connected": 1, "version": "v1.0", "services": {services}}}"#,
            self.id
        );
        self.send("Status", &status).await;
        self.expect_dbus_reply().await
    }

    /// Waits for the next `Error` answer, parsed.
    pub async fn expect_error(&mut self) -> serde_json::Value {
        let topic = format!("device/{}/Error", self.id);
        let m = self.expect(&topic).await;
        serde_json::from_str(&m.payload).expect("Error payload is JSON")
    }

    /// Messages received and not yet consumed.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut all = std::mem::take(&mut self.skipped);
        while let Ok(m) = self.rx.try_recv() {
            all.push(m);
        }
        all
    }

    /// Disconnects cleanly (no last will).
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }

    /// Drops the connection without DISCONNECT, so the broker publishes the will.
    pub fn vanish(self) {
        self.task.abort();
    }
}

/// Waits until `watcher` (subscribed to [`PRESENCE`]) sees the daemon say it is online: a
/// fresh message, not one retained from an earlier daemon. Other messages stay with the
/// watcher for its next `expect`.
pub async fn until_online(watcher: &mut TestDevice) {
    watcher
        .expect_where("presence message saying the daemon is online", |m| {
            m.topic == PRESENCE && !m.retained && m.payload.contains("\"online\": 1")
        })
        .await;
}

/// `GetValue` on a path of a service.
pub async fn get_value(conn: &zbus::Connection, service: &str, path: &str) -> OwnedVariant {
    let reply = conn
        .call_method(
            Some(service),
            path,
            Some("com.victronenergy.BusItem"),
            "GetValue",
            &(),
        )
        .await
        .unwrap_or_else(|e| panic!("GetValue {service} {path}: {e}"));
    reply
        .body()
        .deserialize()
        .expect("GetValue returns a variant")
}

/// `SetValue` on a path; returns its code.
pub async fn set_value(
    conn: &zbus::Connection,
    service: &str,
    path: &str,
    value: Variant<'_>,
) -> i32 {
    let reply = conn
        .call_method(
            Some(service),
            path,
            Some("com.victronenergy.BusItem"),
            "SetValue",
            &(value,),
        )
        .await
        .unwrap_or_else(|e| panic!("SetValue {service} {path}: {e}"));
    reply.body().deserialize().expect("SetValue returns an int")
}

/// Whether `GetItems` on a service's root is answered within 5 s, as
/// dbus-flashmq needs when a service appears (it ignores one that is not).
pub async fn get_items_answers(conn: &zbus::Connection, service: &str) -> bool {
    let call = conn.call_method(
        Some(service),
        "/",
        Some("com.victronenergy.BusItem"),
        "GetItems",
        &(),
    );
    matches!(
        tokio::time::timeout(Duration::from_secs(5), call).await,
        Ok(Ok(_))
    )
}

/// Every bus name owned now.
pub async fn names(conn: &zbus::Connection) -> Vec<String> {
    let proxy = zbus::fdo::DBusProxy::new(conn).await.expect("DBus proxy");
    proxy
        .list_names()
        .await
        .expect("ListNames")
        .into_iter()
        .map(|n| n.to_string())
        .collect()
}

/// Connections on the bus now (their unique names).
pub async fn connections(conn: &zbus::Connection) -> usize {
    names(conn)
        .await
        .iter()
        .filter(|n| n.starts_with(':'))
        .count()
}

/// The owner (unique name) of a well-known name, if any.
pub async fn owner(conn: &zbus::Connection, name: &str) -> Option<String> {
    let proxy = zbus::fdo::DBusProxy::new(conn).await.expect("DBus proxy");
    let name = zbus::names::BusName::try_from(name.to_owned()).ok()?;
    proxy.get_name_owner(name).await.ok().map(|o| o.to_string())
}

/// Waits until `name` has no owner, by its NameOwnerChanged signal.
pub async fn wait_name_gone(conn: &zbus::Connection, name: &str) {
    wait_name(conn, name, false).await
}

/// Waits until `name` has an owner, by its NameOwnerChanged signal.
pub async fn wait_name_owned(conn: &zbus::Connection, name: &str) {
    wait_name(conn, name, true).await
}

async fn wait_name(conn: &zbus::Connection, name: &str, owned: bool) {
    use futures_util::StreamExt;
    let proxy = zbus::fdo::DBusProxy::new(conn).await.expect("DBus proxy");
    // Subscribe before looking, so that no change falls between the two.
    let mut changes = proxy
        .receive_name_owner_changed_with_args(&[(0, name)])
        .await
        .expect("NameOwnerChanged stream");
    if owner(conn, name).await.is_some() == owned {
        return;
    }
    let wait = async {
        while let Some(signal) = changes.next().await {
            let args = signal.args().expect("NameOwnerChanged args");
            if args.new_owner().is_some() == owned {
                return;
            }
        }
    };
    let state = if owned { "not owned" } else { "still owned" };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{name} {state} after {WAIT:?}"));
}

/// The bus names of our device services now on the bus.
pub async fn device_services(conn: &zbus::Connection) -> Vec<String> {
    let mut all: Vec<String> = names(conn)
        .await
        .into_iter()
        .filter(|n| n.starts_with("com.victronenergy.") && n.contains(".mqtt_"))
        .collect();
    all.sort();
    all
}

/// Follows NameOwnerChanged of the whole bus from its creation on: which names were ever
/// owned, and which are owned now.
pub struct NameLog {
    rx: mpsc::UnboundedReceiver<(String, bool)>,
    pub owned: std::collections::BTreeSet<String>,
    pub ever: std::collections::BTreeSet<String>,
    /// Names released since the log started.
    pub released: std::collections::BTreeSet<String>,
    /// How long `until` waits.
    wait: Duration,
    _task: tokio::task::JoinHandle<()>,
}

impl NameLog {
    /// Starts following (names owned already count as owned).
    pub async fn start(conn: &zbus::Connection) -> NameLog {
        use futures_util::StreamExt;
        let proxy = zbus::fdo::DBusProxy::new(conn).await.expect("DBus proxy");
        let mut changes = proxy
            .receive_name_owner_changed()
            .await
            .expect("NameOwnerChanged stream");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(signal) = changes.next().await {
                if let Ok(args) = signal.args() {
                    let name = args.name().to_string();
                    if !name.starts_with(':') {
                        let _ = tx.send((name, args.new_owner().is_some()));
                    }
                }
            }
        });
        let owned: std::collections::BTreeSet<String> = names(conn)
            .await
            .into_iter()
            .filter(|n| !n.starts_with(':'))
            .collect();
        NameLog {
            rx,
            ever: owned.clone(),
            owned,
            released: Default::default(),
            wait: WAIT,
            _task: task,
        }
    }

    /// The same log, with `until` waiting up to `wait` (instead of [`WAIT`]).
    pub fn with_wait(mut self, wait: Duration) -> NameLog {
        self.wait = wait;
        self
    }

    fn apply(&mut self, (name, owned): (String, bool)) {
        if owned {
            self.ever.insert(name.clone());
            self.owned.insert(name);
        } else {
            self.owned.remove(&name);
            self.released.insert(name);
        }
    }

    /// Applies what arrived so far; returns how many changes that was.
    pub fn update(&mut self) -> usize {
        let mut n = 0;
        while let Ok(change) = self.rx.try_recv() {
            self.apply(change);
            n += 1;
        }
        n
    }

    /// Waits, with no time limit, for the next change and applies it.
    pub async fn changed(&mut self) {
        let change = self.rx.recv().await.expect("NameOwnerChanged stream");
        self.apply(change);
    }

    /// Applies changes until none has come for `quiet`.
    pub async fn settle(&mut self, quiet: Duration) {
        while let Ok(Some(change)) = tokio::time::timeout(quiet, self.rx.recv()).await {
            self.apply(change);
        }
    }

    /// Applies changes until `done` holds for the owned names.
    pub async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&std::collections::BTreeSet<String>) -> bool,
    ) {
        self.until_seen(what, |log| done(&log.owned)).await
    }

    /// Applies changes until `done` holds for the log (owned names and names ever owned).
    pub async fn until_seen(&mut self, what: &str, done: impl Fn(&NameLog) -> bool) {
        let limit = self.wait;
        self.update();
        let wait = async {
            while !done(self) {
                let change = self.rx.recv().await.expect("NameOwnerChanged stream");
                self.apply(change);
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
            let owned: Vec<&String> = self.owned.iter().take(8).collect();
            panic!(
                "waited {limit:?} for {what}; {} names owned, first {owned:?}",
                self.owned.len()
            )
        });
    }

    /// Our device services owned now.
    pub fn device_services(&mut self) -> Vec<String> {
        self.update();
        self.owned
            .iter()
            .filter(|n| n.contains(".mqtt_"))
            .cloned()
            .collect()
    }
}

/// A whole world for one test: bus, settings service, broker, daemon.
pub struct World {
    pub bus: TestBus,
    pub broker: Option<TestBroker>,
    pub settings: Option<Settings>,
    pub daemon: Option<Daemon>,
    pub dir: tempfile::TempDir,
    pub conn: zbus::Connection,
}

impl World {
    /// Starts everything and waits until the daemon is connected to the broker
    /// (its presence topic is online).
    pub async fn start() -> World {
        let mut world = World::start_without_daemon().await;
        world.start_daemon().await;
        world
    }

    /// Starts the bus, the settings service and the broker; no daemon.
    pub async fn start_without_daemon() -> World {
        World::start_on(TestBus::start().await).await
    }

    /// Starts the settings service and the broker on `bus`; no daemon.
    pub async fn start_on(bus: TestBus) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("settings")).expect("settings dir");
        std::fs::create_dir_all(dir.path().join("daemon")).expect("daemon dir");
        let settings = Settings::start(&bus, &dir.path().join("settings")).await;
        let broker = TestBroker::start().await;
        let conn = bus.client().await;
        World {
            bus,
            broker: Some(broker),
            settings: Some(settings),
            daemon: None,
            dir,
            conn,
        }
    }

    /// The daemon's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("daemon")
    }

    /// Starts the daemon binary as a process on this world; `None` if it exits before it is
    /// online.
    pub async fn start_process(&self, extra: &[&str]) -> Option<DaemonProcess> {
        DaemonProcess::start(&self.bus, self.port(), &self.data_dir(), extra).await
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.broker.as_ref().expect("broker running").port
    }

    /// The daemon's configuration in this world.
    pub fn config(&self) -> Config {
        Daemon::config(&self.bus, self.port(), &self.dir.path().join("daemon"))
    }

    /// Starts the daemon and waits for its presence topic to say online.
    pub async fn start_daemon(&mut self) {
        self.start_daemon_with(self.config()).await;
    }

    /// Starts the daemon with a given configuration and waits until it is online.
    pub async fn start_daemon_with(&mut self, config: Config) {
        self.start_daemon_tuned(config, Tuning::default()).await;
    }

    /// Starts the daemon with a given configuration and tuning, and waits until it is online.
    pub async fn start_daemon_tuned(&mut self, config: Config, tuning: Tuning) {
        let mut watcher =
            TestDevice::connect_with(self.port(), "presence-watch", None, &[PRESENCE]).await;
        // A retained "online" from an earlier daemon may come first.
        let _ = watcher.drain();
        self.daemon = Some(Daemon::start_tuned(config, tuning));
        until_online(&mut watcher).await;
        watcher.disconnect().await;
    }

    /// Stops the daemon (as SIGTERM would).
    pub async fn stop_daemon(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }

    /// A connected test device.
    pub async fn device(&self, id: &str) -> TestDevice {
        TestDevice::connect(self.port(), id).await
    }
}

/// Waits until `GetValue` of `path` on `service` satisfies `want`, re-reading it whenever
/// the service signals a change (PropertiesChanged or ItemsChanged).
pub async fn wait_for_value(
    conn: &zbus::Connection,
    service: &str,
    path: &str,
    want: impl Fn(&OwnedVariant) -> bool,
) -> OwnedVariant {
    use futures_util::StreamExt;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(service)
        .interface("com.victronenergy.BusItem")
        .build()
        .expect("match rule");
    let mut changes = zbus::MessageStream::for_match_rule(rule, conn, None)
        .await
        .expect("signal stream");
    let wait = async {
        loop {
            let v = get_value(conn, service, path).await;
            if want(&v) {
                return v;
            }
            changes.next().await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{service} {path} did not reach the wanted value"))
}
