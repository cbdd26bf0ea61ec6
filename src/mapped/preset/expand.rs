//! Turns a device table into its declaration: without a preset it is parsed
//! as written; with one, the preset's template is filled in with the
//! parameters, changed for the chosen service (the pvinverter variant), and
//! the user's own keys are laid over it (the user's value of a key, a path or
//! a write wins), before the one parser checks the result.

use super::{Parameter, Preset, Presets, Variant, PARAMETER_NAMES};
use crate::catalog::Catalog;
use crate::mapped::declaration::parse::{device_id, parse_declaration, PRESET_PARAMETERS};
use crate::mapped::declaration::{is_power_or_current, Declaration, Phase, PresetUse};
use crate::mapped::diagnostic::{did_you_mean, Diagnostic};
use crate::mapped::tree::{At, Node, NodeValue, Table};

/// A value bound to a placeholder: `{topic}` → `"shellies/em3"`.
struct Binding {
    name: String,
    value: String,
    /// Where the value was written, for keys made from it (`{key}` in a
    /// `for_each` source is the user's D-Bus path, checked as the user's).
    at: Option<At>,
}

/// A device table (as written in a file or topic) → its declaration.
pub fn expand(
    device: &Table,
    at: &At,
    presets: &Presets,
    catalog: &Catalog,
) -> Result<Declaration, Vec<Diagnostic>> {
    let Some(preset_entry) = device.get("preset") else {
        return parse_declaration(device, at, catalog, None);
    };
    let id = device_id(device).unwrap_or_default();
    let fail = |d: Diagnostic| Err(vec![d.for_device(&id)]);
    let name = match &preset_entry.node.value {
        NodeValue::Str(s) => s.clone(),
        other => {
            return fail(Diagnostic::error(
                &preset_entry.node.at,
                format!("preset must be a string, got {}", other.type_name()),
            ))
        }
    };
    let Some(preset) = presets.get(&name) else {
        let message = if presets.is_broken(&name) {
            format!("preset '{name}' could not be loaded (see the errors of its file)")
        } else {
            format!(
                "unknown preset '{name}'{} (known: {})",
                did_you_mean(&name, presets.names()),
                presets.names().collect::<Vec<_>>().join(", ")
            )
        };
        return fail(Diagnostic::error(&preset_entry.node.at, message));
    };
    let with_id = |errors: Vec<Diagnostic>| {
        errors
            .into_iter()
            .map(|d| d.for_device(&id))
            .collect::<Vec<_>>()
    };
    let (merged, used, mut errors) = instantiate(device, preset).map_err(with_id)?;
    // Mistakes in the template (a placeholder that is no parameter) do not
    // hide the parser's findings: all are reported together.
    match parse_declaration(&merged, at, catalog, Some(used)) {
        Ok(d) if errors.is_empty() => Ok(d),
        Ok(_) => Err(with_id(errors)),
        Err(more) => {
            errors.extend(more);
            Err(with_id(errors))
        }
    }
}

/// The preset filled in for this device and merged with the user's keys,
/// with the mistakes found in the template. `Err` when the parameters do
/// not fit the preset (nothing to fill in).
fn instantiate(
    device: &Table,
    preset: &Preset,
) -> Result<(Table, PresetUse, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let service = match device.get("service").map(|e| &e.node.value) {
        Some(NodeValue::Str(s)) => Some(s.clone()),
        _ => None,
    };
    if let (Some(s), Some(allowed)) = (&service, &preset.services) {
        if !allowed.contains(s) {
            if let Some(e) = device.get("service") {
                errors.push(Diagnostic::error(
                    &e.node.at,
                    format!(
                        "preset '{}' serves {}, not {s}",
                        preset.name,
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }

    // Parameters: the user's value, else the default; unknown ones refused.
    let mut bindings = Vec::new();
    let mut tables: Vec<(String, Table)> = Vec::new();
    let mut given = Vec::new();
    for entry in &device.entries {
        let is_parameter = PRESET_PARAMETERS.contains(&entry.key.as_str());
        let declared = preset.parameters.iter().any(|p| p.name == entry.key);
        if is_parameter && !declared {
            errors.push(Diagnostic::error(
                &entry.key_at,
                format!(
                    "preset '{}' takes no '{}' (its parameters: {})",
                    preset.name,
                    entry.key,
                    parameter_list(&preset.parameters)
                ),
            ));
        }
    }
    let mut used = Vec::new();
    for p in &preset.parameters {
        let entry = device.get(&p.name);
        if entry.is_some() {
            given.push(p.name.clone());
        }
        match (entry, p.table) {
            (Some(e), true) => match &e.node.value {
                NodeValue::Table(t) => tables.push((p.name.clone(), t.clone())),
                other => errors.push(Diagnostic::error(
                    &e.node.at,
                    format!("'{}' must be a table, got {}", p.name, other.type_name()),
                )),
            },
            (Some(e), false) => match text_like(&e.node) {
                Some(v) => {
                    // OpenDTU's own setting is "solar/": a trailing '/'
                    // would make an empty topic level that never matches.
                    let v = match v.strip_suffix('/') {
                        Some(trimmed) if p.name == "topic" && !trimmed.is_empty() => {
                            trimmed.to_string()
                        }
                        _ => v,
                    };
                    used.push((p.name.clone(), v.clone()));
                    bindings.push(Binding {
                        name: p.name.clone(),
                        value: v,
                        at: None,
                    });
                }
                None => errors.push(Diagnostic::error(
                    &e.node.at,
                    format!(
                        "'{}' must be a string, got {}",
                        p.name,
                        e.node.value.type_name()
                    ),
                )),
            },
            (None, _) => match &p.default {
                None if p.optional => {}
                Some(v) => {
                    used.push((p.name.clone(), v.clone()));
                    bindings.push(Binding {
                        name: p.name.clone(),
                        value: v.clone(),
                        at: None,
                    });
                }
                None => {
                    let start = device
                        .get("preset")
                        .map(|e| e.key_at.clone())
                        .unwrap_or_else(At::nowhere);
                    let help = if p.help.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", p.help)
                    };
                    errors.push(Diagnostic::error(
                        &start,
                        format!("preset '{}' needs '{}'{help}", preset.name, p.name),
                    ));
                }
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut template = preset.device.clone();
    instantiate_sources(&mut template, &given, &tables, &mut errors);
    substitute_table(&mut template, &bindings, true, &mut errors);
    let variant = service
        .as_deref()
        .and_then(|s| preset.variants.get(s))
        .copied()
        .unwrap_or_default();
    apply_variant(&mut template, variant);

    let phase = [device, &template]
        .iter()
        .find_map(|t| match t.get("phase").map(|e| &e.node.value) {
            Some(NodeValue::Str(s)) => Phase::parse(s),
            _ => None,
        })
        .unwrap_or_default();
    let merged = merge(template, device, phase);
    Ok((
        merged,
        PresetUse {
            name: preset.name.clone(),
            parameters: used,
        },
        errors,
    ))
}

fn parameter_list(params: &[Parameter]) -> String {
    if params.is_empty() {
        "none".into()
    } else {
        params
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn text_like(node: &Node) -> Option<String> {
    match &node.value {
        NodeValue::Str(s) => Some(s.clone()),
        NodeValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A table or an array of tables as a list of nodes.
fn as_list(node: &Node) -> Vec<Node> {
    match &node.value {
        NodeValue::Array(items) => items.clone(),
        _ => vec![node.clone()],
    }
}

fn list_node(items: Vec<Node>, at: At) -> Node {
    Node {
        at,
        value: NodeValue::Array(items),
    }
}

/// Applies `only_with`, `only_without` and `for_each` to the template's
/// sources.
fn instantiate_sources(
    template: &mut Table,
    given: &[String],
    tables: &[(String, Table)],
    errors: &mut Vec<Diagnostic>,
) {
    let Some(entry) = template.remove("source") else {
        return;
    };
    let mut out = Vec::new();
    for source in as_list(&entry.node) {
        let Node {
            at,
            value: NodeValue::Table(mut table),
        } = source
        else {
            out.push(source);
            continue;
        };
        let mut keep = true;
        for (key, wanted) in [("only_with", true), ("only_without", false)] {
            if let Some(e) = table.remove(key) {
                match &e.node.value {
                    NodeValue::Str(p) => keep &= given.contains(p) == wanted,
                    _ => errors.push(Diagnostic::error(
                        &e.node.at,
                        format!("{key} names a parameter"),
                    )),
                }
            }
        }
        if !keep {
            continue;
        }
        match table.remove("for_each") {
            None => out.push(Node {
                at,
                value: NodeValue::Table(table),
            }),
            Some(e) => {
                let param = match &e.node.value {
                    NodeValue::Str(p) => p.clone(),
                    _ => String::new(),
                };
                let Some((_, entries)) = tables.iter().find(|(n, _)| *n == param) else {
                    errors.push(Diagnostic::error(
                        &e.node.at,
                        "for_each names a table parameter of the preset",
                    ));
                    continue;
                };
                for item in &entries.entries {
                    let Some(value) = text_like(&item.node) else {
                        errors.push(Diagnostic::error(
                            &item.node.at,
                            format!("'{}' must be a string", item.key),
                        ));
                        continue;
                    };
                    let bindings = [
                        Binding {
                            name: "key".into(),
                            value: item.key.clone(),
                            at: Some(item.key_at.clone()),
                        },
                        Binding {
                            name: "value".into(),
                            value,
                            at: Some(item.node.at.clone()),
                        },
                    ];
                    let mut copy = table.clone();
                    substitute_table(&mut copy, &bindings, false, errors);
                    out.push(Node {
                        at: at.clone(),
                        value: NodeValue::Table(copy),
                    });
                }
            }
        }
    }
    template.set("source", entry.key_at, list_node(out, entry.node.at));
}

/// Replaces `{name}` placeholders in every string and key. A topic that still
/// has a placeholder names a parameter the preset does not have.
///
/// `check_topics` is false while a `for_each` copy is made (the preset's
/// own parameters are replaced afterwards).
fn substitute_table(
    table: &mut Table,
    bindings: &[Binding],
    check_topics: bool,
    errors: &mut Vec<Diagnostic>,
) {
    for entry in &mut table.entries {
        if entry.key.contains('{') {
            for b in bindings {
                let placeholder = format!("{{{}}}", b.name);
                if entry.key.contains(&placeholder) {
                    entry.key = entry.key.replace(&placeholder, &b.value);
                    if let Some(at) = &b.at {
                        entry.key_at = at.clone();
                    }
                }
            }
        }
        substitute_node(&mut entry.node, bindings, errors);
        if entry.key == "topic" && check_topics {
            if let NodeValue::Str(s) = &entry.node.value {
                if s.contains('{') {
                    errors.push(Diagnostic::error(
                        &entry.node.at,
                        format!("'{s}': a {{placeholder}} that is not a parameter of the preset"),
                    ));
                }
            }
        }
    }
}

fn substitute_node(node: &mut Node, bindings: &[Binding], errors: &mut Vec<Diagnostic>) {
    match &mut node.value {
        NodeValue::Str(s) => {
            for b in bindings {
                let placeholder = format!("{{{}}}", b.name);
                if s.contains(&placeholder) {
                    *s = s.replace(&placeholder, &b.value);
                    if let Some(at) = &b.at {
                        node.at = at.clone();
                    }
                }
            }
        }
        NodeValue::Array(items) => {
            for i in items {
                substitute_node(i, bindings, errors);
            }
        }
        NodeValue::Table(t) => substitute_table(t, bindings, true, errors),
        _ => {}
    }
}

/// The variant's changes, on the preset's own mappings only.
fn apply_variant(template: &mut Table, variant: Variant) {
    if variant == Variant::default() {
        return;
    }
    let Some(entry) = template.get("source") else {
        return;
    };
    let mut sources = as_list(&entry.node);
    for source in &mut sources {
        let NodeValue::Table(table) = &mut source.value else {
            continue;
        };
        for e in &mut table.entries {
            if !e.key.starts_with('/') {
                continue;
            }
            if variant.swap_energy_direction {
                e.key = swap_direction(&e.key);
                // A sum of counters sums the swapped ones.
                if let NodeValue::Table(t) = &mut e.node.value {
                    if let Some(sum) = t.entries.iter_mut().find(|x| x.key == "sum") {
                        if let NodeValue::Array(items) = &mut sum.node.value {
                            for item in items {
                                if let NodeValue::Str(p) = &mut item.value {
                                    *p = swap_direction(p);
                                }
                            }
                        }
                    }
                }
            }
            if variant.abs_power_and_current && is_power_or_current(&e.key) {
                set_flag(&mut e.node, "abs");
            }
        }
    }
    let (key_at, at) = (entry.key_at.clone(), entry.node.at.clone());
    template.set("source", key_at, list_node(sources, at));
}

/// `…/Energy/Forward` ↔ `…/Energy/Reverse`; other paths unchanged.
fn swap_direction(path: &str) -> String {
    if let Some(base) = path.strip_suffix("/Energy/Forward") {
        format!("{base}/Energy/Reverse")
    } else if let Some(base) = path.strip_suffix("/Energy/Reverse") {
        format!("{base}/Energy/Forward")
    } else {
        path.to_string()
    }
}

/// Turns `"a_act_power"` into `{ path = "a_act_power", <flag> = true }`, or
/// sets the flag in a table.
fn set_flag(node: &mut Node, flag: &str) {
    let at = node.at.clone();
    let truth = Node {
        at: at.clone(),
        value: NodeValue::Bool(true),
    };
    match &mut node.value {
        NodeValue::Table(t) => t.set(flag, at, truth),
        NodeValue::Str(_) => {
            let path = node.clone();
            let mut t = Table::default();
            t.set("path", at.clone(), path);
            t.set(flag, at, truth);
            node.value = NodeValue::Table(t);
        }
        _ => {}
    }
}

/// The user's keys laid over the template: a scalar replaces, `const` and
/// `settings` merge per path, sources are added (a path the user maps leaves
/// the preset's mapping of it out), writes replace the preset's write of the
/// same path, `availability` replaces the preset's.
fn merge(mut template: Table, user: &Table, phase: Phase) -> Table {
    for entry in &user.entries {
        let key = entry.key.as_str();
        if key == "preset" || (PARAMETER_NAMES.contains(&key) && key != "serial") {
            continue;
        }
        match key {
            "source" => {
                let mine = as_list(&entry.node);
                let mapped: Vec<String> = mine
                    .iter()
                    .filter_map(|s| match &s.value {
                        NodeValue::Table(t) => Some(t),
                        _ => None,
                    })
                    .flat_map(|t| t.entries.iter())
                    .filter(|e| e.key.starts_with('/'))
                    .map(|e| phase.resolve(&e.key))
                    .collect();
                let mut sources: Vec<Node> = template
                    .get("source")
                    .map(|e| as_list(&e.node))
                    .unwrap_or_default();
                for s in &mut sources {
                    if let NodeValue::Table(t) = &mut s.value {
                        t.entries.retain(|e| {
                            !e.key.starts_with('/') || !mapped.contains(&phase.resolve(&e.key))
                        });
                    }
                }
                sources.retain(|s| match &s.value {
                    NodeValue::Table(t) => t.entries.iter().any(|e| e.key.starts_with('/')),
                    _ => true,
                });
                sources.extend(mine);
                template.set(
                    "source",
                    entry.key_at.clone(),
                    list_node(sources, entry.node.at.clone()),
                );
            }
            "write" => {
                let mine = as_list(&entry.node);
                let path_of = |n: &Node| match &n.value {
                    NodeValue::Table(t) => match t.get("path").map(|e| &e.node.value) {
                        Some(NodeValue::Str(p)) => Some(phase.resolve(p)),
                        _ => None,
                    },
                    _ => None,
                };
                let replaced: Vec<String> = mine.iter().filter_map(path_of).collect();
                let mut writes: Vec<Node> = template
                    .get("write")
                    .map(|e| as_list(&e.node))
                    .unwrap_or_default();
                writes.retain(|w| path_of(w).is_none_or(|p| !replaced.contains(&p)));
                writes.extend(mine);
                template.set(
                    "write",
                    entry.key_at.clone(),
                    list_node(writes, entry.node.at.clone()),
                );
            }
            "const" | "settings" => {
                let merged = match (template.get(key).map(|e| &e.node.value), &entry.node.value) {
                    (Some(NodeValue::Table(base)), NodeValue::Table(over)) => {
                        let mut t = base.clone();
                        for e in &over.entries {
                            t.set(&e.key, e.key_at.clone(), e.node.clone());
                        }
                        Node {
                            at: entry.node.at.clone(),
                            value: NodeValue::Table(t),
                        }
                    }
                    _ => entry.node.clone(),
                };
                template.set(key, entry.key_at.clone(), merged);
            }
            _ => template.set(key, entry.key_at.clone(), entry.node.clone()),
        }
    }
    template
}

/// Expands a preset for every service it allows with example parameters, and
/// returns the mistakes found in the preset's own file.
pub(super) fn check_preset(preset: &Preset, catalog: &Catalog) -> Vec<Diagnostic> {
    let services: Vec<String> = match &preset.services {
        Some(list) => list.clone(),
        None => catalog.type_names().map(str::to_string).collect(),
    };
    let mut out = Vec::new();
    let nowhere = At::nowhere();
    let node = |value| Node {
        at: nowhere.clone(),
        value,
    };
    let with_optional = [false, true];
    for (service, optional) in services
        .iter()
        .flat_map(|s| with_optional.iter().map(move |o| (s, *o)))
    {
        if catalog.get(service).is_none() {
            if !optional {
                out.push(Diagnostic::error(
                    &preset.at,
                    format!("'{service}' is not a service type of the catalog"),
                ));
            }
            continue;
        }
        let mut device = Table::default();
        device.set(
            "id",
            nowhere.clone(),
            node(NodeValue::Str("preset_check".into())),
        );
        device.set(
            "service",
            nowhere.clone(),
            node(NodeValue::Str(service.clone())),
        );
        device.set(
            "preset",
            nowhere.clone(),
            node(NodeValue::Str(preset.name.clone())),
        );
        // Every required parameter, and (the second time) the optional ones.
        for p in &preset.parameters {
            if p.default.is_some() || (p.optional && !optional) {
                continue;
            }
            let value = if p.table {
                NodeValue::Table(Table::default())
            } else {
                NodeValue::Str("example".into())
            };
            device.set(&p.name, nowhere.clone(), node(value));
        }
        let mut presets = Presets::default();
        presets.presets.insert(preset.name.clone(), preset.clone());
        if let Err(errors) = expand(&device, &nowhere, &presets, catalog) {
            for mut d in errors {
                if d.place.starts_with(&preset.at.text.name) && !out.contains(&d) {
                    d.device = None;
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
        }
    }
    // A path that none of the preset's services has is a typo in the preset.
    if preset.services.is_some() {
        if let Some(e) = preset.device.get("source") {
            for source in as_list(&e.node) {
                let NodeValue::Table(t) = &source.value else {
                    continue;
                };
                for m in t
                    .entries
                    .iter()
                    .filter(|m| m.key.starts_with('/') && !m.key.contains('{'))
                {
                    let anywhere = services.iter().any(|s| {
                        let swap = preset
                            .variants
                            .get(s)
                            .is_some_and(|v| v.swap_energy_direction);
                        let key = if swap {
                            swap_direction(&m.key)
                        } else {
                            m.key.clone()
                        };
                        let relative = Phase::L1.resolve(key.trim_start_matches('/'));
                        catalog.get(s).is_some_and(|t| t.path(&relative).is_some())
                    });
                    if !anywhere {
                        out.push(Diagnostic::error(
                            &m.key_at,
                            format!("'{}' is a path of none of the preset's services", m.key),
                        ));
                    }
                }
            }
        }
    }
    out
}
