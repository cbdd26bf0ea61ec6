//! Writes a declaration back as a `[[device]]` table, every key explicit:
//! what `check-config` shows a user as "what the preset became". Reading the
//! text back gives the same declaration.

use std::fmt::Write as _;

use super::{Declaration, Mapping, Rule};
use crate::dbus::Value;
use crate::mapped::transform::MapTo;

/// The declaration as TOML, starting with `[[device]]` (and a comment naming
/// the preset it was expanded from, if any).
pub fn to_toml(d: &Declaration) -> String {
    let mut out = String::new();
    if let Some(p) = &d.preset {
        let params: Vec<String> = p
            .parameters
            .iter()
            .map(|(k, v)| format!("{k} = {}", string(v)))
            .collect();
        let _ = writeln!(
            out,
            "# expanded from preset \"{}\" ({})",
            p.name,
            params.join(", ")
        );
    }
    out.push_str("[[device]]\n");
    line(&mut out, "id", &string(d.id.as_str()));
    line(&mut out, "service", &string(&d.service));
    if let Some(n) = &d.name {
        line(&mut out, "name", &string(n));
    }
    if let Some(i) = d.instance {
        line(&mut out, "instance", &i.to_string());
    }
    if let Some(s) = &d.serial {
        line(&mut out, "serial", &string(s));
    }
    if let Some(p) = &d.product {
        line(&mut out, "product", &string(p));
    }
    line(&mut out, "connection", &string(&d.connection));
    line(&mut out, "phase", &string(d.phase.as_str()));
    if let Some(s) = d.stale_after {
        line(
            &mut out,
            "stale_after",
            &string(&humantime::format_duration(s).to_string()),
        );
    }
    line(&mut out, "on_stale", &string(d.on_stale.as_str()));
    line(
        &mut out,
        "availability_mode",
        &string(d.availability_mode.as_str()),
    );
    if !d.settings.is_empty() {
        line(
            &mut out,
            "settings",
            &inline(d.settings.iter().map(|(k, v)| (k.as_str(), value(v)))),
        );
    }
    if !d.constants.is_empty() {
        line(
            &mut out,
            "const",
            &inline(d.constants.iter().map(|(k, v)| (k.as_str(), value(v)))),
        );
    }
    for a in &d.availability {
        out.push_str("\n[[device.availability]]\n");
        line(&mut out, "topic", &string(a.topic.as_str()));
        line(&mut out, "online", &payloads(&a.online));
        line(&mut out, "offline", &payloads(&a.offline));
        if let Some(p) = &a.path {
            line(&mut out, "path", &string(&p.to_string()));
        }
    }
    for s in &d.sources {
        out.push_str("\n[[device.source]]\n");
        if let Some(t) = &s.topic {
            line(&mut out, "topic", &string(t.as_str()));
        }
        for m in &s.mappings {
            let _ = writeln!(out, "{} = {}", string(&m.path), mapping(m));
        }
    }
    for w in &d.writes {
        out.push_str("\n[[device.write]]\n");
        line(&mut out, "path", &string(&w.path));
        line(&mut out, "topic", &string(w.topic.as_str()));
        if let Some(f) = &w.format {
            line(&mut out, "format", &string(f));
        }
        line(&mut out, "retain", &w.retain.to_string());
        if let Some(x) = w.min {
            line(&mut out, "min", &float(x));
        }
        if let Some(x) = w.max {
            line(&mut out, "max", &float(x));
        }
    }
    out
}

fn line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = {value}");
}

/// A TOML string with the escapes it needs.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn float(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

/// A number as written in a `map`: whole numbers as integers.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        (x as i64).to_string()
    } else {
        float(x)
    }
}

fn value(v: &Value) -> String {
    match v {
        Value::I32(i) => i.to_string(),
        Value::I64(i) => i.to_string(),
        Value::F64(x) => float(*x),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => string(s),
        // Settings and constants are single values; nothing else is parsed.
        other => string(&other.python_text()),
    }
}

fn payloads(list: &[String]) -> String {
    match list {
        [one] => string(one),
        many => format!(
            "[{}]",
            many.iter()
                .map(|s| string(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An inline table with quoted keys (D-Bus paths, map keys).
fn inline<'a>(entries: impl Iterator<Item = (&'a str, String)>) -> String {
    bare_inline(entries.map(|(k, v)| (string(k), v)))
}

/// An inline table whose keys are written as given.
fn bare_inline(entries: impl Iterator<Item = (String, String)>) -> String {
    let parts: Vec<String> = entries.map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", parts.join(", "))
}

fn mapping(m: &Mapping) -> String {
    let t = &m.transform;
    let mut parts: Vec<(&str, String)> = Vec::new();
    match &m.rule {
        Rule::Extract(p) => parts.push(("path", string(&p.to_string()))),
        Rule::Sum(inputs) => parts.push((
            "sum",
            format!(
                "[{}]",
                inputs
                    .iter()
                    .map(|s| string(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Rule::Integrate(p) => parts.push(("integrate", string(p))),
    }
    if let Some(e) = t.element {
        parts.push(("element", e.to_string()));
    }
    if let Some(u) = &t.unit {
        parts.push(("unit", string(u.name())));
    }
    if let Some(x) = t.scale {
        parts.push(("scale", float(x)));
    }
    if let Some(x) = t.offset {
        parts.push(("offset", float(x)));
    }
    if t.invert {
        parts.push(("invert", "true".into()));
    }
    if t.abs {
        parts.push(("abs", "true".into()));
    }
    if !t.map.is_empty() {
        let entries = t.map.iter().map(|(k, to)| {
            let v = match to {
                MapTo::Number(x) => number(*x),
                MapTo::Text(s) => string(s),
            };
            (k.as_str(), v)
        });
        parts.push(("map", inline(entries)));
    }
    if let Some(x) = t.min {
        parts.push(("min", float(x)));
    }
    if let Some(x) = t.max {
        parts.push(("max", float(x)));
    }
    if let Some(r) = t.round {
        parts.push(("round", r.to_string()));
    }
    match (&m.rule, parts.as_slice()) {
        (Rule::Extract(_), [(_, path)]) => path.clone(),
        _ => bare_inline(parts.iter().map(|(k, v)| (k.to_string(), v.clone()))),
    }
}
