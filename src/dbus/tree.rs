//! The BusItem object model: a tree of value objects keyed by absolute path, whose nodes answer
//! `GetValue`/`GetText` with keys relative to the node and whose root answers `GetItems` with
//! absolute keys ([`ObjectTree`], [`Leaf`]: the same for device services and the settings
//! service); the items of one service and the remote-write checks behind SetValue.
//! Pure: knows no connection and no MQTT.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
use std::collections::{BTreeMap, HashMap};

use zbus::{Dict, Signature, Variant};

use super::dispatch::{Call, Introspection, Reply};
use super::value::{TextFormat, Value, ValueType, VariantMap};

/// Introspection of `/` of a BusItem tree.
pub const ROOT_XML: &str = r#"  <interface name="com.victronenergy.BusItem">
    <method name="GetItems"><arg type="a{sa{sv}}" direction="out"/></method>
    <method name="GetValue"><arg type="v" direction="out"/></method>
    <method name="GetText"><arg type="v" direction="out"/></method>
    <signal name="ItemsChanged"><arg type="a{sa{sv}}"/></signal>
  </interface>
"#;

/// Introspection of a node (a path above values, other than `/`) of a BusItem tree.
pub const NODE_XML: &str = r#"  <interface name="com.victronenergy.BusItem">
    <method name="GetValue"><arg type="v" direction="out"/></method>
    <method name="GetText"><arg type="v" direction="out"/></method>
  </interface>
"#;

/// A value object of a BusItem tree, as the nodes above it and `/` report it.
pub trait Leaf {
    /// Its value (`GetValue`).
    fn value(&self) -> &Value;
    /// Its text (`GetText`).
    fn text(&self) -> String;
    /// Its entry in `GetItems` and `ItemsChanged` (at least `{Value, Text}`).
    fn entry(&self) -> VariantMap;
}

/// A BusItem object tree: value objects ([`Leaf`]) keyed by absolute path, and the nodes
/// above them, `/` included. The items of a device service ([`Tree`]) and the settings of the
/// settings service are both one.
pub trait ObjectTree {
    /// The value objects.
    type Leaf: Leaf;

    /// The value objects, keyed by absolute path.
    fn leaves(&self) -> &BTreeMap<String, Self::Leaf>;

    /// Is `path` a node: `/` or a strict prefix of a value object's path?
    fn is_node(&self, path: &str) -> bool {
        path == "/" || entries_under(self.leaves(), path).next().is_some()
    }

    /// Names of the direct children of node `path`, for introspection.
    fn children(&self, path: &str) -> Vec<String> {
        child_names(entries_under(self.leaves(), path).map(|(rel, _)| rel))
    }

    /// The BusItem answer of node `call.path`: `GetValue` (a variant holding `a{sv}`) and
    /// `GetText` (`a{ss}`) with keys relative to the node, `GetItems` on `/` with absolute
    /// keys; `None` for any other member. The caller has checked that the path is a node and
    /// the interface is BusItem's.
    fn node_reply(&self, call: &Call<'_>) -> Option<Reply> {
        node_reply(self.leaves(), call)
    }

    /// How `path` introspects: a value object with the `leaf` interfaces, `/` with
    /// [`ROOT_XML`] and another node with the `node` interfaces, both with their children;
    /// `None` where there is no object.
    fn introspect(
        &self,
        path: &str,
        leaf: &'static [&'static str],
        node: &'static [&'static str],
    ) -> Option<Introspection> {
        if self.leaves().contains_key(path) {
            Some(Introspection {
                interfaces: leaf,
                children: Vec::new(),
            })
        } else if self.is_node(path) {
            Some(Introspection {
                interfaces: if path == "/" { &[ROOT_XML] } else { node },
                children: self.children(path),
            })
        } else {
            None
        }
    }
}

fn node_reply<T: Leaf>(leaves: &BTreeMap<String, T>, call: &Call<'_>) -> Option<Reply> {
    match call.member {
        "GetValue" => Some(Reply::Variant(node_value(leaves, call.path))),
        "GetText" => Some(Reply::Variant(node_text(leaves, call.path))),
        "GetItems" if call.path == "/" => Some(Reply::Items(items(leaves))),
        _ => None,
    }
}

/// Node `GetValue`: a variant holding `a{sv}` with keys relative to `node`.
fn node_value<T: Leaf>(leaves: &BTreeMap<String, T>, node: &str) -> Variant<'static> {
    let mut d = Dict::new(&Signature::Str, &Signature::Variant);
    for (k, leaf) in entries_under(leaves, node) {
        // Cannot fail: key and value match the dict's signature.
        let _ = d.append(
            Variant::Str(k.to_string().into()),
            Variant::Variant(Box::new(leaf.value().to_variant())),
        );
    }
    Variant::Dict(d)
}

/// Node `GetText`: a variant holding `a{ss}` with keys relative to `node`.
fn node_text<T: Leaf>(leaves: &BTreeMap<String, T>, node: &str) -> Variant<'static> {
    let mut d = Dict::new(&Signature::Str, &Signature::Str);
    for (k, leaf) in entries_under(leaves, node) {
        // Cannot fail: key and value match the dict's signature.
        let _ = d.append(
            Variant::Str(k.to_string().into()),
            Variant::Str(leaf.text().into()),
        );
    }
    Variant::Dict(d)
}

/// Root `GetItems`: absolute keys, each with its entry.
fn items<T: Leaf>(leaves: &BTreeMap<String, T>) -> HashMap<String, VariantMap> {
    leaves
        .iter()
        .map(|(path, leaf)| (path.clone(), leaf.entry()))
        .collect()
}

/// One value path of a service (velib's `add_path`).
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Absolute object path, e.g. `/Ac/L1/Power`.
    pub path: String,
    /// Current value.
    pub value: Value,
    /// Whether remote `SetValue` may change it (else SetValue returns 1).
    pub writeable: bool,
    /// Type remote writes are coerced to.
    pub value_type: ValueType,
    /// How `GetText` renders the value.
    pub text: TextFormat,
    /// Lowest value a remote write may set (else SetValue returns 2); also answers `GetMin`.
    pub min: Option<f64>,
    /// Highest value a remote write may set (else SetValue returns 2); also answers `GetMax`.
    pub max: Option<f64>,
    /// Answer of `GetDescription`.
    pub description: String,
}

impl Item {
    /// A read-only item with Python text, no type and no limits.
    pub fn new(path: impl Into<String>, value: Value) -> Item {
        Item {
            path: path.into(),
            value,
            writeable: false,
            value_type: ValueType::Any,
            text: TextFormat::Python,
            min: None,
            max: None,
            description: String::new(),
        }
    }

    /// The same item, writeable by remote `SetValue`.
    pub fn writeable(mut self) -> Item {
        self.writeable = true;
        self
    }

    /// The same item with a value type for remote writes.
    pub fn with_type(mut self, value_type: ValueType) -> Item {
        self.value_type = value_type;
        self
    }

    /// The same item with a text format.
    pub fn with_text(mut self, text: TextFormat) -> Item {
        self.text = text;
        self
    }

    /// The same item with limits for remote writes.
    pub fn with_limits(mut self, min: Option<f64>, max: Option<f64>) -> Item {
        self.min = min;
        self.max = max;
        self
    }

    /// The same item with a description.
    pub fn with_description(mut self, description: impl Into<String>) -> Item {
        self.description = description.into();
        self
    }

    /// A value from the program side, in the item's type when it converts (an integer on a
    /// Float path is sent as `d`, as consumers expect), else as given: the owner is trusted.
    pub fn local_value(&self, value: Value) -> Value {
        value.clone().coerce(self.value_type).unwrap_or(value)
    }

    /// The same item with its value in its type (see [`Item::local_value`]).
    pub fn with_local_value(mut self) -> Item {
        let v = std::mem::replace(&mut self.value, Value::Invalid);
        self.value = self.local_value(v);
        self
    }

    /// The `GetText` answer.
    pub fn text(&self) -> String {
        self.text.text(&self.path, &self.value)
    }

    /// `{"Value": v, "Text": s}`: the entry of GetItems, ItemsChanged and PropertiesChanged.
    pub fn entry(&self) -> VariantMap {
        value_text_entry(&self.value, self.text())
    }

    /// A limit as a value of the item's type (`GetMin`/`GetMax`).
    pub fn limit_value(&self, limit: f64) -> Value {
        match self.value_type {
            ValueType::Int if limit.fract() == 0.0 => Value::int(limit as i64),
            _ => Value::F64(limit),
        }
    }

    /// Checks a remote write (after decoding) as velib's `SetValue` does, plus min/max.
    pub fn check_remote_write(&self, value: Value) -> WriteCheck {
        if !self.writeable {
            return WriteCheck::NotWriteable;
        }
        let Some(value) = value.coerce(self.value_type) else {
            return WriteCheck::WrongType;
        };
        if let Some(f) = value.as_f64().filter(|_| !matches!(value, Value::Bool(_))) {
            if self.min.is_some_and(|m| f < m) || self.max.is_some_and(|m| f > m) {
                return WriteCheck::OutOfRange;
            }
        }
        if value == self.value {
            WriteCheck::Unchanged
        } else {
            WriteCheck::Changed(value)
        }
    }
}

impl Leaf for Item {
    fn value(&self) -> &Value {
        &self.value
    }

    fn text(&self) -> String {
        Item::text(self)
    }

    fn entry(&self) -> VariantMap {
        Item::entry(self)
    }
}

/// `{"Value": v, "Text": s}` for any value.
pub fn value_text_entry(value: &Value, text: String) -> VariantMap {
    HashMap::from([
        ("Value".to_string(), value.to_variant()),
        ("Text".to_string(), Variant::Str(text.into())),
    ])
}

/// The outcome of checking a remote write against an item.
#[derive(Debug, PartialEq)]
pub enum WriteCheck {
    /// Not writeable: SetValue returns 1.
    NotWriteable,
    /// Cannot be coerced to the item's type: SetValue returns 1.
    WrongType,
    /// Outside min/max: SetValue returns 2.
    OutOfRange,
    /// Equal to the current value: SetValue returns 0, nothing happens.
    Unchanged,
    /// A changed value, coerced, to be validated by the owner's hook.
    Changed(Value),
}

/// Why an item cannot be added to a tree.
#[derive(Debug, PartialEq, Eq)]
pub enum InsertError {
    /// Not an object path, or `/`.
    InvalidPath,
    /// Already an item, or a node of other items, or below an item.
    Clash,
}

/// The items of one service, keyed by absolute path.
#[derive(Debug, Default)]
pub struct Tree {
    items: BTreeMap<String, Item>,
}

/// Is `path` a valid D-Bus object path other than `/`?
pub fn is_item_path(path: &str) -> bool {
    path != "/" && zbus::ObjectPath::try_from(path).is_ok()
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an item; nothing changes on error.
    pub fn insert(&mut self, item: Item) -> Result<(), InsertError> {
        if !is_item_path(&item.path) {
            return Err(InsertError::InvalidPath);
        }
        if self.items.contains_key(&item.path) || self.is_node(&item.path) {
            return Err(InsertError::Clash);
        }
        // No ancestor may be an item: a path is either a value or a node.
        let mut p = item.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            p = parent;
            if !p.is_empty() && self.items.contains_key(p) {
                return Err(InsertError::Clash);
            }
        }
        self.items.insert(item.path.clone(), item);
        Ok(())
    }

    /// Removes an item.
    pub fn remove(&mut self, path: &str) -> Option<Item> {
        self.items.remove(path)
    }

    /// The item at `path`.
    pub fn get(&self, path: &str) -> Option<&Item> {
        self.items.get(path)
    }

    /// The item at `path`, mutably.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Item> {
        self.items.get_mut(path)
    }

    /// All items in path order.
    pub fn iter(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// Items below node `node`, with their keys relative to it (no leading slash).
    pub fn under<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (&'a str, &'a Item)> + 'a {
        entries_under(&self.items, node)
    }
}

impl ObjectTree for Tree {
    type Leaf = Item;

    fn leaves(&self) -> &BTreeMap<String, Item> {
        &self.items
    }
}

/// The entries of a path-keyed map below `node` (`/` or `/Ac`), with their
/// keys relative to it: the D-Bus object-tree rule shared by BusItem services
/// and the settings service.
pub fn entries_under<'a, T>(
    map: &'a BTreeMap<String, T>,
    node: &'a str,
) -> impl Iterator<Item = (&'a str, &'a T)> + 'a {
    let prefix = if node == "/" {
        "/".to_string()
    } else {
        format!("{node}/")
    };
    map.range(prefix.clone()..)
        .map_while(move |(k, v)| k.strip_prefix(prefix.as_str()).map(|rel| (rel, v)))
}

/// The distinct first elements of sorted relative keys: a node's direct
/// children, for introspection.
pub fn child_names<'a>(relative_keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rel in relative_keys {
        let first = rel.split('/').next().unwrap_or(rel);
        if out.last().map(String::as_str) != Some(first) {
            out.push(first.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let mut t = Tree::new();
        for (p, v) in [
            ("/Mgmt/ProcessName", Value::Str("x".into())),
            ("/Mgmt/Connection", Value::Str("c".into())),
            ("/DeviceInstance", Value::I32(20)),
            ("/Ac/L1/Power", Value::F64(1.5)),
            ("/Ac/L10/Power", Value::F64(2.5)),
        ] {
            t.insert(Item::new(p, v)).unwrap();
        }
        t
    }

    #[test]
    fn node_keys_are_relative_and_prefixes_exact() {
        let t = tree();
        let keys: Vec<_> = t.under("/Ac/L1").map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, vec!["Power"]);
        let keys: Vec<_> = t.under("/").map(|(k, _)| k.to_string()).collect();
        assert!(keys.contains(&"Mgmt/ProcessName".to_string()), "{keys:?}");
        assert!(t.is_node("/Ac") && t.is_node("/") && !t.is_node("/Ac/L1/Power"));
        assert!(!t.is_node("/Ac/L"));
        assert_eq!(t.children("/"), vec!["Ac", "DeviceInstance", "Mgmt"]);
    }

    #[test]
    fn clashes_are_refused() {
        let mut t = tree();
        assert_eq!(
            t.insert(Item::new("/Mgmt", Value::I32(1))),
            Err(InsertError::Clash)
        );
        assert_eq!(
            t.insert(Item::new("/DeviceInstance/X", Value::I32(1))),
            Err(InsertError::Clash)
        );
        assert_eq!(
            t.insert(Item::new("/bad//path", Value::I32(1))),
            Err(InsertError::InvalidPath)
        );
        assert_eq!(
            t.insert(Item::new("/", Value::I32(1))),
            Err(InsertError::InvalidPath)
        );
    }

    #[test]
    fn remote_write_checks() {
        let item = Item::new("/T", Value::F64(1.0))
            .writeable()
            .with_type(ValueType::Float)
            .with_limits(Some(0.0), Some(10.0));
        assert_eq!(
            item.check_remote_write(Value::I32(1)),
            WriteCheck::Unchanged
        );
        assert_eq!(
            item.check_remote_write(Value::I32(2)),
            WriteCheck::Changed(Value::F64(2.0))
        );
        assert_eq!(
            item.check_remote_write(Value::I32(11)),
            WriteCheck::OutOfRange
        );
        assert_eq!(
            item.check_remote_write(Value::Str("a".into())),
            WriteCheck::WrongType
        );
        assert_eq!(
            Item::new("/R", Value::I32(1)).check_remote_write(Value::I32(2)),
            WriteCheck::NotWriteable
        );
    }
}
