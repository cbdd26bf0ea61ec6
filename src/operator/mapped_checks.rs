//! `doctor`'s checks of a mapped device (a device served from a declaration): whether the
//! declaration holds, whether it is on D-Bus and why not, the topics followed and whether
//! anything came on them, its availability, and per D-Bus path the last topic, raw
//! payload, converted value and its age. The type-specific checks (grid meter and AC
//! input, a pvinverter's `/Position`, …) are [`super::doctor`]'s, as for any device.

use super::doctor::Check;
use super::duration::human;
use super::report::{MappedDetail, ServiceReport, ServiceState};
use serde_json::Value as Json;

/// How `check-config` is named in a fix.
const CHECK_CONFIG: &str = "`dbus-mqtt-devices check-config` shows every mistake with file, \
    line and column";

/// The checks of mapped device `id`'s service `s` (with its detail `m`), at unix time `now`.
/// `from_daemon`: the listing was made by the running daemon (else only D-Bus is known).
pub fn checks(
    id: &str,
    now: u64,
    from_daemon: bool,
    s: &ServiceReport,
    m: &MappedDetail,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let Some(origin) = m.origin.as_deref() else {
        checks.push(registered(id, s, None));
        if from_daemon {
            checks.push(Check::fail(
                "declaration",
                format!("{id} is declared nowhere now; its settings (instance, name) are kept"),
                format!("declare it again, or `dbus-mqtt-devices remove {id}` to free its instance"),
            ));
        }
        return checks;
    };
    checks.push(declaration(id, origin, m));
    if !from_daemon && s.state == ServiceState::Offline {
        checks.push(Check::fail(
            "registered",
            "not on D-Bus: the daemon is not running",
            "start it (svc -u /service/dbus-mqtt-devices)",
        ));
    } else {
        checks.push(registered(id, s, Some(m)));
    }
    // What came on its topics: known to the daemon serving it only.
    if m.topics.is_empty() || m.messages.is_none() {
        return checks;
    }
    let topics = m.topics.join(", ");
    checks.push(Check::pass("subscribed", format!("subscribed to {topics}")));
    match (m.messages, &m.last_topic) {
        (Some(0), _) => checks.push(Check::fail(
            "messages",
            format!("no message on {topics} since start"),
            "check the device's MQTT settings / topic prefix: it must publish to the broker the \
             GX uses, on the topics above (MQTT Explorer shows what it publishes)",
        )),
        (n, Some(topic)) => checks.push(Check::pass(
            "messages",
            format!(
                "{} message(s) since start, the last value on {topic} {} ago",
                n.unwrap_or_default(),
                age(now, m.at)
            ),
        )),
        (n, None) => checks.push(Check::fail(
            "messages",
            format!(
                "{} message(s) since start, none with a value",
                n.unwrap_or_default()
            ),
            "check that the device publishes its measurements on the source topics above \
             (only its availability came)",
        )),
    }
    match m.available {
        Some(true) => checks.push(Check::pass("availability", "available: /Connected 1")),
        Some(false) => checks.push(Check::fail(
            "availability",
            "not available: /Connected 0 (its availability topic says offline, or no fresh \
             value came within stale_after)",
            "check that the device is powered and reaches the broker; its on_stale policy \
             decides what the GX shows meanwhile",
        )),
        None => {}
    }
    for (path, p) in &m.paths {
        let raw = &p.raw_payload;
        if p.converted_value == Json::Null {
            checks.push(Check::fail(
                "value",
                format!(
                    "{path} is invalid after the last message on {} ({raw}), {} ago",
                    p.topic,
                    age(now, Some(p.at))
                ),
                "check the declaration's JSON path for this path against the payload",
            ));
        } else {
            checks.push(Check::pass(
                "value",
                format!(
                    "{path} = {} from {} ({raw}), {} ago",
                    p.converted_value,
                    p.topic,
                    age(now, Some(p.at))
                ),
            ));
        }
    }
    checks
}

fn age(now: u64, at: Option<u64>) -> String {
    human(now.saturating_sub(at.unwrap_or(now)))
}

/// Whether the declaration holds.
fn declaration(id: &str, origin: &str, m: &MappedDetail) -> Check {
    let by_topic = m.declared_by.as_deref() == Some("topic");
    let fix = if by_topic {
        format!("publish a corrected declaration, retained, on {origin}; {CHECK_CONFIG}")
    } else {
        format!("correct the declaration in {origin}; {CHECK_CONFIG}")
    };
    let found = m.diagnostics.join("; ");
    match (m.declaration_valid, m.messages.is_some()) {
        (Some(true), _) if found.is_empty() => {
            Check::pass("declaration", format!("{id} is declared in {origin}"))
        }
        (Some(true), _) => Check::pass(
            "declaration",
            format!("{id} is declared in {origin} ({found})"),
        ),
        // Served as declared before the mistake.
        (_, true) => Check::fail(
            "declaration",
            format!("the declaration has a mistake now, so {id} is served as declared before: {found}"),
            fix,
        ),
        (_, false) => Check::fail(
            "declaration",
            format!("the declaration is refused, so {id} is not served: {found}"),
            fix,
        ),
    }
}

/// Whether it is on D-Bus, and why not.
fn registered(id: &str, s: &ServiceReport, m: Option<&MappedDetail>) -> Check {
    let instance = s
        .instance
        .map_or("no instance".into(), |i| format!("instance {i}"));
    let kind = s.service_type.as_deref().unwrap_or("?");
    let why = s.last_error.as_deref().unwrap_or("no reason known");
    match s.state {
        ServiceState::Online => Check::pass(
            "registered",
            format!(
                "on D-Bus as {} ({kind}, {instance}), /Connected 1",
                s.dbus_name.as_deref().unwrap_or("?")
            ),
        ),
        ServiceState::Stale => Check::fail(
            "registered",
            format!("on D-Bus ({kind}, {instance}) but /Connected 0"),
            "see availability and messages below",
        ),
        ServiceState::Refused if m.and_then(|m| m.declaration_valid) == Some(false) => {
            Check::fail(
                "registered",
                "not on D-Bus: its declaration is refused",
                "see declaration above",
            )
        }
        ServiceState::Refused => Check::fail(
            "registered",
            format!("declared but not on D-Bus: {why}"),
            format!(
                "a name taken means another service already has \
                 com.victronenergy.{kind}.mqtt_{id}; it is tried again by itself"
            ),
        ),
        ServiceState::Offline if m.is_some() => Check::fail(
            "registered",
            format!("declared but not on D-Bus ({kind}, {instance} kept)"),
            "it is being registered, or it left with on_stale = \"remove\" and comes back \
             with the device's next value",
        ),
        ServiceState::Offline => Check::fail(
            "registered",
            format!("not on D-Bus ({kind}, {instance} kept in localsettings)"),
            format!("`dbus-mqtt-devices remove {id}` frees its instance"),
        ),
    }
}
