//! One BusItem service on its own connection: method-call stream first, then the items, then
//! `RequestName(DO_NOT_QUEUE)`; local writes with PropertiesChanged, batches and live
//! additions/removals with ItemsChanged; remote writes reported to the owner; the name released
//! on close. Knows no service types, no MQTT and no devices.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zbus::Connection;

use super::dispatch::{
    self, Call, Emit, Handler, Introspection, Reply, Response, SignalBody, BUSITEM_INTERFACE,
};
use super::error::{Error, ErrorReply};
use super::tree::{value_text_entry, InsertError, Item, ObjectTree, Tree, WriteCheck, NODE_XML};
use super::value::{Value, INVALID_TEXT};
use super::BusAddress;

/// An accepted remote (D-Bus) write of a changed value, sent to the service's owner.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteWrite {
    /// The item path.
    pub path: String,
    /// The new value, after coercion to the item's type.
    pub value: Value,
}

/// Optional synchronous validation of remote writes of changed values (after coercion and
/// min/max): return false and SetValue returns 2. Runs on the dispatcher: keep it quick.
pub type WriteHook = Arc<dyn Fn(&str, &Value) -> bool + Send + Sync>;

/// Capacity of the [`RemoteWrite`] channel. When it is full (the owner is not reading), further
/// accepted writes are still stored and signalled, but their notification is dropped with a
/// warning: the dispatcher never waits for the owner, so the bus keeps getting answers.
pub const REMOTE_WRITE_QUEUE: usize = 256;

/// Method calls queued for the dispatcher before the connection's reader waits for it.
/// zbus allocates the whole queue up front for every service, and the dispatcher answers
/// each call at once, so a short queue keeps a few hundred services small in memory.
const CALL_QUEUE: std::num::NonZeroUsize = std::num::NonZeroUsize::MIN.saturating_add(31);

/// Messages the service's connection queues internally (zbus' default is 64); see
/// [`BusAddress::connect_with_queue`].
const CONNECTION_QUEUE: std::num::NonZeroUsize = std::num::NonZeroUsize::MIN.saturating_add(15);

const LEAF_XML: &str = r#"  <interface name="com.victronenergy.BusItem">
    <method name="GetValue"><arg type="v" direction="out"/></method>
    <method name="GetText"><arg type="s" direction="out"/></method>
    <method name="SetValue"><arg type="v" direction="in"/><arg type="i" direction="out"/></method>
    <method name="GetDescription"><arg type="s" direction="in"/><arg type="i" direction="in"/><arg type="s" direction="out"/></method>
    <signal name="PropertiesChanged"><arg type="a{sv}"/></signal>
  </interface>
"#;
/// State shared by the owner's handle and the dispatcher.
struct Shared {
    name: String,
    tree: Mutex<Tree>,
    hook: Option<WriteHook>,
    writes: mpsc::Sender<RemoteWrite>,
}

impl Shared {
    /// The tree; a poisoned lock is still used, since every write leaves the tree consistent.
    fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remote_set(&self, call: &Call<'_>) -> Response {
        let raw: zbus::Variant<'_> = match call.body.deserialize() {
            Ok(v) => v,
            Err(e) => {
                return Reply::Error(ErrorReply::InvalidArgs(format!(
                    "SetValue on {} needs one variant: {e}",
                    call.path
                )))
                .into()
            }
        };
        // The gateways ignore SetValue's code, so a refusal is only seen in the log.
        let refuse = |code: i32, reason: &str| -> Response {
            tracing::warn!(service = %self.name, path = call.path, code, "SetValue refused: {reason}");
            Reply::I32(code).into()
        };
        let value = match Value::from_variant(&raw) {
            Ok(v) => v,
            Err(e) => return refuse(1, &e.to_string()),
        };
        let shown = quoted(&value);
        let check = match self.tree().get(call.path) {
            Some(item) => item.check_remote_write(value),
            None => return unknown_object(call.path),
        };
        let value = match check {
            WriteCheck::NotWriteable => return refuse(1, "the path is not writeable"),
            WriteCheck::WrongType => {
                return refuse(1, &format!("{shown} does not fit the path's type"))
            }
            WriteCheck::OutOfRange => return refuse(2, &format!("{shown} is out of range")),
            WriteCheck::Unchanged => return Reply::I32(0).into(),
            WriteCheck::Changed(v) => v,
        };
        // The hook runs without the lock, so it may read the service.
        if let Some(hook) = &self.hook {
            if !hook(call.path, &value) {
                return refuse(2, &format!("{shown} is not accepted by the service"));
            }
        }
        let entry = {
            let mut tree = self.tree();
            let Some(item) = tree.get_mut(call.path) else {
                return unknown_object(call.path);
            };
            item.value = value.clone();
            item.entry()
        };
        let write = RemoteWrite {
            path: call.path.to_string(),
            value,
        };
        if let Err(mpsc::error::TrySendError::Full(w)) = self.writes.try_send(write) {
            tracing::warn!(service = %self.name, path = %w.path,
                "owner is not reading remote writes; notification dropped (value is stored)");
        }
        Response {
            reply: Reply::I32(0),
            signals: vec![Emit {
                path: call.path.to_string(),
                body: SignalBody::Properties(entry),
            }],
        }
    }
}

/// How many characters of a refused value the log quotes.
const QUOTE_MAX_CHARS: usize = 40;

/// A value as the log quotes it: Python text, cut after [`QUOTE_MAX_CHARS`]
/// characters (never inside one).
fn quoted(value: &Value) -> String {
    let mut text = value.python_text();
    if let Some((cut, _)) = text.char_indices().nth(QUOTE_MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    format!("{text:?}")
}

fn unknown_object(path: &str) -> Response {
    Reply::Error(ErrorReply::UnknownObject(format!("no object at {path}"))).into()
}

impl Handler for Shared {
    fn handle(&self, call: &Call<'_>) -> Response {
        let tree = self.tree();
        let is_item = tree.get(call.path).is_some();
        if !is_item && !tree.is_node(call.path) {
            return unknown_object(call.path);
        }
        if !call.is_for(BUSITEM_INTERFACE) {
            return Reply::Error(call.unknown_method()).into();
        }
        if let Some(item) = tree.get(call.path) {
            let reply = match call.member {
                "GetValue" => Reply::Variant(item.value.to_variant()),
                "GetText" => Reply::Str(item.text()),
                "GetDescription" => Reply::Str(item.description.clone()),
                "GetMin" if item.min.is_some() => {
                    Reply::Variant(item.limit_value(item.min.unwrap_or_default()).to_variant())
                }
                "GetMax" if item.max.is_some() => {
                    Reply::Variant(item.limit_value(item.max.unwrap_or_default()).to_variant())
                }
                "SetValue" => {
                    drop(tree);
                    return self.remote_set(call);
                }
                _ => Reply::Error(call.unknown_method()),
            };
            return reply.into();
        }
        tree.node_reply(call)
            .unwrap_or_else(|| Reply::Error(call.unknown_method()))
            .into()
    }

    fn introspect(&self, path: &str) -> Option<Introspection> {
        self.tree().introspect(path, &[LEAF_XML], &[NODE_XML])
    }
}

/// A BusItem service: one connection, one well-known name, a tree of items.
///
/// Dropping it without [`Service::close`] stops the dispatcher and closes the connection (the
/// bus then drops the name) but cannot wait for that to finish.
pub struct Service {
    shared: Arc<Shared>,
    conn: Connection,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// Refuses a value the bus cannot carry before it is stored: a stored one would
/// make every later `GetItems` of the service fail.
fn check_wire(name: &str, path: &str, value: &Value) -> Result<(), Error> {
    value.check_wire().map_err(|source| Error::InvalidValue {
        name: name.to_string(),
        path: path.to_string(),
        source,
    })
}

fn insert_error(name: &str, path: &str, e: InsertError) -> Error {
    match e {
        InsertError::InvalidPath => Error::InvalidPath {
            name: name.to_string(),
            path: path.to_string(),
        },
        InsertError::Clash => Error::PathClash {
            name: name.to_string(),
            path: path.to_string(),
        },
    }
}

impl Service {
    /// Connects a new connection to `bus`, starts its dispatcher, loads `items`, and only then
    /// requests `name` with DO_NOT_QUEUE, so `GetItems` answers the moment `NameOwnerChanged`
    /// fires. Fails with [`Error::NameTaken`] when another connection owns the name.
    pub async fn register(
        bus: &BusAddress,
        name: &str,
        items: Vec<Item>,
        hook: Option<WriteHook>,
    ) -> Result<(Service, mpsc::Receiver<RemoteWrite>), Error> {
        let well_known =
            zbus::names::WellKnownName::try_from(name).map_err(|e| Error::InvalidName {
                name: name.to_string(),
                source: e,
            })?;
        let mut tree = Tree::new();
        for item in items {
            let path = item.path.clone();
            check_wire(name, &path, &item.value)?;
            tree.insert(item.with_local_value())
                .map_err(|e| insert_error(name, &path, e))?;
        }
        let conn = bus
            .connect_with_queue(CONNECTION_QUEUE)
            .await
            .map_err(|source| Error::Connect {
                bus: bus.to_string(),
                source,
            })?;
        let bus_err = |what: &'static str| {
            let name = name.to_string();
            move |source| Error::Bus { what, name, source }
        };
        let (tx, rx) = mpsc::channel(REMOTE_WRITE_QUEUE);
        let shared = Arc::new(Shared {
            name: name.to_string(),
            tree: Mutex::new(tree),
            hook,
            writes: tx,
        });
        let task = dispatch::start(&conn, CALL_QUEUE, shared.clone() as Arc<dyn Handler>)
            .await
            .map_err(|e| bus_err(e.what)(e.source))?;
        let service = Service {
            shared,
            conn,
            task: Some(task),
        };
        match dispatch::request_name(&service.conn, well_known).await {
            Ok(true) => {
                tracing::debug!(service = %name, "registered on the d-bus");
                Ok((service, rx))
            }
            Ok(false) => {
                service.shutdown().await;
                Err(Error::NameTaken {
                    name: name.to_string(),
                })
            }
            Err(e) => {
                service.shutdown().await;
                Err(bus_err("requesting the bus name")(e))
            }
        }
    }

    /// The well-known name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The connection's unique name (`:1.42`): what consumers map to this service.
    pub fn unique_name(&self) -> Option<String> {
        self.conn.unique_name().map(|n| n.to_string())
    }

    /// The current value at `path`.
    pub fn value(&self, path: &str) -> Option<Value> {
        self.shared.tree().get(path).map(|i| i.value.clone())
    }

    /// The current text at `path`, as `GetText` answers.
    pub fn text(&self, path: &str) -> Option<String> {
        self.shared.tree().get(path).map(Item::text)
    }

    /// The item paths, in order.
    pub fn paths(&self) -> Vec<String> {
        self.shared.tree().iter().map(|i| i.path.clone()).collect()
    }

    fn unknown_path(&self, path: &str) -> Error {
        Error::UnknownPath {
            name: self.shared.name.clone(),
            path: path.to_string(),
        }
    }

    async fn emit(&self, emit: Emit, what: &'static str) -> Result<(), Error> {
        let bus_err = |source| Error::Bus {
            what,
            name: self.shared.name.clone(),
            source,
        };
        let msg = dispatch::signal_message(&emit).map_err(bus_err)?;
        self.conn.send(&msg).await.map_err(bus_err)
    }

    /// A local write (no hook, no limits; coerced to the item's type when possible, e.g. an
    /// integer on a Float path becomes a double, else stored as given). Emits `PropertiesChanged {Value, Text}` on the
    /// path when the value changed; returns whether it did.
    pub async fn set_value(&self, path: &str, value: Value) -> Result<bool, Error> {
        let entry = {
            let mut tree = self.shared.tree();
            let item = tree.get_mut(path).ok_or_else(|| self.unknown_path(path))?;
            check_wire(&self.shared.name, path, &value)?;
            let value = item.local_value(value);
            if item.value == value {
                return Ok(false);
            }
            item.value = value;
            item.entry()
        };
        self.emit(
            Emit {
                path: path.to_string(),
                body: SignalBody::Properties(entry),
            },
            "emitting PropertiesChanged",
        )
        .await?;
        Ok(true)
    }

    /// Local writes of several values, announced in one `ItemsChanged` on `/` holding the
    /// changed ones. Checks every path and value first: on an unknown path or a value D-Bus
    /// cannot carry nothing is written. Returns how many changed.
    pub async fn set_values(&self, changes: Vec<(String, Value)>) -> Result<usize, Error> {
        let entries = {
            let mut tree = self.shared.tree();
            if let Some((p, _)) = changes.iter().find(|(p, _)| tree.get(p).is_none()) {
                return Err(self.unknown_path(p));
            }
            for (path, value) in &changes {
                check_wire(&self.shared.name, path, value)?;
            }
            let mut entries = HashMap::new();
            for (path, value) in changes {
                if let Some(item) = tree.get_mut(&path) {
                    let value = item.local_value(value);
                    if item.value != value {
                        item.value = value;
                        entries.insert(path, item.entry());
                    }
                }
            }
            entries
        };
        let n = entries.len();
        if n > 0 {
            self.items_changed(entries).await?;
        }
        Ok(n)
    }

    async fn items_changed(
        &self,
        entries: HashMap<String, super::VariantMap>,
    ) -> Result<(), Error> {
        self.emit(
            Emit {
                path: "/".to_string(),
                body: SignalBody::Items(entries),
            },
            "emitting ItemsChanged",
        )
        .await
    }

    /// Adds items after registration and announces them in one `ItemsChanged` (gateways only
    /// write to paths they have seen). On an invalid or clashing path nothing is added.
    pub async fn add_items(&self, items: Vec<Item>) -> Result<(), Error> {
        let entries = {
            let mut tree = self.shared.tree();
            let mut added: Vec<String> = Vec::new();
            for item in items {
                let path = item.path.clone();
                let inserted = check_wire(&self.shared.name, &path, &item.value).and_then(|()| {
                    tree.insert(item.with_local_value())
                        .map_err(|e| insert_error(&self.shared.name, &path, e))
                });
                if let Err(e) = inserted {
                    for p in &added {
                        tree.remove(p);
                    }
                    return Err(e);
                }
                added.push(path);
            }
            added
                .into_iter()
                .filter_map(|p| tree.get(&p).map(|i| (p, i.entry())))
                .collect::<HashMap<_, _>>()
        };
        if entries.is_empty() {
            return Ok(());
        }
        self.items_changed(entries).await
    }

    /// Removes items. Announces them in one `ItemsChanged` as invalid (`ai`, `---`), so
    /// consumers stop showing their last value. On an unknown path nothing is removed.
    pub async fn remove_items(&self, paths: &[String]) -> Result<(), Error> {
        {
            let mut tree = self.shared.tree();
            if let Some(p) = paths.iter().find(|p| tree.get(p).is_none()) {
                return Err(self.unknown_path(p));
            }
            for p in paths {
                tree.remove(p);
            }
        }
        if paths.is_empty() {
            return Ok(());
        }
        let entries = paths
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    value_text_entry(&Value::Invalid, INVALID_TEXT.to_string()),
                )
            })
            .collect();
        self.items_changed(entries).await
    }

    /// Releases the name, stops the dispatcher and closes the connection.
    pub async fn close(mut self) -> Result<(), Error> {
        let released = self
            .conn
            .release_name(self.shared.name.as_str())
            .await
            .map(|_| ())
            .map_err(|source| Error::Bus {
                what: "releasing the bus name",
                name: self.shared.name.clone(),
                source,
            });
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let closed = self
            .conn
            .clone()
            .close()
            .await
            .map_err(|source| Error::Bus {
                what: "closing the connection",
                name: self.shared.name.clone(),
                source,
            });
        released.and(closed)
    }

    async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let _ = self.conn.clone().close().await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // The task holds a clone of the connection: aborting it lets the socket close.
            task.abort();
        }
    }
}
