//! All declarations the daemon knows, into one validated set: the files of
//! the data directory (`devices.toml`, then `devices.d/*.toml` in name
//! order), the user's presets (`presets.d/*.toml`) and the retained
//! declarations on `dbus-mqtt-devices/mapped/<id>`. A broken file or device
//! never stops the others: its mistakes are reported, the rest loads. A file
//! and a topic declaring the same id: the file wins, and that is reported.
//!
//! Everything here is pure except [`read_data_dir`], which only reads files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::declaration::parse::{device_id, device_tables};
use super::declaration::{Declaration, MappedId};
use super::diagnostic::Diagnostic;
use super::preset::{expand, Presets};
use super::tree::{parse_json, parse_toml, At, NodeValue, SourceText, TextKind};
use crate::catalog::Catalog;
use crate::data_dir::{DEVICES_DIR, DEVICES_FILE, PRESETS_DIR};

/// Where declarations arrive over MQTT: `dbus-mqtt-devices/mapped/<id>`.
pub const DECLARATION_TOPIC_PREFIX: &str = "dbus-mqtt-devices/mapped/";

/// The subscription that covers every declaration topic.
pub const DECLARATION_TOPIC_FILTER: &str = "dbus-mqtt-devices/mapped/+";

/// Largest declaration accepted on a topic, in bytes (a preset-based one is
/// a few hundred bytes; a hand-written three-phase meter a few KiB).
pub const MAX_DECLARATION_BYTES: usize = 64 * 1024;

/// A declaration file's name (as shown to the user) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarationFile {
    pub label: String,
    pub text: String,
}

/// A valid declaration and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDevice {
    pub declaration: Declaration,
    /// `file:line:column` of its `[[device]]`, or its topic.
    pub origin: String,
}

/// The result of loading: the valid devices and everything found wrong.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub devices: Vec<LoadedDevice>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    #[cfg(any(test, feature = "internals"))]
    /// `true` when something was left out.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Loads declaration files, in the order given. A device whose id an earlier
/// one already has is refused (the first stays), even when the earlier one
/// is broken: a fixed copy elsewhere never silently takes its place.
pub fn load_files(files: &[DeclarationFile], presets: &Presets, catalog: &Catalog) -> Loaded {
    let mut loaded = Loaded::default();
    // Every id declared so far, loaded or not, and where.
    let mut declared: BTreeMap<String, At> = BTreeMap::new();
    for file in files {
        let text = Arc::new(SourceText {
            name: file.label.clone(),
            text: file.text.clone(),
            kind: TextKind::Declaration,
        });
        let root = match parse_toml(text) {
            Ok(root) => root,
            Err(e) => {
                loaded.diagnostics.push(Diagnostic::error(
                    &e.at,
                    format!("{} (no device of this file is loaded)", e.message),
                ));
                continue;
            }
        };
        let (tables, errors) = device_tables(&root);
        loaded.diagnostics.extend(errors);
        for (table, at) in tables {
            if let Some(id) = device_id(&table) {
                if let Some(first) = declared.get(&id) {
                    let id_at = table.get("id").map_or(at, |e| e.node.at.clone());
                    loaded.diagnostics.push(
                        Diagnostic::error(
                            &id_at,
                            format!("the id is already declared at {first}; this one is not loaded"),
                        )
                        .for_device(&id),
                    );
                    continue;
                }
                declared.insert(id, at.clone());
            }
            match expand(&table, &at, presets, catalog) {
                Ok(declaration) => {
                    loaded.devices.push(LoadedDevice {
                        declaration,
                        origin: at.to_string(),
                    });
                }
                Err(errors) => loaded.diagnostics.extend(errors),
            }
        }
    }
    loaded
}

/// What a message on a declaration topic says.
#[derive(Debug, Clone, PartialEq)]
pub enum TopicDeclaration {
    /// An empty payload: the declaration of that id is withdrawn.
    Withdrawn(MappedId),
    /// A valid declaration.
    Declared(Box<Declaration>),
    /// A declaration with mistakes (the id, when the topic has a valid one).
    Refused(Option<MappedId>, Vec<Diagnostic>),
}

/// The id a declaration topic names, if it is one.
pub fn declaration_topic_id(topic: &str) -> Option<&str> {
    topic
        .strip_prefix(DECLARATION_TOPIC_PREFIX)
        .filter(|id| !id.contains('/'))
}

/// Reads a message on `dbus-mqtt-devices/mapped/<id>`: the same keys as a
/// `[[device]]` table, as a JSON object; the id comes from the topic (an
/// `id` key, if given, must match it).
pub fn parse_topic_declaration(
    topic: &str,
    payload: &[u8],
    presets: &Presets,
    catalog: &Catalog,
) -> TopicDeclaration {
    let source = Arc::new(SourceText {
        name: topic.to_string(),
        text: String::new(),
        kind: TextKind::Declaration,
    });
    let at = At {
        text: source,
        offset: None,
    };
    let refuse = |id: Option<MappedId>, message: String| {
        let d = Diagnostic::error(&at, message);
        let d = match &id {
            Some(id) => d.for_device(id.as_str()),
            None => d,
        };
        TopicDeclaration::Refused(id, vec![d])
    };
    let raw_id = declaration_topic_id(topic).unwrap_or_default();
    let id = match MappedId::parse(raw_id) {
        Ok(id) => id,
        Err(m) => return refuse(None, format!("the topic's last level: {m}")),
    };
    if payload.is_empty() {
        return TopicDeclaration::Withdrawn(id);
    }
    if payload.len() > MAX_DECLARATION_BYTES {
        return refuse(
            Some(id),
            format!(
                "the declaration is {} bytes, the limit is {MAX_DECLARATION_BYTES}",
                payload.len()
            ),
        );
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return refuse(Some(id), "the declaration is not UTF-8 text".into());
    };
    let source = Arc::new(SourceText {
        name: topic.to_string(),
        text: text.to_string(),
        kind: TextKind::Declaration,
    });
    let mut table = match parse_json(source) {
        Ok(t) => t,
        Err(e) => return refuse(Some(id), e.message),
    };
    match table.get("id").map(|e| &e.node.value) {
        None => {
            let node = super::tree::Node {
                at: at.clone(),
                value: NodeValue::Str(id.as_str().to_string()),
            };
            table.set("id", at.clone(), node);
        }
        Some(NodeValue::Str(s)) if s == id.as_str() => {}
        Some(_) => {
            return refuse(
                Some(id.clone()),
                format!("the payload's id differs from the topic's '{id}'"),
            )
        }
    }
    match expand(&table, &at, presets, catalog) {
        Ok(d) => TopicDeclaration::Declared(Box::new(d)),
        Err(errors) => TopicDeclaration::Refused(Some(id), errors),
    }
}

/// The devices in effect: every file device, and every topic device whose id
/// no file declares (a file wins, and the conflict is reported).
pub fn combine(
    files: &[LoadedDevice],
    topics: &BTreeMap<MappedId, Declaration>,
) -> (Vec<LoadedDevice>, Vec<Diagnostic>) {
    let mut devices = files.to_vec();
    let mut diagnostics = Vec::new();
    for (id, declaration) in topics {
        let topic = format!("{DECLARATION_TOPIC_PREFIX}{id}");
        match files.iter().find(|f| &f.declaration.id == id) {
            Some(file) => diagnostics.push(Diagnostic {
                severity: super::diagnostic::Severity::Warning,
                place: topic,
                device: Some(id.to_string()),
                message: format!(
                    "also declared in {}; the file's declaration is used",
                    file.origin
                ),
            }),
            None => devices.push(LoadedDevice {
                declaration: declaration.clone(),
                origin: topic,
            }),
        }
    }
    (devices, diagnostics)
}

/// The files of a data directory, read but not yet parsed.
#[derive(Debug, Clone, Default)]
pub struct DataDirFiles {
    /// `devices.toml`, then `devices.d/*.toml` by name.
    pub declarations: Vec<DeclarationFile>,
    /// `presets.d/*.toml` by name: (preset name, label, text).
    pub presets: Vec<(String, String, String)>,
    /// Files that exist but could not be read.
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads the declaration and preset files of a data directory. Missing
/// files and directories are not mistakes; unreadable ones are reported.
/// Only names ending in `.toml` are read (and none starting with `.`, which
/// editors use for their own files).
pub fn read_data_dir(dir: &Path) -> DataDirFiles {
    let mut out = DataDirFiles::default();
    let read = |path: &Path, out: &mut DataDirFiles| -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                out.diagnostics.push(Diagnostic {
                    severity: super::diagnostic::Severity::Error,
                    place: path.display().to_string(),
                    device: None,
                    message: format!("cannot read the file: {e}"),
                });
                None
            }
        }
    };
    let main = dir.join(DEVICES_FILE);
    if let Some(text) = read(&main, &mut out) {
        out.declarations.push(DeclarationFile {
            label: main.display().to_string(),
            text,
        });
    }
    for path in toml_files(&dir.join(DEVICES_DIR), &mut out) {
        if let Some(text) = read(&path, &mut out) {
            out.declarations.push(DeclarationFile {
                label: path.display().to_string(),
                text,
            });
        }
    }
    for path in toml_files(&dir.join(PRESETS_DIR), &mut out) {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(text) = read(&path, &mut out) {
            out.presets.push((name, path.display().to_string(), text));
        }
    }
    out
}

fn toml_files(dir: &Path, out: &mut DataDirFiles) -> Vec<std::path::PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            out.diagnostics.push(Diagnostic {
                severity: super::diagnostic::Severity::Error,
                place: dir.display().to_string(),
                device: None,
                message: format!("cannot read the directory: {e}"),
            });
            return Vec::new();
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".toml") && !name.starts_with('.') && p.is_file()
        })
        .collect();
    paths.sort();
    paths
}

/// After a reload, the devices served before that the files no longer
/// declare because of a mistake: their file does not read now (a file-wide
/// error), or their own declaration has an error. They stay served as
/// declared before, so that a file saved half-edited never takes a device
/// off D-Bus. A device removed from a file that reads is not among them.
pub fn kept_through_mistakes(before: &[LoadedDevice], loaded: &Loaded) -> Vec<LoadedDevice> {
    before
        .iter()
        .filter(|d| !loaded.devices.iter().any(|n| n.declaration.id == d.declaration.id))
        .filter(|d| {
            let file = origin_file(&d.origin);
            loaded.diagnostics.iter().filter(|x| x.is_error()).any(|x| match &x.device {
                Some(id) => id == d.declaration.id.as_str(),
                None => x
                    .place
                    .strip_prefix(file)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(':')),
            })
        })
        .cloned()
        .collect()
}

/// The file of an origin `file:line:column`.
fn origin_file(origin: &str) -> &str {
    let mut parts = origin.rsplitn(3, ':');
    let (column, line) = (parts.next(), parts.next());
    match (column, line, parts.next()) {
        (Some(c), Some(l), Some(file))
            if c.chars().all(|ch| ch.is_ascii_digit()) && l.chars().all(|ch| ch.is_ascii_digit()) =>
        {
            file
        }
        _ => origin,
    }
}

/// Everything declared in a data directory's files: presets (built-in and
/// the user's) and devices, with every mistake found (in the user's presets
/// too).
pub fn load_data_dir(dir: &Path, catalog: &Catalog) -> (Presets, Loaded) {
    let files = read_data_dir(dir);
    let (presets, preset_diagnostics) = Presets::with_user_files(files.presets);
    let mut loaded = load_files(&files.declarations, &presets, catalog);
    let mut diagnostics = files.diagnostics;
    diagnostics.extend(preset_diagnostics);
    for d in presets.check(catalog) {
        if !diagnostics.contains(&d) {
            diagnostics.push(d);
        }
    }
    diagnostics.append(&mut loaded.diagnostics);
    loaded.diagnostics = diagnostics;
    (presets, loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapped::test_support::{catalog, load, presets};

    fn files(list: &[(&str, &str)]) -> Loaded {
        let files: Vec<DeclarationFile> = list
            .iter()
            .map(|(label, text)| DeclarationFile {
                label: label.to_string(),
                text: text.to_string(),
            })
            .collect();
        load_files(&files, presets(), catalog())
    }

    #[test]
    fn a_mistake_being_edited_keeps_the_devices_served_a_removal_does_not() {
        let a = "[[device]]\nid = \"a\"\nservice = \"temperature\"\npreset = \"esphome\"\ntopic = \"a\"\nsensors = { \"/Temperature\" = \"t\" }\n";
        let b = a.replace("\"a\"", "\"b\"");
        let before = files(&[("/d/devices.toml", a), ("/d/devices.d/b.toml", &b)]).devices;
        assert_eq!(before.len(), 2);
        let ids = |v: Vec<LoadedDevice>| {
            v.into_iter()
                .map(|d| d.declaration.id.to_string())
                .collect::<Vec<_>>()
        };
        // devices.toml does not parse now: a stays; b's file is fine.
        let broken = files(&[("/d/devices.toml", "[[device]\n"), ("/d/devices.d/b.toml", &b)]);
        assert_eq!(ids(kept_through_mistakes(&before, &broken)), ["a"]);
        // a's own declaration has an error now: a stays.
        let wrong = files(&[
            ("/d/devices.toml", &a.replace("esphome", "nope")),
            ("/d/devices.d/b.toml", &b),
        ]);
        assert_eq!(ids(kept_through_mistakes(&before, &wrong)), ["a"]);
        // b's file is gone and devices.toml fine: nothing kept.
        let removed = files(&[("/d/devices.toml", a)]);
        assert!(kept_through_mistakes(&before, &removed).is_empty());
        assert_eq!(origin_file("/d/x:y.toml:3:1"), "/d/x:y.toml");
    }

    fn topic(id: &str, payload: &str) -> TopicDeclaration {
        parse_topic_declaration(
            &format!("{DECLARATION_TOPIC_PREFIX}{id}"),
            payload.as_bytes(),
            presets(),
            catalog(),
        )
    }

    #[test]
    fn a_topic_declares_a_device_as_json_with_the_id_from_the_topic() {
        let TopicDeclaration::Declared(d) = topic(
            "fridge",
            r#"{"service": "temperature", "preset": "zigbee2mqtt", "topic": "zigbee2mqtt/fridge", "name": "Fridge", "settings": {"/TemperatureType": 1}}"#,
        ) else {
            panic!()
        };
        assert_eq!(d.id.as_str(), "fridge");
        assert_eq!(d.name.as_deref(), Some("Fridge"));
        assert_eq!(
            d.sources[0].topic.as_ref().unwrap().as_str(),
            "zigbee2mqtt/fridge"
        );
        // Sources as JSON: an array of objects, like [[device.source]].
        let TopicDeclaration::Declared(d) = topic(
            "tank1",
            r#"{"service": "tank", "source": [{"topic": "esp/tank", "/Level": {"path": "level", "round": 0}}], "availability": {"topic": "esp/status"}}"#,
        ) else {
            panic!()
        };
        assert_eq!(d.sources[0].mappings[0].transform.round, Some(0));
        assert_eq!(d.availability[0].online, ["online"]);
    }

    #[test]
    fn an_empty_payload_withdraws_and_mistakes_name_the_topic_and_key() {
        assert_eq!(
            topic("fridge", ""),
            TopicDeclaration::Withdrawn(MappedId::parse("fridge").unwrap())
        );
        let refused = |id: &str, payload: &str| match topic(id, payload) {
            TopicDeclaration::Refused(_, e) => {
                e.iter().map(ToString::to_string).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused("fridge", r#"{"id": "other", "service": "temperature"}"#),
            ["dbus-mqtt-devices/mapped/fridge: device 'fridge': the payload's id differs from the topic's 'fridge'"]
        );
        assert_eq!(
            refused("fridge", r#"{"service": "temperature", "stale_afer": 3, "source": [{"topic": "x", "/Temperature": "$"}]}"#),
            ["dbus-mqtt-devices/mapped/fridge: device 'fridge': unknown key 'stale_afer' (did you mean 'stale_after'?)"]
        );
        assert!(refused("fridge", "{")[0].contains("not valid JSON (line 1, column 1)"));
        assert!(refused("fridge", "[1]")[0].contains("must be a JSON object"));
        assert!(refused("bad-id", "{}")[0].contains("'bad-id' is not a valid id"));
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(MAX_DECLARATION_BYTES));
        assert!(refused("fridge", &big)[0].contains("the limit is 65536"));
        assert_eq!(
            declaration_topic_id("dbus-mqtt-devices/mapped/a"),
            Some("a")
        );
        assert_eq!(declaration_topic_id("dbus-mqtt-devices/mapped/a/b"), None);
    }

    #[test]
    fn a_file_wins_over_a_topic_declaring_the_same_id_and_that_is_reported() {
        let files = load("[[device]]\nid = \"fridge\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"a\"\n\"/Temperature\" = \"$\"\n").devices;
        let mut topics = BTreeMap::new();
        for (id, t) in [("fridge", "b"), ("freezer", "c")] {
            let TopicDeclaration::Declared(d) = topic(
                id,
                &format!(
                    r#"{{"service": "temperature", "source": [{{"topic": "{t}", "/Temperature": "$"}}]}}"#
                ),
            ) else {
                panic!()
            };
            topics.insert(d.id.clone(), *d);
        }
        let (devices, diagnostics) = combine(&files, &topics);
        let used: Vec<(&str, &str)> = devices
            .iter()
            .map(|d| (d.declaration.id.as_str(), d.origin.as_str()))
            .collect();
        assert_eq!(
            used,
            [
                ("fridge", "devices.toml:1:1"),
                ("freezer", "dbus-mqtt-devices/mapped/freezer")
            ]
        );
        assert_eq!(
            diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["dbus-mqtt-devices/mapped/fridge: warning: device 'fridge': also declared in devices.toml:1:1; the file's declaration is used"]
        );
    }

    #[test]
    fn data_directory_files_are_read_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join(DEVICES_DIR)).unwrap();
        std::fs::create_dir(d.join(PRESETS_DIR)).unwrap();
        for name in [
            "20-b.toml",
            "10-a.toml",
            ".#10-a.toml",
            "notes.txt",
            "30-c.toml.bak",
        ] {
            std::fs::write(d.join(DEVICES_DIR).join(name), name).unwrap();
        }
        std::fs::write(d.join(DEVICES_FILE), "main").unwrap();
        std::fs::write(d.join(PRESETS_DIR).join("mine.toml"), "p").unwrap();
        let files = read_data_dir(d);
        let texts: Vec<&str> = files.declarations.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["main", "10-a.toml", "20-b.toml"]);
        assert_eq!(files.presets.len(), 1);
        assert_eq!(files.presets[0].0, "mine");
        assert!(files.diagnostics.is_empty());
        assert!(read_data_dir(&d.join("missing")).declarations.is_empty());
    }
}
