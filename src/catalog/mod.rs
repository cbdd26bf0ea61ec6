//! Service types as data: which Venus service types a device may register, and
//! per type its product id and name, preferred VRM instance, default custom
//! name and every D-Bus path with its kind, text format, default, limits and
//! whether it is persisted in localsettings.
//!
//! The built-in types are TOML files under `src/catalog/types/`, embedded in
//! the binary (see [`embedded`]). A user file (`catalog.toml` in the data dir)
//! can change any field of a built-in type, add paths to it, or add whole new
//! types; it is merged per type and per path, and the user's value wins.
//! Mistakes in the user file are reported as [`CatalogError`]s naming the
//! file, type, path and key; they never disable a built-in type.
//!
//! This module knows no bus and no broker: it does not register services,
//! talk to localsettings or parse device messages. Code elsewhere never
//! matches on type names, so adding a type means adding a file.
//!
//! # File format
//! One built-in file describes one type (its name is the file name); the user
//! file has one table per type (`[temperature]`, `[[temperature.path]]`).
//!
//! ```
//! use dbus_mqtt_devices::catalog::{Catalog, ValueKind};
//!
//! let user = r#"
//!     [temperature]
//!     custom_name = "Fridge"
//!
//!     [[temperature.path]]
//!     path = "Temperature"
//!     decimals = 2
//! "#;
//! let (catalog, errors) = Catalog::load_str(user, "catalog.toml");
//! assert!(errors.is_empty());
//! let temperature = catalog.get("temperature").unwrap();
//! assert_eq!(temperature.custom_name, "Fridge");
//! let path = temperature.path("Temperature").unwrap();
//! assert_eq!(path.kind, ValueKind::Float);
//! assert_eq!(path.decimals, Some(2));
//! assert_eq!(path.unit.as_deref(), Some("°C"));
//! ```
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
    )
)]
pub mod embedded;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// Paths every service gets from the daemon itself (velib's mandatory paths
/// plus `/Serial` and the Python driver's `/DeviceName`); a catalog type must
/// not declare them.
pub const MANDATORY_PATHS: &[&str] = &[
    "Mgmt/ProcessName",
    "Mgmt/ProcessVersion",
    "Mgmt/Connection",
    "DeviceInstance",
    "ProductId",
    "ProductName",
    "FirmwareVersion",
    "HardwareVersion",
    "Connected",
    "Serial",
    "DeviceName",
];

/// The path holding the user's name for a service. Every type has it,
/// persisted, with [`ServiceType::custom_name`] as its default; files set it
/// through the `custom_name` key, not as a `[[path]]` entry.
pub const CUSTOM_NAME_PATH: &str = "CustomName";

/// Preferred instance of a type that does not name one.
pub const DEFAULT_PREFERRED_INSTANCE: u32 = 1;

/// All known service types, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    types: BTreeMap<String, ServiceType>,
}

/// One Venus service type (the third element of `com.victronenergy.<type>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceType {
    /// The D-Bus service type, e.g. `"temperature"`.
    pub name: String,
    /// Value of `/ProductId`.
    pub product_id: u16,
    /// Value of `/ProductName`, shown by the GUI when there is no custom name.
    pub product_name: String,
    /// Instance asked for in `ClassAndVrmInstance` (`"<type>:<n>"`);
    /// localsettings hands out the first free one from here.
    pub preferred_instance: u32,
    /// Default of the persisted `/CustomName` (also found in [`Self::paths`]).
    pub custom_name: String,
    /// `true` when other Venus processes compare `/FirmwareVersion` as a
    /// number (systemcalc does for solarcharger and vebus with DVCC on): the
    /// daemon then publishes an integer there or leaves it invalid.
    pub numeric_firmware: bool,
    /// The type's paths in file order, `CustomName` first, never any of
    /// [`MANDATORY_PATHS`].
    pub paths: Vec<PathSpec>,
}

/// One D-Bus path of a service type.
#[derive(Debug, Clone, PartialEq)]
pub struct PathSpec {
    /// Path without the leading slash, e.g. `"Ac/L1/Power"`.
    pub path: String,
    /// What values the path takes, and so its D-Bus type.
    pub kind: ValueKind,
    /// Text suffix for `GetText`, e.g. `"W"`.
    pub unit: Option<String>,
    /// Decimals for `GetText`; `None` prints the value as it is.
    pub decimals: Option<u8>,
    /// Initial value; `None` leaves the path invalid until a value arrives.
    /// A [`ValueKind::Float`] default is always a JSON float.
    pub default: Option<Value>,
    /// Whether other processes may `SetValue` it. Devices write their
    /// measurements through the MQTT gateway's `W/` topics, so measured
    /// paths are writeable too (as in the Python driver).
    pub writeable: bool,
    /// `Some` when the value is kept in localsettings under
    /// `/Settings/MqttDevices/mqtt_<client>_<service>/<path>`.
    pub persist: Option<Persist>,
    /// `true` for a measurement the device reports (invalidated when the
    /// device goes silent), `false` for configuration and status paths.
    pub measured: bool,
    /// Lowest value accepted from a remote write (also `GetMin`).
    pub min: Option<f64>,
    /// Highest value accepted from a remote write (also `GetMax`).
    pub max: Option<f64>,
    /// What the path means, with its enumeration where it has one.
    pub description: String,
}

/// How a path is stored in localsettings.
///
/// The limits are what the daemon passes to `AddSettings` (`None` is sent as
/// 0, and 0/0 means "no limits" to localsettings). They equal the path's
/// `min`/`max` unless the file gives them separately
/// (`persist = { min = 0, max = 0 }`): the Python driver registered some
/// settings without limits, and changing a stored setting's limits could
/// reject a value a user already has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Persist {
    /// Lower limit given to localsettings.
    pub min: Option<f64>,
    /// Upper limit given to localsettings.
    pub max: Option<f64>,
}

/// The values a path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Whole numbers (D-Bus int32, int64 when too large).
    Int,
    /// Numbers (D-Bus double).
    Float,
    /// Text (D-Bus string).
    #[serde(alias = "string")]
    Str,
    /// Whatever the device sends, as the Python driver did.
    Any,
}

impl ValueKind {
    /// The name used in catalog files.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Int => "int",
            ValueKind::Float => "float",
            ValueKind::Str => "str",
            ValueKind::Any => "any",
        }
    }
}

/// The D-Bus value type of a path of this kind: what device values and remote
/// writes are coerced to.
impl From<ValueKind> for crate::dbus::ValueType {
    fn from(kind: ValueKind) -> Self {
        match kind {
            ValueKind::Any => crate::dbus::ValueType::Any,
            ValueKind::Int => crate::dbus::ValueType::Int,
            ValueKind::Float => crate::dbus::ValueType::Float,
            ValueKind::Str => crate::dbus::ValueType::Str,
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mistake found in a catalog file. The part of the catalog it concerns
/// keeps its previous (built-in) definition, or is left out if it had none.
///
/// Displays as `catalog.toml: type 'x', path 'y', key 'z': reason`, leaving
/// out the parts that do not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    /// The file, as given to [`Catalog::load`] (`embedded/<type>.toml` for
    /// built-in files).
    pub file: String,
    /// The service type concerned, if the mistake is inside one.
    pub service_type: Option<String>,
    /// The path concerned, if the mistake is inside one.
    pub path: Option<String>,
    /// The key concerned (e.g. `default`, `product_id`).
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        let mut sep = ": ";
        if let Some(t) = &self.service_type {
            write!(f, "{sep}type '{t}'")?;
            sep = ", ";
        }
        if let Some(p) = &self.path {
            write!(f, "{sep}path '{p}'")?;
            sep = ", ";
        }
        if let Some(k) = &self.key {
            write!(f, "{sep}key '{k}'")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for CatalogError {}

impl Catalog {
    #[cfg(any(test, feature = "internals"))]
    /// The built-in types. A unit test guarantees that every embedded file
    /// parses and validates, so nothing is lost here.
    pub fn embedded() -> Catalog {
        let (catalog, errors) = build(None);
        debug_assert!(errors.is_empty(), "embedded catalog: {errors:?}");
        catalog
    }

    /// The built-in types merged with the user file, if there is one.
    ///
    /// A missing file is not an error. Every mistake in the file is returned
    /// (naming file, type, path and key); the part it concerns keeps its
    /// built-in definition, and the rest of the file still applies.
    pub fn load(user_file: Option<&Path>) -> (Catalog, Vec<CatalogError>) {
        let Some(file) = user_file else {
            return build(None);
        };
        let label = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => build(Some((&text, &label))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => build(None),
            Err(e) => {
                let (catalog, mut errors) = build(None);
                errors.push(CatalogError {
                    file: label,
                    service_type: None,
                    path: None,
                    key: None,
                    reason: format!("cannot read the file: {e}"),
                });
                (catalog, errors)
            }
        }
    }

    #[cfg(any(test, feature = "internals"))]
    /// Like [`Catalog::load`], with the user file's text given directly;
    /// `file` names it in errors.
    pub fn load_str(user_toml: &str, file: &str) -> (Catalog, Vec<CatalogError>) {
        build(Some((user_toml, file)))
    }

    /// The type of that name, if known.
    pub fn get(&self, service_type: &str) -> Option<&ServiceType> {
        self.types.get(service_type)
    }

    /// Names of all types, sorted.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    #[cfg(any(test, feature = "internals"))]
    /// All types, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &ServiceType> {
        self.types.values()
    }

    #[cfg(any(test, feature = "internals"))]
    /// Number of types.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    #[cfg(any(test, feature = "internals"))]
    /// `true` when there are no types at all.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

impl ServiceType {
    /// The path of that name (without leading slash), if the type has it.
    pub fn path(&self, path: &str) -> Option<&PathSpec> {
        self.paths.iter().find(|p| p.path == path)
    }

    /// The paths kept in localsettings, `CustomName` first.
    pub fn persisted(&self) -> impl Iterator<Item = &PathSpec> {
        self.paths.iter().filter(|p| p.persist.is_some())
    }
}

fn kind_expectation(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Int => "a whole number",
        ValueKind::Float => "a number",
        ValueKind::Str => "a string",
        ValueKind::Any => "a value",
    }
}

// ---------------------------------------------------------------------------
// Loading: files are read into patches (every field optional), patches of the
// same type are merged (later wins), then each merged patch is resolved into
// a ServiceType with defaults filled in and validated. Where a user patch
// makes a field or path invalid, the built-in one is kept.
// ---------------------------------------------------------------------------

/// A type as written in one file: only the keys given.
#[derive(Debug, Clone, Default)]
struct TypePatch {
    product_id: Option<u16>,
    product_name: Option<String>,
    preferred_instance: Option<u32>,
    custom_name: Option<String>,
    numeric_firmware: Option<bool>,
    paths: Vec<PathPatch>,
}

/// A path as written in one file: only the keys given.
#[derive(Debug, Clone, Default)]
struct PathPatch {
    path: String,
    kind: Option<ValueKind>,
    unit: Option<String>,
    decimals: Option<u8>,
    default: Option<Value>,
    writeable: Option<bool>,
    persist: Option<PersistPatch>,
    measured: Option<bool>,
    min: Option<f64>,
    max: Option<f64>,
    description: Option<String>,
}

/// `persist = true | false | { min = .., max = .. }`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PersistPatch {
    Off,
    /// Limits are the path's own `min`/`max`.
    FromPath,
    Limits {
        min: Option<f64>,
        max: Option<f64>,
    },
}

/// Where an error was found, to build [`CatalogError`]s.
#[derive(Clone)]
struct Origin<'a> {
    file: &'a str,
    service_type: Option<&'a str>,
    path: Option<&'a str>,
}

impl<'a> Origin<'a> {
    fn file(file: &'a str) -> Self {
        Origin {
            file,
            service_type: None,
            path: None,
        }
    }
    fn service_type(&self, t: &'a str) -> Self {
        Origin {
            service_type: Some(t),
            ..self.clone()
        }
    }
    fn path(&self, p: &'a str) -> Self {
        Origin {
            path: Some(p),
            ..self.clone()
        }
    }
    fn error(&self, key: Option<&str>, reason: impl Into<String>) -> CatalogError {
        CatalogError {
            file: self.file.to_string(),
            service_type: self.service_type.map(str::to_string),
            path: self.path.map(str::to_string),
            key: key.map(str::to_string),
            reason: reason.into(),
        }
    }
}

/// The built-in files, read into patches (by file name, with their label),
/// and the mistakes found in them. Read once: they are compiled in.
type EmbeddedPatches = (BTreeMap<String, (String, TypePatch)>, Vec<CatalogError>);

fn embedded_patches() -> &'static EmbeddedPatches {
    static PATCHES: std::sync::OnceLock<EmbeddedPatches> = std::sync::OnceLock::new();
    PATCHES.get_or_init(|| {
        let mut errors = Vec::new();
        let mut embedded = BTreeMap::new();
        for file in embedded::FILES {
            let label = format!("embedded/{}.toml", file.name);
            let origin = Origin::file(&label).service_type(file.name);
            match toml::from_str::<toml::Table>(file.text) {
                Ok(table) => {
                    let patch = parse_type(table, &origin, &mut errors);
                    embedded.insert(file.name.to_string(), (label.clone(), patch));
                }
                Err(e) => errors.push(origin.error(None, toml_message(&e, file.text))),
            }
        }
        (embedded, errors)
    })
}

/// Builds the catalog from the embedded files and an optional user file
/// `(text, label)`.
fn build(user: Option<(&str, &str)>) -> (Catalog, Vec<CatalogError>) {
    let (embedded, mut errors) = embedded_patches().clone();

    let mut user_patches: BTreeMap<String, TypePatch> = BTreeMap::new();
    let user_label = user.map(|(_, label)| label).unwrap_or("catalog.toml");
    if let Some((text, label)) = user {
        let origin = Origin::file(label);
        match toml::from_str::<toml::Table>(text) {
            Ok(table) => {
                for (name, value) in table {
                    let type_origin = origin.service_type(&name);
                    if let Err(reason) = check_type_name(&name) {
                        errors.push(type_origin.error(None, reason));
                        continue;
                    }
                    let toml::Value::Table(t) = value else {
                        errors.push(type_origin.error(
                            None,
                            format!("expected a table [{name}], got {}", value.type_str()),
                        ));
                        continue;
                    };
                    let patch = parse_type(t, &type_origin, &mut errors);
                    user_patches.insert(name, patch);
                }
            }
            Err(e) => errors.push(origin.error(None, toml_message(&e, text))),
        }
    }

    let mut catalog = Catalog::default();
    let names: BTreeSet<&String> = embedded.keys().chain(user_patches.keys()).collect();
    for name in names {
        let base = embedded.get(name);
        let over = user_patches.get(name);
        let built = match (base, over) {
            (Some((label, base)), None) => {
                resolve_type(name, base, None, &Origin::file(label).service_type(name))
            }
            (base, Some(over)) => resolve_type(
                name,
                over,
                base.map(|(_, b)| b),
                &Origin::file(user_label).service_type(name),
            ),
            (None, None) => continue,
        };
        match built {
            Ok((service_type, mut errs)) => {
                errors.append(&mut errs);
                catalog.types.insert(name.clone(), service_type);
            }
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    (catalog, errors)
}

fn toml_message(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            // Spans lie on token boundaries; fall back to the start if not.
            let before = text.get(..span.start).unwrap_or_default();
            let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
            let line = before.matches('\n').count().saturating_add(1);
            let column = before.len().saturating_sub(line_start).saturating_add(1);
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Takes `key` out of `table` and converts it, reporting a mistake as an
/// error naming the key.
fn take<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    key: &str,
    origin: &Origin,
    errors: &mut Vec<CatalogError>,
) -> Option<T> {
    let value = table.remove(key)?;
    let shown = value.to_string();
    match value.try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(origin.error(Some(key), format!("{shown}: {}", e.message().trim())));
            None
        }
    }
}

/// [`take`] for text that ends up on D-Bus, which cannot carry NUL (the bus
/// daemon disconnects a service that sends it).
fn take_text(
    table: &mut toml::Table,
    key: &str,
    origin: &Origin,
    errors: &mut Vec<CatalogError>,
) -> Option<String> {
    let text: String = take(table, key, origin, errors)?;
    if text.contains('\0') {
        errors.push(origin.error(Some(key), "may not contain the NUL character (\\u0000)"));
        return None;
    }
    Some(text)
}

fn report_unknown_keys(table: toml::Table, origin: &Origin, errors: &mut Vec<CatalogError>) {
    for key in table.keys() {
        errors.push(origin.error(Some(key), "unknown key"));
    }
}

fn parse_type(mut t: toml::Table, origin: &Origin, errors: &mut Vec<CatalogError>) -> TypePatch {
    let mut patch = TypePatch {
        product_id: take(&mut t, "product_id", origin, errors),
        product_name: take_text(&mut t, "product_name", origin, errors),
        preferred_instance: take(&mut t, "preferred_instance", origin, errors),
        custom_name: take_text(&mut t, "custom_name", origin, errors),
        numeric_firmware: take(&mut t, "numeric_firmware", origin, errors),
        paths: Vec::new(),
    };
    let raw_paths: Vec<toml::Value> = take(&mut t, "path", origin, errors).unwrap_or_default();
    report_unknown_keys(t, origin, errors);

    let mut seen = BTreeSet::new();
    for raw in raw_paths {
        let toml::Value::Table(mut p) = raw else {
            errors.push(origin.error(Some("path"), "each path must be a table"));
            continue;
        };
        let Some(name) = take::<String>(&mut p, "path", origin, errors) else {
            errors.push(origin.error(Some("path"), "a path entry has no 'path' key"));
            continue;
        };
        let name = name.trim_start_matches('/').to_string();
        let path_origin = origin.path(&name);
        if let Err(reason) = check_path_name(&name) {
            errors.push(path_origin.error(Some("path"), reason));
            continue;
        }
        if !seen.insert(name.clone()) {
            errors.push(path_origin.error(Some("path"), "listed twice"));
            continue;
        }
        let path_patch = PathPatch {
            kind: take(&mut p, "kind", &path_origin, errors),
            unit: take_text(&mut p, "unit", &path_origin, errors),
            decimals: take(&mut p, "decimals", &path_origin, errors),
            default: take::<toml::Value>(&mut p, "default", &path_origin, errors)
                .and_then(|v| toml_to_json(v, &path_origin, errors)),
            writeable: take(&mut p, "writeable", &path_origin, errors),
            persist: take::<toml::Value>(&mut p, "persist", &path_origin, errors)
                .and_then(|v| parse_persist(v, &path_origin, errors)),
            measured: take(&mut p, "measured", &path_origin, errors),
            min: take(&mut p, "min", &path_origin, errors),
            max: take(&mut p, "max", &path_origin, errors),
            description: take_text(&mut p, "description", &path_origin, errors),
            path: name.clone(),
        };
        report_unknown_keys(p, &path_origin, errors);
        patch.paths.push(path_patch);
    }
    patch
}

fn toml_to_json(v: toml::Value, origin: &Origin, errors: &mut Vec<CatalogError>) -> Option<Value> {
    let converted = match v {
        toml::Value::String(s) => Some(Value::String(s)),
        toml::Value::Integer(i) => Some(Value::from(i)),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map(Value::Number),
        toml::Value::Boolean(b) => Some(Value::Bool(b)),
        toml::Value::Array(items) => items
            .into_iter()
            .map(|i| toml_to_json(i, origin, &mut Vec::new()))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    };
    if converted.is_none() {
        errors.push(origin.error(
            Some("default"),
            "must be a string, number, boolean or array of those (finite numbers only)",
        ));
    }
    converted
}

fn parse_persist(
    v: toml::Value,
    origin: &Origin,
    errors: &mut Vec<CatalogError>,
) -> Option<PersistPatch> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        min: Option<f64>,
        max: Option<f64>,
    }
    match v {
        toml::Value::Boolean(true) => Some(PersistPatch::FromPath),
        toml::Value::Boolean(false) => Some(PersistPatch::Off),
        toml::Value::Table(t) => match toml::Value::Table(t).try_into::<Limits>() {
            Ok(l) => Some(PersistPatch::Limits {
                min: l.min,
                max: l.max,
            }),
            Err(e) => {
                errors.push(origin.error(Some("persist"), e.message().trim().to_string()));
                None
            }
        },
        other => {
            errors.push(origin.error(
                Some("persist"),
                format!(
                    "expected true, false or {{ min = .., max = .. }}, got {}",
                    other.type_str()
                ),
            ));
            None
        }
    }
}

/// A D-Bus bus-name element: `[A-Za-z0-9_-]`, not starting with a digit.
fn check_type_name(name: &str) -> Result<(), String> {
    let legal = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || !legal || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "'{name}' is not a service type name ([A-Za-z0-9_-], not starting with a digit)"
        ));
    }
    Ok(())
}

/// Elements of `[A-Za-z0-9_]` separated by `/`, not a mandatory path and not
/// `CustomName` (which comes from `custom_name`).
fn check_path_name(name: &str) -> Result<(), String> {
    let legal_element =
        |e: &str| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name.split('/').all(legal_element) {
        return Err(format!(
            "'{name}' is not a D-Bus path (elements of [A-Za-z0-9_] separated by '/')"
        ));
    }
    if MANDATORY_PATHS.contains(&name) {
        return Err(format!("'{name}' is a mandatory path the daemon provides"));
    }
    if name == CUSTOM_NAME_PATH {
        return Err("set the default custom name with the type's custom_name key".into());
    }
    Ok(())
}

impl TypePatch {
    /// `self` with the keys given in `over` replacing its own; paths merged
    /// per path, new ones appended in `over`'s order.
    fn merged(&self, over: &TypePatch) -> TypePatch {
        let mut paths = self.paths.clone();
        for p in &over.paths {
            match paths.iter_mut().find(|b| b.path == p.path) {
                Some(b) => *b = b.merged(p),
                None => paths.push(p.clone()),
            }
        }
        TypePatch {
            product_id: over.product_id.or(self.product_id),
            product_name: over.product_name.clone().or(self.product_name.clone()),
            preferred_instance: over.preferred_instance.or(self.preferred_instance),
            custom_name: over.custom_name.clone().or(self.custom_name.clone()),
            numeric_firmware: over.numeric_firmware.or(self.numeric_firmware),
            paths,
        }
    }
}

impl PathPatch {
    fn merged(&self, over: &PathPatch) -> PathPatch {
        PathPatch {
            path: self.path.clone(),
            kind: over.kind.or(self.kind),
            unit: over.unit.clone().or(self.unit.clone()),
            decimals: over.decimals.or(self.decimals),
            default: over.default.clone().or(self.default.clone()),
            writeable: over.writeable.or(self.writeable),
            persist: over.persist.or(self.persist),
            measured: over.measured.or(self.measured),
            min: over.min.or(self.min),
            max: over.max.or(self.max),
            description: over.description.clone().or(self.description.clone()),
        }
    }

    /// Fills in defaults and validates; the error names the key at fault.
    fn resolve(&self) -> Result<PathSpec, (&'static str, String)> {
        let kind = self.kind.unwrap_or(ValueKind::Any);
        let numeric = matches!(kind, ValueKind::Int | ValueKind::Float | ValueKind::Any);
        let unit = self.unit.clone().filter(|u| !u.is_empty());

        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                return Err(("min", format!("min {min} is above max {max}")));
            }
        }
        for (key, limit) in [("min", self.min), ("max", self.max)] {
            if limit.is_some() && !numeric {
                return Err((key, format!("a {kind} path has no numeric limits")));
            }
            if limit.is_some_and(|x| !x.is_finite()) {
                return Err((key, "must be a finite number".into()));
            }
        }
        if self.decimals.is_some() && kind == ValueKind::Str {
            return Err(("decimals", "a str path has no decimals".into()));
        }

        let default = match &self.default {
            None => None,
            Some(v) => Some(check_default(kind, v, self.min, self.max)?),
        };

        let writeable = self.writeable.unwrap_or(true);
        let persist = match self.persist.unwrap_or(PersistPatch::Off) {
            PersistPatch::Off => None,
            PersistPatch::FromPath => Some(Persist {
                min: self.min,
                max: self.max,
            }),
            PersistPatch::Limits { min, max } => Some(Persist { min, max }),
        };
        let measured = self.measured.unwrap_or(persist.is_none());
        if let Some(p) = persist {
            if let (Some(min), Some(max)) = (p.min, p.max) {
                if min > max {
                    return Err(("persist", format!("min {min} is above max {max}")));
                }
            }
            if !writeable {
                return Err(("persist", "a persisted path must be writeable".into()));
            }
            if measured {
                return Err((
                    "persist",
                    "a persisted path is a setting, not a measurement (measured = false)".into(),
                ));
            }
            // localsettings takes the setting's type from the default's
            // D-Bus type: int, double or string, nothing else.
            match &default {
                Some(Value::Number(_) | Value::String(_)) => {}
                _ => {
                    return Err((
                        "persist",
                        "a persisted path needs a number or string default".into(),
                    ))
                }
            }
        }

        Ok(PathSpec {
            path: self.path.clone(),
            kind,
            unit,
            decimals: self.decimals,
            default,
            writeable,
            persist,
            measured,
            min: self.min,
            max: self.max,
            description: self.description.clone().unwrap_or_default(),
        })
    }
}

/// Checks a default against the kind and limits; a whole-number default of a
/// float path becomes a float (so its D-Bus and settings type is double).
fn check_default(
    kind: ValueKind,
    v: &Value,
    min: Option<f64>,
    max: Option<f64>,
) -> Result<Value, (&'static str, String)> {
    let fits = match kind {
        ValueKind::Int => v.is_i64() || v.is_u64(),
        ValueKind::Float => v.is_number(),
        ValueKind::Str => v.is_string(),
        ValueKind::Any => !v.is_object(),
    };
    if !fits {
        return Err((
            "default",
            format!(
                "{v} does not fit kind {kind} (expected {})",
                kind_expectation(kind)
            ),
        ));
    }
    // Defaults are sent on D-Bus as they are.
    if let Err(e) = crate::dbus::Value::from_json(v) {
        return Err(("default", format!("{v}: {e}")));
    }
    let v = match (kind, v.as_f64()) {
        (ValueKind::Float, Some(x)) if !v.is_f64() => {
            serde_json::Number::from_f64(x).map_or(v.clone(), Value::Number)
        }
        _ => v.clone(),
    };
    if let Some(x) = v.as_f64() {
        if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
            return Err(("default", format!("{v} is outside min..max")));
        }
    }
    Ok(v)
}

/// Resolves one type from `patch` (the user's, or the built-in one when there
/// is no user patch) on top of `base` (the built-in patch, when the user
/// patch changes a built-in type). `Err` only when the type cannot exist at
/// all (a new type missing a required key).
fn resolve_type(
    name: &str,
    patch: &TypePatch,
    base: Option<&TypePatch>,
    origin: &Origin,
) -> Result<(ServiceType, Vec<CatalogError>), Vec<CatalogError>> {
    let mut errors = Vec::new();
    let merged = match base {
        Some(b) => b.merged(patch),
        None => patch.clone(),
    };

    // An empty product name from the user keeps the built-in one.
    let base_name = base.and_then(|b| b.product_name.clone());
    let product_name = match merged.product_name.clone() {
        Some(n) if !n.trim().is_empty() => Some(n),
        Some(_) if base_name.is_some() => {
            errors.push(origin.error(Some("product_name"), "must not be empty"));
            base_name
        }
        _ => None,
    };
    let mut missing = Vec::new();
    for (key, absent) in [
        ("product_id", merged.product_id.is_none()),
        ("product_name", product_name.is_none()),
        ("custom_name", merged.custom_name.is_none()),
    ] {
        if absent {
            missing.push(origin.error(Some(key), "missing or empty (a new type needs it)"));
        }
    }
    let (Some(product_id), Some(product_name), Some(custom_name)) =
        (merged.product_id, product_name, merged.custom_name.clone())
    else {
        return Err(missing);
    };

    let mut paths = vec![PathSpec {
        path: CUSTOM_NAME_PATH.to_string(),
        kind: ValueKind::Str,
        unit: None,
        decimals: None,
        default: Some(Value::String(custom_name.clone())),
        writeable: true,
        persist: Some(Persist {
            min: None,
            max: None,
        }),
        measured: false,
        min: None,
        max: None,
        description: "Name shown in the GUI and on VRM".to_string(),
    }];
    for p in &merged.paths {
        match p.resolve() {
            Ok(spec) => paths.push(spec),
            Err((key, reason)) => {
                errors.push(origin.path(&p.path).error(Some(key), reason));
                // Keep the built-in definition of this path if there is one.
                if let Some(spec) = base
                    .and_then(|b| b.paths.iter().find(|b| b.path == p.path))
                    .and_then(|b| b.resolve().ok())
                {
                    paths.push(spec);
                }
            }
        }
    }

    // A path cannot also be a node holding other paths. Of such a pair the
    // path the user added is left out, so a built-in path never disappears.
    let in_base = |path: &str| base.is_some_and(|b| b.paths.iter().any(|p| p.path == path));
    let mut left_out = BTreeSet::new();
    for node in &paths {
        let prefix = format!("{}/", node.path);
        for leaf in paths.iter().filter(|p| p.path.starts_with(&prefix)) {
            if in_base(&node.path) && !in_base(&leaf.path) {
                left_out.insert((
                    leaf.path.clone(),
                    format!("'{}' is a path, not a node", node.path),
                ));
            } else {
                left_out.insert((node.path.clone(), format!("'{}' lies below it", leaf.path)));
            }
        }
    }
    for (path, reason) in left_out {
        if paths.iter().any(|p| p.path == path) {
            errors.push(
                origin
                    .path(&path)
                    .error(Some("path"), format!("{reason}; left out")),
            );
            paths.retain(|p| p.path != path);
        }
    }

    Ok((
        ServiceType {
            name: name.to_string(),
            product_id,
            product_name,
            preferred_instance: merged
                .preferred_instance
                .unwrap_or(DEFAULT_PREFERRED_INSTANCE),
            custom_name,
            numeric_firmware: merged.numeric_firmware.unwrap_or(false),
            paths,
        },
        errors,
    ))
}

#[cfg(test)]
mod tests;
