//! Presets: what a known kind of device publishes, as data files, so a user
//! declares a Shelly Pro 3EM with a topic and a service instead of twenty
//! mappings. The built-in presets are `presets/*.toml`, embedded in the
//! binary; user presets in `<data-dir>/presets.d/` add to them or replace one
//! of the same name. Knows no device state and no I/O.
//!
//! # File format
//! ```toml
//! description = "Shelly Pro 3EM (Gen2+, triphase profile)"
//! services = ["grid", "acload", "pvinverter", "genset"]   # or "any"
//!
//! [parameters]                 # topic, serial, channel, component, sensors
//! topic = { help = "the device's topic prefix" }            # required
//! channel = { default = "0", help = "…" }                   # has a default
//! serial = { optional = true, help = "…" }                  # may be left out
//!
//! [variant.pvinverter]         # per service
//! abs_power_and_current = true # production positive
//! swap_energy_direction = true # Forward <-> Reverse counters
//!
//! [device]                     # a [[device]] table; "{topic}" is replaced
//! product = "Shelly Pro 3EM"
//! [[device.source]]
//! topic = "{topic}/status/em:0"
//! "/Ac/Power" = "total_act_power"
//! ```
//! A source table may also say `only_with = "<parameter>"` or
//! `only_without = "<parameter>"` (kept only when the user gave, or did not
//! give, that parameter), and `for_each = "<table parameter>"` (repeated for
//! each entry of it, with `{key}` and `{value}` bound).

pub mod embedded;
mod expand;

pub use expand::expand;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::declaration::parse::PRESET_PARAMETERS;
use super::diagnostic::{did_you_mean, Diagnostic};
use super::tree::{parse_toml, At, NodeValue, SourceText, Table, TextKind};
use crate::catalog::Catalog;

/// The names a preset parameter may have: the preset-only keys of a device,
/// and `serial` (which is also `/Serial`).
pub const PARAMETER_NAMES: &[&str] = &["topic", "serial", "channel", "component", "sensors"];

/// One preset, checked for structure (its device template is checked when a
/// device uses it, and by [`Presets::check`]).
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    /// What the preset is for, as its file says (read by the tests that
    /// check every preset is described).
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    pub description: String,
    /// The service types it may be used as; `None` for any.
    pub services: Option<Vec<String>>,
    pub parameters: Vec<Parameter>,
    /// Changes per service type.
    pub variants: BTreeMap<String, Variant>,
    /// The `[device]` template.
    pub device: Table,
    /// Where the preset file starts.
    pub at: At,
    /// `true` for a preset built into the binary.
    pub builtin: bool,
}

/// A parameter of a preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    /// The value when the user gives none.
    pub default: Option<String>,
    /// With no default: `true` lets the user leave it out (a source may then
    /// depend on it with `only_with`/`only_without`), `false` requires it.
    pub optional: bool,
    /// `true` for a table parameter (`sensors = { "/Temperature" = "x" }`).
    pub table: bool,
    pub help: String,
}

/// How a preset changes for one service type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variant {
    /// `abs()` of every `*/Power` and `*/Current` the preset maps: a meter
    /// measuring production reports it negative, Venus wants it positive.
    pub abs_power_and_current: bool,
    /// Swap `*/Energy/Forward` and `*/Energy/Reverse`: a meter counts
    /// production as returned energy, Venus as forward.
    pub swap_energy_direction: bool,
}

/// All presets by name.
#[derive(Debug, Clone, Default)]
pub struct Presets {
    presets: BTreeMap<String, Preset>,
    /// User presets that failed to load (a built-in of the same name is not
    /// used in their place).
    broken: Vec<String>,
}

impl Presets {
    /// The built-in presets. A unit test guarantees they all load and check.
    pub fn builtin() -> Presets {
        let mut presets = Presets::default();
        for file in embedded::FILES {
            let text = Arc::new(SourceText {
                name: format!("built-in preset {}", file.name),
                text: file.text.to_string(),
                kind: TextKind::Preset,
            });
            if let Ok(p) = parse_preset(file.name, text, true) {
                presets.presets.insert(p.name.clone(), p);
            }
        }
        presets
    }

    /// The built-in presets with the user's preset files (`(name, file
    /// label, text)`, name = file name without `.toml`) added; a user preset
    /// of a built-in's name replaces it, which is reported.
    pub fn with_user_files(
        user: impl IntoIterator<Item = (String, String, String)>,
    ) -> (Presets, Vec<Diagnostic>) {
        let mut presets = Presets::builtin();
        let mut diagnostics = Vec::new();
        for (name, label, text) in user {
            let text = Arc::new(SourceText {
                name: label,
                text,
                kind: TextKind::Preset,
            });
            let start = At {
                text: text.clone(),
                offset: None,
            };
            match parse_preset(&name, text, false) {
                Ok(p) => {
                    if presets.get(&name).is_some_and(|old| old.builtin) {
                        diagnostics.push(Diagnostic::warning(
                            &start,
                            format!("replaces the built-in preset '{name}'"),
                        ));
                    }
                    presets.presets.insert(name, p);
                }
                Err(errors) => {
                    diagnostics.extend(errors);
                    // A broken user preset must not leave a built-in one of
                    // the same name in use unnoticed: devices asking for it
                    // are refused with a pointer to these errors.
                    presets.presets.remove(&name);
                    presets.broken.push(name);
                }
            }
        }
        (presets, diagnostics)
    }

    /// The preset of that name.
    pub fn get(&self, name: &str) -> Option<&Preset> {
        self.presets.get(name)
    }

    #[cfg(any(test, feature = "internals"))]
    /// All presets, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Preset> {
        self.presets.values()
    }

    /// Names of all presets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.presets.keys().map(String::as_str)
    }

    /// `true` when a user preset of that name failed to load.
    pub fn is_broken(&self, name: &str) -> bool {
        self.broken.iter().any(|b| b == name)
    }

    /// Checks each preset's template by expanding it for every service it
    /// allows, with example parameters; reports mistakes in the preset files
    /// (a path none of its services has, a broken mapping).
    pub fn check(&self, catalog: &Catalog) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = Vec::new();
        for preset in self.presets.values() {
            for d in expand::check_preset(preset, catalog) {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        out
    }
}

/// Reads one preset file.
fn parse_preset(
    name: &str,
    text: Arc<SourceText>,
    builtin: bool,
) -> Result<Preset, Vec<Diagnostic>> {
    let start = At {
        text: text.clone(),
        offset: Some(0),
    };
    let root = parse_toml(text).map_err(|e| vec![Diagnostic::error(&e.at, e.message)])?;
    let mut errors = Vec::new();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errors.push(Diagnostic::error(
            &start,
            format!("'{name}' is not a preset name (letters, digits, '-' and '_')"),
        ));
    }
    let mut description = String::new();
    let mut services = None;
    let mut parameters = Vec::new();
    let mut variants = BTreeMap::new();
    let mut device = None;
    for entry in &root.entries {
        let node = &entry.node;
        match (entry.key.as_str(), &node.value) {
            ("description", NodeValue::Str(s)) => description = s.clone(),
            ("services", NodeValue::Str(s)) if s == "any" => services = None,
            ("services", NodeValue::Array(items)) => {
                let mut list = Vec::new();
                for item in items {
                    match &item.value {
                        NodeValue::Str(s) => list.push(s.clone()),
                        _ => errors.push(Diagnostic::error(&item.at, "a service is a string")),
                    }
                }
                services = Some(list);
            }
            ("parameters", NodeValue::Table(t)) => {
                for p in &t.entries {
                    match parse_parameter(p) {
                        Ok(param) => parameters.push(param),
                        Err(d) => errors.push(d),
                    }
                }
            }
            ("variant", NodeValue::Table(t)) => {
                for v in &t.entries {
                    match parse_variant(v) {
                        Ok(variant) => {
                            variants.insert(v.key.clone(), variant);
                        }
                        Err(d) => errors.push(d),
                    }
                }
            }
            ("device", NodeValue::Table(t)) => device = Some(t.clone()),
            ("description" | "services" | "parameters" | "variant" | "device", other) => errors
                .push(Diagnostic::error(
                    &node.at,
                    format!("'{}' has the wrong type ({})", entry.key, other.type_name()),
                )),
            (key, _) => errors.push(Diagnostic::error(
                &entry.key_at,
                format!(
                    "unknown key '{key}' in a preset{}",
                    did_you_mean(
                        key,
                        ["description", "services", "parameters", "variant", "device"]
                    )
                ),
            )),
        }
    }
    if let Some(list) = &services {
        for variant in variants.keys() {
            if !list.contains(variant) {
                errors.push(Diagnostic::error(
                    &start,
                    format!("variant '{variant}' is not one of the preset's services"),
                ));
            }
        }
    }
    let Some(device) = device else {
        errors.push(Diagnostic::error(&start, "a preset needs a [device] table"));
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Preset {
        name: name.to_string(),
        description,
        services,
        parameters,
        variants,
        device,
        at: start,
        builtin,
    })
}

fn parse_parameter(entry: &super::tree::Entry) -> Result<Parameter, Diagnostic> {
    if !PARAMETER_NAMES.contains(&entry.key.as_str()) {
        return Err(Diagnostic::error(
            &entry.key_at,
            format!(
                "a preset parameter is one of {}, not '{}'",
                PARAMETER_NAMES.join(", "),
                entry.key
            ),
        ));
    }
    let NodeValue::Table(t) = &entry.node.value else {
        return Err(Diagnostic::error(
            &entry.node.at,
            "a parameter is a table: { default = \"…\", help = \"…\" }",
        ));
    };
    let mut param = Parameter {
        name: entry.key.clone(),
        default: None,
        optional: false,
        table: false,
        help: String::new(),
    };
    for e in &t.entries {
        match (e.key.as_str(), &e.node.value) {
            ("default", NodeValue::Str(s)) => param.default = Some(s.clone()),
            ("help", NodeValue::Str(s)) => param.help = s.clone(),
            ("table", NodeValue::Bool(b)) => param.table = *b,
            ("optional", NodeValue::Bool(b)) => param.optional = *b,
            (k, _) => {
                return Err(Diagnostic::error(
                    &e.key_at,
                    format!("'{k}': a parameter has default (a string), help (a string), optional and table (true/false)"),
                ))
            }
        }
    }
    if param.table && param.default.is_some() {
        return Err(Diagnostic::error(
            &entry.key_at,
            "a table parameter has no default",
        ));
    }
    // Only `serial` is also a declaration key; the others must be preset-only.
    debug_assert!(param.name == "serial" || PRESET_PARAMETERS.contains(&param.name.as_str()));
    Ok(param)
}

fn parse_variant(entry: &super::tree::Entry) -> Result<Variant, Diagnostic> {
    let NodeValue::Table(t) = &entry.node.value else {
        return Err(Diagnostic::error(&entry.node.at, "a variant is a table"));
    };
    let mut v = Variant::default();
    for e in &t.entries {
        match (e.key.as_str(), &e.node.value) {
            ("abs_power_and_current", NodeValue::Bool(b)) => v.abs_power_and_current = *b,
            ("swap_energy_direction", NodeValue::Bool(b)) => v.swap_energy_direction = *b,
            (k, _) => {
                return Err(Diagnostic::error(
                    &e.key_at,
                    format!(
                        "'{k}': a variant has abs_power_and_current and swap_energy_direction (true/false)"
                    ),
                ))
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod payload_tests;
#[cfg(test)]
mod tests;
