//! Builds a [`Declaration`] from a device's tree (a `[[device]]` table of a
//! file, or a JSON declaration), checking every key against the spec and
//! every D-Bus path against the catalog. All mistakes of a device are
//! reported together, each with where it was written; a device with any
//! mistake is not loaded (the others are).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{
    Availability, AvailabilityMode, Declaration, MappedId, Mapping, OnStale, Phase, PresetUse,
    Rule, Source, Write,
};
use crate::catalog::{Catalog, PathSpec, ServiceType, ValueKind, CUSTOM_NAME_PATH};
use crate::dbus::Value;
use crate::mapped::diagnostic::{did_you_mean, Diagnostic};
use crate::mapped::json_path::JsonPath;
use crate::mapped::topic::{TopicFilter, TopicName};
use crate::mapped::transform::{MapTo, Transform};
use crate::mapped::tree::{At, Entry, Node, NodeValue, Table};
use crate::mapped::unit::Unit;

/// The keys of a `[[device]]` table.
pub const DEVICE_KEYS: &[&str] = &[
    "id",
    "service",
    "preset",
    "name",
    "instance",
    "serial",
    "product",
    "connection",
    "phase",
    "stale_after",
    "on_stale",
    "settings",
    "const",
    "availability",
    "availability_mode",
    "source",
    "write",
];

/// Keys that only mean something as a preset's parameter.
pub const PRESET_PARAMETERS: &[&str] = &["topic", "channel", "component", "sensors"];

const MAPPING_KEYS: &[&str] = &[
    "path",
    "sum",
    "integrate",
    "element",
    "unit",
    "scale",
    "offset",
    "invert",
    "abs",
    "map",
    "min",
    "max",
    "round",
];
const AVAILABILITY_KEYS: &[&str] = &["topic", "online", "offline", "path"];
const WRITE_KEYS: &[&str] = &["path", "topic", "format", "retain", "min", "max"];

/// The longest `stale_after`: one day, as the protocol's `timeout`.
pub const MAX_STALE_AFTER: Duration = Duration::from_secs(86_400);

/// Highest preferred instance, as in a rich service declaration.
pub const MAX_INSTANCE: i64 = 999;

/// The placeholder a write's `format` must contain.
pub const VALUE_PLACEHOLDER: &str = "{value}";

/// The `[[device]]` tables of a file's root, each with where it starts. Any
/// other top-level key is a mistake of the file.
pub fn device_tables(root: &Table) -> (Vec<(Table, At)>, Vec<Diagnostic>) {
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for entry in &root.entries {
        if entry.key != "device" {
            errors.push(Diagnostic::error(
                &entry.key_at,
                format!(
                    "unknown top-level key '{}'{}; devices are declared in [[device]] tables",
                    entry.key,
                    did_you_mean(&entry.key, ["device"])
                ),
            ));
            continue;
        }
        match &entry.node.value {
            NodeValue::Array(items) => {
                for item in items {
                    match &item.value {
                        NodeValue::Table(t) => devices.push((t.clone(), item.at.clone())),
                        other => errors.push(Diagnostic::error(
                            &item.at,
                            format!("a device must be a table, got {}", other.type_name()),
                        )),
                    }
                }
            }
            NodeValue::Table(t) => devices.push((t.clone(), entry.node.at.clone())),
            other => errors.push(Diagnostic::error(
                &entry.node.at,
                format!(
                    "'device' must be [[device]] tables, got {}",
                    other.type_name()
                ),
            )),
        }
    }
    (devices, errors)
}

/// The id a device table names, if it is a usable one (to name the device in
/// messages before the rest is checked).
pub fn device_id(table: &Table) -> Option<String> {
    match &table.get("id")?.node.value {
        NodeValue::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// Checks a device's fully expanded table (no `preset` key left) and builds
/// its declaration. `at` is where the device starts; `preset` says what it
/// was expanded from.
pub fn parse_declaration(
    table: &Table,
    at: &At,
    catalog: &Catalog,
    preset: Option<PresetUse>,
) -> Result<Declaration, Vec<Diagnostic>> {
    let mut p = Parser {
        errors: Vec::new(),
        service: None,
        phase: Phase::L1,
    };
    let mut keys = Keys::new(table);

    let id = match keys.take("id") {
        None => {
            p.error(at, "has no 'id' (letters, digits and '_')");
            None
        }
        Some(e) => p
            .string(&e.node)
            .and_then(|s| MappedId::parse(&s).map_err(|m| p.error(&e.node.at, m)).ok()),
    };
    let service = match keys.take("service") {
        None => {
            p.error(
                at,
                "has no 'service' (a service type such as grid, pvinverter or temperature)",
            );
            None
        }
        Some(e) => p.string(&e.node).and_then(|s| match catalog.get(&s) {
            Some(t) => Some(t),
            None => {
                p.error(
                    &e.node.at,
                    format!(
                        "unknown service type '{s}'{} (known: {})",
                        did_you_mean(&s, catalog.type_names()),
                        catalog.type_names().collect::<Vec<_>>().join(", ")
                    ),
                );
                None
            }
        }),
    };
    p.service = service;
    if let Some(e) = keys.take("phase") {
        if let Some(s) = p.string(&e.node) {
            match Phase::parse(&s) {
                Some(ph) => p.phase = ph,
                None => p.error(
                    &e.node.at,
                    format!("phase must be \"L1\", \"L2\" or \"L3\", got '{s}'"),
                ),
            }
        }
    }

    let name = keys.take("name").and_then(|e| p.non_empty(&e.node, "name"));
    let product = keys
        .take("product")
        .and_then(|e| p.non_empty(&e.node, "product"));
    let connection = keys
        .take("connection")
        .and_then(|e| p.non_empty(&e.node, "connection"));
    let serial = keys.take("serial").and_then(|e| p.text_like(&e.node));
    let instance = keys.take("instance").and_then(|e| match e.node.value {
        NodeValue::Int(i) if (0..=MAX_INSTANCE).contains(&i) => u32::try_from(i).ok(),
        _ => {
            p.error(
                &e.node.at,
                format!("instance must be a whole number from 0 to {MAX_INSTANCE}"),
            );
            None
        }
    });
    let stale_after = keys
        .take("stale_after")
        .and_then(|e| duration(&e.node).map_err(|m| p.error(&e.node.at, m)).ok());
    let on_stale = keys
        .take("on_stale")
        .and_then(|e| p.choice(&e.node, "on_stale", &OnStale::NAMES, OnStale::parse))
        .unwrap_or_default();
    let availability_mode = keys
        .take("availability_mode")
        .and_then(|e| {
            p.choice(
                &e.node,
                "availability_mode",
                &AvailabilityMode::NAMES,
                AvailabilityMode::parse,
            )
        })
        .unwrap_or_default();

    let settings = keys
        .take("settings")
        .map(|e| p.fixed_values(&e.node, true))
        .unwrap_or_default();
    let constants = keys
        .take("const")
        .map(|e| p.fixed_values(&e.node, false))
        .unwrap_or_default();
    let availability = keys
        .take("availability")
        .map(|e| p.availability(&e.node))
        .unwrap_or_default();
    let sources = keys
        .take("source")
        .map(|e| p.sources(&e.node))
        .unwrap_or_default();
    let writes = keys
        .take("write")
        .map(|e| p.writes(&e.node))
        .unwrap_or_default();

    if keys.take("preset").is_some() {
        // Expansion removes it; seeing it here means the caller skipped that step.
        p.error(at, "'preset' was not expanded");
    }
    for entry in keys.rest() {
        let message = if PRESET_PARAMETERS.contains(&entry.key.as_str()) {
            format!(
                "'{}' is a parameter of presets, and this device names no preset",
                entry.key
            )
        } else {
            format!(
                "unknown key '{}'{}",
                entry.key,
                did_you_mean(&entry.key, DEVICE_KEYS.iter().copied())
            )
        };
        p.error(&entry.key_at, message);
    }

    p.check_device(at, &sources, &constants);

    let (Some(id), Some(service)) = (id, service) else {
        return Err(p.finish(device_id(table)));
    };
    if !p.errors.is_empty() {
        return Err(p.finish(Some(id.to_string())));
    }
    let connection = connection.unwrap_or_else(|| {
        let topic = sources
            .iter()
            .find_map(|s| s.topic.as_ref())
            .map(|t| t.as_str())
            .unwrap_or_default();
        format!("MQTT {topic}")
    });
    Ok(Declaration {
        id,
        service: service.name.clone(),
        name,
        instance,
        serial,
        product,
        connection,
        phase: p.phase,
        stale_after,
        on_stale,
        settings,
        constants,
        availability,
        availability_mode,
        sources,
        writes,
        preset,
    })
}

/// The keys of a table, marking which were read, so the rest can be named.
struct Keys<'t> {
    table: &'t Table,
    used: Vec<bool>,
}

impl<'t> Keys<'t> {
    fn new(table: &'t Table) -> Keys<'t> {
        Keys {
            table,
            used: vec![false; table.entries.len()],
        }
    }

    fn take(&mut self, key: &str) -> Option<&'t Entry> {
        let i = self.table.entries.iter().position(|e| e.key == key)?;
        if let Some(u) = self.used.get_mut(i) {
            *u = true;
        }
        self.table.entries.get(i)
    }

    fn rest(&self) -> impl Iterator<Item = &'t Entry> + '_ {
        self.table
            .entries
            .iter()
            .zip(self.used.iter())
            .filter(|(_, used)| !**used)
            .map(|(e, _)| e)
    }
}

struct Parser<'c> {
    errors: Vec<Diagnostic>,
    service: Option<&'c ServiceType>,
    phase: Phase,
}

/// A D-Bus path checked against the catalog type.
enum Checked<'c> {
    Found(String, &'c PathSpec),
    /// A preset's path the chosen type does not have: left out quietly.
    LeftOut,
    /// Refused (already reported), or no type to check against.
    Refused,
}

impl<'c> Parser<'c> {
    fn error(&mut self, at: &At, message: impl Into<String>) {
        self.errors.push(Diagnostic::error(at, message));
    }

    fn finish(self, id: Option<String>) -> Vec<Diagnostic> {
        let id = id.unwrap_or_default();
        self.errors.into_iter().map(|d| d.for_device(&id)).collect()
    }

    fn string(&mut self, node: &Node) -> Option<String> {
        match &node.value {
            NodeValue::Str(s) => Some(s.clone()),
            other => {
                self.error(
                    &node.at,
                    format!("expected a string, got {}", other.type_name()),
                );
                None
            }
        }
    }

    fn non_empty(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node)?;
        if s.trim().is_empty() {
            self.error(&node.at, format!("{what} must not be empty"));
            return None;
        }
        Some(s)
    }

    /// A string, or a number or boolean taken as its text (`serial =
    /// 116181234567`, `online = true`).
    fn text_like(&mut self, node: &Node) -> Option<String> {
        match &node.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::Bool(b) => Some(b.to_string()),
            other => {
                self.error(
                    &node.at,
                    format!("expected a string, got {}", other.type_name()),
                );
                None
            }
        }
    }

    fn number(&mut self, node: &Node) -> Option<f64> {
        match node.value {
            NodeValue::Int(i) => Some(i as f64),
            NodeValue::Float(f) if f.is_finite() => Some(f),
            _ => {
                self.error(
                    &node.at,
                    format!("expected a finite number, got {}", node.value.type_name()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node) -> Option<bool> {
        match node.value {
            NodeValue::Bool(b) => Some(b),
            _ => {
                self.error(
                    &node.at,
                    format!("expected true or false, got {}", node.value.type_name()),
                );
                None
            }
        }
    }

    fn choice<T>(
        &mut self,
        node: &Node,
        what: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(node)?;
        let v = parse(&s);
        if v.is_none() {
            self.error(
                &node.at,
                format!(
                    "{what} must be one of {}, got '{s}'{}",
                    names.join(", "),
                    did_you_mean(&s, names.iter().copied())
                ),
            );
        }
        v
    }

    fn table<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n Table> {
        match &node.value {
            NodeValue::Table(t) => Some(t),
            other => {
                self.error(
                    &node.at,
                    format!("{what} must be a table, got {}", other.type_name()),
                );
                None
            }
        }
    }

    /// A table, or an array of tables (`[device.availability]` and
    /// `[[device.availability]]` alike).
    fn tables<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(&'n Table, &'n At)> {
        match &node.value {
            NodeValue::Table(t) => vec![(t, &node.at)],
            NodeValue::Array(items) => items
                .iter()
                .filter_map(|i| self.table(i, what).map(|t| (t, &i.at)))
                .collect(),
            other => {
                self.error(
                    &node.at,
                    format!(
                        "{what} must be a table or an array of tables, got {}",
                        other.type_name()
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Checks a D-Bus path written at `at` against the type (with `Lx`
    /// resolved to the device's phase).
    fn path(&mut self, written: &str, at: &At) -> Checked<'c> {
        let Some(service) = self.service else {
            return Checked::Refused;
        };
        let Some(relative) = written.strip_prefix('/') else {
            self.error(at, format!("'{written}': a D-Bus path starts with '/'"));
            return Checked::Refused;
        };
        let resolved = self.phase.resolve(relative);
        match service.path(&resolved) {
            Some(spec) => Checked::Found(format!("/{resolved}"), spec),
            None if at.in_preset() => Checked::LeftOut,
            None => {
                let known: Vec<String> = service
                    .paths
                    .iter()
                    .map(|p| format!("/{}", p.path))
                    .collect();
                self.error(
                    at,
                    format!(
                        "'{written}' is not a path of {}{}",
                        service.name,
                        did_you_mean(written, known.iter().map(String::as_str))
                    ),
                );
                Checked::Refused
            }
        }
    }

    /// `settings` (persisted paths only) or `const` (any path of the type).
    fn fixed_values(&mut self, node: &Node, settings: bool) -> BTreeMap<String, Value> {
        let what = if settings { "settings" } else { "const" };
        let mut out = BTreeMap::new();
        let Some(table) = self.table(node, what) else {
            return out;
        };
        for entry in &table.entries {
            let Checked::Found(path, spec) = self.path(&entry.key, &entry.key_at) else {
                continue;
            };
            if spec.path == CUSTOM_NAME_PATH {
                self.error(
                    &entry.key_at,
                    "the custom name is set with the device's 'name' key",
                );
                continue;
            }
            if settings && spec.persist.is_none() {
                let names: Vec<String> = self
                    .service
                    .map(|s| s.persisted().map(|p| format!("/{}", p.path)).collect())
                    .unwrap_or_default();
                self.error(
                    &entry.key_at,
                    format!(
                        "'{path}' is not a setting (the persisted paths are {}); fixed values go in 'const'",
                        names.join(", ")
                    ),
                );
                continue;
            }
            match fixed_value(&entry.node, spec) {
                Ok(v) => {
                    out.insert(path, v);
                }
                Err(m) => self.error(&entry.node.at, format!("'{path}': {m}")),
            }
        }
        out
    }

    fn availability(&mut self, node: &Node) -> Vec<Availability> {
        let mut out = Vec::new();
        for (table, at) in self.tables(node, "availability") {
            let mut keys = Keys::new(table);
            let topic = match keys.take("topic") {
                None => {
                    self.error(at, "availability has no 'topic'");
                    None
                }
                Some(e) => self.string(&e.node).and_then(|s| {
                    TopicFilter::parse(&s)
                        .map_err(|m| self.error(&e.node.at, m))
                        .ok()
                }),
            };
            let online = keys
                .take("online")
                .map(|e| self.payloads(&e.node))
                .unwrap_or_else(|| vec!["online".into()]);
            let offline = keys
                .take("offline")
                .map(|e| self.payloads(&e.node))
                .unwrap_or_else(|| vec!["offline".into()]);
            let path = keys.take("path").and_then(|e| self.json_path(&e.node));
            if let Some(both) = online.iter().find(|o| offline.contains(o)) {
                self.error(
                    at,
                    format!("'{both}' is both an online and an offline payload"),
                );
            }
            for e in keys.rest() {
                self.unknown(e, AVAILABILITY_KEYS, "availability");
            }
            if let Some(topic) = topic {
                out.push(Availability {
                    topic,
                    online,
                    offline,
                    path,
                });
            }
        }
        out
    }

    fn payloads(&mut self, node: &Node) -> Vec<String> {
        let list = match &node.value {
            NodeValue::Array(items) => items.iter().filter_map(|i| self.text_like(i)).collect(),
            _ => self.text_like(node).into_iter().collect::<Vec<_>>(),
        };
        if list.is_empty() {
            self.error(&node.at, "give at least one payload");
        }
        list
    }

    fn json_path(&mut self, node: &Node) -> Option<JsonPath> {
        let s = self.string(node)?;
        s.parse().map_err(|m: String| self.error(&node.at, m)).ok()
    }

    fn unknown(&mut self, entry: &Entry, known: &[&str], what: &str) {
        self.error(
            &entry.key_at,
            format!(
                "unknown key '{}' in {what}{}",
                entry.key,
                did_you_mean(&entry.key, known.iter().copied())
            ),
        );
    }

    fn sources(&mut self, node: &Node) -> Vec<Source> {
        let mut out = Vec::new();
        for (table, at) in self.tables(node, "source") {
            let mut topic = None;
            let mut mappings = Vec::new();
            let mut has_topic_key = false;
            for entry in &table.entries {
                if entry.key == "topic" {
                    has_topic_key = true;
                    topic = self.string(&entry.node).and_then(|s| {
                        TopicFilter::parse(&s)
                            .map_err(|m| self.error(&entry.node.at, m))
                            .ok()
                    });
                } else if entry.key.starts_with('/') {
                    if let Some(m) = self.mapping(entry) {
                        mappings.push(m);
                    }
                } else {
                    let looks_like_path = entry.key.contains('/')
                        || entry.key.starts_with(|c: char| c.is_ascii_uppercase());
                    let hint = if looks_like_path {
                        format!(" (a D-Bus path starts with '/': \"/{}\")", entry.key)
                    } else {
                        did_you_mean(&entry.key, ["topic"])
                    };
                    self.error(
                        &entry.key_at,
                        format!(
                            "unknown key '{}' in source{hint}; a source has a 'topic' and \"/D-Bus/Path\" = \"json.path\" entries",
                            entry.key
                        ),
                    );
                }
            }
            let reads = mappings.iter().any(|m| matches!(m.rule, Rule::Extract(_)));
            if reads && topic.is_none() && !has_topic_key {
                self.error(at, "source has no 'topic'");
            }
            out.push(Source { topic, mappings });
        }
        out
    }

    fn mapping(&mut self, entry: &Entry) -> Option<Mapping> {
        let (path, spec) = match self.path(&entry.key, &entry.key_at) {
            Checked::Found(p, s) => (p, s),
            Checked::LeftOut | Checked::Refused => return None,
        };
        if spec.persist.is_some() {
            self.error(
                &entry.key_at,
                format!("'{path}' is a setting kept in localsettings; give its initial value in 'settings'"),
            );
            return None;
        }
        let (rule, transform) = match &entry.node.value {
            NodeValue::Str(s) => match s.parse::<JsonPath>() {
                Ok(p) => (Rule::Extract(p), Transform::default()),
                Err(m) => {
                    self.error(&entry.node.at, m);
                    return None;
                }
            },
            NodeValue::Table(t) => self.mapping_table(t, &entry.node.at, &path, spec)?,
            other => {
                self.error(
                    &entry.node.at,
                    format!(
                        "'{path}' must be a JSON path (\"ENERGY.Power\") or a table ({{ path = \"…\", unit = \"Wh\" }}), got {}",
                        other.type_name()
                    ),
                );
                return None;
            }
        };
        Some(Mapping {
            path,
            rule,
            transform,
        })
    }

    fn mapping_table(
        &mut self,
        table: &Table,
        at: &At,
        path: &str,
        spec: &PathSpec,
    ) -> Option<(Rule, Transform)> {
        let before = self.errors.len();
        let mut keys = Keys::new(table);
        let extract = keys.take("path");
        let sum = keys.take("sum");
        let integrate = keys.take("integrate");
        let rule = match (extract, sum, integrate) {
            (Some(e), None, None) => self.json_path(&e.node).map(Rule::Extract),
            (None, Some(e), None) => self.sum(&e.node),
            (None, None, Some(e)) => self.integrate(&e.node, path, spec),
            (None, None, None) => {
                self.error(
                    at,
                    format!("'{path}' needs 'path' (or 'sum', or 'integrate')"),
                );
                None
            }
            _ => {
                self.error(
                    at,
                    format!("'{path}' takes one of 'path', 'sum' and 'integrate'"),
                );
                None
            }
        };
        let computed = !matches!(rule, Some(Rule::Extract(_)) | None);
        let mut t = Transform::default();
        if let Some(e) = keys.take("element") {
            match e.node.value {
                NodeValue::Int(i) if i >= 0 => t.element = usize::try_from(i).ok(),
                _ => self.error(&e.node.at, "element must be a whole number from 0"),
            }
        }
        if let Some(e) = keys.take("unit") {
            if let Some(name) = self.string(&e.node) {
                let unit = Unit::parse(&name);
                match unit.conversion_to(spec.unit.as_deref()) {
                    Ok(c) => {
                        t.convert = Some(c);
                        t.unit = Some(unit);
                    }
                    Err(m) => self.error(&e.node.at, format!("'{path}': {m}")),
                }
            }
        }
        t.scale = keys.take("scale").and_then(|e| self.number(&e.node));
        t.offset = keys.take("offset").and_then(|e| self.number(&e.node));
        t.invert = keys
            .take("invert")
            .and_then(|e| self.boolean(&e.node))
            .unwrap_or(false);
        t.abs = keys
            .take("abs")
            .and_then(|e| self.boolean(&e.node))
            .unwrap_or(false);
        if let Some(e) = keys.take("map") {
            t.map = self.map(&e.node);
        }
        t.min = keys.take("min").and_then(|e| self.number(&e.node));
        t.max = keys.take("max").and_then(|e| self.number(&e.node));
        if let (Some(min), Some(max)) = (t.min, t.max) {
            if min > max {
                self.error(at, format!("'{path}': min {min} is above max {max}"));
            }
        }
        if let Some(e) = keys.take("round") {
            match e.node.value {
                NodeValue::Int(i) if (0..=15).contains(&i) => t.round = u8::try_from(i).ok(),
                _ => self.error(&e.node.at, "round is the number of decimals, 0 to 15"),
            }
        }
        if computed && (t.unit.is_some() || t.element.is_some()) {
            self.error(
                at,
                format!("'{path}': a computed path is already in the D-Bus units; 'unit' and 'element' do not apply"),
            );
        }
        for e in keys.rest() {
            self.unknown(e, MAPPING_KEYS, &format!("'{path}'"));
        }
        if self.errors.len() > before {
            return None;
        }
        rule.map(|r| (r, t))
    }

    fn map(&mut self, node: &Node) -> Vec<(String, MapTo)> {
        let Some(table) = self.table(node, "map") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in &table.entries {
            let to = match &e.node.value {
                NodeValue::Int(i) => MapTo::Number(*i as f64),
                NodeValue::Float(f) if f.is_finite() => MapTo::Number(*f),
                NodeValue::Bool(b) => MapTo::Number(if *b { 1.0 } else { 0.0 }),
                NodeValue::Str(s) => MapTo::Text(s.clone()),
                other => {
                    self.error(
                        &e.node.at,
                        format!(
                            "a map value is a number or a string, got {}",
                            other.type_name()
                        ),
                    );
                    continue;
                }
            };
            out.push((e.key.clone(), to));
        }
        if out.is_empty() {
            self.error(&node.at, "the map is empty");
        }
        out
    }

    fn sum(&mut self, node: &Node) -> Option<Rule> {
        let NodeValue::Array(items) = &node.value else {
            self.error(
                &node.at,
                "sum is a list of D-Bus paths: [\"/Ac/L1/Power\", \"/Ac/L2/Power\"]",
            );
            return None;
        };
        let mut inputs = Vec::new();
        for item in items {
            let written = self.string(item)?;
            match self.path(&written, &item.at) {
                Checked::Found(p, _) => inputs.push(p),
                Checked::LeftOut | Checked::Refused => return None,
            }
        }
        if inputs.is_empty() {
            self.error(&node.at, "sum needs at least one path");
            return None;
        }
        Some(Rule::Sum(inputs))
    }

    fn integrate(&mut self, node: &Node, path: &str, spec: &PathSpec) -> Option<Rule> {
        let written = self.string(node)?;
        let direction_ok = path.ends_with("/Energy/Forward") || path.ends_with("/Energy/Reverse");
        if !direction_ok || Unit::joules_into(spec.unit.as_deref()).is_none() {
            self.error(
                &node.at,
                format!("'{path}': only an energy counter (…/Energy/Forward or …/Energy/Reverse) can be integrated"),
            );
            return None;
        }
        match self.path(&written, &node.at) {
            Checked::Found(input, input_spec) => {
                if Unit::watts_from(input_spec.unit.as_deref()).is_none() {
                    self.error(
                        &node.at,
                        format!(
                            "'{input}' is not a power path; energy is integrated from power (W)"
                        ),
                    );
                    return None;
                }
                Some(Rule::Integrate(input))
            }
            Checked::LeftOut | Checked::Refused => None,
        }
    }

    fn writes(&mut self, node: &Node) -> Vec<Write> {
        let mut out: Vec<Write> = Vec::new();
        for (table, at) in self.tables(node, "write") {
            let mut keys = Keys::new(table);
            let path = match keys.take("path") {
                None => {
                    self.error(at, "write has no 'path'");
                    None
                }
                Some(e) => self
                    .string(&e.node)
                    .and_then(|s| match self.path(&s, &e.node.at) {
                        Checked::Found(p, spec) if spec.writeable => Some(p),
                        Checked::Found(p, _) => {
                            self.error(&e.node.at, format!("'{p}' is not writeable"));
                            None
                        }
                        Checked::LeftOut | Checked::Refused => None,
                    }),
            };
            let topic = match keys.take("topic") {
                None => {
                    self.error(at, "write has no 'topic'");
                    None
                }
                Some(e) => self.string(&e.node).and_then(|s| {
                    TopicName::parse(&s)
                        .map_err(|m| self.error(&e.node.at, m))
                        .ok()
                }),
            };
            let format = keys.take("format").and_then(|e| {
                let f = self.string(&e.node)?;
                if !f.contains(VALUE_PLACEHOLDER) {
                    self.error(
                        &e.node.at,
                        format!("format must contain {VALUE_PLACEHOLDER}"),
                    );
                }
                Some(f)
            });
            let retain = keys
                .take("retain")
                .and_then(|e| self.boolean(&e.node))
                .unwrap_or(false);
            let min = keys.take("min").and_then(|e| self.number(&e.node));
            let max = keys.take("max").and_then(|e| self.number(&e.node));
            if let (Some(lo), Some(hi)) = (min, max) {
                if lo > hi {
                    self.error(at, format!("write: min {lo} is above max {hi}"));
                }
            }
            for e in keys.rest() {
                self.unknown(e, WRITE_KEYS, "write");
            }
            if let (Some(path), Some(topic)) = (path, topic) {
                if out.iter().any(|w| w.path == path) {
                    self.error(at, format!("'{path}' has two writes"));
                    continue;
                }
                out.push(Write {
                    path,
                    topic,
                    format,
                    retain,
                    min,
                    max,
                });
            }
        }
        out
    }

    /// Checks across keys: something to read, one computation per path, no
    /// path both fixed and read.
    fn check_device(&mut self, at: &At, sources: &[Source], constants: &BTreeMap<String, Value>) {
        if self.service.is_none() {
            return;
        }
        if !sources.iter().any(|s| s.topic.is_some()) {
            self.error(
                at,
                "has no [[device.source]] with a topic, so nothing would ever reach D-Bus",
            );
        }
        let mut computed = BTreeSet::new();
        for m in sources.iter().flat_map(|s| s.mappings.iter()) {
            if constants.contains_key(&m.path) {
                self.error(
                    at,
                    format!(
                        "'{}' is both fixed in 'const' and read from a source",
                        m.path
                    ),
                );
            }
            if !matches!(m.rule, Rule::Extract(_)) && !computed.insert(m.path.clone()) {
                self.error(at, format!("'{}' is computed twice", m.path));
            }
        }
        for m in sources.iter().flat_map(|s| s.mappings.iter()) {
            if matches!(m.rule, Rule::Extract(_)) && computed.contains(&m.path) {
                self.error(
                    at,
                    format!("'{}' is both computed and read from a source", m.path),
                );
            }
        }
    }
}

/// A `settings` or `const` value as the path's kind holds it.
fn fixed_value(node: &Node, spec: &PathSpec) -> Result<Value, String> {
    let v = match (&node.value, spec.kind) {
        (NodeValue::Int(i), ValueKind::Float) => Value::F64(*i as f64),
        (NodeValue::Int(i), ValueKind::Int | ValueKind::Any) => Value::int(*i),
        (NodeValue::Float(f), ValueKind::Float | ValueKind::Any) if f.is_finite() => Value::F64(*f),
        (NodeValue::Float(f), ValueKind::Int) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Value::int(*f as i64)
        }
        (NodeValue::Bool(b), ValueKind::Int | ValueKind::Any) => Value::I32(i32::from(*b)),
        (NodeValue::Str(s), ValueKind::Str | ValueKind::Any) => Value::Str(s.clone()),
        (other, kind) => {
            return Err(format!(
                "expected {} for a {kind} path, got {}",
                match kind {
                    ValueKind::Int => "a whole number",
                    ValueKind::Float => "a number",
                    ValueKind::Str => "a string",
                    ValueKind::Any => "a number or string",
                },
                other.type_name()
            ))
        }
    };
    if let Some(x) = v.as_f64() {
        if spec.min.is_some_and(|m| x < m) || spec.max.is_some_and(|m| x > m) {
            return Err(format!(
                "{x} is outside {}..{}",
                spec.min.map(|m| m.to_string()).unwrap_or_default(),
                spec.max.map(|m| m.to_string()).unwrap_or_default()
            ));
        }
    }
    Ok(v)
}

/// `stale_after`: seconds as a number or text, or a duration text (`"30s"`,
/// `"2m"`, `"1h 30m"`).
fn duration(node: &Node) -> Result<Duration, String> {
    let seconds = match &node.value {
        NodeValue::Int(i) => Some(*i as f64),
        NodeValue::Float(f) => Some(*f),
        NodeValue::Str(s) => s.trim().parse::<f64>().ok(),
        other => {
            return Err(format!(
                "stale_after is seconds or a duration like \"30s\" or \"2m\", got {}",
                other.type_name()
            ))
        }
    };
    let d = match (seconds, &node.value) {
        (Some(x), _) if x.is_finite() && x > 0.0 && x <= MAX_STALE_AFTER.as_secs_f64() => {
            Duration::from_secs_f64(x)
        }
        (Some(x), _) => {
            return Err(format!(
                "stale_after must be more than 0 and at most one day, got {x}"
            ))
        }
        (None, NodeValue::Str(s)) => humantime::parse_duration(s.trim()).map_err(|e| {
            format!("stale_after: '{s}' is not a duration like \"30s\" or \"2m\" ({e})")
        })?,
        (None, _) => return Err("stale_after is not a duration".into()),
    };
    if d.is_zero() || d > MAX_STALE_AFTER {
        return Err("stale_after must be more than 0 and at most one day".into());
    }
    Ok(d)
}
