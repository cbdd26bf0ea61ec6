//! Our localsettings twin: `com.victronenergy.settings` on its own connection, answering
//! AddSettings/AddSetting/RemoveSettings on groups, BusItem calls on settings and groups and
//! GetItems on `/`, with the same error codes and rules, persisted atomically to
//! `<data dir>/settings.json` shortly after each change. Knows no MQTT and no devices.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use zbus::names::WellKnownName;
use zbus::{Connection, OwnedVariant, Variant};

use super::store::{check_path, codes, join, Added, Kind, Store};
use super::{Error, SETTINGS_INTERFACE, SETTINGS_SERVICE};
use crate::dbus::dispatch::{
    self, Call, Emit, Handler, Introspection, Reply, Response, SignalBody,
};
use crate::dbus::tree::{value_text_entry, ObjectTree, NODE_XML};
use crate::dbus::{BusAddress, ErrorReply, Value, VariantMap, BUSITEM_INTERFACE};

/// The file the settings persist to, inside the data directory.
pub const SETTINGS_FILE: &str = "settings.json";

/// How long changes are collected before the file is written (localsettings waits 2 s; a
/// shorter delay loses less on a power cut and still batches a burst of AddSettings).
pub const SAVE_DELAY: Duration = Duration::from_millis(300);

const SETTING_XML: &str = r#"  <interface name="com.victronenergy.BusItem">
    <method name="GetValue"><arg type="v" direction="out"/></method>
    <method name="GetText"><arg type="s" direction="out"/></method>
    <method name="SetValue"><arg type="v" direction="in"/><arg type="i" direction="out"/></method>
    <method name="GetMin"><arg type="v" direction="out"/></method>
    <method name="GetMax"><arg type="v" direction="out"/></method>
    <method name="GetDefault"><arg type="v" direction="out"/></method>
    <method name="SetDefault"><arg type="i" direction="out"/></method>
    <signal name="PropertiesChanged"><arg type="a{sv}"/></signal>
  </interface>
  <interface name="com.victronenergy.Settings">
    <method name="GetSilent"><arg type="b" direction="out"/></method>
    <method name="GetAttributes"><arg type="v" direction="out"/><arg type="v" direction="out"/><arg type="v" direction="out"/><arg type="i" direction="out"/></method>
  </interface>
"#;
/// A group's own interface besides [`NODE_XML`]'s BusItem methods.
const GROUP_SETTINGS_XML: &str = r#"  <interface name="com.victronenergy.Settings">
    <method name="AddSettings"><arg type="aa{sv}" direction="in"/><arg type="aa{sv}" direction="out"/></method>
    <method name="AddSetting"><arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="in"/><arg type="v" direction="in"/><arg type="i" direction="out"/></method>
    <method name="AddSilentSetting"><arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="in"/><arg type="v" direction="in"/><arg type="i" direction="out"/></method>
    <method name="RemoveSettings"><arg type="as" direction="in"/><arg type="ai" direction="out"/></method>
  </interface>
"#;

/// Method calls queued for the dispatcher before the connection's reader waits for it.
const CALL_QUEUE: std::num::NonZeroUsize = std::num::NonZeroUsize::MIN.saturating_add(255);

struct Shared {
    store: Mutex<Store>,
    file: PathBuf,
    /// Set on every change, cleared by a save.
    dirty: AtomicBool,
    /// Wakes the saver.
    changed: Notify,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // Every store operation leaves it consistent, so a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_changed(&self) {
        self.dirty.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Writes the file if anything changed since the last write.
    async fn save(self: &Arc<Self>) -> Result<(), Error> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = self.store().clone();
        let file = self.file.clone();
        let result = tokio::task::spawn_blocking(move || snapshot.save(&file))
            .await
            .unwrap_or_else(|e| {
                Err(Error::Io {
                    what: "saving (task failed)",
                    path: self.file.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        if result.is_err() {
            // Try again with the next change or at stop.
            self.dirty.store(true, Ordering::Release);
        }
        result
    }

    fn add_settings(&self, call: &Call<'_>) -> Response {
        let entries: Vec<HashMap<String, OwnedVariant>> = match call.body.deserialize() {
            Ok(e) => e,
            Err(e) => return invalid_args(call, e),
        };
        let mut results = Vec::with_capacity(entries.len());
        let mut changed = HashMap::new();
        {
            let mut store = self.store();
            for entry in &entries {
                let get = |k: &str| entry.get(k).and_then(|v| Value::from_variant(v).ok());
                let given = get("path").and_then(|p| p.as_str().map(str::to_string));
                let (code, abs) = match (&given, get("default")) {
                    (None, _) => (codes::INVALID_PATH, None),
                    (Some(_), None) => (codes::UNKNOWN_TYPE, None),
                    (Some(p), Some(_)) if wire_kind(entry.get("default")).is_none() => {
                        // The D-Bus type decides: u, y, b, arrays... are unknown types.
                        (
                            check_path(&join(call.path, p))
                                .err()
                                .unwrap_or(codes::UNKNOWN_TYPE),
                            None,
                        )
                    }
                    (Some(p), Some(default)) => {
                        let abs = join(call.path, p);
                        let silent = match get("silent") {
                            Some(v) => v.as_i64().is_some_and(|i| i != 0),
                            None => false,
                        };
                        let (min, max) = (get("min"), get("max"));
                        match store.add(&abs, &default, None, min.as_ref(), max.as_ref(), silent) {
                            Ok(added) => {
                                if added != Added::Unchanged {
                                    if let Some(s) = store.get(&abs) {
                                        changed.insert(abs.clone(), s.entry());
                                    }
                                }
                                (codes::OK, Some(abs))
                            }
                            Err(code) => (code, None),
                        }
                    }
                };
                let value = abs
                    .and_then(|a| store.get(&a).map(|s| s.value.clone()))
                    .unwrap_or(Value::Invalid);
                results.push(HashMap::from([
                    (
                        "path".to_string(),
                        Variant::Str(given.unwrap_or_default().into()),
                    ),
                    ("error".to_string(), Variant::I32(code)),
                    ("value".to_string(), value.to_variant()),
                ]));
            }
        }
        self.respond_changed(Reply::DictList(results), changed)
    }

    fn add_setting(&self, call: &Call<'_>, silent: bool) -> Response {
        type Args = (
            String,
            String,
            OwnedVariant,
            String,
            OwnedVariant,
            OwnedVariant,
        );
        let (group, name, default, letter, min, max): Args = match call.body.deserialize() {
            Ok(a) => a,
            Err(e) => return invalid_args(call, e),
        };
        let group_path = join(call.path, &group);
        let path = if group.is_empty() || group == "/" {
            join(call.path, &name)
        } else {
            join(&group_path, &name)
        };
        let Some(kind) = Kind::from_letter(&letter) else {
            return Reply::I32(codes::UNKNOWN_TYPE).into();
        };
        let value = |v: &OwnedVariant| Value::from_variant(v).unwrap_or(Value::Invalid);
        let mut changed = HashMap::new();
        let code = {
            let mut store = self.store();
            match store.add(
                &path,
                &value(&default),
                Some(kind),
                Some(&value(&min)),
                Some(&value(&max)),
                silent,
            ) {
                Ok(added) => {
                    if added != Added::Unchanged {
                        if let Some(s) = store.get(&path) {
                            changed.insert(path.clone(), s.entry());
                        }
                    }
                    codes::OK
                }
                Err(code) => code,
            }
        };
        self.respond_changed(Reply::I32(code), changed)
    }

    /// As localsettings: each removed setting says so with `PropertiesChanged` on its own
    /// path, `{"Value": [] (ai), "Text": ""}`; no ItemsChanged.
    fn remove_settings(&self, call: &Call<'_>) -> Response {
        let paths: Vec<String> = match call.body.deserialize() {
            Ok(p) => p,
            Err(e) => return invalid_args(call, e),
        };
        let mut signals = Vec::new();
        let codes: Vec<i32> = {
            let mut store = self.store();
            paths
                .iter()
                .map(|p| {
                    let abs = join(call.path, p);
                    if store.remove(&abs) {
                        signals.push(Emit {
                            body: SignalBody::Properties(value_text_entry(
                                &Value::Invalid,
                                String::new(),
                            )),
                            path: abs,
                        });
                        0
                    } else {
                        -1
                    }
                })
                .collect()
        };
        if !signals.is_empty() {
            self.mark_changed();
        }
        Response {
            reply: Reply::I32List(codes),
            signals,
        }
    }

    /// The reply plus one ItemsChanged on `/` for what changed (and a save).
    fn respond_changed(&self, reply: Reply, changed: HashMap<String, VariantMap>) -> Response {
        if changed.is_empty() {
            return reply.into();
        }
        self.mark_changed();
        Response {
            reply,
            signals: vec![Emit {
                path: "/".to_string(),
                body: SignalBody::Items(changed),
            }],
        }
    }

    fn set_value(&self, call: &Call<'_>, value: Option<Value>) -> Response {
        let value = match value {
            Some(v) => v,
            None => match call.body.deserialize::<OwnedVariant>() {
                Ok(v) => match Value::from_variant(&v) {
                    Ok(v) => v,
                    Err(_) => return Reply::I32(-1).into(),
                },
                Err(e) => return invalid_args(call, e),
            },
        };
        let entry = {
            let mut store = self.store();
            match store.set(call.path, &value) {
                Err(_refused) => return Reply::I32(-1).into(),
                Ok(false) => return Reply::I32(0).into(),
                Ok(true) => match store.get(call.path) {
                    Some(s) => {
                        if !s.silent {
                            tracing::info!(path = call.path, value = %s.text(), "setting changed");
                        }
                        s.value_entry()
                    }
                    None => return Reply::I32(-1).into(),
                },
            }
        };
        self.mark_changed();
        Response {
            reply: Reply::I32(0),
            signals: vec![Emit {
                path: call.path.to_string(),
                body: SignalBody::Properties(entry),
            }],
        }
    }
}

/// The setting type a default's D-Bus type gives (`i`/`x`, `d`, `s`), before any widening.
fn wire_kind(v: Option<&OwnedVariant>) -> Option<Kind> {
    let mut v: &Variant<'_> = v?;
    while let Variant::Variant(inner) = v {
        v = inner;
    }
    match v {
        Variant::I32(_) | Variant::I64(_) => Some(Kind::Int),
        Variant::F64(_) => Some(Kind::Float),
        Variant::Str(_) => Some(Kind::Str),
        _ => None,
    }
}

fn invalid_args(call: &Call<'_>, e: zbus::Error) -> Response {
    Reply::Error(ErrorReply::InvalidArgs(format!(
        "{} on {}: {e}",
        call.member, call.path
    )))
    .into()
}

impl Handler for Shared {
    fn handle(&self, call: &Call<'_>) -> Response {
        let busitem = call.is_for(BUSITEM_INTERFACE);
        let settings = call.is_for(SETTINGS_INTERFACE);
        let store = self.store();
        if let Some(s) = store.get(call.path) {
            let reply = match call.member {
                "GetValue" if busitem => Reply::Variant(s.value.to_variant()),
                "GetText" if busitem => Reply::Str(s.text()),
                "GetMin" if busitem => Reply::Variant(s.min().to_variant()),
                "GetMax" if busitem => Reply::Variant(s.max().to_variant()),
                "GetDefault" if busitem => Reply::Variant(s.default.to_variant()),
                "GetSilent" if settings => Reply::Bool(s.silent),
                "GetAttributes" if settings => Reply::Attributes(
                    s.default.to_variant(),
                    s.min().to_variant(),
                    s.max().to_variant(),
                    i32::from(s.silent),
                ),
                "SetValue" if busitem => {
                    drop(store);
                    return self.set_value(call, None);
                }
                "SetDefault" if busitem => {
                    let default = s.default.clone();
                    drop(store);
                    return self.set_value(call, Some(default));
                }
                _ => Reply::Error(call.unknown_method()),
            };
            return reply.into();
        }
        if !store.is_node(call.path) {
            return Reply::Error(ErrorReply::UnknownObject(format!(
                "no setting or group at {}",
                call.path
            )))
            .into();
        }
        if busitem {
            if let Some(reply) = store.node_reply(call) {
                return reply.into();
            }
        }
        match call.member {
            "AddSettings" if settings => {
                drop(store);
                self.add_settings(call)
            }
            "AddSetting" if settings => {
                drop(store);
                self.add_setting(call, false)
            }
            "AddSilentSetting" if settings => {
                drop(store);
                self.add_setting(call, true)
            }
            "RemoveSettings" if settings => {
                drop(store);
                self.remove_settings(call)
            }
            _ => Reply::Error(call.unknown_method()).into(),
        }
    }

    fn introspect(&self, path: &str) -> Option<Introspection> {
        self.store()
            .introspect(path, &[SETTING_XML], &[NODE_XML, GROUP_SETTINGS_XML])
    }
}

/// A running settings service. Stop it with [`SettingsService::stop`] to write pending changes.
pub struct SettingsService {
    shared: Arc<Shared>,
    conn: Connection,
    dispatcher: Option<JoinHandle<()>>,
    saver: Option<JoinHandle<Result<(), Error>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for SettingsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsService")
            .field("file", &self.shared.file)
            .finish_non_exhaustive()
    }
}

async fn save_loop(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) -> Result<(), Error> {
    loop {
        tokio::select! {
            _ = shared.changed.notified() => {
                // Collect the burst of changes, unless asked to stop meanwhile.
                tokio::select! {
                    _ = tokio::time::sleep(SAVE_DELAY) => {}
                    _ = &mut stop => return shared.save().await,
                }
                if let Err(e) = shared.save().await {
                    tracing::warn!(error = %e, "settings not saved; retrying with the next change");
                }
            }
            _ = &mut stop => return shared.save().await,
        }
    }
}

impl SettingsService {
    /// Loads `<data_dir>/settings.json` (creating the directory if needed), answers on a new
    /// connection to `bus`, then owns `com.victronenergy.settings` (DO_NOT_QUEUE).
    pub async fn start(bus: &BusAddress, data_dir: &Path) -> Result<SettingsService, Error> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            what: "creating data directory",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let file = data_dir.join(SETTINGS_FILE);
        let store = Store::load(&file)?;
        tracing::debug!(file = %file.display(), settings = store.len(), "settings loaded");
        let conn = bus.connect().await.map_err(|source| Error::Connect {
            bus: bus.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            file,
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
        });
        let dispatcher = dispatch::start(&conn, CALL_QUEUE, shared.clone() as Arc<dyn Handler>)
            .await
            .map_err(|e| Error::Bus {
                what: e.what,
                source: e.source,
            })?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let saver = tokio::spawn(save_loop(shared.clone(), stop_rx));
        let service = SettingsService {
            shared,
            conn,
            dispatcher: Some(dispatcher),
            saver: Some(saver),
            stop: Some(stop_tx),
        };
        let name = WellKnownName::from_static_str_unchecked(SETTINGS_SERVICE);
        match dispatch::request_name(&service.conn, name).await {
            Ok(true) => Ok(service),
            Ok(false) => {
                let _ = service.stop().await;
                Err(Error::NameTaken)
            }
            Err(source) => {
                let _ = service.stop().await;
                Err(Error::Bus {
                    what: "requesting com.victronenergy.settings",
                    source,
                })
            }
        }
    }

    /// The file the settings persist to.
    pub fn file(&self) -> &Path {
        &self.shared.file
    }

    /// The current value of a setting.
    pub fn value(&self, path: &str) -> Option<Value> {
        self.shared.store().get(path).map(|s| s.value.clone())
    }

    /// Releases the name, stops answering, writes pending changes, closes the connection.
    pub async fn stop(mut self) -> Result<(), Error> {
        let _ = self.conn.release_name(SETTINGS_SERVICE).await;
        if let Some(d) = self.dispatcher.take() {
            d.abort();
            let _ = d.await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let saved = match self.saver.take() {
            Some(s) => s.await.unwrap_or(Ok(())),
            None => Ok(()),
        };
        let _ = self.conn.clone().close().await;
        saved
    }
}

impl Drop for SettingsService {
    fn drop(&mut self) {
        if let Some(d) = self.dispatcher.take() {
            d.abort();
        }
        // The saver writes pending changes and ends (if the runtime is still running).
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs a settings service on `bus` with data in `data_dir` until `shutdown` completes, then
/// stops it (writing pending changes).
pub async fn run_until(
    bus: &BusAddress,
    data_dir: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let service = SettingsService::start(bus, data_dir).await?;
    tracing::info!(file = %service.file().display(), "settings service running");
    shutdown.await;
    service.stop().await
}
