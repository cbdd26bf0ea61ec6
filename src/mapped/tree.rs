//! A declaration as a tree of values that remember where they were written:
//! the one form that TOML files, preset files and JSON declarations share, so
//! one validator serves them all and every error can name file, line and
//! column. Knows no declaration keys and no catalog.

use std::fmt;
use std::sync::Arc;

/// A file or topic a declaration was read from.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceText {
    /// How the user knows it: a path (`/data/conf/…/devices.toml`), a built-in
    /// preset (`preset shelly-em`) or a topic (`dbus-mqtt-devices/mapped/x`).
    pub name: String,
    /// The text, used to turn byte offsets into line and column.
    pub text: String,
    /// What kind of text this is.
    pub kind: TextKind,
}

/// Whether a text is the user's declaration or a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A declaration file or topic: every path it names must exist.
    Declaration,
    /// A preset: it serves several service types, so a path that the chosen
    /// type lacks is left out instead of refused.
    Preset,
}

/// Where a value was written: the text, and the byte offset when known (JSON
/// payloads carry no positions).
#[derive(Debug, Clone)]
pub struct At {
    pub text: Arc<SourceText>,
    pub offset: Option<usize>,
}

impl At {
    /// A position in no text at all, for values the daemon makes up itself.
    pub fn nowhere() -> At {
        At {
            text: Arc::new(SourceText {
                name: String::new(),
                text: String::new(),
                kind: TextKind::Declaration,
            }),
            offset: None,
        }
    }

    /// `true` when the value was written in a preset.
    pub fn in_preset(&self) -> bool {
        self.text.kind == TextKind::Preset
    }

    /// 1-based line and column (in characters) of the offset, if known.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        let offset = self.offset?;
        let mut line = 1;
        let mut column = 1;
        for (i, c) in self.text.text.char_indices() {
            if i >= offset {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Some((line, column))
    }
}

/// `file:line:column`, or just the name when there is no position.
impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_column() {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.text.name),
            None => f.write_str(&self.text.name),
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct Node {
    pub at: At,
    pub value: NodeValue,
}

/// The values TOML and JSON have in common.
#[derive(Debug, Clone)]
pub enum NodeValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Node>),
    Table(Table),
    /// JSON `null` (TOML has none).
    Null,
}

/// A table in the order it was written.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub entries: Vec<Entry>,
}

/// One `key = value` of a table.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    /// Where the key was written (errors about the key point here).
    pub key_at: At,
    pub node: Node,
}

impl Table {
    /// The entry of that key, if any.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Removes and returns the entry of that key.
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }

    /// Sets `key` to `node`, replacing an entry of that key in place.
    pub fn set(&mut self, key: &str, key_at: At, node: Node) {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.key_at = key_at;
                e.node = node;
            }
            None => self.entries.push(Entry {
                key: key.to_string(),
                key_at,
                node,
            }),
        }
    }
}

impl NodeValue {
    /// The name of the value's type, for messages (`"a string"`).
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeValue::Str(_) => "a string",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Array(_) => "an array",
            NodeValue::Table(_) => "a table",
            NodeValue::Null => "null",
        }
    }
}

/// Why a text could not be read as a tree at all (broken syntax). The whole
/// text is then unusable; other texts are not affected.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub at: At,
    pub message: String,
}

/// Reads a TOML text into a tree; the root is a table.
pub fn parse_toml(text: Arc<SourceText>) -> Result<Table, SyntaxError> {
    match toml::de::DeTable::parse(text.text.as_str()) {
        Ok(doc) => Ok(from_table(doc.get_ref(), &text)),
        Err(e) => Err(SyntaxError {
            at: At {
                offset: e.span().map(|s| s.start),
                text,
            },
            // One line per finding: the parser puts what it expected on a second line.
            message: e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

fn at(text: &Arc<SourceText>, span: std::ops::Range<usize>) -> At {
    At {
        text: text.clone(),
        offset: Some(span.start),
    }
}

/// A table's entries in the order they are written (the parser keeps them
/// sorted by key), so that messages and the expanded print follow the file.
fn from_table(t: &toml::de::DeTable<'_>, text: &Arc<SourceText>) -> Table {
    let mut entries: Vec<Entry> = t
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_at: at(text, key.span()),
            node: from_value(value, text),
        })
        .collect();
    entries.sort_by_key(|e| e.key_at.offset);
    Table { entries }
}

fn from_value(v: &toml::Spanned<toml::de::DeValue<'_>>, text: &Arc<SourceText>) -> Node {
    use toml::de::DeValue as V;
    let value = match v.get_ref() {
        V::String(s) => NodeValue::Str(s.to_string()),
        V::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => NodeValue::Int(n),
            // Beyond i64: kept as a number, so that the key says it is out of range.
            Err(_) => NodeValue::Float(i.as_str().parse().unwrap_or(f64::INFINITY)),
        },
        V::Float(f) => NodeValue::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        V::Boolean(b) => NodeValue::Bool(*b),
        // A date or time is read as its text: every key of a declaration
        // that could be mistaken for one (`stale_after = 00:00:30`) then
        // says what it expects.
        V::Datetime(d) => NodeValue::Str(d.to_string()),
        V::Array(items) => NodeValue::Array(items.iter().map(|i| from_value(i, text)).collect()),
        V::Table(t) => NodeValue::Table(from_table(t, text)),
    };
    Node {
        at: at(text, v.span()),
        value,
    }
}

/// Reads a JSON text into a tree (no positions); the root must be an object.
pub fn parse_json(text: Arc<SourceText>) -> Result<Table, SyntaxError> {
    let value: serde_json::Value = match serde_json::from_str(&text.text) {
        Ok(v) => v,
        Err(e) => {
            return Err(SyntaxError {
                at: At { text, offset: None },
                message: format!(
                    "not valid JSON (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ),
            })
        }
    };
    let at = At {
        text: text.clone(),
        offset: None,
    };
    match from_json(&value, &at).value {
        NodeValue::Table(t) => Ok(t),
        other => Err(SyntaxError {
            at,
            message: format!(
                "a declaration must be a JSON object, got {}",
                other.type_name()
            ),
        }),
    }
}

fn from_json(v: &serde_json::Value, at: &At) -> Node {
    let value = match v {
        serde_json::Value::Null => NodeValue::Null,
        serde_json::Value::Bool(b) => NodeValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => NodeValue::Int(i),
            None => NodeValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => NodeValue::Str(s.clone()),
        serde_json::Value::Array(a) => {
            NodeValue::Array(a.iter().map(|v| from_json(v, at)).collect())
        }
        serde_json::Value::Object(o) => NodeValue::Table(Table {
            entries: o
                .iter()
                .map(|(k, v)| Entry {
                    key: k.clone(),
                    key_at: at.clone(),
                    node: from_json(v, at),
                })
                .collect(),
        }),
    };
    Node {
        at: at.clone(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Arc<SourceText> {
        Arc::new(SourceText {
            name: "devices.toml".into(),
            text: s.into(),
            kind: TextKind::Declaration,
        })
    }

    #[test]
    fn toml_values_know_their_line_and_column() {
        let t = parse_toml(text("a = 1\n[[device]]\nid = \"x\"\n  name = 'n'\n")).unwrap();
        let device = &t.get("device").unwrap().node;
        let NodeValue::Array(items) = &device.value else {
            panic!("{device:?}")
        };
        let NodeValue::Table(first) = &items[0].value else {
            panic!()
        };
        let name = first.get("name").unwrap();
        assert_eq!(name.key_at.to_string(), "devices.toml:4:3");
        assert_eq!(name.node.at.to_string(), "devices.toml:4:10");
        assert_eq!(items[0].at.to_string(), "devices.toml:2:1");
    }

    #[test]
    fn broken_toml_names_line_and_column() {
        let e = parse_toml(text("a = 1\nb = \n")).unwrap_err();
        assert_eq!(e.at.line_column().map(|(l, _)| l), Some(2));
        // Dotted table headers keep the positions of their keys.
        let t = parse_toml(text("[variant.pvinverter]\nabs = true\n")).unwrap();
        let NodeValue::Table(v) = &t.get("variant").unwrap().node.value else {
            panic!()
        };
        assert_eq!(
            v.get("pvinverter").unwrap().key_at.to_string(),
            "devices.toml:1:10"
        );
    }

    #[test]
    fn json_keeps_key_order_and_has_no_positions() {
        let t = parse_json(text(r#"{"b": 1, "a": [true, null]}"#)).unwrap();
        let keys: Vec<_> = t.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(t.entries[0].at_string(), "devices.toml");
        assert!(parse_json(text("[1]")).is_err());
        assert!(parse_json(text("{")).is_err());
    }

    impl Entry {
        fn at_string(&self) -> String {
            self.key_at.to_string()
        }
    }
}
