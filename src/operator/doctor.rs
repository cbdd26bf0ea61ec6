//! `doctor`: one line per check, ✓ or ✗, with the fix. Host checks (D-Bus, localsettings,
//! the portal id, the Python driver, bus connection headroom, the data directory, the
//! clock) and device checks (registered, instance, values and their age, `/Connected`,
//! and the type-specific reasons a device is not where the user looks). The checks that
//! need a broker connection of their own (broker reachable, an MQTT gateway serving our
//! services) are made by the CLI ([`super::cli`]).

use super::activity::unix_now;
use super::bus;
use super::duration::human;
use super::report::{DeviceReport, Listing, ServiceState, REPORT_FORMAT};
use super::request::Target;
use crate::dbus::BusAddress;
use crate::settings::SETTINGS_SERVICE;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// One check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// A stable name (`dbus`, `localsettings`, `grid-ac-input`, …; see docs/protocol.md).
    pub check: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do about it (failed checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// `<client id>` or `<client id>/<service id>` for device checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Check {
    pub fn pass(check: &str, detail: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
            device: None,
        }
    }

    pub fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
            device: None,
        }
    }

    fn about(mut self, device: impl Into<String>) -> Check {
        self.device = Some(device.into());
        self
    }
}

/// A whole doctor run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DoctorReport {
    pub format: u32,
    pub generated_at: u64,
    /// Every check passed.
    pub healthy: bool,
    pub from_daemon: bool,
    pub checks: Vec<Check>,
}

impl DoctorReport {
    pub fn new(checks: Vec<Check>, from_daemon: bool) -> DoctorReport {
        DoctorReport {
            format: REPORT_FORMAT,
            generated_at: unix_now(),
            healthy: checks.iter().all(|c| c.ok),
            from_daemon,
            checks,
        }
    }
}

/// Where the files the host checks look at live (`/` on a GX; a test's directory).
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// What the host checks are given.
pub struct HostContext<'a> {
    /// `None`: D-Bus could not be reached (`bus` says which).
    pub conn: Option<&'a zbus::Connection>,
    pub bus: &'a BusAddress,
    pub data_dir: &'a Path,
    pub max_services: usize,
    pub root: &'a Path,
}

/// The Python driver's main script.
const PYTHON_SCRIPT: &str = "dbus_mqtt_devices.py";

/// dbus-daemon's default `max_connections_per_user` for the system bus.
pub const DEFAULT_CONNECTION_LIMIT: usize = 256;

/// The checks of the GX itself.
pub async fn host_checks(ctx: &HostContext<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let Some(conn) = ctx.conn else {
        checks.push(Check::fail(
            "dbus",
            format!("D-Bus not reachable ({})", ctx.bus),
            "on a GX the system bus is always there; on a PC give --dbus-address (sim prints it)",
        ));
        return checks;
    };
    checks.push(Check::pass(
        "dbus",
        format!("D-Bus reachable ({})", ctx.bus),
    ));
    match bus::has_owner(conn, SETTINGS_SERVICE).await {
        Ok(true) => checks.push(Check::pass(
            "localsettings",
            "com.victronenergy.settings is running",
        )),
        Ok(false) => checks.push(Check::fail(
            "localsettings",
            "com.victronenergy.settings is not on D-Bus: no device can get an instance",
            "check `svstat /service/localsettings`; on a PC run `dbus-mqtt-devices \
             settings-service`",
        )),
        Err(e) => checks.push(Check::fail("localsettings", e, "check that D-Bus answers")),
    }
    checks.extend(
        python_driver(
            conn,
            &Paths {
                root: ctx.root.to_path_buf(),
            },
        )
        .await,
    );
    checks.push(headroom(conn, ctx).await);
    checks.push(data_dir_writable(ctx.data_dir).await);
    checks.push(clock());
    checks
}

/// Whether a line of `/data/rc.local` starts the Python driver (as its setup.sh writes
/// them: `<base>/bin/setup-dependencies.sh` and `ln -s <base>/bin/service
/// /service/dbus-mqtt-devices`); commented-out lines do not.
fn starts_python_driver(line: &str) -> bool {
    let line = line.trim_start();
    !line.starts_with('#')
        && line.contains("dbus-mqtt-devices")
        && (line.contains("/bin/setup-dependencies.sh")
            || (line.contains("/bin/service") && line.contains("/service/dbus-mqtt-devices")))
}

/// The Python driver as packaging/installer/python-driver.sh finds it: a boot line in
/// rc.local, or `/service/dbus-mqtt-devices` being its service (a link to its `bin/service`,
/// or a run script that starts `dbus_mqtt_devices.py`). Its files left in /data/drivers
/// after it was retired do not count.
async fn python_driver(conn: &zbus::Connection, paths: &Paths) -> Vec<Check> {
    let mut found = Vec::new();
    let service = paths.at("/service/dbus-mqtt-devices");
    if let Ok(target) = tokio::fs::read_link(&service).await {
        if target.to_string_lossy().contains("/bin/service") {
            found.push(format!(
                "/service/dbus-mqtt-devices links to {}",
                target.display()
            ));
        }
    } else if let Ok(run) = tokio::fs::read_to_string(service.join("run")).await {
        if run.contains(PYTHON_SCRIPT) {
            found.push(format!("/service/dbus-mqtt-devices runs {PYTHON_SCRIPT}"));
        }
    }
    if let Ok(rc) = tokio::fs::read_to_string(paths.at("/data/rc.local")).await {
        if rc.lines().any(starts_python_driver) {
            found.push("/data/rc.local starts it at boot".into());
        }
    }
    let mut checks = vec![if found.is_empty() {
        Check::pass(
            "python-driver",
            "the Python driver (dbus-mqtt-devices 0.x) is not installed",
        )
    } else {
        Check::fail(
            "python-driver",
            format!("the Python driver is still installed: {}", found.join("; ")),
            "install this package again (its installer retires the Python driver and keeps its \
             settings), or remove its lines from /data/rc.local and reboot; both drivers answer \
             the same devices",
        )
    }];
    // Another process owning names of our form: both drivers answer the same devices.
    let mut foreign = Vec::new();
    for name in bus::names(conn).await.unwrap_or_default() {
        if super::inventory::split_bus_name(&name).is_none() {
            continue;
        }
        let process = bus::value(conn, &name, "/Mgmt/ProcessName").await.ok();
        let process = process.as_ref().and_then(Json::as_str).unwrap_or("?");
        if process != crate::device::venus_service::PROCESS_NAME {
            foreign.push(format!("{name} ({process})"));
        }
    }
    checks.push(if foreign.is_empty() {
        Check::pass(
            "name-conflict",
            "no other process registers services of our form",
        )
    } else {
        Check::fail(
            "name-conflict",
            format!(
                "services of our form registered by another process: {}",
                foreign.join(", ")
            ),
            "stop the other driver (the Python driver registers the same names)",
        )
    });
    checks
}

async fn headroom(conn: &zbus::Connection, ctx: &HostContext<'_>) -> Check {
    let names = bus::names(conn).await.unwrap_or_default();
    let connections = names.iter().filter(|n| n.starts_with(':')).count();
    let ours = names
        .iter()
        .filter(|n| super::inventory::split_bus_name(n).is_some())
        .count();
    let limit = connection_limit(ctx.root).await;
    let needed = connections.saturating_add(ctx.max_services.saturating_sub(ours));
    if needed <= limit {
        Check::pass(
            "bus-headroom",
            format!(
                "{connections} connections on the bus; up to {needed} with --max-services {} \
                 (limit {limit} per user)",
                ctx.max_services
            ),
        )
    } else {
        Check::fail(
            "bus-headroom",
            format!(
                "{connections} connections on the bus; --max-services {} could need {needed}, \
                 over dbus-daemon's limit of {limit} per user",
                ctx.max_services
            ),
            "lower --max-services, or raise max_connections_per_user in the bus configuration",
        )
    }
}

/// `max_connections_per_user` from the system bus configuration, else the default.
async fn connection_limit(root: &Path) -> usize {
    let paths = Paths {
        root: root.to_path_buf(),
    };
    for file in ["/etc/dbus-1/system-local.conf", "/etc/dbus-1/system.conf"] {
        if let Ok(text) = tokio::fs::read_to_string(paths.at(file)).await {
            let key = "name=\"max_connections_per_user\">";
            if let Some(rest) = text.split(key).nth(1) {
                if let Some(n) = rest.split('<').next().and_then(|n| n.trim().parse().ok()) {
                    return n;
                }
            }
        }
    }
    DEFAULT_CONNECTION_LIMIT
}

async fn data_dir_writable(dir: &Path) -> Check {
    let dir = dir.to_path_buf();
    let probe = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        tempfile::NamedTempFile::new_in(&dir).map(drop)
    })
    .await;
    match probe {
        Ok(Ok(())) => Check::pass("data-dir", "the data directory is writable"),
        Ok(Err(e)) => Check::fail(
            "data-dir",
            format!("the data directory is not writable: {e}"),
            "check that /data is mounted read-write and not full (`df /data`)",
        ),
        Err(e) => Check::fail("data-dir", e.to_string(), "try again"),
    }
}

/// 2024-01-01: a GX clock before this was never set.
const SANE_TIME: u64 = 1_704_067_200;

fn clock() -> Check {
    let now = unix_now();
    if now >= SANE_TIME {
        Check::pass("clock", "the GX's clock is set")
    } else {
        Check::fail(
            "clock",
            format!("the GX's clock says {now} s since 1970, before 2024"),
            "let the GX reach the internet (NTP) or set the time in Settings → General; ages and \
             --not-seen-for are wrong until then",
        )
    }
}

async fn number(conn: &zbus::Connection, service: &str, path: &str) -> Option<i64> {
    bus::value(conn, service, path)
        .await
        .ok()
        .and_then(|v| v.as_i64())
}

/// The checks of each device (or of the one `target` names).
pub async fn device_checks(
    conn: &zbus::Connection,
    listing: &Listing,
    target: Option<&Target>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    if target.is_none() {
        for e in &listing.declaration_errors {
            checks.push(Check::fail(
                "declarations",
                format!("a declaration file is not read: {e}"),
                "correct it; `dbus-mqtt-devices check-config` shows every mistake with file, \
                 line and column",
            ));
        }
    }
    let devices: Vec<&DeviceReport> = listing
        .devices
        .iter()
        .filter(|d| {
            target.is_none_or(|t| d.client_id == t.client.raw() || d.client_id == t.client.legal())
        })
        .collect();
    if let Some(t) = target {
        if devices.is_empty() {
            checks.push(
                Check::fail(
                    "registered",
                    "no device with this client id is known on this GX",
                    "check the client id in the device's topics (device/<client id>/Status) and \
                     that it publishes a Status with \"connected\": 1; for a mapped device, the \
                     id of its declaration (`dbus-mqtt-devices check-config` lists them)",
                )
                .about(t.client.raw()),
            );
            return checks;
        }
    }
    if let Some((t, id)) = target.and_then(|t| Some((t, t.service.as_ref()?))) {
        let has = |d: &&DeviceReport| {
            d.services
                .iter()
                .any(|s| s.service_id.as_deref() == Some(id.as_str()))
        };
        if !devices.iter().any(has) {
            checks.push(
                Check::fail(
                    "registered",
                    format!("no service {id} is known of {}", t.client.raw()),
                    "check the service id in the device's Status (`dbus-mqtt-devices list` \
                     shows its services)",
                )
                .about(format!("{}/{id}", t.client.raw())),
            );
            return checks;
        }
    }
    for device in devices {
        if let Some(e) = &device.last_error {
            checks.push(
                Check::fail(
                    "device-error",
                    format!("last refusal: {e}"),
                    "see the device's Error topic and fix what it sends",
                )
                .about(&device.client_id),
            );
        }
        for s in &device.services {
            if let Some(id) = target.and_then(|t| t.service.as_ref()) {
                if s.service_id.as_deref() != Some(id.as_str()) {
                    continue;
                }
            }
            let who = match &s.service_id {
                Some(id) => format!("{}/{id}", device.client_id),
                None => device.client_id.clone(),
            };
            checks.extend(
                service_checks(conn, listing.generated_at, listing.from_daemon, device, s)
                    .await
                    .into_iter()
                    .map(|c| c.about(&who)),
            );
        }
    }
    checks
}

async fn service_checks(
    conn: &zbus::Connection,
    now: u64,
    from_daemon: bool,
    device: &DeviceReport,
    s: &super::report::ServiceReport,
) -> Vec<Check> {
    if let Some(m) = &s.mapped {
        let mut checks = super::mapped_checks::checks(&device.client_id, now, from_daemon, s, m);
        if let Some(name) = s.dbus_name.as_deref().filter(|_| s.state != ServiceState::Offline) {
            let kind = s.service_type.as_deref().unwrap_or("?");
            checks.extend(type_checks(conn, name, kind, s.instance).await);
        }
        return checks;
    }
    let mut checks = Vec::new();
    let instance = s
        .instance
        .map_or("no instance".into(), |i| format!("instance {i}"));
    let kind = s.service_type.as_deref().unwrap_or("?");
    match s.state {
        ServiceState::Online => checks.push(Check::pass(
            "registered",
            format!(
                "on D-Bus as {} ({kind}, {instance}), /Connected 1",
                s.dbus_name.as_deref().unwrap_or("?")
            ),
        )),
        ServiceState::Stale => checks.push(Check::fail(
            "registered",
            format!("on D-Bus ({kind}, {instance}) but /Connected 0: no value within its timeout"),
            "check that the device still sends values (its Values, Proxy or W/ topics)",
        )),
        ServiceState::Refused => checks.push(Check::fail(
            "registered",
            format!(
                "declared but not on D-Bus: {}",
                s.last_error
                    .as_deref()
                    .unwrap_or("refused (see the device's Error topic)")
            ),
            "fix what the Error topic names and send the Status again",
        )),
        ServiceState::Offline => {
            let seen = device
                .last_seen
                .map_or("never seen by this version".into(), |t| {
                    format!("last seen {} ago", human(now.saturating_sub(t)))
                });
            checks.push(Check::fail(
                "registered",
                format!("not connected ({kind}, {instance} kept in localsettings); {seen}"),
                "power the device and check it publishes its Status with \"connected\": 1; or \
                 `dbus-mqtt-devices remove` it to free the instance",
            ));
        }
    }
    if s.state == ServiceState::Online || s.state == ServiceState::Stale {
        // A refused value is stamped as a value too: a refusal since the last value means
        // the values are not getting through.
        let refused = s
            .last_error
            .as_deref()
            .zip(s.last_error_at)
            .filter(|(_, at)| s.last_value_at.is_none_or(|v| *at >= v));
        let invalid = match (s.service_type.as_deref(), s.dbus_name.as_deref()) {
            (Some(kind), Some(name)) => main_value_invalid(conn, name, kind).await,
            _ => None,
        };
        if let Some((e, at)) = refused {
            checks.push(Check::fail(
                "values",
                format!("values refused {} ago: {e}", human(now.saturating_sub(at))),
                "see the device's Error topic and fix what it sends",
            ));
        } else if s.last_value_at.is_none() && from_daemon {
            checks.push(Check::fail(
                "values",
                "no value received since the daemon started: the GX shows ---",
                "send values (device/<client id>/Values, or W/<portal \
                 id>/<type>/<instance>/<path>)",
            ));
        } else if let Some(path) = invalid {
            checks.push(Check::fail(
                "values",
                format!("{path} is invalid on D-Bus: the GX shows ---"),
                "send a valid value for it (device/<client id>/Values, or W/<portal \
                 id>/<type>/<instance>/<path>)",
            ));
        } else {
            checks.push(match s.last_value_at {
                Some(t) => Check::pass(
                    "values",
                    format!("last value {} ago", human(now.saturating_sub(t))),
                ),
                None => Check::pass(
                    "values",
                    "the age of the last value is known to the running daemon only",
                ),
            });
        }
    }

    let Some(name) = s
        .dbus_name
        .as_deref()
        .filter(|_| s.state != ServiceState::Offline)
    else {
        return checks;
    };
    checks.extend(type_checks(conn, name, kind, s.instance).await);
    checks
}

/// The value a service of `kind` is shown by, where one path is it.
fn main_path(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "temperature" => "/Temperature",
        "tank" => "/Level",
        "grid" | "acload" | "pvinverter" | "genset" => "/Ac/Power",
        "battery" | "dcload" | "dcsource" | "dcsystem" => "/Dc/0/Voltage",
        "meteo" => "/Irradiance",
        _ => return None,
    })
}

/// The main value's path if it is invalid on D-Bus (a path that is not there is not said
/// invalid: a device may leave it out).
async fn main_value_invalid(
    conn: &zbus::Connection,
    name: &str,
    kind: &str,
) -> Option<&'static str> {
    let path = main_path(kind)?;
    let value = bus::value(conn, name, path).await.ok()?;
    let invalid = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
    invalid.then_some(path)
}

const AC_INPUT_TYPES: [&str; 4] = ["not used", "grid", "generator", "shore"];

fn ac_input_type(n: Option<i64>) -> &'static str {
    n.and_then(|n| usize::try_from(n).ok())
        .and_then(|n| AC_INPUT_TYPES.get(n).copied())
        .unwrap_or("unknown")
}

/// The type-specific reasons a device is not where the user looks.
async fn type_checks(
    conn: &zbus::Connection,
    name: &str,
    kind: &str,
    instance: Option<u32>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match kind {
        "grid" => {
            let in1 = number(conn, SETTINGS_SERVICE, "/Settings/SystemSetup/AcInput1").await;
            let in2 = number(conn, SETTINGS_SERVICE, "/Settings/SystemSetup/AcInput2").await;
            if in1.is_none() && in2.is_none() {
                checks.push(Check::pass(
                    "grid-ac-input",
                    "no AC input types set on this GX",
                ));
            } else if in1 == Some(1) || in2 == Some(1) {
                checks.push(Check::pass(
                    "grid-ac-input",
                    "an AC input of the GX is set to Grid",
                ));
            } else {
                checks.push(Check::fail(
                    "grid-ac-input",
                    format!(
                        "the GX's AC input 1 is {}, AC input 2 {}: a grid meter is shown as grid \
                         only when an AC input is Grid",
                        ac_input_type(in1),
                        ac_input_type(in2)
                    ),
                    "Settings → System setup → AC input 1 (or 2) → Grid",
                ));
            }
        }
        "pvinverter" => match number(conn, name, "/Position").await {
            Some(p @ 0..=2) => checks.push(Check::pass(
                "pvinverter-position",
                format!(
                    "/Position {p}: shown on {}",
                    ["AC input 1", "AC output", "AC input 2"]
                        .get(usize::try_from(p).unwrap_or(0))
                        .copied()
                        .unwrap_or("?")
                ),
            )),
            other => checks.push(Check::fail(
                "pvinverter-position",
                format!(
                    "/Position is {}: the overview does not know where it is",
                    other.map_or("invalid".into(), |p| p.to_string())
                ),
                "send Position 0 (AC input 1), 1 (AC output) or 2 (AC input 2) in the Status \
                 settings or Values",
            )),
        },
        "temperature" => match number(conn, name, "/TemperatureType").await {
            Some(0) => checks.push(Check::pass(
                "temperature-type",
                "/TemperatureType 0 (battery): systemcalc may use it as battery temperature",
            )),
            Some(t @ 1..=6) => checks.push(Check::pass(
                "temperature-type",
                format!("/TemperatureType {t}"),
            )),
            other => checks.push(Check::fail(
                "temperature-type",
                format!(
                    "/TemperatureType is {}: the GUI does not know what it measures",
                    other.map_or("invalid".into(), |t| t.to_string())
                ),
                "set the type on the GX (device page → Setup) or send TemperatureType 0–6",
            )),
        },
        "tank" => match number(conn, name, "/FluidType").await {
            Some(t @ 0..=11) => {
                checks.push(Check::pass("tank-fluid-type", format!("/FluidType {t}")))
            }
            other => checks.push(Check::fail(
                "tank-fluid-type",
                format!(
                    "/FluidType is {}",
                    other.map_or("invalid".into(), |t| t.to_string())
                ),
                "set the fluid type on the GX (device page → Setup) or send FluidType 0–11",
            )),
        },
        "battery" => {
            let active =
                bus::value(conn, "com.victronenergy.system", "/ActiveBatteryService").await;
            let ours = format!("com.victronenergy.battery/{}", instance.unwrap_or(u32::MAX));
            match active {
                Err(_) => checks.push(Check::fail(
                    "active-battery",
                    "systemcalc (com.victronenergy.system) does not answer: no battery is picked",
                    "check `svstat /service/dbus-systemcalc-py`",
                )),
                Ok(Json::String(s)) if s == ours => checks.push(Check::pass(
                    "active-battery",
                    "systemcalc uses it as the battery monitor",
                )),
                Ok(other) => checks.push(Check::fail(
                    "active-battery",
                    format!(
                        "systemcalc uses {} as the battery monitor, not this one ({ours})",
                        match &other {
                            Json::String(s) => s.clone(),
                            _ => "none".into(),
                        }
                    ),
                    "Settings → System setup → Battery monitor → this battery",
                )),
            }
        }
        _ => {}
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_local_lines_of_the_python_driver() {
        for line in [
            "ln -s /data/drivers/dbus-mqtt-devices-0.9.0/bin/service /service/dbus-mqtt-devices",
            "  /data/drivers/dbus-mqtt-devices-0.9.0/bin/setup-dependencies.sh 2>&1",
        ] {
            assert!(starts_python_driver(line), "{line}");
        }
        for line in [
            "# ln -s /data/drivers/dbus-mqtt-devices-0.8.0/bin/service /service/dbus-mqtt-devices",
            "/data/dbus-mqtt-devices/install.sh --boot",
        ] {
            assert!(!starts_python_driver(line), "{line}");
        }
    }
}
