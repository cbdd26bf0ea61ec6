//! The live view of `sim`: the device services on the bus with type, instance, names and
//! latest values, redrawn in the terminal a few times a second; or one JSON line per event
//! (`--json`) for scripts; or plain lines when stdout is not a terminal. Built only from what
//! the gateway reports: knows no D-Bus and no MQTT.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::gateway::Event;
use crate::dbus::Value;

/// At most this many redraws per second.
const REDRAW_EVERY: Duration = Duration::from_millis(250);
/// Lines of recent events under the services.
const RECENT: usize = 8;
/// Paths every service has that say nothing about the device's measurements.
const MANAGEMENT_PATHS: &[&str] = &[
    "/Connected",
    "/CustomName",
    "/DeviceInstance",
    "/DeviceName",
    "/FirmwareVersion",
    "/HardwareVersion",
    "/ProductId",
    "/ProductName",
    "/Serial",
];
/// localsettings is no device; its values stay out of the view (but not out of `--json`).
const SETTINGS_SERVICE: &str = crate::settings::SETTINGS_SERVICE;

/// Everything `sim` reports, in the order it happens.
#[derive(Debug)]
pub enum ViewEvent {
    /// Everything is up: devices may connect.
    Ready(Ready),
    /// Something the gateway saw.
    Gateway(Event),
    /// Ctrl-C or SIGTERM: stopping.
    Stopping,
}

/// What a newcomer (or a script) needs to connect.
#[derive(Clone, Debug)]
pub struct Ready {
    pub listen: std::net::SocketAddr,
    pub portal_id: String,
    pub bus: String,
    pub bus_kind: &'static str,
    pub dbus_daemon_pid: Option<u32>,
    pub data_dir: PathBuf,
    pub demo: bool,
    pub startup: Duration,
}

/// How the view writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn screen (a terminal).
    Screen,
    /// One readable line per event (stdout is a pipe or file).
    Lines,
    /// One JSON object per line.
    Json,
}

impl Mode {
    /// `--json`, else a screen on a terminal, else lines.
    pub fn pick(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stdout().is_terminal() {
            Mode::Screen
        } else {
            Mode::Lines
        }
    }
}

/// Runs the view until `events` closes.
pub fn spawn(mode: Mode, events: mpsc::UnboundedReceiver<ViewEvent>) -> JoinHandle<()> {
    tokio::spawn(run(mode, events))
}

/// One service as the view shows it.
struct Shown {
    service_type: String,
    instance: i64,
    values: BTreeMap<String, Value>,
}

#[derive(Default)]
struct Model {
    ready: Option<Ready>,
    daemon_online: bool,
    services: BTreeMap<String, Shown>,
    recent: VecDeque<String>,
}

async fn run(mode: Mode, mut events: mpsc::UnboundedReceiver<ViewEvent>) {
    let mut model = Model::default();
    let mut dirty = false;
    let mut tick = tokio::time::interval(REDRAW_EVERY);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                None => break,
                Some(e) => {
                    match mode {
                        Mode::Json => print_line(&json_line(&e).to_string()),
                        Mode::Lines => {
                            if let Some(line) = text_line(&e) {
                                print_line(&line);
                            }
                        }
                        Mode::Screen => dirty = true,
                    }
                    model.apply(e);
                }
            },
            _ = tick.tick(), if mode == Mode::Screen && dirty => {
                dirty = false;
                draw(&model);
            }
        }
    }
    if mode == Mode::Screen && dirty {
        // The last frame shows how things stopped.
        draw(&model);
    }
}

fn draw(model: &Model) {
    let mut out = std::io::stdout().lock();
    // Home and clear, then the whole frame: simple, and never garbled by a resize.
    let _ = write!(out, "\x1b[H\x1b[2J{}", model.render());
    let _ = out.flush();
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The `--json` line of an event.
pub fn json_line(e: &ViewEvent) -> serde_json::Value {
    match e {
        ViewEvent::Ready(r) => json!({
            "event": "ready",
            "listen": r.listen.to_string(),
            "port": r.listen.port(),
            "portalId": r.portal_id,
            "dbus": r.bus,
            "bus": r.bus_kind,
            "dbusDaemonPid": r.dbus_daemon_pid,
            "dataDir": r.data_dir.display().to_string(),
            "demo": r.demo,
            "startupMs": r.startup.as_millis() as u64,
        }),
        ViewEvent::Stopping => json!({ "event": "stopping" }),
        ViewEvent::Gateway(Event::DaemonOnline(online)) => {
            json!({ "event": "daemon", "online": online })
        }
        ViewEvent::Gateway(Event::ServiceAdded {
            service,
            service_type,
            instance,
            values,
        }) => json!({
            "event": "service_added",
            "service": service,
            "type": service_type,
            "instance": instance,
            "customName": values.get("/CustomName").map(Value::to_json),
            "productName": values.get("/ProductName").map(Value::to_json),
            "values": values.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
        }),
        ViewEvent::Gateway(Event::ServiceRemoved {
            service,
            service_type,
            instance,
        }) => json!({
            "event": "service_removed",
            "service": service,
            "type": service_type,
            "instance": instance,
        }),
        ViewEvent::Gateway(Event::ValueChanged {
            service,
            service_type,
            instance,
            path,
            value,
        }) => json!({
            "event": "value",
            "service": service,
            "type": service_type,
            "instance": instance,
            "path": path,
            "value": value.to_json(),
        }),
    }
}

/// A readable line for an event, for logs and pipes; `None` for the noisy ones.
fn text_line(e: &ViewEvent) -> Option<String> {
    Some(match e {
        ViewEvent::Ready(r) => ready_text(r),
        ViewEvent::Stopping => "stopping".into(),
        ViewEvent::Gateway(Event::DaemonOnline(online)) => {
            format!("daemon {}", if *online { "online" } else { "offline" })
        }
        ViewEvent::Gateway(Event::ServiceAdded {
            service,
            service_type,
            instance,
            values,
        }) => format!(
            "+ {service_type}/{instance} {} ({service})",
            display_name(values)
        ),
        ViewEvent::Gateway(Event::ServiceRemoved {
            service,
            service_type,
            instance,
        }) => format!("- {service_type}/{instance} ({service})"),
        ViewEvent::Gateway(Event::ValueChanged {
            service,
            service_type,
            instance,
            path,
            value,
        }) => {
            if service == SETTINGS_SERVICE {
                return None;
            }
            format!(
                "  {service_type}/{instance}{path} = {}",
                value.python_text()
            )
        }
    })
}

fn ready_text(r: &Ready) -> String {
    let bus = match r.dbus_daemon_pid {
        Some(pid) => format!("{} (pid {pid})", r.bus_kind),
        None => r.bus_kind.to_string(),
    };
    format!(
        "ready in {} ms: MQTT {}  portal id {}  D-Bus {}  data {}",
        r.startup.as_millis(),
        r.listen,
        r.portal_id,
        bus,
        r.data_dir.display()
    )
}

fn display_name(values: &BTreeMap<String, Value>) -> String {
    ["/CustomName", "/ProductName"]
        .iter()
        .filter_map(|p| values.get(*p).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_string()
}

impl Model {
    fn apply(&mut self, e: ViewEvent) {
        if let Some(line) = text_line(&e) {
            if !matches!(e, ViewEvent::Gateway(Event::ValueChanged { .. })) {
                let stamp = utc_clock();
                self.recent.push_back(format!("{stamp} {line}"));
                while self.recent.len() > RECENT {
                    self.recent.pop_front();
                }
            }
        }
        match e {
            ViewEvent::Ready(r) => self.ready = Some(r),
            ViewEvent::Stopping => {}
            ViewEvent::Gateway(Event::DaemonOnline(o)) => self.daemon_online = o,
            ViewEvent::Gateway(Event::ServiceAdded {
                service,
                service_type,
                instance,
                values,
            }) => {
                self.services.insert(
                    service,
                    Shown {
                        service_type,
                        instance,
                        values,
                    },
                );
            }
            ViewEvent::Gateway(Event::ServiceRemoved { service, .. }) => {
                self.services.remove(&service);
            }
            ViewEvent::Gateway(Event::ValueChanged {
                service,
                path,
                value,
                ..
            }) => {
                if let Some(s) = self.services.get_mut(&service) {
                    s.values.insert(path, value);
                }
            }
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("\x1b[1mdbus-mqtt-devices sim\x1b[0m  (Ctrl-C stops)\n");
        match &self.ready {
            Some(r) => {
                out.push_str(&format!(
                    "MQTT {}  portal id {}  D-Bus {}  daemon {}\n",
                    r.listen,
                    r.portal_id,
                    r.bus_kind,
                    if self.daemon_online {
                        "online"
                    } else {
                        "offline"
                    }
                ));
                out.push_str(&format!("data {}\n", r.data_dir.display()));
                out.push_str(&format!(
                    "\x1b[2mwatch: mosquitto_sub -p {port} -v -t 'N/{p}/#'  (after: mosquitto_pub -p {port} -t R/{p}/keepalive -n)\x1b[0m\n",
                    port = r.listen.port(),
                    p = r.portal_id
                ));
                out.push_str(&format!(
                    "\x1b[2mtools: dbus-mqtt-devices list|doctor|remove --mqtt-port {port} --portal-id {p} --dbus-address {bus} --data-dir {dir}\x1b[0m\n",
                    port = r.listen.port(),
                    p = r.portal_id,
                    bus = r.bus,
                    dir = r.data_dir.display()
                ));
            }
            None => out.push_str("starting…\n"),
        }
        out.push('\n');
        let devices: Vec<_> = self
            .services
            .iter()
            .filter(|(name, _)| name.as_str() != SETTINGS_SERVICE)
            .collect();
        if devices.is_empty() {
            out.push_str(
                "No device services yet. Publish a Status on device/<client id>/Status.\n",
            );
        }
        for (name, s) in devices {
            let connected = match s.values.get("/Connected").and_then(Value::as_i64) {
                Some(1) => "",
                _ => "  \x1b[33m(not connected)\x1b[0m",
            };
            out.push_str(&format!(
                "\x1b[1m{}/{}\x1b[0m  {}  \x1b[2m{}\x1b[0m{}\n",
                s.service_type,
                s.instance,
                display_name(&s.values),
                name,
                connected
            ));
            let shown: Vec<String> = s
                .values
                .iter()
                .filter(|(p, v)| {
                    v.is_valid()
                        && !p.starts_with("/Mgmt/")
                        && !MANAGEMENT_PATHS.contains(&p.as_str())
                })
                .map(|(p, v)| format!("{}={}", p.strip_prefix('/').unwrap_or(p), v.python_text()))
                .collect();
            let mut line = String::from("   ");
            for item in shown {
                if line.len() + item.len() > 100 {
                    out.push_str(&line);
                    out.push('\n');
                    line = String::from("   ");
                }
                line.push(' ');
                line.push_str(&item);
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("\nRecent:\n");
        for line in &self.recent {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// `HH:MM:SS` (UTC) without a date-time crate.
fn utc_clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}
