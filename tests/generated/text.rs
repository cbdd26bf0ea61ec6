//! Generators of input text: JSON written token by token (so it can hold
//! what serde_json would never write: duplicate keys, `1e309`, lone
//! surrogates, NUL escapes), structured device messages whose fields come
//! from pools of good and bad values, TOML files and topics.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Numbers at the edges of what JSON, i64, u64 and f64 hold.
pub const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.0",
    "-0.0",
    "1.0",
    "2",
    "999",
    "1000",
    "86400",
    "86400.0001",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
    "-1e309",
    "1e308",
    "1e-400",
    "5e-324",
    "2.2250738585072014e-308",
    "1E2",
    "0.1",
    "1.5",
    "123456789012345678901234567890",
];

/// Strings as they appear in JSON text (escapes written out): multibyte,
/// combining, NUL, control characters, lone and paired surrogates.
const EDGE_STRINGS: &[&str] = &[
    "",
    " ",
    "fe001",
    "t1",
    "temperature",
    "tank",
    "evcharger",
    "toaster",
    "Temperature",
    "Ac/L1/Power",
    "W/c0ffee000001/temperature/5",
    "é",
    "e\u{301}",
    "😀",
    "€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€",
    "\\u0000",
    "a\\u0000b",
    "\\u0001",
    "\\n\\t",
    "\\ud800",
    "\\udfff",
    "\\ud83d\\ude00",
    "\\\\",
    "\\\"",
    "a/b",
    "+",
    "#",
    "a+b/#",
    "1",
    "true",
    "false",
    "NaN",
    "Infinity",
    "keep",
    "remove",
    "invalidate",
    "ESP32-ABC123",
];

/// A JSON document as tokens.
#[derive(Clone, Debug)]
pub enum Json {
    /// A literal token: a number, `true`, `null`, …
    Token(String),
    /// A string's content as written between the quotes (escapes kept).
    Raw(String),
    /// A string, escaped when printed.
    Text(String),
    Array(Vec<Json>),
    /// Keys as written between quotes; duplicates allowed.
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn print(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Token(t) => out.push_str(t),
            Json::Raw(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Json::Text(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push('"');
                    out.push_str(k);
                    out.push_str("\": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn obj(fields: Vec<(&str, Json)>) -> Json {
    Json::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn raw(s: &str) -> Json {
    Json::Raw(s.to_owned())
}

pub fn edge_string() -> impl Strategy<Value = Json> {
    prop_oneof![
        select(EDGE_STRINGS).prop_map(raw),
        "\\PC{0,24}".prop_map(Json::Text),
        any::<String>().prop_map(Json::Text),
    ]
}

pub fn json_leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        select(EDGE_NUMBERS).prop_map(|n| Json::Token(n.to_owned())),
        any::<i64>().prop_map(|n| Json::Token(n.to_string())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Json::Token(format!("{f:?}"))),
        select(&["true", "false", "null", "NaN", "Infinity"][..])
            .prop_map(|t| Json::Token(t.to_owned())),
        edge_string(),
    ]
}

/// Any JSON up to `depth` levels, plus arrays nested past every limit.
pub fn json_tree(depth: u32) -> impl Strategy<Value = Json> {
    let tree = json_leaf().prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Json::Array),
            vec((key(), inner), 0..6).prop_map(Json::Object),
        ]
    });
    prop_oneof![
        8 => tree,
        1 => (0usize..200).prop_map(|n| {
            let mut v = Json::Token("1".into());
            for _ in 0..n {
                v = Json::Array(vec![v]);
            }
            v
        }),
    ]
}

/// Object keys, as written between quotes.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(EDGE_STRINGS).prop_map(str::to_owned),
        select(
            &[
                "Temperature",
                "Level",
                "CustomName",
                "Role",
                "AllowedRoles",
                "Ac/L1/Power",
                "temperature",
                "bad key",
                "a//b",
                "/Level",
                "Level/",
                "Ü",
            ][..]
        )
        .prop_map(str::to_owned),
        "[A-Za-z0-9_]{1,40}",
    ]
}

fn service_id() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "t1".to_owned(),
            "tk1".to_owned(),
            "ev1".to_owned(),
            "g1".to_owned(),
            "s_2".to_owned(),
            "T".to_owned(),
            "x".repeat(32),
            "x".repeat(33),
        ]),
        select(EDGE_STRINGS).prop_map(str::to_owned),
        "[A-Za-z0-9_]{1,8}",
    ]
}

/// A service declaration: a type name, or the v3 object with fields from
/// pools, or anything at all.
fn service_decl() -> impl Strategy<Value = Json> {
    let ty = prop_oneof![
        select(&["temperature", "tank", "evcharger", "grid", "toaster", ""][..]).prop_map(raw),
        json_leaf(),
    ];
    let rich = (
        ty.clone(),
        prop::option::of(edge_string()),
        prop::option::of(json_leaf()),
        prop::option::of(vec((key(), json_tree(3)), 0..4)),
        prop::option::of(edge_string()),
    )
        .prop_map(|(ty, name, instance, settings, product)| {
            let mut f = vec![("type", ty)];
            if let Some(n) = name {
                f.push(("name", n));
            }
            if let Some(i) = instance {
                f.push(("instance", i));
            }
            if let Some(s) = settings {
                f.push(("settings", Json::Object(s)));
            }
            if let Some(p) = product {
                f.push(("product", p));
            }
            obj(f)
        });
    prop_oneof![3 => ty, 3 => rich, 1 => json_tree(3)]
}

/// A Status: the client id of the topic (or not), and every field from a
/// pool of good and bad values, in any order, some left out or doubled.
pub fn status_payload() -> impl Strategy<Value = String> {
    let client = prop_oneof![
        4 => Just(raw("fe001")),
        1 => edge_string(),
        1 => json_leaf(),
    ];
    let connected = prop_oneof![
        3 => select(&["1", "0", "true", "false"][..]).prop_map(|t| Json::Token(t.into())),
        2 => json_leaf(),
        1 => json_tree(3),
    ];
    let services = prop_oneof![
        6 => vec((service_id(), service_decl()), 0..20).prop_map(Json::Object),
        1 => json_tree(3),
    ];
    let field = prop_oneof![
        Just("clientId"),
        Just("clientid"),
        Just("version"),
        Just("lwt_topic"),
        Just("lwt_value"),
        Just("timeout"),
        Just("liveness"),
        Just("extra"),
    ];
    let extras = vec((field, json_tree(2)), 0..4);
    let whole = (client, connected, services, extras, any::<bool>()).prop_map(
        |(client, connected, services, extras, v1)| {
            let mut f = vec![
                (if v1 { "clientid" } else { "clientId" }, client),
                ("connected", connected),
                ("services", services),
            ];
            f.extend(extras);
            obj(f).print()
        },
    );
    prop_oneof![
        8 => whole,
        1 => json_tree(6).prop_map(|t| t.print()),
        1 => "\\PC{0,64}",
    ]
}

/// A Values message: service id → path → value.
pub fn values_payload() -> impl Strategy<Value = String> {
    let paths = prop_oneof![
        6 => vec((key(), json_tree(10)), 0..6).prop_map(Json::Object),
        1 => json_leaf(),
    ];
    prop_oneof![
        8 => vec((service_id(), paths), 0..5).prop_map(|s| Json::Object(s).print()),
        1 => json_tree(6).prop_map(|t| t.print()),
    ]
}

/// A Proxy message: a topic path and values.
pub fn proxy_payload() -> impl Strategy<Value = String> {
    let topic = prop_oneof![
        select(
            &[
                "W/c0ffee000001/temperature/5",
                "W/c0ffee000001/temperature/5/",
                "W/c0ffee000001/temperature",
                "N/c0ffee000001/temperature/5",
                "W//temperature/5",
                "W/+/temperature/#",
                "W/c0ffee000001/temperature/5/extra",
                "",
            ][..]
        )
        .prop_map(raw),
        json_leaf(),
    ];
    let values = prop_oneof![
        4 => vec((key(), json_tree(6)), 0..6).prop_map(Json::Object),
        1 => json_leaf(),
    ];
    (topic, values, any::<bool>()).prop_map(|(t, v, swap)| {
        if swap {
            obj(vec![("values", v), ("topicPath", t)]).print()
        } else {
            obj(vec![("topicPath", t), ("values", v)]).print()
        }
    })
}

/// Topics: device topics with every kind of client id, and anything else.
pub fn topic() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        select(EDGE_STRINGS).prop_map(|s| s.replace("\\u0000", "\0")),
        "\\PC{0,12}",
        any::<String>(),
        (0usize..130).prop_map(|n| "x".repeat(n)),
        "[A-Za-z0-9_.:-]{1,20}",
    ];
    let kind = select(&["Status", "Proxy", "Values", "DBus", "Error", "", "Status/x"][..]);
    prop_oneof![
        4 => (id, kind).prop_map(|(id, kind)| format!("device/{id}/{kind}")),
        1 => any::<String>(),
    ]
}

/// Pairs of client ids that sanitize alike (`a-b`, `a.b`, `a_b`), so a
/// mapping that only replaced characters would collide.
pub fn similar_ids() -> impl Strategy<Value = (String, String)> {
    let base = "[A-Za-z0-9]{0,6}";
    let sep = select(&["-", ".", ":", "_", "é", " ", "😀", "~", "@", "\u{301}"][..]);
    (base, sep.clone(), base, sep, "[A-Za-z0-9]{0,6}")
        .prop_map(|(a, s1, b, s2, c)| (format!("{a}{s1}{b}{c}"), format!("{a}{s2}{b}{c}")))
}

/// TOML values: good ones, and what TOML can say that the catalog and the
/// configuration must refuse (NUL, deep arrays, huge numbers, dates, tables).
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        select(
            &[
                "1",
                "0",
                "-1",
                "65535",
                "65536",
                "70000",
                "9223372036854775807",
                "-9223372036854775808",
                "1.5",
                "inf",
                "-inf",
                "nan",
                "1e308",
                "true",
                "false",
                "\"\"",
                "\"x\"",
                "\"a\\u0000b\"",
                "\"°C\"",
                "\"int\"",
                "\"float\"",
                "\"str\"",
                "\"any\"",
                "\"string\"",
                "\"bogus\"",
                "[]",
                "[1, 2]",
                "[\"grid\", \"pvinverter\"]",
                "[[[[[[[[[[1]]]]]]]]]]",
                "{ min = 0, max = 10 }",
                "{ min = 5, max = 1 }",
                "{ min = nan }",
                "{ x = 1 }",
                "1979-05-27T07:32:00Z",
                "1979-05-27",
                "\"\\u00e9\\u0301\"",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
        (1usize..120).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
    ]
}

/// A user `catalog.toml`: tables for known and new types with type keys
/// and path entries from pools, or any text.
pub fn catalog_text() -> impl Strategy<Value = String> {
    let type_name = prop_oneof![
        select(
            &[
                "temperature",
                "tank",
                "evcharger",
                "newtype",
                "9bad",
                "a.b",
                "x-y",
                ""
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z]{1,8}",
    ];
    let type_key = select(
        &[
            "product_id",
            "product_name",
            "preferred_instance",
            "custom_name",
            "numeric_firmware",
            "unknown",
        ][..],
    );
    let path_key = select(
        &[
            "path",
            "kind",
            "unit",
            "decimals",
            "default",
            "writeable",
            "persist",
            "measured",
            "min",
            "max",
            "description",
            "bogus",
        ][..],
    );
    let path_name = prop_oneof![
        select(
            &[
                "Temperature",
                "Label",
                "Deep",
                "Ac/L1/Power",
                "Ac",
                "Ac/L1",
                "CustomName",
                "DeviceInstance",
                "/Level",
                "bad path",
                "a//b",
                "",
                "Role",
            ][..]
        )
        .prop_map(|s| format!("{s:?}")),
        toml_value(),
    ];
    let path_entry = (path_name, vec((path_key, toml_value()), 0..6)).prop_map(|(name, keys)| {
        let mut t = format!("path = {name}");
        for (k, v) in keys {
            t.push_str(&format!(", {k} = {v}"));
        }
        format!("{{ {t} }}")
    });
    let table = (
        type_name,
        vec((type_key, toml_value()), 0..5),
        vec(path_entry, 0..5),
    )
        .prop_map(|(name, keys, paths)| {
            let mut t = format!("[{name}]\n");
            for (k, v) in keys {
                t.push_str(&format!("{k} = {v}\n"));
            }
            if !paths.is_empty() {
                t.push_str(&format!("path = [\n  {}\n]\n", paths.join(",\n  ")));
            }
            t
        });
    prop_oneof![
        8 => vec(table, 0..4).prop_map(|t| t.join("\n")),
        1 => "\\PC{0,80}",
        1 => any::<String>(),
    ]
}

/// A `config.toml`: every key with values from a pool, or any text.
pub fn config_text() -> impl Strategy<Value = String> {
    let key = select(
        &[
            "mqtt-host",
            "mqtt-port",
            "mqtt-user",
            "mqtt-password",
            "tls",
            "ca-file",
            "portal-id",
            "dbus-address",
            "data-dir",
            "log-level",
            "syslog",
            "max-devices",
            "max-services",
            "default-timeout",
            "mqtt-hots",
        ][..],
    );
    let file = vec((key, toml_value()), 0..8).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect::<String>()
    });
    prop_oneof![
        6 => file,
        1 => "\\PC{0,80}",
        1 => any::<String>(),
    ]
}

/// A `state.json`: the format the daemon writes with saved Status
/// payloads from the Status generator, cut short, or any bytes.
pub fn state_file() -> impl Strategy<Value = Vec<u8>> {
    let device = (
        prop_oneof![Just(raw("fe001")), edge_string(), json_leaf()],
        status_payload(),
    )
        .prop_map(|(id, status)| {
            let status = serde_json::from_str::<serde_json::Value>(&status)
                .map(|_| Json::Token(status))
                .unwrap_or(Json::Token("null".into()));
            obj(vec![("clientId", id), ("status", status)])
        });
    let format = prop_oneof![
        3 => Just(Json::Token("1".into())),
        1 => json_leaf(),
    ];
    let file = (
        format,
        vec(device, 0..4),
        any::<bool>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(f, d, cut, at)| {
            let mut bytes = obj(vec![("format", f), ("devices", Json::Array(d))])
                .print()
                .into_bytes();
            if cut {
                bytes.truncate(at.index(bytes.len() + 1));
            }
            bytes
        });
    prop_oneof![
        8 => file,
        1 => vec(any::<u8>(), 0..200),
    ]
}

/// A `settings.json` of our settings service.
pub fn settings_file() -> impl Strategy<Value = Vec<u8>> {
    let path = prop_oneof![
        select(
            &[
                "/Settings/A",
                "/Settings/Devices/d/ClassAndVrmInstance",
                "/Settings",
                "/NotSettings/A",
                "/Settings/_x",
                "Settings/A",
                "/Settings/a b",
                "",
            ][..]
        )
        .prop_map(str::to_owned),
        "/Settings/[A-Za-z0-9_]{1,8}",
    ];
    let kind = prop_oneof![
        3 => select(&["i", "f", "s"][..]).prop_map(raw),
        1 => json_leaf(),
    ];
    let setting = (
        kind,
        json_tree(2),
        json_tree(2),
        prop::option::of((json_leaf(), json_leaf())),
        json_leaf(),
    )
        .prop_map(|(kind, value, default, limits, silent)| {
            let mut f = vec![("type", kind), ("value", value), ("default", default)];
            if let Some((lo, hi)) = limits {
                f.push(("min", lo));
                f.push(("max", hi));
            }
            f.push(("silent", silent));
            obj(f)
        });
    let file = vec((path, setting), 0..5).prop_map(|s| {
        obj(vec![
            ("version", Json::Token("1".into())),
            ("settings", Json::Object(s)),
        ])
        .print()
        .into_bytes()
    });
    prop_oneof![
        6 => file,
        1 => vec(any::<u8>(), 0..200),
    ]
}
