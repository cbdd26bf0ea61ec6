//! The `list`, `remove` and `doctor` commands. Each first asks the daemon over MQTT (one
//! implementation of the answers, with what only the running daemon knows: last values and
//! refusals); when the daemon does not answer, `list` and `remove` work from D-Bus,
//! localsettings and the state file directly, and `doctor` runs every check it can.
//! Exit codes: 0 done / all checks passed, 1 something failed, 2 usage (clap).

use super::activity::unix_now;
use super::client::Broker;
use super::doctor::{self, Check, DoctorReport, HostContext};
use super::duration::human;
use super::inventory::{self, Sources};
use super::remove::{self, Outcome, Removal, Selection};
use super::report::{Listing, ServiceState, REPORT_FORMAT};
use super::request::{Target, Verb};
use crate::config::Config;
use crate::persist;
use crate::protocol::device_topic;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Width of the human output.
pub const WIDTH: usize = 100;

/// Options of `list`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  dbus-mqtt-devices list\n  dbus-mqtt-devices list --json\n  \
                  dbus-mqtt-devices list --mqtt-port 1883 --dbus-address unix:path=/tmp/sim-bus   \
                  (against sim)\nExit codes: 0 listed, 1 neither the daemon nor D-Bus could be \
                  reached, 2 bad command line."
)]
pub struct ListArgs {
    /// The stable JSON (docs/protocol.md) instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Options of `remove`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without --yes nothing is removed: the command shows what would be.\n\
    Examples:\n  dbus-mqtt-devices remove fe001            (show what would go)\n  \
    dbus-mqtt-devices remove fe001 --yes      (the device, its instances and names)\n  \
    dbus-mqtt-devices remove fe001/t1 --yes   (one service of a device not connected)\n  \
    dbus-mqtt-devices remove --not-seen-for 30d --yes   (every device silent for 30 days)\n\
    Exit codes: 0 removed (or shown, or nothing matched --not-seen-for), 1 the target is not known or a step failed, 2 bad command line."
)]
pub struct RemoveArgs {
    /// `<client id>` or `<client id>/<service id>`
    #[arg(value_parser = Target::parse, required_unless_present = "not_seen_for")]
    pub target: Option<Target>,
    /// Only devices not connected and not heard from for this long (30d, 12h, 90m)
    #[arg(long, value_name = "DURATION", value_parser = super::duration::parse)]
    pub not_seen_for: Option<Duration>,
    /// Remove (without it, only show what would be removed)
    #[arg(long)]
    pub yes: bool,
    /// JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Options of `doctor`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  dbus-mqtt-devices doctor\n  dbus-mqtt-devices doctor fe001\n  \
                  dbus-mqtt-devices doctor --json\nExit codes: 0 every check passed, 1 a check \
                  failed, 2 bad command line."
)]
pub struct DoctorArgs {
    /// Only this device: `<client id>` or `<client id>/<service id>`
    #[arg(value_parser = Target::parse)]
    pub target: Option<Target>,
    /// JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Where the GX's files are looked for (tests)
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
    /// How long to wait for the MQTT gateway's N/ topics, in milliseconds
    #[arg(long, hide = true, default_value_t = 3000)]
    pub gateway_wait_ms: u64,
}

fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("dbus-mqtt-devices: {e}"),
    }
}

/// Cuts `s` to `width` characters, marking the cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Lines of at most `width` characters, each after the first indented by `indent`.
fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let limit = if lines.is_empty() {
            width
        } else {
            width.saturating_sub(indent)
        };
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > limit {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l
            } else {
                format!("{}{l}", " ".repeat(indent))
            }
        })
        .collect()
}

/// The daemon, if it runs and answers, with a note on why not otherwise.
async fn daemon(config: &Config) -> (Option<Broker>, bool, Option<String>) {
    match Broker::connect(&config.mqtt).await {
        Ok(mut b) => {
            let online = b.daemon_online().await;
            let note = (!online).then(|| "the daemon is not running".to_string());
            (Some(b), online, note)
        }
        Err(e) => (None, false, Some(e)),
    }
}

/// Reads what the CLI can without the daemon.
async fn local_listing(
    config: &Config,
) -> Result<(Listing, std::collections::BTreeMap<String, Json>), String> {
    let bus = crate::app::bus_address(&config.bus);
    let conn = bus
        .connect()
        .await
        .map_err(|e| format!("D-Bus ({bus}): {e}"))?;
    let file = read_state(&config.data_dir)?;
    let settings = super::bus::our_settings(&conn).await?;
    let dir = config.data_dir.clone();
    let (mapped, declaration_errors) = tokio::task::spawn_blocking(move || declared_in_files(&dir))
        .await
        .unwrap_or_default();
    let sources = Sources {
        services: super::bus::our_services(&conn).await?,
        settings: settings.clone(),
        saved: file.devices,
        last_seen: file.last_seen,
        known: file.known,
        activity: None,
        mapped,
    };
    let listing = Listing {
        format: REPORT_FORMAT,
        generated_at: unix_now(),
        from_daemon: false,
        devices: inventory::build(&sources),
        declaration_errors,
    };
    Ok((listing, settings))
}

/// The mapped devices the declaration files declare, read as the daemon reads them (with
/// the daemon stopped none is served; declarations on topics are the daemon's to know), and
/// the mistakes that name no device.
fn declared_in_files(
    dir: &Path,
) -> (
    std::collections::BTreeMap<String, super::mapped_activity::MappedStatus>,
    Vec<String>,
) {
    let catalog_file = dir.join(crate::data_dir::CATALOG_FILE);
    let (catalog, _) = crate::catalog::Catalog::load(Some(&catalog_file));
    let (_, loaded) = crate::mapped::load::load_data_dir(dir, &catalog);
    let (notes, unattributed) = crate::mapped::runtime::declaration_notes(
        &loaded.devices,
        loaded.diagnostics.iter(),
        false,
    );
    let statuses = notes
        .into_iter()
        .map(|n| {
            let id = n.id.clone();
            let status = super::mapped_activity::MappedStatus {
                declaration: Some(n),
                ..Default::default()
            };
            (id, status)
        })
        .collect();
    (statuses, unattributed)
}

fn read_state(dir: &Path) -> Result<persist::StateFile, String> {
    persist::load_file(dir).map_err(|e| crate::logging::error_chain(&e))
}

/// The listing from the daemon, else made here.
async fn listing(config: &Config) -> Result<(Listing, Option<String>), String> {
    let (broker, online, mut note) = daemon(config).await;
    if let (Some(mut b), true) = (broker, online) {
        let answer = b.ask(Verb::List, serde_json::Map::new()).await;
        b.close().await;
        match answer.and_then(|a| serde_json::from_value::<Listing>(a).map_err(|e| e.to_string())) {
            Ok(l) => return Ok((l, None)),
            Err(e) => note = Some(e),
        }
    }
    let (l, _) = local_listing(config).await?;
    Ok((l, note))
}

/// `list`.
pub async fn list(config: &Config, args: &ListArgs) -> u8 {
    let (listing, note) = match listing(config).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dbus-mqtt-devices: {e}");
            return 1;
        }
    };
    if args.json {
        print_json(&listing);
        return 0;
    }
    if let Some(n) = note {
        println!(
            "{}",
            fit(
                &format!(
                    "({n}: listed from D-Bus, localsettings and the state file; no ages or errors)"
                ),
                WIDTH
            )
        );
    }
    print!("{}", table(&listing));
    0
}

/// The human table of a listing, at most [`WIDTH`] columns.
pub fn table(listing: &Listing) -> String {
    let mut out = format!(
        "{:<26} {:<11} {:>4} {:<18} {:<8} {:<9} {}\n",
        "DEVICE/SERVICE", "TYPE", "INST", "NAME", "STATE", "LAST", "ERROR"
    );
    for e in &listing.declaration_errors {
        out.push_str(&fit(&format!("declaration not read: {e}"), WIDTH));
        out.push('\n');
    }
    if listing.devices.is_empty() {
        out.push_str("(no MQTT devices known on this GX)\n");
        return out;
    }
    let now = listing.generated_at;
    for d in &listing.devices {
        for s in &d.services {
            let who = match &s.service_id {
                Some(id) => format!("{}/{id}", d.client_id),
                None if d.kind == "mapped" => format!("{} (mapped)", d.client_id),
                None => s.unique_id.clone(),
            };
            let last = match (s.last_value_at, s.state) {
                (Some(t), _) => human(now.saturating_sub(t)),
                (None, ServiceState::Offline) => d.last_seen.map_or("-".into(), |t| {
                    human(now.saturating_sub(t))
                }),
                _ => "-".into(),
            };
            let error = s
                .last_error
                .as_deref()
                .or(d.last_error.as_deref())
                .unwrap_or("");
            let line = format!(
                "{:<26} {:<11} {:>4} {:<18} {:<8} {:<9} ",
                fit(&who, 26),
                fit(s.service_type.as_deref().unwrap_or("?"), 11),
                s.instance.map_or("-".into(), |i| i.to_string()),
                fit(s.custom_name.as_deref().unwrap_or("-"), 18),
                s.state.as_str(),
                fit(&last, 9),
            );
            let room = WIDTH.saturating_sub(line.chars().count());
            out.push_str(line.as_str());
            out.push_str(&fit(error, room));
            out.push('\n');
            for line in s.mapped.as_ref().map(|m| mapped_lines(m, now)).unwrap_or_default() {
                out.push_str(&fit(&line, WIDTH));
                out.push('\n');
            }
        }
        if d.services.is_empty() {
            out.push_str(&format!("{}  (no services)\n", fit(&d.client_id, 80)));
        }
    }
    out
}

/// Under a mapped device's row: what is wrong with its declaration, in full (a path does
/// not fit the ERROR column), and its last message: `  <topic> → <value> (<age> ago):
/// <payload>`, or that none came.
fn mapped_lines(m: &super::report::MappedDetail, now: u64) -> Vec<String> {
    let mut lines = Vec::new();
    if m.declaration_valid == Some(false) {
        for d in &m.diagnostics {
            lines.extend(wrap(&format!("  {d}"), WIDTH, 4));
        }
    }
    lines.extend(mapped_line(m, now));
    lines
}

fn mapped_line(m: &super::report::MappedDetail, now: u64) -> Option<String> {
    match (&m.last_topic, m.messages) {
        // The payload last: it is cut to the width, the value is not.
        (Some(topic), _) => Some(format!(
            "  {topic} → {} ({} ago): {}",
            m.converted_value
                .as_ref()
                .map_or("-".into(), |v| v.to_string()),
            human(now.saturating_sub(m.at.unwrap_or(now))),
            m.raw_payload.as_deref().unwrap_or(""),
        )),
        (None, Some(0)) => Some(format!(
            "  no message yet on {}",
            m.topics.join(", ")
        )),
        _ => None,
    }
}

/// `remove`.
pub async fn remove(config: &Config, args: &RemoveArgs) -> u8 {
    let selection = Selection {
        target: args.target.clone(),
        not_seen_for: args.not_seen_for,
    };
    let (broker, online, note) = daemon(config).await;
    if let (Some(mut b), true) = (broker, online) {
        let mut body = serde_json::Map::new();
        if let Some(t) = &args.target {
            body.insert("target".into(), json!(t.to_string()));
        }
        if let Some(d) = args.not_seen_for {
            body.insert("not_seen_for".into(), json!(format!("{}s", d.as_secs())));
        }
        body.insert("dry_run".into(), json!(!args.yes));
        let answer = b.ask(Verb::Remove, body).await;
        b.close().await;
        return match answer {
            Ok(a) if a.get("ok") == Some(&json!(true)) => report_removal(&a, args),
            Ok(a) => fail(a.get("error").and_then(Json::as_str).unwrap_or("refused")),
            Err(e) => fail(&e),
        };
    }
    // The daemon is not running: every step here.
    let (listing, settings) = match local_listing(config).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let plan = match remove::plan(&listing.devices, &settings, &selection, unix_now()) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if !args.yes {
        return report_removal(&json!({"plan": plan}), args);
    }
    let mut broker = match note {
        Some(_) => Broker::connect(&config.mqtt).await.ok(),
        None => None,
    };
    let mut outcomes = Vec::new();
    for r in &plan {
        outcomes.push(remove_here(config, r, broker.as_mut()).await);
    }
    if let Some(b) = broker {
        b.close().await;
    }
    report_removal(
        &json!({"removed": outcomes, "note": remove::STILL_POWERED}),
        args,
    )
}

fn fail(e: &str) -> u8 {
    eprintln!("dbus-mqtt-devices: {e}");
    1
}

/// Forgets the integrated energy of the mapped devices of `services` (unique ids
/// `mqtt_<id>`) in `mapped-energy.json`, with the daemon not running; whether there was any.
async fn forget_energy(config: &Config, services: &[String]) -> Result<bool, String> {
    use crate::mapped::runtime::energy_file;
    let dir = config.data_dir.clone();
    let ids: Vec<String> = services
        .iter()
        .filter_map(|u| u.strip_prefix(inventory::UNIQUE_PREFIX))
        .map(str::to_owned)
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut energies = energy_file::load(&dir);
        let before = energies.len();
        energies.retain(|id, _| !ids.contains(id));
        if energies.len() == before {
            return Ok(false);
        }
        energy_file::save(&dir, &energies).map(|()| true)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// One removal with the daemon not running.
async fn remove_here(config: &Config, r: &Removal, broker: Option<&mut Broker>) -> Outcome {
    let mut o = Outcome {
        client_id: r.client_id.clone(),
        services: r.services.clone(),
        mapped: r.mapped,
        ..Outcome::default()
    };
    if r.connected {
        o.problems.push(
            "its services are on D-Bus but the daemon does not answer: stop whatever serves them \
             (another driver?) and try again; nothing removed"
                .into(),
        );
        return o;
    }
    if r.whole_device {
        match broker {
            Some(b) => {
                if r.client_id_known {
                    match b
                        .clear_retained(&device_topic(&r.client_id, "Status"))
                        .await
                    {
                        Ok(()) => o.retained_status_cleared = true,
                        Err(e) => o.problems.push(e),
                    }
                } else {
                    o.problems.push(super::remove::status_topic_unknown(&r.client_id));
                }
                let _ = b
                    .clear_retained(&format!(
                        "{}{}",
                        super::service::DEVICES_PREFIX,
                        r.client_id
                    ))
                    .await;
            }
            None => o.problems.push(
                "the broker is not reachable: a retained Status of the device, if any, is not \
                 cleared (it would register again when the daemon starts)"
                    .into(),
            ),
        }
        let dir = config.data_dir.clone();
        let client = r.client_id.clone();
        let edited = tokio::task::spawn_blocking(move || -> Result<bool, String> {
            let mut file = read_state(&dir)?;
            let before = (file.devices.len(), file.last_seen.len(), file.known.len());
            file.devices.retain(|d| d.client_id != client);
            file.last_seen.remove(&client);
            file.known.remove(&client);
            if before == (file.devices.len(), file.last_seen.len(), file.known.len()) {
                return Ok(true);
            }
            persist::save_file(&dir, &file.devices, &file.last_seen, &file.known)
                .map(|()| true)
                .map_err(|e| crate::logging::error_chain(&e))
        })
        .await;
        match edited {
            Ok(Ok(done)) => o.state_file_updated = done,
            Ok(Err(e)) => o.problems.push(e),
            Err(e) => o.problems.push(e.to_string()),
        }
    }
    if r.mapped {
        match forget_energy(config, &r.services).await {
            Ok(forgotten) => o.energy_forgotten = forgotten,
            Err(e) => o.problems.push(e),
        }
    }
    let bus = crate::app::bus_address(&config.bus);
    match bus.connect().await {
        Ok(conn) => match super::bus::remove_settings(&conn, &r.settings).await {
            Ok(codes) => o.settings_removed = codes.iter().filter(|c| **c == 0).count(),
            Err(e) => o.problems.push(format!("removing settings: {e}")),
        },
        Err(e) => o.problems.push(format!("D-Bus: {e}")),
    }
    o
}

/// Prints a removal answer (`plan` or `removed`); 1 if any step had a problem.
fn report_removal(answer: &Json, args: &RemoveArgs) -> u8 {
    let problems = answer
        .get("removed")
        .and_then(Json::as_array)
        .is_some_and(|r| r.iter().any(|o| o.get("problems").is_some()));
    if args.json {
        print_json(answer);
        return u8::from(problems);
    }
    if let Some(plan) = answer.get("plan").and_then(Json::as_array) {
        if plan.is_empty() {
            println!("Nothing matches; nothing would be removed.");
            return 0;
        }
        for p in plan {
            let services: Vec<&str> = p["services"]
                .as_array()
                .map_or(Vec::new(), |s| s.iter().filter_map(Json::as_str).collect());
            let line = format!(
                "Would remove {}{}: {} ({} settings){}",
                p["clientId"].as_str().unwrap_or("?"),
                if p["wholeDevice"] == json!(true) {
                    ""
                } else {
                    " (some services)"
                },
                services.join(", "),
                p["settings"].as_array().map_or(0, Vec::len),
                if p["connected"] == json!(true) {
                    "; it is connected: it leaves D-Bus first"
                } else {
                    ""
                },
            );
            let line = if p["mapped"] == json!(true) {
                format!("{line}; a mapped device: its retained declaration, if any, is cleared and its integrated energy forgotten")
            } else {
                line
            };
            for l in wrap(&line, WIDTH, 4) {
                println!("{l}");
            }
        }
        println!("Nothing removed yet: run the same command with --yes.");
        return 0;
    }
    let removed = answer
        .get("removed")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if removed.is_empty() {
        println!("Nothing matches; nothing removed.");
    }
    for o in &removed {
        let mut done = Vec::new();
        let off = o["takenOffDbus"].as_u64().unwrap_or(0);
        if off > 0 {
            done.push(format!("{off} services taken off D-Bus"));
        }
        done.push(format!(
            "{} settings removed (instances are free again)",
            o["settingsRemoved"].as_u64().unwrap_or(0)
        ));
        if o["retainedStatusCleared"] == json!(true) {
            done.push("retained Status cleared".into());
        }
        if o["stateFileUpdated"] == json!(true) {
            done.push("forgotten in the state file".into());
        }
        if let Some(topic) = o["declarationCleared"].as_str() {
            done.push(format!("its declaration on {topic} cleared"));
        }
        if o["energyForgotten"] == json!(true) {
            done.push("its integrated energy forgotten".into());
        }
        let line = format!(
            "Removed {}: {}.",
            o["clientId"].as_str().unwrap_or("?"),
            done.join(", ")
        );
        for l in wrap(&line, WIDTH, 4) {
            println!("{l}");
        }
        for p in o["problems"].as_array().into_iter().flatten() {
            for l in wrap(&format!("  ✗ {}", p.as_str().unwrap_or("")), WIDTH, 4) {
                println!("{l}");
            }
        }
    }
    // A mapped device does not come back by itself: only a declaration brings it.
    if removed.iter().any(|o| o["mapped"] != json!(true)) {
        for l in wrap(remove::STILL_POWERED, WIDTH, 0) {
            println!("{l}");
        }
    }
    u8::from(problems)
}

/// Where the portal id comes from, as the daemon looks for it.
async fn portal_check(
    config: &Config,
    root: &Path,
    conn: Option<&zbus::Connection>,
    broker: Option<&mut Broker>,
) -> (Check, Option<String>) {
    if let Some(p) = &config.portal_id {
        return (
            Check::pass(
                "portal-id",
                format!(
                    "portal id {} (from --portal-id or the configuration file)",
                    p.as_str()
                ),
            ),
            Some(p.as_str().to_owned()),
        );
    }
    let file = root.join(crate::portal::VENUS_UNIQUE_ID_FILE.trim_start_matches('/'));
    if let Some(p) = crate::portal::from_file(&file) {
        return (
            Check::pass(
                "portal-id",
                format!(
                    "portal id {} (from {})",
                    p.as_str(),
                    crate::portal::VENUS_UNIQUE_ID_FILE
                ),
            ),
            Some(p.as_str().to_owned()),
        );
    }
    if let Some(conn) = conn {
        if let Some(p) = crate::portal::from_system_service(conn).await {
            return (
                Check::pass(
                    "portal-id",
                    format!(
                        "portal id {} (from /Serial of com.victronenergy.system)",
                        p.as_str()
                    ),
                ),
                Some(p.as_str().to_owned()),
            );
        }
    }
    if let Some(b) = broker {
        if let Some(p) = b.retained_portal_id().await {
            return (
                Check::pass(
                    "portal-id",
                    format!(
                        "portal id {p} (from the retained {})",
                        crate::portal::SERIAL_SUBSCRIPTION
                    ),
                ),
                Some(p),
            );
        }
    }
    (
        Check::fail(
            "portal-id",
            "no portal id: not given, no /data/venus/unique-id, no systemcalc, no retained Serial",
            "give --portal-id (the GX's VRM id); devices get no topic paths without it",
        ),
        None,
    )
}

/// `doctor`.
pub async fn doctor(config: &Config, args: &DoctorArgs) -> u8 {
    let bus = crate::app::bus_address(&config.bus);
    let conn = bus.connect().await.ok();
    let mut checks = Vec::new();
    let mut broker = match Broker::connect(&config.mqtt).await {
        Ok(b) => {
            checks.push(Check::pass(
                "broker",
                format!(
                    "MQTT broker {}:{} reachable",
                    config.mqtt.host, config.mqtt.port
                ),
            ));
            Some(b)
        }
        Err(e) => {
            checks.push(Check::fail(
                "broker",
                e,
                "check that the broker runs (on a GX: Settings → Services → MQTT) and \
                 --mqtt-host/--mqtt-port",
            ));
            None
        }
    };
    let online = match broker.as_mut() {
        Some(b) => b.daemon_online().await,
        None => false,
    };
    checks.push(if online {
        Check::pass(
            "daemon",
            "dbus-mqtt-devices is running (its presence topic is online)",
        )
    } else {
        Check::fail(
            "daemon",
            "dbus-mqtt-devices is not running (its presence topic is not online)",
            "svc -u /service/dbus-mqtt-devices; see its log: tail \
             /var/log/dbus-mqtt-devices/current",
        )
    });
    checks.extend(
        doctor::host_checks(&HostContext {
            conn: conn.as_ref(),
            bus: &bus,
            data_dir: &config.data_dir,
            max_services: config.limits.max_services,
            root: &args.root,
        })
        .await,
    );
    let (portal, portal_id) =
        portal_check(config, &args.root, conn.as_ref(), broker.as_mut()).await;
    checks.push(portal);
    // The devices: the daemon's listing (with values and refusals) or our own.
    let listed = match (broker.as_mut(), online) {
        (Some(b), true) => b
            .ask(Verb::List, serde_json::Map::new())
            .await
            .and_then(|a| serde_json::from_value::<Listing>(a).map_err(|e| e.to_string())),
        _ => Err(String::new()),
    };
    let listing = match listed {
        Ok(l) => Some(l),
        Err(_) => local_listing(config).await.ok().map(|(l, _)| l),
    };
    if let (Some(b), Some(portal), Some(listing)) =
        (broker.as_mut(), portal_id.as_deref(), listing.as_ref())
    {
        checks.push(
            gateway_check(
                b,
                portal,
                listing,
                Duration::from_millis(args.gateway_wait_ms),
            )
            .await,
        );
    }
    match (conn.as_ref(), listing.as_ref(), broker.as_mut()) {
        (Some(conn), Some(listing), _) => {
            checks.extend(doctor::device_checks(conn, listing, args.target.as_ref()).await);
        }
        // D-Bus is not reachable from here, but the daemon is: its device checks.
        (None, _, Some(b)) if online => {
            let mut body = serde_json::Map::new();
            if let Some(t) = &args.target {
                body.insert("target".into(), json!(t.to_string()));
            }
            if let Ok(answer) = b.ask(Verb::Doctor, body).await {
                if let Ok(report) = serde_json::from_value::<DoctorReport>(answer) {
                    checks.extend(report.checks.into_iter().filter(|c| c.device.is_some()));
                }
            }
        }
        _ => {}
    }
    if let Some(b) = broker {
        b.close().await;
    }
    let report = DoctorReport::new(checks, online);
    if args.json {
        print_json(&report);
    } else {
        for c in &report.checks {
            let mark = if c.ok { '✓' } else { '✗' };
            let who = c
                .device
                .as_deref()
                .map_or(String::new(), |d| format!("{d}: "));
            for l in wrap(&format!("{mark} {who}{} — {}", c.check, c.detail), WIDTH, 4) {
                println!("{l}");
            }
            if let Some(fix) = &c.fix {
                for l in wrap(&format!("    fix: {fix}"), WIDTH, 9) {
                    println!("{l}");
                }
            }
        }
    }
    u8::from(!report.healthy)
}

async fn gateway_check(b: &mut Broker, portal: &str, listing: &Listing, wait: Duration) -> Check {
    let seen = match b.gateway_topics(portal, wait).await {
        Ok(s) => s,
        Err(e) => return Check::fail("mqtt-gateway", e, "check the broker"),
    };
    if seen.is_empty() {
        return Check::fail(
            "mqtt-gateway",
            format!(
                "no N/{portal}/… topics after a keepalive: no MQTT gateway (dbus-flashmq or \
                 dbus-mqtt) serves this GX's D-Bus"
            ),
            "enable MQTT in Settings → Services (Venus OS), and check the portal id",
        );
    }
    let missing: Vec<String> = listing
        .devices
        .iter()
        .flat_map(|d| d.services.iter())
        .filter(|s| s.state == ServiceState::Online)
        .filter_map(|s| Some(format!("{}/{}", s.service_type.as_deref()?, s.instance?)))
        .filter(|k| !seen.contains(k))
        .collect();
    if missing.is_empty() {
        Check::pass(
            "mqtt-gateway",
            format!(
                "the MQTT gateway publishes N/ topics ({} devices), ours included",
                seen.len()
            ),
        )
    } else {
        Check::fail(
            "mqtt-gateway",
            format!(
                "the MQTT gateway publishes no N/ topics for {}",
                missing.join(", ")
            ),
            "restart the gateway (svc -t /service/dbus-flashmq or /service/dbus-mqtt) and see its \
             log",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::report::{DeviceReport, ServiceReport};

    #[test]
    fn the_table_fits_100_columns() {
        let long = "x".repeat(150);
        let listing = Listing {
            format: 1,
            generated_at: 1000,
            from_daemon: true,
            devices: vec![DeviceReport {
                client_id: long.clone(),
                client_id_guessed: false,
                kind: "native".into(),
                connected: true,
                last_seen: Some(990),
                last_error: None,
                services: vec![ServiceReport {
                    service_id: Some("t1".into()),
                    unique_id: "mqtt_x_t1".into(),
                    dbus_name: None,
                    service_type: Some("temperature".into()),
                    instance: Some(20),
                    custom_name: Some(long.clone()),
                    state: ServiceState::Refused,
                    last_value_at: Some(995),
                    last_error: Some(long),
                    last_error_at: None,
                    mapped: None,
                }],
            }],
            declaration_errors: vec!["y".repeat(150)],
        };
        let t = table(&listing);
        assert!(t.lines().all(|l| l.chars().count() <= WIDTH), "{t}");
        assert!(t.contains("refused"));
        for l in wrap(&"word ".repeat(60), WIDTH, 4) {
            assert!(l.chars().count() <= WIDTH);
        }
    }
}
