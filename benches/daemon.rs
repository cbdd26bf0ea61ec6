//! Measures the daemon as a separate process, with real parts around it, and prints figures;
//! it asserts nothing. Run with `cargo bench --bench daemon` (or `scripts/bench`).
//!
//! The world is the integration tests' (tests/integration/processes.rs and what it uses),
//! made only of processes: a private dbus-daemon, our settings service (`settings-service`
//! subcommand), a mosquitto on a free port, and the release binary of the daemon. The devices
//! are MQTT clients in this process (many devices share one connection: the protocol only
//! looks at topics). Readiness is awaited by events: the daemon's presence topic, the `DBus`
//! replies, and NameOwnerChanged on the bus.
//!
//! 1. Status → `DBus` reply latency, one device with two services, 100 register/unregister
//!    cycles; after each unregister the bench waits for NameOwnerChanged of both names.
//! 2. A burst of 100 devices × 2 services: time to the last reply, daemon CPU seconds.
//! 3. Daemon RSS idle and with 200 services.
//! 4. Restart recovery: SIGTERM, start again, time until all 200 names are owned again.
//! 5. Values: 100 devices × 5 paths at 1 Hz (daemon CPU), then the ceiling (values that reach
//!    D-Bus as `ItemsChanged` entries per second), then one `SetValue` per value from a
//!    separate client process (the D-Bus side of the gateway's `W/` path).
//! 6. dbus-daemon's built-in limits (what a system bus has unless configured otherwise): how
//!    many services fit under the connections-per-UID limit, and what the pending-replies limit
//!    does to a burst of 200 one-service devices and to their restoration after a restart.
//! 7. One device floods 16 services with `Values` while another registers (reply delay).
//! 8. RSS over 1000 register/unregister cycles.
//! 9. Mapped devices: 50 Shelly Pro 3EM declared in `devices.d/` (preset `shelly-pro3em`,
//!    grid), each sending its `em:0` status once a second (daemon CPU); then the latency of
//!    one meter's `em:0` to its `ItemsChanged` on D-Bus, from the publish and from the moment
//!    the broker delivered the same message to another subscriber.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rumqttc::QoS;
use tokio::process::Command;
use zbus::message::Type;
use zbus::{MatchRule, MessageStream};

// The test world, shared with the integration tests.
#[path = "../tests/integration/processes.rs"]
mod processes;
#[path = "../tests/integration/support.rs"]
mod support;
#[path = "../tests/integration/world.rs"]
mod world;

use processes::{cpu_seconds, rss_kib, DaemonProcess, ProcessWorld};
use support::TestBus;
use world::{connections, mqtt_options, until_online, TestBroker, TestDevice, PRESENCE};

const BUSITEM: &str = "com.victronenergy.BusItem";
/// Longest wait for any one expected event.
const WAIT: Duration = Duration::from_secs(30);

/// Client mode: this binary re-executed as a separate D-Bus client doing `SetValue`.
const CLIENT_BUS_ENV: &str = "BENCH_SETVALUE_BUS";
const CLIENT_SERVICES_ENV: &str = "BENCH_SETVALUE_SERVICES";
const CLIENT_RUN_FOR: Duration = Duration::from_secs(3);
const IN_FLIGHT: usize = 32;

/// Optional command prefix for the daemon (see [`Bench::spawn_daemon`]).
const WRAPPER_ENV: &str = "BENCH_DAEMON_WRAPPER";
/// The daemon's warning for a message it had no room for.
const DROPPED: &str = "message dropped";

const CYCLES: usize = 100;
const DEVICES: usize = 100;
const REALISTIC_FOR: Duration = Duration::from_secs(10);
const BLAST_FOR: Duration = Duration::from_secs(5);
const LIMIT_DEVICES: usize = 150;
const SMALL_DEVICES: usize = 200;
const PATHS: [&str; 5] = [
    "Temperature",
    "Humidity",
    "Pressure",
    "BatteryVoltage",
    "TxPower",
];

/// dbus-daemon's built-in limits, which a system bus gets unless its configuration raises
/// them (the test bus's own limits are roomy enough for hundreds of services, each one bus
/// connection).
const SYSTEM_DEFAULT_LIMITS: [(&str, usize); 5] = [
    ("max_completed_connections", 2048),
    ("max_incomplete_connections", 64),
    ("max_connections_per_user", 256),
    ("max_match_rules_per_connection", 512),
    ("max_replies_per_connection", 128),
];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(address) = std::env::var(CLIENT_BUS_ENV) {
        let services = std::env::var(CLIENT_SERVICES_ENV).unwrap_or_default();
        runtime.block_on(set_value_client(address, services));
    } else {
        runtime.block_on(bench());
    }
}

// ---- the measured world ------------------------------------------------------------------

/// The world the bench measures: bus, settings service and broker as processes, a watcher of
/// the daemon's presence and replies, a publisher for the devices (many devices share one
/// connection: the protocol only looks at topics), and the daemon.
struct Bench {
    world: ProcessWorld,
    watch: TestDevice,
    publisher: TestDevice,
    daemon: Option<DaemonProcess>,
}

impl Bench {
    /// Starts the world on `bus` and the daemon; returns with the time from the daemon's
    /// spawn to its (non-retained) presence message saying online.
    async fn start(bus: TestBus) -> (Bench, Duration) {
        // The broker without an in-flight limit towards the daemon: the bench measures the
        // daemon, not mosquitto's defaults.
        let world = ProcessWorld::start(bus, TestBroker::start_unthrottled().await, WAIT).await;
        let watch = mqtt(
            world.port(),
            "bench-watch",
            &[PRESENCE, "device/+/DBus", "device/+/Error"],
        )
        .await;
        let publisher = mqtt(world.port(), "bench-devices", &[]).await;
        let mut bench = Bench {
            world,
            watch,
            publisher,
            daemon: None,
        };
        let t0 = Instant::now();
        bench.spawn_daemon();
        until_online(&mut bench.watch).await;
        (bench, t0.elapsed())
    }

    /// Spawns the daemon (it finds its way onto the bus and the broker by itself); returns at
    /// once.
    fn spawn_daemon(&mut self) {
        // An optional command prefix for experiments, e.g. `env LD_PRELOAD=…` (it must exec
        // the daemon in place, so that the pid read for CPU and RSS is the daemon's).
        let wrapper = std::env::var(WRAPPER_ENV).unwrap_or_default();
        let wrapper: Vec<&str> = wrapper.split_whitespace().collect();
        let daemon = self.world.spawn_daemon(
            &wrapper,
            &[
                "--max-devices",
                "1000",
                "--max-services",
                "1000",
                "--log-level",
                "warn",
            ],
        );
        self.daemon = Some(daemon);
    }

    /// The daemon now running.
    fn daemon(&self) -> &DaemonProcess {
        self.daemon.as_ref().expect("the daemon is running")
    }

    /// SIGTERM; returns how long the daemon took to exit.
    async fn stop_daemon(&mut self) -> Duration {
        let daemon = self.daemon.take().expect("the daemon is running");
        let t = Instant::now();
        daemon.signal(libc::SIGTERM).await;
        t.elapsed()
    }

    /// What the daemon warned of, but for the messages it dropped (counted apart).
    fn warnings(&self) -> Vec<String> {
        let mut log = self.daemon().log();
        log.retain(|l| !l.contains(DROPPED));
        log
    }

    /// Registers `id` with `services` and returns the time to its `DBus` reply.
    async fn register(&mut self, id: &str, services: &str) -> Duration {
        let _ = self.watch.drain();
        let topic = format!("device/{id}/DBus");
        let t = Instant::now();
        self.publisher
            .publish(&format!("device/{id}/Status"), &status(id, services))
            .await;
        let got = tokio::time::timeout(
            WAIT,
            self.watch
                .expect_where("the DBus reply", |m| m.topic == topic),
        )
        .await;
        if got.is_err() {
            let w = self.warnings();
            panic!(
                "no DBus reply for {id} within {WAIT:?}; the daemon's last warnings: {:#?}",
                w.iter().rev().take(20).collect::<Vec<_>>()
            );
        }
        t.elapsed()
    }

    /// `connected: 0` for `id`, then waits until none of `names` is owned.
    async fn unregister(&mut self, id: &str, names: &[String]) {
        self.publisher
            .publish(&format!("device/{id}/Status"), &goodbye(id))
            .await;
        self.world
            .names
            .until("the services gone", |o| {
                !names.iter().any(|n| o.contains(n))
            })
            .await;
    }
}

/// One MQTT connection of the bench: its own sockets send at once, and its queues are deep
/// enough for a burst, so that what remains is the daemon's.
async fn mqtt(port: u16, id: &str, subscriptions: &[&str]) -> TestDevice {
    let mut options = mqtt_options(port, id);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_request_channel_capacity(10_000)
        .set_inflight(1000);
    TestDevice::connect_options(id, options, 10_000, subscriptions)
        .await
        .with_wait(WAIT)
}

/// The services of a device in most measurements.
const TWO_SERVICES: &str = r#"{"t1": "temperature", "tk1": "tank"}"#;
const ONE_SERVICE: &str = r#"{"t1": "temperature"}"#;

fn status(id: &str, services: &str) -> String {
    format!(r#"{{"clientId": "{id}", "connected": 1, "version": "v1.0", "services": {services}}}"#)
}

fn goodbye(id: &str) -> String {
    format!(r#"{{"clientId": "{id}", "connected": 0}}"#)
}

fn device_names(id: &str) -> [String; 2] {
    [
        format!("com.victronenergy.temperature.mqtt_{id}_t1"),
        format!("com.victronenergy.tank.mqtt_{id}_tk1"),
    ]
}

fn burst_id(i: usize) -> String {
    format!("b{i:03}")
}

/// Rejections seen on `device/+/Error`, by reason, counted.
type Reasons = BTreeMap<String, usize>;

/// The reason of an `Error` payload without the names in it: the innermost D-Bus error when
/// there is one, else the code and message.
fn add_reason(reasons: &mut Reasons, payload: &str) {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let message = v["message"].as_str().unwrap_or(payload);
    const DBUS_ERROR: &str = "org.freedesktop.DBus.Error.";
    let reason = match message.rfind(DBUS_ERROR) {
        Some(i) => message[i..].to_string(),
        None => format!("{}: {message}", v["error"]),
    };
    *reasons.entry(reason).or_default() += 1;
}

fn print_reasons(reasons: &Reasons) {
    for (reason, n) in reasons {
        println!("  {n} × rejected: {reason}");
    }
}

/// Registers devices `ids` at once; returns the time to the last `DBus` reply, the number of
/// services the replies list, and the rejections seen on `Error`.
async fn burst(
    publisher: &TestDevice,
    watch: &mut TestDevice,
    ids: &[String],
    services: &str,
) -> (Duration, usize, Reasons) {
    watch.drain();
    let t = Instant::now();
    for id in ids {
        publisher
            .publish(&format!("device/{id}/Status"), &status(id, services))
            .await;
    }
    let mut waiting: HashSet<String> = ids.iter().map(|id| format!("device/{id}/DBus")).collect();
    let mut services = 0;
    let mut reasons = Reasons::new();
    while !waiting.is_empty() {
        let m = watch
            .expect_where("the DBus replies of the burst", |m| {
                waiting.contains(&m.topic) || m.topic.ends_with("/Error")
            })
            .await;
        if m.topic.ends_with("/Error") {
            add_reason(&mut reasons, &m.payload);
            continue;
        }
        waiting.remove(&m.topic);
        let reply: serde_json::Value = serde_json::from_str(&m.payload).unwrap_or_default();
        services += reply
            .get("deviceInstance")
            .and_then(|d| d.as_object())
            .map_or(0, |d| d.len());
    }
    (t.elapsed(), services, reasons)
}

// ---- D-Bus -------------------------------------------------------------------------------

/// Counts `ItemsChanged` signals and their entries on the whole bus.
#[derive(Clone, Default)]
struct ItemsCounter {
    signals: Arc<AtomicU64>,
    entries: Arc<AtomicU64>,
    /// Milliseconds since `epoch` of the last signal.
    last_ms: Arc<AtomicU64>,
}

impl ItemsCounter {
    async fn start(conn: &zbus::Connection, epoch: Instant) -> ItemsCounter {
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .interface(BUSITEM)
            .member("ItemsChanged")
            .build()
            .expect("ItemsChanged match rule");
        let mut stream =
            MessageStream::for_match_rule(rule, conn, std::num::NonZeroUsize::new(100_000))
                .await
                .expect("ItemsChanged match rule");
        let counter = ItemsCounter::default();
        let c = counter.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let n = msg
                    .body()
                    .deserialize::<HashMap<String, HashMap<String, zbus::OwnedVariant>>>()
                    .map_or(0, |m| m.len());
                c.signals.fetch_add(1, Ordering::Relaxed);
                c.entries.fetch_add(n as u64, Ordering::Relaxed);
                c.last_ms
                    .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        });
        counter
    }

    fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    fn signals(&self) -> u64 {
        self.signals.load(Ordering::Relaxed)
    }

    /// Waits until no signal came for `quiet`.
    async fn settle(&self, quiet: Duration) {
        loop {
            let before = self.signals();
            tokio::time::sleep(quiet).await;
            if self.signals() == before {
                return;
            }
        }
    }
}

async fn get_f64(conn: &zbus::Connection, service: &str, path: &str) -> Option<f64> {
    let reply = conn
        .call_method(Some(service), path, Some(BUSITEM), "GetValue", &())
        .await
        .ok()?;
    let v: zbus::OwnedVariant = reply.body().deserialize().ok()?;
    match dbus_mqtt_devices::dbus::Value::from_variant(&v).ok()? {
        dbus_mqtt_devices::dbus::Value::F64(x) => Some(x),
        _ => None,
    }
}

/// The separate client process: `SetValue` on `/<path>` of the given services, round robin.
/// Prints `sequential <n/s>` and `pipelined <n/s>`.
async fn set_value_client(address: String, services: String) {
    let conn = dbus_mqtt_devices::dbus::BusAddress::Address(address.clone())
        .connect()
        .await
        .expect("client connection");
    let services: Arc<Vec<String>> = Arc::new(services.split(',').map(str::to_owned).collect());
    let call = |conn: zbus::Connection, services: Arc<Vec<String>>, n: u64| async move {
        let service = &services[(n as usize / PATHS.len()) % services.len()];
        let path = format!("/{}", PATHS[n as usize % PATHS.len()]);
        let value = zbus::Variant::F64(10.0 + (n % 1000) as f64 / 10.0);
        let r = conn
            .call_method(
                Some(service.as_str()),
                path.as_str(),
                Some(BUSITEM),
                "SetValue",
                &(value,),
            )
            .await
            .expect("SetValue");
        let code: i32 = r.body().deserialize().expect("SetValue reply");
        code == 0
    };
    let mut failed = 0u64;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < CLIENT_RUN_FOR {
        failed += u64::from(!call(conn.clone(), services.clone(), n).await);
        n += 1;
    }
    println!("sequential {:.0}", n as f64 / start.elapsed().as_secs_f64());

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..IN_FLIGHT {
        let (conn, services) = (conn.clone(), services.clone());
        tasks.spawn(async move {
            let (mut n, mut failed) = (0u64, 0u64);
            while start.elapsed() < CLIENT_RUN_FOR {
                let k = t as u64 + n * IN_FLIGHT as u64;
                failed += u64::from(!call(conn.clone(), services.clone(), k).await);
                n += 1;
            }
            (n, failed)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        let (n, f) = r.expect("client task");
        total += n;
        failed += f;
    }
    println!(
        "pipelined {:.0}",
        total as f64 / start.elapsed().as_secs_f64()
    );
    println!("failed {failed}");
}

/// Message `n` (counted over all devices): every value differs from the device's previous
/// one, so that each reaches D-Bus as a change.
fn values_payload(n: u64) -> String {
    let x = (n % 1_000_000) as f64 * 1e-4;
    format!(
        r#"{{"t1": {{"Temperature": {:.4}, "Humidity": {:.4}, "Pressure": {:.4}, "BatteryVoltage": {:.4}, "TxPower": {:.4}}}}}"#,
        10.0 + x,
        10.0 + x,
        950.0 + x,
        3.0 + x / 100.0,
        -20.0 + x,
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    let i = ((sorted.len() * p).div_ceil(100)).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// The 1-minute load average (other work on the machine shows here).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn section(title: &str) {
    println!("\n== {title}");
}

// ---- the bench ---------------------------------------------------------------------------

/// Which sections to run: `BENCH_SECTIONS`, e.g. `7,8` (default: all).
fn wanted(section: u32) -> bool {
    match std::env::var("BENCH_SECTIONS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .any(|s| s.trim().parse::<u32>() == Ok(section)),
        _ => true,
    }
}

async fn bench() {
    if (1..=5).any(wanted) {
        main_world().await;
    }
    if wanted(6) {
        // 6. The default limits of dbus-daemon.
        section("6. dbus-daemon's built-in limits (a system bus has them unless its configuration raises them)");
        limits().await;
    }
    if wanted(7) {
        section("7. One device floods 16 services with Values while another registers");
        flood().await;
    }
    if wanted(8) {
        section(&format!(
            "8. Memory over {LEAK_CYCLES} register/unregister cycles (one device, temperature + tank)"
        ));
        cycles().await;
    }
    if wanted(9) {
        section(&format!(
            "9. Mapped devices: {MAPPED_DEVICES} Shelly Pro 3EM (grid) at one em:0 a second"
        ));
        mapped().await;
    }
}

/// Sections 1–5: one world with the test bus's roomy limits.
async fn main_world() {
    let epoch = Instant::now();
    let (mut b, online) = Bench::start(TestBus::start().await).await;
    let items = ItemsCounter::start(&b.world.conn, epoch).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(b.daemon().pid);
    println!(
        "machine: {} CPUs, load average {}; daemon online (subscribed) {:.0} ms after spawn",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load(),
        online.as_secs_f64() * 1e3
    );

    // 1. Latency.
    section("1. Status → DBus reply, one device with two services (temperature + tank)");
    let lat = "lat";
    let lat_names = device_names(lat);
    let mut first = Duration::ZERO;
    let mut times = Vec::with_capacity(CYCLES);
    let mut leave = Vec::with_capacity(CYCLES);
    for cycle in 0..=CYCLES {
        let took = b.register(lat, TWO_SERVICES).await;
        b.world
            .names
            .until("both services owned", |o| {
                lat_names.iter().all(|n| o.contains(n))
            })
            .await;
        let t = Instant::now();
        b.unregister(lat, &lat_names).await;
        if cycle == 0 {
            first = took;
        } else {
            times.push(took);
            leave.push(t.elapsed());
        }
    }
    times.sort();
    leave.sort();
    println!(
        "first registration (instances allocated in localsettings): {:.2} ms",
        first.as_secs_f64() * 1e3
    );
    println!(
        "reply latency over {CYCLES} cycles: median {:.2} ms, p99 {:.2} ms, min {:.2} ms, max {:.2} ms (aim: median ≤ 10 ms)",
        percentile(&times, 50),
        percentile(&times, 99),
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "connected: 0 → both names released: median {:.2} ms, p99 {:.2} ms",
        percentile(&leave, 50),
        percentile(&leave, 99)
    );

    // 2. + 3. Burst and memory.
    section(&format!(
        "2. Burst: {DEVICES} devices × 2 services published at once"
    ));
    let ids: Vec<String> = (0..DEVICES).map(burst_id).collect();
    let cpu_before = cpu_seconds(b.daemon().pid);
    let (took, services, reasons) = burst(&b.publisher, &mut b.watch, &ids, TWO_SERVICES).await;
    let cpu = cpu_seconds(b.daemon().pid) - cpu_before;
    b.world
        .names
        .until("all burst services owned", |o| {
            o.iter().filter(|n| n.contains(".mqtt_b")).count() == 2 * DEVICES
        })
        .await;
    println!(
        "last reply after {:.0} ms ({services} services in the replies; aim ≤ 2 s); daemon CPU {:.2} s",
        took.as_secs_f64() * 1e3,
        cpu
    );
    print_reasons(&reasons);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full_rss = rss_kib(b.daemon().pid);
    section("3. Daemon memory (VmRSS)");
    println!(
        "idle after start: {} (aim ≤ 8 MB); with {} services registered: {} (aim ≤ 20 MB); {:.1} KiB per service",
        mib(idle_rss),
        b.world.names.device_services().len(),
        mib(full_rss),
        (full_rss.saturating_sub(idle_rss)) as f64 / b.world.names.device_services().len().max(1) as f64
    );

    // 4. Restart recovery.
    section(&format!(
        "4. Restart: {DEVICES} devices × 2 services back on D-Bus from the state file"
    ));
    let stop = b.stop_daemon().await;
    b.world
        .names
        .until("all services gone after SIGTERM", |o| {
            !o.iter().any(|n| n.contains(".mqtt_"))
        })
        .await;
    println!(
        "SIGTERM with {} services → process exited after {:.0} ms",
        2 * DEVICES,
        stop.as_secs_f64() * 1e3
    );
    let t0 = Instant::now();
    b.spawn_daemon();
    b.world
        .names
        .until("all services owned again", |o| {
            o.iter().filter(|n| n.contains(".mqtt_b")).count() == 2 * DEVICES
        })
        .await;
    let recovered = t0.elapsed();
    println!(
        "spawn → all {} services owned again: {:.0} ms (aim: within a second)",
        2 * DEVICES,
        recovered.as_secs_f64() * 1e3
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restored_rss = rss_kib(b.daemon().pid);
    println!(
        "RSS after the restart with {} services: {}",
        b.world.names.device_services().len(),
        mib(restored_rss)
    );

    // 5. Values.
    section(&format!(
        "5. Values: {DEVICES} devices × {} paths through device/<id>/Values",
        PATHS.len()
    ));
    let bus_pid = b.world.bus.pid();
    let broker_pid = b.world.broker.pid();
    let mut n = 0u64;
    let entries_before = items.entries();
    let cpu_before = (
        cpu_seconds(b.daemon().pid),
        cpu_seconds(bus_pid),
        cpu_seconds(broker_pid),
    );
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / DEVICES as u32);
    let mut sent = 0u64;
    while start.elapsed() < REALISTIC_FOR {
        tick.tick().await;
        let id = &ids[(sent as usize) % DEVICES];
        b.publisher
            .publish(&format!("device/{id}/Values"), &values_payload(n))
            .await;
        n += 1;
        sent += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = (
        cpu_seconds(b.daemon().pid),
        cpu_seconds(bus_pid),
        cpu_seconds(broker_pid),
    );
    items.settle(Duration::from_millis(300)).await;
    let delivered = items.entries() - entries_before;
    println!(
        "1 Hz per device for {:.0} s: {} values sent, {} reached D-Bus; CPU: daemon {:.1} %, dbus-daemon {:.1} %, mosquitto {:.1} % (of one core)",
        wall,
        sent * PATHS.len() as u64,
        delivered,
        (cpu_after.0 - cpu_before.0) / wall * 100.0,
        (cpu_after.1 - cpu_before.1) / wall * 100.0,
        (cpu_after.2 - cpu_before.2) / wall * 100.0,
    );

    // The ceiling: publish as fast as the connection takes them.
    let dropped_before = b.daemon().log_count(DROPPED);
    let (signals_before, entries_before) = (items.signals(), items.entries());
    let own_pid = std::process::id();
    let cpu_before = (
        cpu_seconds(b.daemon().pid),
        cpu_seconds(bus_pid),
        cpu_seconds(broker_pid),
        cpu_seconds(own_pid),
    );
    let start_ms = epoch.elapsed().as_millis() as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut last: HashMap<usize, u64> = HashMap::new();
    while start.elapsed() < BLAST_FOR {
        for _ in 0..DEVICES {
            let d = (sent as usize) % DEVICES;
            b.publisher
                .publish(&format!("device/{}/Values", ids[d]), &values_payload(n))
                .await;
            last.insert(d, n);
            n += 1;
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    let offered = start.elapsed().as_secs_f64();
    items.settle(Duration::from_millis(500)).await;
    let span = (items.last_ms.load(Ordering::Relaxed) - start_ms) as f64 / 1e3;
    let cpu_after = (
        cpu_seconds(b.daemon().pid),
        cpu_seconds(bus_pid),
        cpu_seconds(broker_pid),
        cpu_seconds(own_pid),
    );
    let delivered = items.entries() - entries_before;
    let signals = items.signals() - signals_before;
    let dropped = b.daemon().log_count(DROPPED) - dropped_before;
    println!(
        "ceiling (load average {}): {} Values messages ({} values) published in {:.1} s ({:.0} values/s offered)",
        load(),
        sent,
        sent * PATHS.len() as u64,
        offered,
        (sent * PATHS.len() as u64) as f64 / offered
    );
    println!(
        "  reached D-Bus: {delivered} values in {signals} ItemsChanged within {:.2} s = {:.0} values/s ({:.0} messages/s); daemon dropped {dropped} messages (device queue full)",
        span,
        delivered as f64 / span,
        signals as f64 / span
    );
    println!(
        "  CPU in those {:.2} s (% of one core): daemon {:.0} %, dbus-daemon {:.0} %, mosquitto {:.0} %, the bench's devices and signal counter {:.0} %",
        span,
        (cpu_after.0 - cpu_before.0) / span * 100.0,
        (cpu_after.1 - cpu_before.1) / span * 100.0,
        (cpu_after.2 - cpu_before.2) / span * 100.0,
        (cpu_after.3 - cpu_before.3) / span * 100.0,
    );
    let mut checked = 0;
    let mut current = 0;
    for d in [0usize, DEVICES / 2, DEVICES - 1] {
        if let Some(&k) = last.get(&d) {
            let want: serde_json::Value =
                serde_json::from_str(&values_payload(k)).expect("own payload");
            let want = want["t1"]["Temperature"].as_f64();
            let service = &device_names(&ids[d])[0];
            let got = get_f64(&b.world.conn, service, "/Temperature").await;
            checked += 1;
            current += usize::from(got.is_some() && got == want);
        }
    }
    println!("  GetValue /Temperature after the blast equals the last value sent: {current} of {checked} devices checked");

    // The D-Bus side of the gateway's W/ path: one SetValue per value, separate process.
    let services: Vec<String> = ids.iter().map(|id| device_names(id)[0].clone()).collect();
    let cpu_before = cpu_seconds(b.daemon().pid);
    let exe = std::env::current_exe().expect("own executable");
    let out = Command::new(exe)
        .env(CLIENT_BUS_ENV, &b.world.bus.address)
        .env(CLIENT_SERVICES_ENV, services.join(","))
        .output()
        .await
        .expect("client process");
    let cpu = cpu_seconds(b.daemon().pid) - cpu_before;
    if !out.status.success() {
        eprint!(
            "SetValue client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let figures: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let get = |k: &str| figures.get(k).cloned().unwrap_or_else(|| "?".into());
    println!(
        "one SetValue per value (the D-Bus side of W/ writes), separate process, {} services × {} paths: {} values/s one call at a time, {} values/s with {IN_FLIGHT} calls in flight; {} calls refused; daemon CPU {:.2} s in {:.0} s",
        services.len(),
        PATHS.len(),
        get("sequential"),
        get("pipelined"),
        get("failed"),
        cpu,
        2.0 * CLIENT_RUN_FOR.as_secs_f64()
    );

    let warnings = b.warnings();
    if !warnings.is_empty() {
        println!(
            "daemon warnings: {} lines, first: {}",
            warnings.len(),
            warnings[0]
        );
    }
    let stop = b.stop_daemon().await;
    println!(
        "\nSIGTERM after the value runs → exited after {:.0} ms",
        stop.as_secs_f64() * 1e3
    );
}

/// On a bus with dbus-daemon's built-in limits: a burst of [`LIMIT_DEVICES`] new devices, the
/// same devices again one at a time (up to the connection limit); then [`SMALL_DEVICES`]
/// devices with one service each, at once, and a restart of the daemon that restores them.
async fn limits() {
    let (mut b, _) = Bench::start(TestBus::start_with_limits(&SYSTEM_DEFAULT_LIMITS).await).await;

    let ids: Vec<String> = (0..LIMIT_DEVICES).map(burst_id).collect();
    let (_, _, reasons) = burst(&b.publisher, &mut b.watch, &ids, TWO_SERVICES).await;
    b.world.names.settle(Duration::from_millis(300)).await;
    println!(
        "a burst of {LIMIT_DEVICES} new devices × 2 services: {} of {} services registered",
        b.world.names.device_services().len(),
        2 * LIMIT_DEVICES
    );
    print_reasons(&reasons);

    // One at a time: the same devices again (each registers what is missing).
    let mut all = Reasons::new();
    let mut announced = 0;
    for id in &ids {
        let (_, _, reasons) = burst(
            &b.publisher,
            &mut b.watch,
            std::slice::from_ref(id),
            TWO_SERVICES,
        )
        .await;
        announced += 1;
        for (r, n) in reasons {
            *all.entry(r).or_default() += n;
        }
    }
    b.world.names.settle(Duration::from_millis(300)).await;
    let bus_names = connections(&b.world.conn).await;
    println!(
        "then one device at a time ({announced} Status messages, each awaiting its reply): {} services registered; connections on the bus: {bus_names}, of which the daemon's services {}",
        b.world.names.device_services().len(),
        b.world.names.device_services().len()
    );
    print_reasons(&all);

    // Many small devices: all leave, then come back with one service each, then a restart.
    for id in &ids {
        b.publisher
            .publish(&format!("device/{id}/Status"), &goodbye(id))
            .await;
    }
    b.world
        .names
        .until("all services gone", |o| {
            !o.iter().any(|n| n.contains(".mqtt_"))
        })
        .await;
    let small: Vec<String> = (0..SMALL_DEVICES).map(|i| format!("s{i:03}")).collect();
    let (_, _, reasons) = burst(&b.publisher, &mut b.watch, &small, ONE_SERVICE).await;
    b.world.names.settle(Duration::from_millis(300)).await;
    println!(
        "a burst of {SMALL_DEVICES} new devices × 1 service: {} of {SMALL_DEVICES} services registered",
        b.world.names.device_services().len()
    );
    print_reasons(&reasons);
    // Fill up what the burst missed, one at a time, then restart.
    for id in &small {
        burst(
            &b.publisher,
            &mut b.watch,
            std::slice::from_ref(id),
            ONE_SERVICE,
        )
        .await;
    }
    b.world.names.settle(Duration::from_millis(300)).await;
    let before = b.world.names.device_services().len();
    b.stop_daemon().await;
    b.world
        .names
        .until("all services gone after SIGTERM", |o| {
            !o.iter().any(|n| n.contains(".mqtt_"))
        })
        .await;
    let _ = b.watch.drain();
    b.spawn_daemon();
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.world.names.settle(Duration::from_millis(500)).await;
    let mut reasons = Reasons::new();
    while let Some(m) = b.watch.try_next() {
        if m.topic.ends_with("/Error") {
            add_reason(&mut reasons, &m.payload);
        }
    }
    println!(
        "restart with those {before} one-service devices (restored at once from the state file): {} back on D-Bus after 2 s",
        b.world.names.device_services().len()
    );
    print_reasons(&reasons);
    b.stop_daemon().await;
}

/// Registrations measured per phase of [`flood`].
const FLOOD_REGISTRATIONS: usize = 50;
/// Services of the flooding device.
const FLOOD_SERVICES: usize = 16;

/// Section 7: the reply delay of a registering device, alone and while another device floods
/// its 16 services with `Values` as fast as its MQTT connection and the broker take them.
async fn flood() {
    let (mut b, _) = Bench::start(TestBus::start().await).await;
    let flood_services: String = format!(
        "{{{}}}",
        (0..FLOOD_SERVICES)
            .map(|i| format!("\"t{i}\": \"temperature\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    b.register("flood", &flood_services).await;
    let other_names = device_names("other");

    // Alone.
    let mut alone = Vec::with_capacity(FLOOD_REGISTRATIONS);
    for _ in 0..FLOOD_REGISTRATIONS {
        alone.push(b.register("other", TWO_SERVICES).await);
        b.unregister("other", &other_names).await;
    }

    // With the flood, from a connection of its own.
    let flooder = mqtt(b.world.port(), "bench-flood", &[]).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (s, n) = (stop.clone(), sent.clone());
    let flood_task = tokio::spawn(async move {
        let mut k = 0u64;
        while !s.load(Ordering::Relaxed) {
            let x = (k % 100_000) as f64 * 1e-3;
            let body: Vec<String> = (0..FLOOD_SERVICES)
                .map(|i| format!("\"t{i}\": {{\"Temperature\": {:.3}}}", 10.0 + x + i as f64))
                .collect();
            flooder
                .client()
                .publish(
                    "device/flood/Values",
                    QoS::AtMostOnce,
                    false,
                    format!("{{{}}}", body.join(", ")).into_bytes(),
                )
                .await
                .expect("publish");
            k += 1;
            n.fetch_add(1, Ordering::Relaxed);
            if k.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
        flooder
    });
    // Let the flood reach its pace before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = cpu_seconds(b.daemon().pid);
    let (sent_before, t_flood) = (sent.load(Ordering::Relaxed), Instant::now());
    let mut flooded = Vec::with_capacity(FLOOD_REGISTRATIONS);
    for _ in 0..FLOOD_REGISTRATIONS {
        flooded.push(b.register("other", TWO_SERVICES).await);
        b.unregister("other", &other_names).await;
    }
    let flood_rate =
        (sent.load(Ordering::Relaxed) - sent_before) as f64 / t_flood.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(b.daemon().pid) - cpu_before) / t_flood.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _flooder = flood_task.await.expect("flood task");
    alone.sort();
    flooded.sort();
    println!(
        "reply delay of a device registering 2 services, {FLOOD_REGISTRATIONS} registrations each: alone median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&alone, 50),
        percentile(&alone, 99),
        percentile(&alone, 100),
    );
    println!(
        "while one device floods {FLOOD_SERVICES} services ({flood_rate:.0} Values messages/s offered, {} values each; daemon CPU {:.0} % of one core): median {:.2} ms, p99 {:.2} ms, max {:.2} ms (aim: < 50 ms)",
        FLOOD_SERVICES,
        cpu * 100.0,
        percentile(&flooded, 50),
        percentile(&flooded, 99),
        percentile(&flooded, 100),
    );
    b.stop_daemon().await;
}

/// Register/unregister cycles of section 8.
const LEAK_CYCLES: usize = 1000;

/// Section 8: the daemon's RSS over [`LEAK_CYCLES`] register/unregister cycles of one device
/// with two services, then as many re-announcements without unregistering.
async fn cycles() {
    let (mut b, _) = Bench::start(TestBus::start().await).await;
    let id = "cyc";
    let names = device_names(id);
    let pid = b.daemon().pid;
    let mut marks = Vec::new();
    for cycle in 1..=LEAK_CYCLES {
        b.register(id, TWO_SERVICES).await;
        b.world
            .names
            .until("both services owned", |o| {
                names.iter().all(|n| o.contains(n))
            })
            .await;
        b.unregister(id, &names).await;
        if cycle == 1 || cycle.is_multiple_of(LEAK_CYCLES / 4) {
            marks.push((cycle, rss_kib(pid)));
        }
    }
    let line: Vec<String> = marks
        .iter()
        .map(|(c, r)| format!("{c}: {}", mib(*r)))
        .collect();
    println!("RSS after cycle {}", line.join(", "));
    if let (Some(&(c0, r0)), Some(&(c1, r1))) = (marks.get(1), marks.last()) {
        println!(
            "growth from cycle {c0} to {c1}: {:.2} KiB per cycle",
            (r1 as f64 - r0 as f64) / (c1 - c0) as f64
        );
    }
    let mut marks = Vec::new();
    for n in 1..=LEAK_CYCLES {
        b.register(id, TWO_SERVICES).await;
        if n == 1 || n.is_multiple_of(LEAK_CYCLES / 4) {
            marks.push((n, rss_kib(pid)));
        }
    }
    let line: Vec<String> = marks
        .iter()
        .map(|(c, r)| format!("{c}: {}", mib(*r)))
        .collect();
    println!(
        "re-announcing without unregistering, RSS after {}",
        line.join(", ")
    );
    b.stop_daemon().await;
}

/// Mapped devices of section 9.
const MAPPED_DEVICES: usize = 50;
/// How long section 9 measures the CPU of the 1 Hz load.
const MAPPED_LOAD_FOR: Duration = Duration::from_secs(20);
/// Latency samples of section 9, and their pace (the other meters stay at 1 Hz).
const MAPPED_SAMPLES: usize = 200;
const MAPPED_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The MQTT topic prefix of mapped meter `i`, as a Shelly names itself.
fn meter_topic(i: usize) -> String {
    format!("shellypro3em-bench{i:06}")
}

/// The D-Bus name of mapped meter `i`.
fn meter_service(i: usize) -> String {
    format!("com.victronenergy.grid.mqtt_m{i:02}")
}

/// The declarations of section 9, as a user writes them.
fn meter_declarations() -> String {
    (0..MAPPED_DEVICES)
        .map(|i| {
            format!(
                "[[device]]\nid = \"m{i:02}\"\nservice = \"grid\"\npreset = \"shelly-pro3em\"\ntopic = \"{}\"\n\n",
                meter_topic(i)
            )
        })
        .collect()
}

/// An `em:0` status with the shape of a Pro 3EM's (research capture); every figure differs
/// with `n`, and the total power is `total` W.
fn em_payload(total: f64, n: u64) -> String {
    let x = (n % 1000) as f64 * 0.01;
    let p = total / 3.0;
    format!(
        r#"{{"id":0,"a_current":{ac:.3},"a_voltage":{av:.1},"a_act_power":{p:.1},"a_aprt_power":{ap:.1},"a_pf":0.95,"b_current":{ac:.3},"b_voltage":{bv:.1},"b_act_power":{p:.1},"b_aprt_power":{ap:.1},"b_pf":0.96,"c_current":{ac:.3},"c_voltage":{cv:.1},"c_act_power":{p:.1},"c_aprt_power":{ap:.1},"c_pf":0.97,"n_current":null,"total_current":{tc:.3},"total_act_power":{total:.3},"total_aprt_power":{ta:.3},"user_calibrated_phase":[]}}"#,
        ac = p / 230.0,
        av = 229.0 + x,
        bv = 230.0 + x,
        cv = 231.0 + x,
        ap = p / 0.95,
        tc = total / 230.0,
        ta = total / 0.95,
    )
}

/// Section 9: the daemon serving [`MAPPED_DEVICES`] mapped Shelly meters.
async fn mapped() {
    let epoch = Instant::now();
    let mut world = ProcessWorld::start(
        TestBus::start().await,
        TestBroker::start_unthrottled().await,
        WAIT,
    )
    .await;
    let declarations = world.data_dir().join("devices.d");
    std::fs::create_dir_all(&declarations).expect("devices.d");
    std::fs::write(declarations.join("bench.toml"), meter_declarations()).expect("bench.toml");
    let mut watch = mqtt(world.port(), "bench-watch", &[PRESENCE]).await;
    let t0 = Instant::now();
    let daemon = world.spawn_daemon(&[], &["--log-level", "warn"]);
    until_online(&mut watch).await;

    // The meters send from now on; the first message is what a meter's service may wait for.
    let publisher = mqtt(world.port(), "bench-meters", &[]).await;
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let meters = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / MAPPED_DEVICES as u32);
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let i = (n as usize) % MAPPED_DEVICES;
                // Meter 0 is left to the latency samples while they run.
                if i != 0 || !sampling.load(Ordering::Relaxed) {
                    let total = 500.0 + (n % 997) as f64;
                    publisher
                        .publish(
                            &format!("{}/status/em:0", meter_topic(i)),
                            &em_payload(total, n),
                        )
                        .await;
                }
                n += 1;
            }
        })
    };
    world
        .names
        .until("every mapped meter on D-Bus", |o| {
            (0..MAPPED_DEVICES).all(|i| o.contains(&meter_service(i)))
        })
        .await;
    println!(
        "{MAPPED_DEVICES} declared meters on D-Bus {:.0} ms after the daemon's spawn; RSS {}",
        t0.elapsed().as_secs_f64() * 1e3,
        mib(rss_kib(daemon.pid))
    );

    // CPU at 1 Hz per meter.
    let items = ItemsCounter::start(&world.conn, epoch).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = (daemon.pid, world.bus.pid(), world.broker.pid());
    let before = (
        cpu_seconds(pids.0),
        cpu_seconds(pids.1),
        cpu_seconds(pids.2),
    );
    let entries_before = items.entries();
    let start = Instant::now();
    tokio::time::sleep(MAPPED_LOAD_FOR).await;
    let wall = start.elapsed().as_secs_f64();
    let after = (
        cpu_seconds(pids.0),
        cpu_seconds(pids.1),
        cpu_seconds(pids.2),
    );
    let entries = items.entries() - entries_before;
    println!(
        "1 em:0 a second per meter for {wall:.0} s ({} messages, load average {}): {entries} values reached D-Bus; CPU: daemon {:.2} % (aim < 2 %), dbus-daemon {:.2} %, mosquitto {:.2} % (of one core); daemon RSS {}",
        (wall * MAPPED_DEVICES as f64).round(),
        load(),
        (after.0 - before.0) / wall * 100.0,
        (after.1 - before.1) / wall * 100.0,
        (after.2 - before.2) / wall * 100.0,
        mib(rss_kib(daemon.pid)),
    );

    // Latency of meter 0's em:0: its ItemsChanged carries the total power it was sent.
    sampling.store(true, Ordering::Relaxed);
    let (signal_tx, mut signals) = tokio::sync::mpsc::unbounded_channel::<(f64, Instant)>();
    let meter0 = meter_service(0);
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(meter0.as_str())
        .interface(BUSITEM)
        .member("ItemsChanged")
        .build()
        .expect("ItemsChanged of meter 0");
    let mut stream = MessageStream::for_match_rule(rule, &world.conn, None)
        .await
        .expect("ItemsChanged of meter 0");
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let at = Instant::now();
            let Ok(items) = msg
                .body()
                .deserialize::<HashMap<String, HashMap<String, zbus::OwnedVariant>>>()
            else {
                continue;
            };
            let power = items
                .get("/Ac/Power")
                .and_then(|item| item.get("Value"))
                .and_then(|v| dbus_mqtt_devices::dbus::Value::from_variant(v).ok())
                .and_then(|v| v.as_f64());
            if let Some(power) = power {
                let _ = signal_tx.send((power, at));
            }
        }
    });
    // Another subscriber of the topic: when the broker hands it the message, it hands the
    // daemon the same one.
    let topic = format!("{}/status/em:0", meter_topic(0));
    let (delivered_tx, mut delivered) = tokio::sync::mpsc::unbounded_channel::<(f64, Instant)>();
    {
        let mut options = mqtt_options(world.port(), "bench-peer");
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        client
            .subscribe(&topic, QoS::AtMostOnce)
            .await
            .expect("subscribing");
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        tokio::spawn(async move {
            let _client = client;
            while let Ok(event) = eventloop.poll().await {
                match event {
                    rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                        let at = Instant::now();
                        let total = serde_json::from_slice::<serde_json::Value>(&p.payload)
                            .ok()
                            .and_then(|v| v["total_act_power"].as_f64());
                        if let Some(total) = total {
                            let _ = delivered_tx.send((total, at));
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(WAIT, subscribed)
            .await
            .expect("the peer subscribed")
            .expect("the peer's task");
    }
    let sampler = mqtt(world.port(), "bench-meter0", &[]).await;
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(MAPPED_SAMPLE_EVERY);
    for k in 0..MAPPED_SAMPLES as u64 {
        tick.tick().await;
        // Whole watts, unlike the load's, so a value names its message.
        let total = 10_000.0 + k as f64;
        sent.insert(k, Instant::now());
        sampler.publish(&topic, &em_payload(total, k)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let by_total = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<(f64, Instant)>| {
        let mut at = HashMap::new();
        while let Ok((total, t)) = rx.try_recv() {
            if total >= 10_000.0 {
                at.entry((total - 10_000.0).round() as u64).or_insert(t);
            }
        }
        at
    };
    let on_bus = by_total(&mut signals);
    let at_peer = by_total(&mut delivered);
    let mut from_publish = Vec::new();
    let mut from_broker = Vec::new();
    for (k, t_sent) in &sent {
        if let Some(t_bus) = on_bus.get(k) {
            from_publish.push(t_bus.saturating_duration_since(*t_sent));
            if let Some(t_peer) = at_peer.get(k) {
                from_broker.push(t_bus.saturating_duration_since(*t_peer));
            }
        }
    }
    from_publish.sort();
    from_broker.sort();
    if from_publish.is_empty() || from_broker.is_empty() {
        println!(
            "em:0 → D-Bus: no sample matched ({} on D-Bus, {} at the peer of {MAPPED_SAMPLES})",
            on_bus.len(),
            at_peer.len()
        );
    } else {
        println!(
            "em:0 → ItemsChanged of its service, {} of {MAPPED_SAMPLES} messages ({} ms apart, the other meters at 1 Hz):",
            from_publish.len(),
            MAPPED_SAMPLE_EVERY.as_millis()
        );
        println!(
            "  from the broker's delivery (to another subscriber): median {:.2} ms, p99 {:.2} ms, max {:.2} ms (aim: median < 5 ms)",
            percentile(&from_broker, 50),
            percentile(&from_broker, 99),
            from_broker[from_broker.len() - 1].as_secs_f64() * 1e3
        );
        println!(
            "  from the publish call (includes the hop into the broker): median {:.2} ms, p99 {:.2} ms",
            percentile(&from_publish, 50),
            percentile(&from_publish, 99)
        );
    }
    meters.abort();
    let log = daemon.log();
    if !log.is_empty() {
        println!("daemon warnings: {} lines, first: {}", log.len(), log[0]);
    }
    let stop = Instant::now();
    daemon.signal(libc::SIGTERM).await;
    println!(
        "SIGTERM with {MAPPED_DEVICES} mapped meters → exited after {:.0} ms",
        stop.elapsed().as_secs_f64() * 1e3
    );
}
