//! The settings themselves, as localsettings keeps them: types from defaults, `int()`/`float()`/
//! `str()` conversion, min/max, the AddSettings error codes, the ClassAndVrmInstance
//! first-free-instance rule, and the JSON file they persist to (written atomically).
//! Pure apart from the file functions: knows no connection.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use zbus::Variant;

use super::{parse_class_and_instance, Error};
use crate::dbus::tree::{child_names, entries_under, Leaf, ObjectTree};
use crate::dbus::value::python_float;
use crate::dbus::{Value, VariantMap};

/// AddSettings/AddSetting result codes (localsettings' `AddSettingError`).
pub mod codes {
    /// Added, or already there.
    pub const OK: i32 = 0;
    /// A path element starts with `_`.
    pub const UNDERSCORE_PREFIX: i32 = -2;
    /// The default's type (or the type letter) is not integer, float or string.
    pub const UNKNOWN_TYPE: i32 = -3;
    /// The path is not a valid settings path.
    pub const INVALID_PATH: i32 = -4;
    /// The setting exists with another type.
    pub const TYPE_DIFFERS: i32 = -5;
    /// The default cannot be converted to the type (or is not `<class>:<n>` for an instance).
    pub const INVALID_DEFAULT: i32 = -6;
    /// The default is outside min/max.
    pub const DEFAULT_OUT_OF_RANGE: i32 = -7;
    /// The path is a group.
    pub const IS_GROUP: i32 = -8;
    /// The path is not under `/Settings`.
    pub const NOT_IN_SETTINGS: i32 = -9;
}

/// The name of the setting localsettings allocates device instances for.
pub const CLASS_AND_VRM_INSTANCE: &str = "ClassAndVrmInstance";

/// A setting is a value object of the settings service's BusItem tree; its `GetItems` and
/// `ItemsChanged` entry has its limits and default too, as localsettings sends.
impl Leaf for Setting {
    fn value(&self) -> &Value {
        &self.value
    }

    fn text(&self) -> String {
        Setting::text(self)
    }

    fn entry(&self) -> VariantMap {
        Setting::entry(self)
    }
}

/// The settings service's objects: the settings, and the groups above them.
impl ObjectTree for Store {
    type Leaf = Setting;

    fn leaves(&self) -> &BTreeMap<String, Setting> {
        &self.settings
    }

    /// Is `path` a group: `/`, `/Settings`, `/Settings/Devices` (always there, as in
    /// localsettings, so drivers can add relative to it), or a strict prefix of a setting path?
    fn is_node(&self, path: &str) -> bool {
        matches!(path, "/" | "/Settings" | "/Settings/Devices") || self.under(path).next().is_some()
    }

    /// Names of the direct children of group `path`; `/` always has `Settings`.
    fn children(&self, path: &str) -> Vec<String> {
        let mut out = child_names(self.under(path).map(|(rel, _)| rel));
        if path == "/" && out.is_empty() {
            out.push("Settings".to_string());
        }
        out
    }
}

/// A setting's type, as localsettings names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// `i`: int32 (int64 when larger).
    #[serde(rename = "i")]
    Int,
    /// `f`: double.
    #[serde(rename = "f")]
    Float,
    /// `s`: string.
    #[serde(rename = "s")]
    Str,
}

impl Kind {
    /// The type a default's D-Bus type gives (AddSettings): `i`/`x` → Int, `d` → Float, `s` → Str.
    pub fn of_default(v: &Value) -> Option<Kind> {
        match v {
            Value::I32(_) | Value::I64(_) => Some(Kind::Int),
            Value::F64(_) => Some(Kind::Float),
            Value::Str(_) => Some(Kind::Str),
            _ => None,
        }
    }

    /// The type for an `AddSetting` type letter.
    pub fn from_letter(s: &str) -> Option<Kind> {
        match s {
            "i" => Some(Kind::Int),
            "f" => Some(Kind::Float),
            "s" => Some(Kind::Str),
            _ => None,
        }
    }

    /// Python's `int()`, `float()` or `str()` of a value; `None` where Python raises, and for
    /// NaN and infinities, which the settings file (JSON) could not keep.
    pub fn convert(self, v: &Value) -> Option<Value> {
        match (self, v) {
            (_, Value::Invalid) => None,
            (Kind::Int, Value::F64(f)) => {
                (f.is_finite() && f.abs() < 9.2e18).then(|| Value::int(f.trunc() as i64))
            }
            (Kind::Int, Value::Str(s)) => s.trim().parse::<i64>().ok().map(Value::int),
            (Kind::Int, v) => v.as_i64().map(Value::int),
            (Kind::Float, Value::Str(s)) => s.trim().parse::<f64>().ok().and_then(finite),
            (Kind::Float, v) => v.as_f64().and_then(finite),
            (Kind::Str, v) => Some(Value::Str(v.python_text())),
        }
    }

    /// `0` of this type: localsettings' `GetMin`/`GetMax` answer without limits.
    fn zero(self) -> Value {
        match self {
            Kind::Float => Value::F64(0.0),
            _ => Value::I32(0),
        }
    }
}

/// A float setting's value: finite only.
fn finite(f: f64) -> Option<Value> {
    f.is_finite().then_some(Value::F64(f))
}

/// One stored setting.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// Type.
    pub kind: Kind,
    /// Current value.
    pub value: Value,
    /// Default.
    pub default: Value,
    /// Limits, both set or neither (numbers only).
    pub limits: Option<(Value, Value)>,
    /// Changes are not logged.
    pub silent: bool,
}

impl Setting {
    /// `str(value)` as localsettings' `GetText`.
    pub fn text(&self) -> String {
        match &self.value {
            Value::F64(f) => python_float(*f),
            v => v.python_text(),
        }
    }

    /// `GetMin` answer.
    pub fn min(&self) -> Value {
        self.limits
            .as_ref()
            .map_or_else(|| self.kind.zero(), |(m, _)| m.clone())
    }

    /// `GetMax` answer.
    pub fn max(&self) -> Value {
        self.limits
            .as_ref()
            .map_or_else(|| self.kind.zero(), |(_, m)| m.clone())
    }

    /// `{Value, Text, Min, Max, Default}`: a GetItems entry, and PropertiesChanged after an add.
    pub fn entry(&self) -> VariantMap {
        HashMap::from([
            ("Value".to_string(), self.value.to_variant()),
            ("Text".to_string(), Variant::Str(self.text().into())),
            ("Min".to_string(), self.min().to_variant()),
            ("Max".to_string(), self.max().to_variant()),
            ("Default".to_string(), self.default.to_variant()),
        ])
    }

    /// `{Value, Text}`: PropertiesChanged after SetValue.
    pub fn value_entry(&self) -> VariantMap {
        crate::dbus::tree::value_text_entry(&self.value, self.text())
    }

    fn in_range(&self, v: &Value) -> bool {
        match (&self.limits, v.as_f64()) {
            (Some((lo, hi)), Some(f)) => {
                lo.as_f64().is_none_or(|lo| f >= lo) && hi.as_f64().is_none_or(|hi| f <= hi)
            }
            _ => true,
        }
    }
}

/// localsettings' SetValue -1: no such setting, a value that does not convert to the setting's
/// type, outside min/max, or (for ClassAndVrmInstance) not `<class>:<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// What an add did.
#[derive(Debug, PartialEq)]
pub enum Added {
    /// A new setting.
    New,
    /// An existing setting whose default, limits or silent flag changed (value kept).
    Updated,
    /// An existing setting, nothing changed.
    Unchanged,
}

/// Every setting, keyed by absolute path (`/Settings/...`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Store {
    settings: BTreeMap<String, Setting>,
}

/// Checks an absolute settings path; `Err(code)` as localsettings answers.
pub fn check_path(path: &str) -> Result<(), i32> {
    if path.contains("/_") {
        return Err(codes::UNDERSCORE_PREFIX);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(codes::INVALID_PATH);
    };
    let ok = rest
        .split('/')
        .all(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if !ok {
        return Err(codes::INVALID_PATH);
    }
    if !path.starts_with("/Settings/") {
        return Err(codes::NOT_IN_SETTINGS);
    }
    Ok(())
}

/// Joins a path given to a group object: relative paths hang below the group; on `/` a path
/// is taken as absolute.
pub fn join(group: &str, path: &str) -> String {
    let rel = path.strip_prefix('/').unwrap_or(path);
    if group == "/" {
        format!("/{rel}")
    } else {
        format!("{group}/{rel}")
    }
}

fn is_instance_path(path: &str) -> bool {
    let mut parts = path.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(""), Some("Settings"), Some("Devices"), Some(id), Some(CLASS_AND_VRM_INSTANCE), None)
            if !id.is_empty()
    )
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// The setting at `path`.
    pub fn get(&self, path: &str) -> Option<&Setting> {
        self.settings.get(path)
    }

    /// Number of settings.
    pub fn len(&self) -> usize {
        self.settings.len()
    }

    /// True without settings.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// All settings in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Setting)> {
        self.settings.iter()
    }

    /// Settings below group `group`, with keys relative to it.
    pub fn under<'a>(
        &'a self,
        group: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Setting)> + 'a {
        entries_under(&self.settings, group)
    }

    /// The first `<class>:N` with N ≥ `preferred` that no other instance setting holds.
    fn free_instance(&self, own_path: &str, class: &str, preferred: u32) -> String {
        let prefix = format!("{class}:");
        let taken: std::collections::HashSet<&str> = self
            .settings
            .iter()
            .filter(|(p, _)| p.as_str() != own_path && is_instance_path(p))
            .filter_map(|(_, s)| s.value.as_str())
            .filter(|v| v.starts_with(&prefix))
            .collect();
        let mut n = preferred;
        loop {
            let candidate = format!("{class}:{n}");
            if !taken.contains(candidate.as_str()) || n == u32::MAX {
                return candidate;
            }
            n = n.saturating_add(1);
        }
    }

    /// Adds (or re-adds) a setting at absolute `path`. `kind` is the explicit type of
    /// `AddSetting`, or `None` to take it from the default (AddSettings).
    pub fn add(
        &mut self,
        path: &str,
        default: &Value,
        kind: Option<Kind>,
        min: Option<&Value>,
        max: Option<&Value>,
        silent: bool,
    ) -> Result<Added, i32> {
        check_path(path)?;
        let kind = match kind {
            Some(k) => k,
            None => Kind::of_default(default).ok_or(codes::UNKNOWN_TYPE)?,
        };
        if self.is_node(path) {
            return Err(codes::IS_GROUP);
        }
        // Below an existing setting: not a valid place for a setting.
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            p = parent;
            if self.settings.contains_key(p) {
                return Err(codes::INVALID_PATH);
            }
        }
        if let Some(existing) = self.settings.get(path) {
            if existing.kind != kind {
                return Err(codes::TYPE_DIFFERS);
            }
        }
        let default = kind.convert(default).ok_or(codes::INVALID_DEFAULT)?;
        let limits = match (kind, min, max) {
            (Kind::Str, _, _) => None,
            (_, Some(lo), Some(hi)) => match (kind.convert(lo), kind.convert(hi)) {
                (Some(lo), Some(hi)) if lo.as_f64() == Some(0.0) && hi.as_f64() == Some(0.0) => {
                    None
                }
                (Some(lo), Some(hi)) => Some((lo, hi)),
                _ => None,
            },
            _ => None,
        };
        let instance = is_instance_path(path);
        if instance && parse_class_and_instance(default.as_str().unwrap_or("")).is_none() {
            return Err(codes::INVALID_DEFAULT);
        }
        let mut setting = Setting {
            kind,
            value: default.clone(),
            default,
            limits,
            silent,
        };
        if !setting.in_range(&setting.default) {
            return Err(codes::DEFAULT_OUT_OF_RANGE);
        }
        if let Some(existing) = self.settings.get_mut(path) {
            // An existing setting keeps its value; only default, limits and silent change.
            setting.value = existing.value.clone();
            if *existing == setting {
                return Ok(Added::Unchanged);
            }
            *existing = setting;
            return Ok(Added::Updated);
        }
        if instance {
            if let Some((class, n)) =
                parse_class_and_instance(setting.default.as_str().unwrap_or(""))
            {
                setting.value = Value::Str(self.free_instance(path, &class, n));
            }
        }
        self.settings.insert(path.to_string(), setting);
        Ok(Added::New)
    }

    /// `SetValue` on a setting: converts, checks limits and the instance rule. `Ok(true)` when
    /// the value changed.
    pub fn set(&mut self, path: &str, value: &Value) -> Result<bool, Refused> {
        let setting = self.settings.get(path).ok_or(Refused)?;
        let mut v = setting.kind.convert(value).ok_or(Refused)?;
        if !setting.in_range(&v) {
            return Err(Refused);
        }
        if is_instance_path(path) {
            let (class, n) = parse_class_and_instance(v.as_str().unwrap_or("")).ok_or(Refused)?;
            v = Value::Str(self.free_instance(path, &class, n));
        }
        let setting = self.settings.get_mut(path).ok_or(Refused)?;
        if setting.value == v {
            return Ok(false);
        }
        setting.value = v;
        Ok(true)
    }

    /// Removes a setting; false if there was none.
    pub fn remove(&mut self, path: &str) -> bool {
        self.settings.remove(path).is_some()
    }

    /// Reads the store from `file`; a missing file is an empty store.
    pub fn load(file: &Path) -> Result<Store, Error> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::new()),
            Err(source) => {
                return Err(Error::Io {
                    what: "reading settings file",
                    path: file.to_path_buf(),
                    source,
                })
            }
        };
        let parsed: FileFormat = serde_json::from_str(&text).map_err(|source| Error::Parse {
            path: file.to_path_buf(),
            source,
        })?;
        // An entry that cannot be a setting (a hand-edited or damaged file) is
        // left out with a warning; the rest is kept. The file is in path order,
        // so a path below one already kept is seen after it.
        let mut settings: BTreeMap<String, Setting> = BTreeMap::new();
        for (path, entry) in parsed.settings {
            let below_another = settings.keys().any(|p| {
                path.strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            });
            let setting = if check_path(&path).is_err() {
                Err("not a settings path")
            } else if below_another {
                Err("below another setting")
            } else {
                entry.into_setting()
            };
            match setting {
                Ok(s) => {
                    settings.insert(path, s);
                }
                Err(reason) => tracing::warn!(
                    file = %file.display(), path, reason, "setting left out of the settings file"
                ),
            }
        }
        Ok(Store { settings })
    }

    /// Writes the store to `file` atomically and durably
    /// ([`crate::atomic_file::replace_durably`]).
    pub fn save(&self, file: &Path) -> Result<(), Error> {
        let format = FileFormat {
            version: 1,
            settings: self
                .settings
                .iter()
                .map(|(p, s)| {
                    (
                        p.clone(),
                        FileSetting {
                            kind: s.kind,
                            value: s.value.to_json(),
                            default: s.default.to_json(),
                            min: s.limits.as_ref().map(|(lo, _)| lo.to_json()),
                            max: s.limits.as_ref().map(|(_, hi)| hi.to_json()),
                            silent: s.silent,
                        },
                    )
                })
                .collect(),
        };
        // Serializing plain maps of JSON values cannot fail.
        let text = serde_json::to_string_pretty(&format).unwrap_or_default();
        crate::atomic_file::replace_durably(file, text.as_bytes()).map_err(|e| Error::Io {
            what: e.action,
            path: e.path,
            source: e.source,
        })?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    settings: BTreeMap<String, FileSetting>,
}

impl FileSetting {
    /// The setting, with its values in its type; `Err` says why not.
    fn into_setting(self) -> Result<Setting, &'static str> {
        let kind = self.kind;
        let read = |v: &serde_json::Value| Value::from_json(v).ok().and_then(|v| kind.convert(&v));
        let value = read(&self.value).ok_or("value does not fit the type")?;
        let default = read(&self.default).ok_or("default does not fit the type")?;
        let limits = match (self.min, self.max) {
            (Some(lo), Some(hi)) => Some((
                read(&lo).ok_or("min does not fit the type")?,
                read(&hi).ok_or("max does not fit the type")?,
            )),
            _ => None,
        };
        Ok(Setting {
            kind,
            value,
            default,
            limits,
            silent: self.silent,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct FileSetting {
    #[serde(rename = "type")]
    kind: Kind,
    value: serde_json::Value,
    default: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<serde_json::Value>,
    #[serde(default)]
    silent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn error_codes() {
        let mut st = Store::new();
        let add = |st: &mut Store, p: &str, d: Value| st.add(p, &d, None, None, None, false);
        assert_eq!(
            add(&mut st, "/Settings/_x", Value::I32(1)),
            Err(codes::UNDERSCORE_PREFIX)
        );
        assert_eq!(
            add(&mut st, "/_bad", Value::I32(1)),
            Err(codes::UNDERSCORE_PREFIX)
        );
        assert_eq!(
            add(&mut st, "/Settings/a b", Value::I32(1)),
            Err(codes::INVALID_PATH)
        );
        assert_eq!(
            add(&mut st, "/Lab/NoPrefix", Value::I32(1)),
            Err(codes::NOT_IN_SETTINGS)
        );
        assert_eq!(
            add(&mut st, "/Settings/B", Value::Bool(true)),
            Err(codes::UNKNOWN_TYPE)
        );
        assert_eq!(add(&mut st, "/Settings/G/A", Value::I32(1)), Ok(Added::New));
        assert_eq!(
            add(&mut st, "/Settings/G", Value::I32(1)),
            Err(codes::IS_GROUP)
        );
        assert_eq!(
            add(&mut st, "/Settings/G/A", s("x")),
            Err(codes::TYPE_DIFFERS)
        );
        assert_eq!(
            add(
                &mut st,
                "/Settings/Devices/d1/ClassAndVrmInstance",
                s("temperature")
            ),
            Err(codes::INVALID_DEFAULT)
        );
        assert_eq!(
            st.add(
                "/Settings/R",
                &Value::I32(50),
                None,
                Some(&Value::I32(0)),
                Some(&Value::I32(10)),
                false
            ),
            Err(codes::DEFAULT_OUT_OF_RANGE)
        );
        assert_eq!(
            st.add(
                "/Settings/Z",
                &Value::I32(50),
                None,
                Some(&Value::I32(0)),
                Some(&Value::I32(0)),
                false
            ),
            Ok(Added::New)
        );
        assert_eq!(st.get("/Settings/Z").unwrap().limits, None);
    }

    #[test]
    fn instances_are_first_free_and_kept() {
        let mut st = Store::new();
        let p1 = "/Settings/Devices/a/ClassAndVrmInstance";
        let p2 = "/Settings/Devices/b/ClassAndVrmInstance";
        st.add(p1, &s("temperature:20"), None, None, None, false)
            .unwrap();
        st.add(p2, &s("temperature:20"), None, None, None, false)
            .unwrap();
        assert_eq!(st.get(p1).unwrap().value, s("temperature:20"));
        assert_eq!(st.get(p2).unwrap().value, s("temperature:21"));
        assert_eq!(
            st.add(p2, &s("temperature:5"), None, None, None, false),
            Ok(Added::Updated)
        );
        assert_eq!(st.get(p2).unwrap().value, s("temperature:21"));
        // 20 is taken by the other device, and 21 is its own: unchanged
        assert_eq!(st.set(p2, &s("temperature:20")), Ok(false));
        assert_eq!(st.get(p2).unwrap().value, s("temperature:21"));
        assert_eq!(st.set(p1, &s("temperature:21")), Ok(true));
        assert_eq!(st.get(p1).unwrap().value, s("temperature:22"));
        assert_eq!(st.set(p2, &s("tank:20")), Ok(true));
        assert_eq!(st.get(p2).unwrap().value, s("tank:20"));
        assert_eq!(st.set(p2, &s("nonsense")), Err(Refused));
    }

    #[test]
    fn set_converts_like_python_and_checks_limits() {
        let mut st = Store::new();
        st.add(
            "/Settings/F",
            &Value::F64(1.0),
            None,
            Some(&Value::F64(0.0)),
            Some(&Value::F64(10.0)),
            false,
        )
        .unwrap();
        assert_eq!(st.set("/Settings/F", &Value::I32(2)), Ok(true));
        assert_eq!(st.get("/Settings/F").unwrap().value, Value::F64(2.0));
        assert_eq!(st.set("/Settings/F", &Value::I32(11)), Err(Refused));
        assert_eq!(st.set("/Settings/F", &s("abc")), Err(Refused));
        assert_eq!(st.set("/Settings/F", &Value::Invalid), Err(Refused));
        st.add("/Settings/I", &Value::I32(1), None, None, None, false)
            .unwrap();
        assert_eq!(st.set("/Settings/I", &Value::F64(2.7)), Ok(true));
        assert_eq!(st.get("/Settings/I").unwrap().value, Value::I32(2));
        st.add("/Settings/S", &s(""), None, None, None, false)
            .unwrap();
        assert_eq!(st.set("/Settings/S", &Value::I32(5)), Ok(true));
        assert_eq!(st.get("/Settings/S").unwrap().value, s("5"));
    }

    /// See: issue 10. A NaN or an infinity was stored, written to the file
    /// as null, and the whole setting was gone after the next start.
    #[test]
    fn issue_10_non_finite_float_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("settings.json");
        let mut st = Store::new();
        st.add("/Settings/F", &Value::F64(1.5), None, None, None, false)
            .unwrap();
        for bad in [
            Value::F64(f64::NAN),
            Value::F64(f64::INFINITY),
            s("nan"),
            s("-inf"),
        ] {
            assert_eq!(st.set("/Settings/F", &bad), Err(Refused), "{bad:?}");
        }
        st.save(&file).unwrap();
        assert_eq!(
            Store::load(&file)
                .unwrap()
                .get("/Settings/F")
                .map(|s| &s.value),
            Some(&Value::F64(1.5))
        );
    }

    /// See: issue 10. A damaged or hand-edited settings.json with entries
    /// that cannot be settings (found by fuzzing): they were loaded as they
    /// were; now they are left out with a warning and the rest is kept.
    #[test]
    fn issue_10_entries_of_the_settings_file_that_are_no_settings_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("settings.json");
        let entry = |v: &str| format!(r#"{{"type": "s", "value": "{v}", "default": "{v}"}}"#);
        let text = format!(
            r#"{{"version": 1, "settings": {{"/Settingw/A": {a}, "/Settings/B": {b}, "/Settings/B/C": {c}, "/Settings/_x": {a}, "/Settings/D": {{"type": "i", "value": "x", "default": 1}}}}}}"#,
            a = entry("a"),
            b = entry("b"),
            c = entry("c"),
        );
        std::fs::write(&file, text).unwrap();
        let store = Store::load(&file).unwrap();
        let paths: Vec<&String> = store.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/Settings/B"]);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("settings.json");
        let mut st = Store::new();
        st.add(
            "/Settings/F",
            &Value::F64(1.5),
            None,
            Some(&Value::F64(0.0)),
            Some(&Value::F64(10.0)),
            true,
        )
        .unwrap();
        st.add("/Settings/S", &s("x"), None, None, None, false)
            .unwrap();
        st.add("/Settings/I", &Value::I64(1 << 40), None, None, None, false)
            .unwrap();
        st.save(&file).unwrap();
        assert_eq!(Store::load(&file).unwrap(), st);
        assert_eq!(
            Store::load(&dir.path().join("missing.json")).unwrap(),
            Store::new()
        );
    }
}
