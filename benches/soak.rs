//! The soak: a few hundred simulated devices against the daemon for minutes, with real
//! parts around it, at random but reproducibly (seeded), on loopback only. Run it with
//! `scripts/soak --minutes N` (plain `cargo bench` only prints how).
//!
//! The world: a private dbus-daemon with roomy limits, our settings service
//! (`settings-service`), mosquitto on a free port, and the release binary of the daemon as
//! its own process. The devices register, re-announce, change their services, send values
//! (now and then a refused one), send bad input, leave, vanish (their connection drops and
//! the broker publishes their last will) and come back; some keep their Status retained.
//! The daemon is restarted now and then, with SIGTERM or SIGKILL.
//!
//! Printed at the start, every minute and at the end: the daemon's RSS, open file
//! descriptors, CPU, the bus's connections, the daemon's task count (from its health log),
//! devices connected and services on D-Bus. At the end, once everything has settled, every
//! device that is connected must be on D-Bus with the instances it was answered, and no
//! other device service may be; the daemon must never have logged an internal error.
//! Exit code 1 otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rumqttc::{LastWill, QoS};

// The test world, shared with the integration tests.
#[path = "../tests/integration/processes.rs"]
mod processes;
#[path = "../tests/integration/support.rs"]
mod support;
#[path = "../tests/integration/world.rs"]
mod world;

use processes::{cpu_seconds, open_fds, rss_kib, DaemonProcess, ProcessWorld};
use support::TestBus;
use world::{connections, mqtt_options, until_online, Received, TestBroker, TestDevice, PRESENCE};

/// Longest wait for one expected event.
const WAIT: Duration = Duration::from_secs(60);
/// One step of the simulation: at most one device action per tick.
const TICK: Duration = Duration::from_millis(25);
/// Every connected device sends a value at least this often (a restored device that shows
/// no sign of life within 300 s is removed, as it should be).
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Devices that share one MQTT connection (the protocol only looks at topics).
const PER_CONNECTION: usize = 50;

const TYPES: [(&str, &[&str]); 4] = [
    ("temperature", &["Temperature", "Humidity"]),
    ("tank", &["Level", "Remaining"]),
    ("battery", &["Dc/0/Voltage", "Soc"]),
    ("meteo", &["Irradiance", "WindSpeed"]),
];

/// Messages that are refused as a whole: they must change nothing.
const BAD: [&str; 10] = [
    "{",
    "[1, 2, 3]",
    "\u{0}\u{1}\u{2}",
    r#"{"clientId": "ID", "connected": "1", "services": {"t1": "temperature"}}"#,
    r#"{"clientId": "ID", "connected": "ééééééééééééééééééééééééééééééééééééééé", "services": {}}"#,
    r#"{"clientId": "someone-else", "connected": 1, "services": {"t1": "temperature"}}"#,
    r#"{"clientId": "ID", "connected": 1, "services": []}"#,
    r#"{"clientId": "ID", "services": {"t1": "temperature"}}"#,
    r#"{"clientId": "ID", "connected": 1e309, "services": {}}"#,
    "null",
];

// ---- arguments --------------------------------------------------------------------------

struct Args {
    minutes: f64,
    devices: usize,
    seed: u64,
    /// Shortest and longest time between two daemon restarts, minutes.
    restart_every: (f64, f64),
}

fn args() -> Option<Args> {
    let mut a = Args {
        minutes: 0.0,
        devices: 300,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        restart_every: (3.0, 8.0),
    };
    let mut it = std::env::args().skip(1);
    let mut given = false;
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<f64>().ok());
        match arg.as_str() {
            "--minutes" => {
                a.minutes = value()?;
                given = true;
            }
            "--devices" => a.devices = value()? as usize,
            "--seed" => a.seed = value()? as u64,
            "--restart-every" => {
                let m = value()?;
                a.restart_every = (m, m * 2.0);
            }
            _ => {}
        }
    }
    given.then_some(a)
}

/// xorshift64*: reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() % 10_000) as f64 / 10_000.0
    }
}

// ---- processes and connections ----------------------------------------------------------

fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Log lines of a daemon fault: an internal error, or a panic.
fn internal_errors(daemon: &DaemonProcess) -> Vec<String> {
    let mut log = daemon.log();
    log.retain(|l| l.contains("internal error") || l.contains("panicked"));
    log
}

/// One MQTT connection with an optional last will (topic, payload, retained). Its
/// `vanish` drops the connection without DISCONNECT (the broker then publishes the will).
async fn link(
    port: u16,
    id: &str,
    will: Option<(String, String, bool)>,
    subscriptions: &[&str],
) -> TestDevice {
    let mut options = mqtt_options(port, id);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(200);
    if let Some((topic, payload, retain)) = will {
        options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, retain));
    }
    TestDevice::connect_options(id, options, 1000, subscriptions)
        .await
        .with_wait(WAIT)
}

/// Publishes without waiting for room in the client's queue (dropped when it is full).
fn send(link: &TestDevice, topic: String, payload: String, retain: bool) {
    let _ = link
        .client()
        .try_publish(topic, QoS::AtLeastOnce, retain, payload.into_bytes());
}

// ---- the simulated devices ----------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Pending {
    None,
    /// A Status with `connected: 1` awaits its reply.
    Register(Instant),
    /// `connected: 0` (or the last will) awaits the services' removal.
    Leave(Instant),
}

struct Sim {
    id: String,
    /// Service id → type.
    services: BTreeMap<String, &'static str>,
    /// What the daemon should hold: connected, with these instances (from the last reply).
    connected: bool,
    instances: BTreeMap<String, u64>,
    pending: Pending,
    /// Its Status (both states) is retained, as a careful device that uses retain does.
    retained: bool,
    /// Its own connection with a last will (else a shared one).
    own: Option<TestDevice>,
    shared: usize,
    last_value: Instant,
}

impl Sim {
    fn status(&self) -> String {
        let services: Vec<String> = self
            .services
            .iter()
            .map(|(s, t)| format!("\"{s}\": \"{t}\""))
            .collect();
        format!(
            r#"{{"clientId": "{}", "connected": 1, "version": "soak", "services": {{{}}}}}"#,
            self.id,
            services.join(", ")
        )
    }

    fn goodbye(&self) -> String {
        format!(r#"{{"clientId": "{}", "connected": 0}}"#, self.id)
    }

    fn names(&self) -> BTreeSet<String> {
        self.services
            .iter()
            .map(|(s, t)| format!("com.victronenergy.{t}.mqtt_{}_{s}", self.id))
            .collect()
    }
}

fn random_services(rng: &mut Rng) -> BTreeMap<String, &'static str> {
    let n = 1 + rng.below(3);
    (0..n)
        .map(|i| (format!("s{i}"), TYPES[rng.below(TYPES.len())].0))
        .collect()
}

fn paths_of(kind: &str) -> &'static [&'static str] {
    TYPES
        .iter()
        .find(|(t, _)| *t == kind)
        .map_or(&[], |(_, p)| p)
}

#[derive(Default)]
struct Counters {
    actions: u64,
    registrations: u64,
    replies: u64,
    leaves: u64,
    vanished: u64,
    values: u64,
    bad: u64,
    restarts_term: u64,
    restarts_kill: u64,
    errors: BTreeMap<String, u64>,
}

// ---- the soak -----------------------------------------------------------------------------

/// The world of processes, the observer of the replies, errors and presence, the shared
/// device connections, and the daemon now running.
struct Run {
    world: ProcessWorld,
    observer: TestDevice,
    shared: Vec<TestDevice>,
    daemon: Option<DaemonProcess>,
    started: Instant,
    cpu_mark: (Instant, f64),
    internal_errors: Vec<String>,
}

impl Run {
    async fn figures(&mut self, label: &str, sims: &[Sim], c: &Counters) {
        let Some(d) = &self.daemon else { return };
        let now = (Instant::now(), cpu_seconds(d.pid));
        let cpu = (now.1 - self.cpu_mark.1) / now.0.duration_since(self.cpu_mark.0).as_secs_f64();
        self.cpu_mark = now;
        let tasks = d
            .last_log("tasks=")
            .and_then(|l| field(&l, "tasks="))
            .map_or("?".to_string(), |n| n.to_string());
        println!(
            "{label:>6} {:>6.1} min | daemon RSS {:>6} KiB, fds {:>4}, CPU {:>4.1} %, tasks {:>5} | bus connections {:>4} | devices connected {:>3}, services on D-Bus {:>3} | actions {}, replies {}, values {}, bad {}, leaves {}, vanished {}, restarts {}+{}",
            self.started.elapsed().as_secs_f64() / 60.0,
            rss_kib(d.pid),
            open_fds(d.pid),
            cpu * 100.0,
            tasks,
            connections(&self.world.conn).await,
            sims.iter().filter(|s| s.connected).count(),
            self.world.names.device_services().len(),
            c.actions,
            c.replies,
            c.values,
            c.bad,
            c.leaves,
            c.vanished,
            c.restarts_term,
            c.restarts_kill,
        );
    }

    /// Starts the daemon and waits until it is online; what the observer receives meanwhile
    /// is handled next.
    async fn start_daemon(&mut self) {
        let daemon = self.world.spawn_daemon(
            &[],
            &[
                "--max-devices",
                "1000",
                "--max-services",
                "2000",
                "--log-level",
                "warn,dbus_mqtt_devices::health=debug",
            ],
        );
        until_online(&mut self.observer).await;
        self.cpu_mark = (Instant::now(), cpu_seconds(daemon.pid));
        self.daemon = Some(daemon);
    }

    async fn stop_daemon(&mut self, signal: i32) {
        if let Some(d) = self.daemon.take() {
            self.internal_errors.extend(internal_errors(&d));
            d.signal(signal).await;
        }
    }
}

/// What went wrong, for the verdict.
#[derive(Default)]
struct Faults(Vec<String>);

impl Faults {
    fn add(&mut self, what: String) {
        if self.0.len() < 50 {
            eprintln!("soak: {what}");
        }
        self.0.push(what);
    }
}

fn publish(run: &Run, sim: &Sim, topic: &str, payload: String, retain: bool) {
    let link = sim.own.as_ref().unwrap_or_else(|| &run.shared[sim.shared]);
    send(link, format!("device/{}/{topic}", sim.id), payload, retain);
}

/// Takes in what happened: the messages the observer received, and name changes (a device
/// that left is done once its names are gone).
fn take_in(
    run: &mut Run,
    sims: &mut [Sim],
    by_id: &HashMap<String, usize>,
    c: &mut Counters,
    faults: &mut Faults,
) {
    while let Some(m) = run.observer.try_next() {
        observe(m, sims, by_id, c, faults);
    }
    run.world.names.update();
    for sim in sims.iter_mut() {
        if let Pending::Leave(_) = sim.pending {
            if sim.names().is_disjoint(&run.world.names.owned) {
                sim.pending = Pending::None;
                sim.instances.clear();
            }
        }
    }
}

/// Handles one message the observer received.
fn observe(
    m: Received,
    sims: &mut [Sim],
    by_id: &HashMap<String, usize>,
    c: &mut Counters,
    faults: &mut Faults,
) {
    let Some(rest) = m.topic.strip_prefix("device/") else {
        return;
    };
    let Some((id, leaf)) = rest.split_once('/') else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap_or_default();
    if leaf == "Error" {
        let code = v["error"].as_str().unwrap_or("?").to_string();
        let expected = code != "not_registered" || id.starts_with("soakjunk");
        if !expected
            || ["internal_error", "registration_failed", "too_many_devices"]
                .contains(&code.as_str())
        {
            faults.add(format!("unexpected answer to {id}: {}", m.payload));
        }
        *c.errors.entry(code).or_default() += 1;
        return;
    }
    if leaf != "DBus" {
        return;
    }
    let Some(&i) = by_id.get(id) else { return };
    let sim = &mut sims[i];
    let replied: BTreeMap<String, u64> = v["deviceInstance"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let keys: BTreeSet<&String> = replied.keys().collect();
    let wanted: BTreeSet<&String> = sim.services.keys().collect();
    if let Pending::Register(_) = sim.pending {
        if keys == wanted {
            c.replies += 1;
            sim.connected = true;
            sim.pending = Pending::None;
            for (s, n) in &replied {
                if let Some(old) = sim.instances.get(s) {
                    if old != n {
                        // A service id keeps its instance for good (localsettings).
                        faults.add(format!("{id}/{s}: instance {old} became {n}"));
                    }
                }
            }
            sim.instances.extend(replied);
        }
    } else if sim.connected && keys == wanted {
        // Told again after a restart: the same instances.
        for (s, n) in &replied {
            if sim.instances.get(s) != Some(n) {
                faults.add(format!(
                    "{id}/{s}: restored with instance {n}, answered {:?} before",
                    sim.instances.get(s)
                ));
            }
        }
    }
}

async fn soak(args: Args) -> bool {
    let mut rng = Rng(args.seed | 1);
    println!(
        "soak: {} devices for {} min, seed {}, daemon restarts every {}–{} min (machine: {} CPUs)",
        args.devices,
        args.minutes,
        args.seed,
        args.restart_every.0,
        args.restart_every.1,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let world = ProcessWorld::start(TestBus::start().await, TestBroker::start().await, WAIT).await;
    let port = world.port();
    let observer = link(
        port,
        "soak-observer",
        None,
        &["device/+/DBus", "device/+/Error", PRESENCE],
    )
    .await;
    let mut shared = Vec::new();
    for k in 0..args.devices.div_ceil(PER_CONNECTION) {
        shared.push(link(port, &format!("soak-shared-{k}"), None, &[]).await);
    }
    let mut run = Run {
        world,
        observer,
        shared,
        daemon: None,
        started: Instant::now(),
        cpu_mark: (Instant::now(), 0.0),
        internal_errors: Vec::new(),
    };
    let mut sims: Vec<Sim> = (0..args.devices)
        .map(|i| Sim {
            id: format!("soak{i:03}"),
            services: random_services(&mut rng),
            connected: false,
            instances: BTreeMap::new(),
            pending: Pending::None,
            retained: i % 7 == 3,
            own: None,
            shared: i / PER_CONNECTION,
            last_value: Instant::now(),
        })
        .collect();
    let by_id: HashMap<String, usize> = sims
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    let with_will = |i: usize| i % 10 == 5;
    let mut c = Counters::default();
    let mut faults = Faults::default();

    run.start_daemon().await;
    run.figures("start", &sims, &c).await;
    let end = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let mut next_minute = Instant::now() + Duration::from_secs(60);
    let restart_in = |rng: &mut Rng| {
        Duration::from_secs_f64(rng.between(args.restart_every.0, args.restart_every.1) * 60.0)
    };
    let mut next_restart = Instant::now() + restart_in(&mut rng);
    let mut tick = tokio::time::interval(TICK);
    while Instant::now() < end {
        tick.tick().await;
        take_in(&mut run, &mut sims, &by_id, &mut c, &mut faults);
        if Instant::now() >= next_minute {
            next_minute += Duration::from_secs(60);
            run.figures("minute", &sims, &c).await;
        }
        if Instant::now() >= next_restart {
            next_restart = Instant::now() + restart_in(&mut rng);
            let kill = rng.chance(30);
            if kill {
                c.restarts_kill += 1;
            } else {
                c.restarts_term += 1;
            }
            run.stop_daemon(if kill { libc::SIGKILL } else { libc::SIGTERM })
                .await;
            run.start_daemon().await;
            // What got no answer is sent again, as a device does when the driver comes back.
            for sim in &mut sims {
                match sim.pending {
                    Pending::Register(_) => {
                        sim.pending = Pending::Register(Instant::now());
                        publish(&run, sim, "Status", sim.status(), sim.retained);
                    }
                    Pending::Leave(_) => {
                        publish(&run, sim, "Status", sim.goodbye(), sim.retained);
                    }
                    Pending::None => {}
                }
            }
        }
        // Sign of life from every connected device now and then.
        for sim in sims.iter_mut() {
            if sim.connected && sim.pending == Pending::None && sim.last_value.elapsed() > KEEPALIVE
            {
                sim.last_value = Instant::now();
                let payload = values_payload(sim, &mut rng, false);
                publish(&run, sim, "Values", payload, false);
                c.values += 1;
            }
        }
        // One random action.
        let i = rng.below(sims.len());
        let roll = rng.below(100);
        let sim = &mut sims[i];
        let idle = sim.pending == Pending::None;
        match roll {
            0..=29 if sim.connected && idle => {
                let bad_value = rng.chance(5);
                sim.last_value = Instant::now();
                let payload = values_payload(sim, &mut rng, bad_value);
                publish(&run, sim, "Values", payload, false);
                c.values += 1;
            }
            30..=44 if !sim.connected && idle => {
                if rng.chance(50) {
                    sim.services = random_services(&mut rng);
                }
                if with_will(i) && sim.own.is_none() {
                    let will = (
                        format!("device/{}/Status", sim.id),
                        sim.goodbye(),
                        sim.retained,
                    );
                    sim.own =
                        Some(link(port, &format!("soak-own-{}", sim.id), Some(will), &[]).await);
                }
                sim.pending = Pending::Register(Instant::now());
                publish(&run, sim, "Status", sim.status(), sim.retained);
                c.registrations += 1;
            }
            45..=54 if sim.connected && idle => {
                sim.pending = Pending::Register(Instant::now());
                publish(&run, sim, "Status", sim.status(), sim.retained);
                c.registrations += 1;
            }
            55..=59 if sim.connected && idle => {
                sim.services = random_services(&mut rng);
                sim.pending = Pending::Register(Instant::now());
                publish(&run, sim, "Status", sim.status(), sim.retained);
                c.registrations += 1;
            }
            60..=67 if sim.connected && idle => {
                sim.connected = false;
                sim.pending = Pending::Leave(Instant::now());
                publish(&run, sim, "Status", sim.goodbye(), sim.retained);
                c.leaves += 1;
            }
            68..=70 if sim.connected && idle && sim.own.is_some() => {
                // The connection drops: the broker publishes the last will.
                if let Some(link) = sim.own.take() {
                    link.vanish();
                }
                sim.connected = false;
                sim.pending = Pending::Leave(Instant::now());
                c.vanished += 1;
            }
            71..=75 => {
                // On a device's Status topic: refused as a whole, its registration (if any)
                // untouched. On the Values topic only of ids that never register, where
                // `not_registered` is the right answer.
                if rng.chance(70) {
                    let bad = BAD[rng.below(BAD.len())].replace("ID", &sim.id);
                    publish(&run, sim, "Status", bad, false);
                } else {
                    let junk = format!("soakjunk{}", rng.below(20));
                    let bad = BAD[rng.below(BAD.len())].replace("ID", &junk);
                    send(&run.shared[0], format!("device/{junk}/Values"), bad, false);
                }
                c.bad += 1;
            }
            _ => continue,
        }
        c.actions += 1;
    }

    // Quiesce: no new actions; what is pending gets its answer.
    run.figures("end", &sims, &c).await;
    let settle_until = tokio::time::Instant::now() + WAIT;
    loop {
        take_in(&mut run, &mut sims, &by_id, &mut c, &mut faults);
        let pending = sims.iter().filter(|s| s.pending != Pending::None).count();
        if pending == 0 {
            break;
        }
        // Whatever answers comes to the observer or as a name change.
        let answer = async {
            tokio::select! {
                _ = run.observer.arrived() => {}
                _ = run.world.names.changed() => {}
            }
        };
        if tokio::time::timeout_at(settle_until, answer).await.is_err() {
            faults.add(format!(
                "{pending} devices still without an answer after {WAIT:?}"
            ));
            break;
        }
    }
    // Settled: no name changes for two seconds.
    run.world.names.settle(Duration::from_secs(2)).await;

    // The check.
    let expected: BTreeSet<String> = sims
        .iter()
        .filter(|s| s.connected)
        .flat_map(|s| s.names())
        .collect();
    let owned: BTreeSet<String> = run.world.names.device_services().into_iter().collect();
    for name in expected.difference(&owned) {
        faults.add(format!("missing on D-Bus: {name}"));
    }
    for name in owned.difference(&expected) {
        faults.add(format!("on D-Bus but not connected: {name}"));
    }
    let mut checked = 0;
    for sim in sims.iter().filter(|s| s.connected) {
        for (sid, kind) in &sim.services {
            let name = format!("com.victronenergy.{kind}.mqtt_{}_{sid}", sim.id);
            if !owned.contains(&name) {
                continue;
            }
            let got = run
                .world
                .conn
                .call_method(
                    Some(name.as_str()),
                    "/DeviceInstance",
                    Some("com.victronenergy.BusItem"),
                    "GetValue",
                    &(),
                )
                .await
                .ok()
                .and_then(|r| r.body().deserialize::<zbus::OwnedVariant>().ok())
                .and_then(|v| i32::try_from(v).ok());
            checked += 1;
            if got.map(|g| g as u64) != sim.instances.get(sid).copied() {
                faults.add(format!(
                    "{name}: /DeviceInstance {got:?}, answered {:?}",
                    sim.instances.get(sid)
                ));
            }
        }
    }
    run.figures("final", &sims, &c).await;
    run.stop_daemon(libc::SIGTERM).await;
    for line in &run.internal_errors {
        faults.add(format!("daemon log: {line}"));
    }
    println!(
        "answers on Error by code: {}",
        c.errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "check: {} devices connected, {} services expected, {} owned, {checked} instances compared; {} faults",
        sims.iter().filter(|s| s.connected).count(),
        expected.len(),
        owned.len(),
        faults.0.len()
    );
    if faults.0.is_empty() {
        println!("soak: PASS");
        true
    } else {
        println!("soak: FAIL");
        false
    }
}

/// A Values message for all of a device's services; with `bad`, one value is a string
/// where a number belongs (refused, the others applied).
fn values_payload(sim: &Sim, rng: &mut Rng, bad: bool) -> String {
    let mut parts = Vec::new();
    for (sid, kind) in &sim.services {
        let paths: Vec<String> = paths_of(kind)
            .iter()
            .map(|p| format!("\"{p}\": {:.2}", rng.between(0.0, 90.0)))
            .collect();
        parts.push(format!("\"{sid}\": {{{}}}", paths.join(", ")));
    }
    if bad {
        if let Some((sid, kind)) = sim.services.iter().next() {
            if let Some(p) = paths_of(kind).first() {
                parts.push(format!("\"{sid}\": {{\"{p}\": \"high\"}}"));
            }
        }
    }
    format!("{{{}}}", parts.join(", "))
}

fn main() {
    let Some(args) = args() else {
        println!("soak: run `scripts/soak --minutes N [--devices N] [--seed S]`");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(soak(args));
    std::process::exit(if ok { 0 } else { 1 });
}
