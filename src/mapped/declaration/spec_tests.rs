//! Declarations as the spec writes them (`mapped-devices.md`, "A
//! declaration", "Sources", "Writes"), and every way they can be wrong.

use std::time::Duration;

use super::*;
use crate::mapped::load::{load_files, DeclarationFile};
use crate::mapped::test_support::{catalog, load, presets};

fn one(text: &str) -> Declaration {
    let loaded = load(text);
    assert!(
        loaded.diagnostics.is_empty(),
        "unexpected: {:#?}",
        loaded.diagnostics
    );
    assert_eq!(loaded.devices.len(), 1);
    loaded.devices[0].declaration.clone()
}

fn errors(text: &str) -> Vec<String> {
    load(text)
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn mapping<'a>(d: &'a Declaration, path: &str) -> Vec<&'a Mapping> {
    d.mappings().filter(|m| m.path == path).collect()
}

const SOURCE_EXAMPLE: &str = r#"
[[device]]
id      = "grid_meter"
service = "grid"

[[device.source]]
topic = "shellypro3em-08f9e0eb4dd0/status/em:0"   # MQTT wildcards + and # allowed
"/Ac/Power"    = "total_act_power"                 # JSON path into the payload
"/Ac/L1/Power" = { path = "a_act_power", invert = true }      # clamp mounted backwards
"/Ac/Energy/Forward" = { path = "total_act", unit = "Wh" }   # converted to the path's kWh
"#;

#[test]
fn the_spec_source_example_loads_as_written() {
    let d = one(SOURCE_EXAMPLE);
    assert_eq!(d.id.as_str(), "grid_meter");
    assert_eq!(d.service, "grid");
    assert_eq!(d.sources.len(), 1);
    let s = &d.sources[0];
    assert_eq!(
        s.topic.as_ref().map(|t| t.as_str()),
        Some("shellypro3em-08f9e0eb4dd0/status/em:0")
    );
    assert_eq!(s.mappings[0].path, "/Ac/Power");
    assert_eq!(
        s.mappings[0].rule,
        Rule::Extract("total_act_power".parse().unwrap())
    );
    assert!(s.mappings[1].transform.invert);
    let energy = &s.mappings[2].transform;
    assert_eq!(energy.unit.as_ref().map(|u| u.name()), Some("Wh"));
    // Wh into the catalog's kWh.
    assert_eq!(energy.convert.map(|c| c.apply(5000.0)), Some(5.0));
    // Defaults.
    assert_eq!(d.on_stale, OnStale::Invalidate);
    assert_eq!(d.phase, Phase::L1);
    assert_eq!(d.availability_mode, AvailabilityMode::Latest);
    assert_eq!(d.connection, "MQTT shellypro3em-08f9e0eb4dd0/status/em:0");
}

#[test]
fn the_spec_declaration_example_expands_its_preset() {
    let d = one(r#"
[[device]]
id       = "grid_shelly"        # [A-Za-z0-9_], unique
service  = "grid"               # a catalog type
preset   = "shelly-pro3em"      # optional: expands to sources, availability, product name
topic    = "shellypro3em-08f9e0eb4dd0"   # the preset's parameter: the device's topic prefix
name     = "Shelly Pro 3EM"     # default CustomName
instance = 40                   # preferred VRM instance
"#);
    assert_eq!(d.name.as_deref(), Some("Shelly Pro 3EM"));
    assert_eq!(d.instance, Some(40));
    assert_eq!(d.product.as_deref(), Some("Shelly Pro 3EM"));
    assert_eq!(d.connection, "MQTT shelly-pro3em shellypro3em-08f9e0eb4dd0");
    let topics: Vec<&str> = d
        .sources
        .iter()
        .filter_map(|s| s.topic.as_ref().map(|t| t.as_str()))
        .collect();
    assert_eq!(
        topics,
        [
            "shellypro3em-08f9e0eb4dd0/status/em:0",
            "shellypro3em-08f9e0eb4dd0/status/emdata:0",
            "shellypro3em-08f9e0eb4dd0/events/rpc"
        ]
    );
    assert_eq!(d.availability.len(), 1);
    assert_eq!(
        d.availability[0].topic.as_str(),
        "shellypro3em-08f9e0eb4dd0/online"
    );
    assert_eq!(d.availability[0].online, ["true"]);
    assert_eq!(d.availability[0].offline, ["false"]);
    assert_eq!(d.id.unique_id().to_string(), "mqtt_grid_shelly");
}

#[test]
fn every_optional_key_of_the_spec_is_understood() {
    let d = one(r#"
[[device]]
id = "hm800_garage"
service = "pvinverter"
serial = 116181234567
phase = "L2"
stale_after = "2m"
on_stale = "zero"
settings = { "/Position" = 1 }
const = { "/Ac/MaxPower" = 800 }
product = "HM-800"
availability_mode = "any"

[[device.availability]]
topic = "solar/116181234567/status/reachable"
online = "1"
offline = "0"

[[device.availability]]
topic = "solar/dtu/status"

[[device.source]]
topic = "solar/116181234567/0/power"
"/Ac/Power" = "$"
"/Ac/Lx/Power" = "$"

[[device.write]]
path   = "/Ac/PowerLimit"
topic  = "solar/116181234567/cmd/limit_nonpersistent_absolute"
format = "{value}"
retain = false
min    = 5
"#);
    assert_eq!(d.serial.as_deref(), Some("116181234567"));
    assert_eq!(d.phase, Phase::L2);
    assert_eq!(d.stale_after, Some(Duration::from_secs(120)));
    assert_eq!(d.on_stale, OnStale::Zero);
    assert_eq!(d.settings.get("/Position"), Some(&Value::I32(1)));
    assert_eq!(d.constants.get("/Ac/MaxPower"), Some(&Value::I32(800)));
    assert_eq!(d.product.as_deref(), Some("HM-800"));
    assert_eq!(d.availability_mode, AvailabilityMode::Any);
    // An availability without payloads takes online/offline.
    assert_eq!(d.availability[1].online, ["online"]);
    assert_eq!(d.availability[1].offline, ["offline"]);
    // Lx is the declared phase.
    assert_eq!(mapping(&d, "/Ac/L2/Power").len(), 1);
    assert_eq!(d.writes.len(), 1);
    assert_eq!(d.writes[0].min, Some(5.0));
    assert!(!d.writes[0].retain);
}

#[test]
fn stale_after_takes_seconds_or_a_duration() {
    let with = |v: &str| {
        load(&format!(
            "[[device]]\nid = \"a\"\nservice = \"temperature\"\nstale_after = {v}\n[[device.source]]\ntopic = \"t\"\n\"/Temperature\" = \"$\"\n"
        ))
    };
    for (v, secs) in [
        ("30", 30.0),
        ("1.5", 1.5),
        ("\"30s\"", 30.0),
        ("\"2m\"", 120.0),
        ("\"90\"", 90.0),
        ("\"1h 30m\"", 5400.0),
    ] {
        let loaded = with(v);
        assert!(
            loaded.diagnostics.is_empty(),
            "{v}: {:?}",
            loaded.diagnostics
        );
        assert_eq!(
            loaded.devices[0].declaration.stale_after,
            Some(Duration::from_secs_f64(secs)),
            "{v}"
        );
    }
    for v in ["0", "-1", "\"soon\"", "\"0s\"", "true", "\"2d\""] {
        let loaded = with(v);
        assert!(loaded.devices.is_empty(), "{v} was accepted");
        assert!(
            loaded.diagnostics[0].message.contains("stale_after"),
            "{v}: {}",
            loaded.diagnostics[0]
        );
    }
}

#[test]
fn an_unknown_key_is_an_error_naming_key_file_line_and_column() {
    let e = errors(
        "[[device]]\nid = \"a\"\nservice = \"temperature\"\n  stale_afer = 30\n[[device.source]]\ntopic = \"t\"\n\"/Temperature\" = \"$\"\n",
    );
    assert_eq!(
        e,
        ["devices.toml:4:3: device 'a': unknown key 'stale_afer' (did you mean 'stale_after'?)"]
    );
}

#[test]
fn typos_anywhere_are_errors() {
    let cases = [
        (
            "\"/Temperature\" = { path = \"t\", scael = 2 }",
            "unknown key 'scael' in '/Temperature' (did you mean 'scale'?)",
        ),
        (
            "topik = \"x\"",
            "unknown key 'topik' in source (did you mean 'topic'?)",
        ),
        ("\"Temperature\" = \"t\"", "a D-Bus path starts with '/'"),
        (
            "\"/Temprature\" = \"t\"",
            "'/Temprature' is not a path of temperature (did you mean '/Temperature'?)",
        ),
    ];
    for (line, want) in cases {
        let e = errors(&format!(
            "[[device]]\nid = \"a\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"t\"\n\"/Humidity\" = \"h\"\n{line}\n"
        ));
        assert_eq!(e.len(), 1, "{line}: {e:?}");
        assert!(e[0].starts_with("devices.toml:7:"), "{e:?}");
        assert!(e[0].contains(want), "{line}: {}", e[0]);
    }
}

#[test]
fn a_broken_device_never_stops_the_others() {
    let loaded = load(
        r#"
[[device]]
id = "good1"
service = "temperature"
[[device.source]]
topic = "a"
"/Temperature" = "$"

[[device]]
id = "bad-id"
service = "toaster"
[[device.source]]
topic = "a/#/b"
"/Temperature" = "$"

[[device]]
id = "good2"
service = "tank"
[[device.source]]
topic = "b"
"/Level" = "level"
"#,
    );
    let ids: Vec<&str> = loaded
        .devices
        .iter()
        .map(|d| d.declaration.id.as_str())
        .collect();
    assert_eq!(ids, ["good1", "good2"]);
    let e: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    // Every mistake of the broken device, each with its place.
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with("devices.toml:10:6: device 'bad-id': 'bad-id' is not a valid id"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("devices.toml:11:11: device 'bad-id': unknown service type 'toaster'"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("devices.toml:13:9: device 'bad-id': 'a/#/b': '#' must be"),
        "{}",
        e[2]
    );
    assert_eq!(loaded.devices[0].origin, "devices.toml:2:1");
}

#[test]
fn ids_are_unique_the_first_declaration_stays() {
    let loaded = load(
        "[[device]]\nid = \"a\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"x\"\n\"/Temperature\" = \"$\"\n\
         [[device]]\nid = \"a\"\nservice = \"tank\"\n[[device.source]]\ntopic = \"y\"\n\"/Level\" = \"$\"\n",
    );
    assert_eq!(loaded.devices.len(), 1);
    assert_eq!(loaded.devices[0].declaration.service, "temperature");
    assert_eq!(
        loaded.diagnostics[0].to_string(),
        "devices.toml:8:6: device 'a': the id is already declared at devices.toml:1:1; this one is not loaded"
    );
}

#[test]
fn a_broken_declaration_still_holds_its_id() {
    // Broken first: the later copy does not silently take its place.
    let good = "[[device]]\nid = \"a\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"x\"\n\"/Temperature\" = \"$\"\n";
    let broken = "[[device]]\nid = \"a\"\nservice = \"temperature\"\npreset = \"nope\"\n";
    let loaded = load(&format!("{broken}{good}"));
    assert!(loaded.devices.is_empty());
    let d: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(d[0].contains("unknown preset 'nope'"), "{}", d[0]);
    assert_eq!(
        d[1],
        "devices.toml:6:6: device 'a': the id is already declared at devices.toml:1:1; this one is not loaded"
    );
    // Broken second: reported as a duplicate too; the first stays.
    let loaded = load(&format!("{good}{broken}"));
    assert_eq!(loaded.devices.len(), 1);
    let d: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        d,
        ["devices.toml:8:6: device 'a': the id is already declared at devices.toml:1:1; this one is not loaded"]
    );
}

#[test]
fn broken_toml_loses_that_file_only() {
    let loaded = load_files(
        &[
            DeclarationFile {
                label: "devices.toml".into(),
                text: "[[device]]\nid = \"a\"\nservice = \n".into(),
            },
            DeclarationFile {
                label: "devices.d/b.toml".into(),
                text: "[[device]]\nid = \"b\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"x\"\n\"/Temperature\" = \"$\"\n".into(),
            },
        ],
        presets(),
        catalog(),
    );
    assert_eq!(loaded.devices.len(), 1);
    let e = loaded.diagnostics[0].to_string();
    assert!(e.starts_with("devices.toml:3:"), "{e}");
    assert!(e.ends_with("(no device of this file is loaded)"), "{e}");
}

#[test]
fn preset_parameters_without_a_preset_are_refused() {
    let e = errors("[[device]]\nid = \"a\"\nservice = \"grid\"\ntopic = \"x\"\n[[device.source]]\ntopic = \"x\"\n\"/Ac/Power\" = \"p\"\n");
    assert_eq!(
        e,
        ["devices.toml:4:1: device 'a': 'topic' is a parameter of presets, and this device names no preset"]
    );
}

#[test]
fn settings_are_persisted_paths_and_values_fit_the_catalog() {
    let base = "[[device]]\nid = \"a\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"x\"\n\"/Temperature\" = \"$\"\n";
    let with = |line: &str| {
        errors(&base.replace("[[device.source]]", &format!("{line}\n[[device.source]]")))
    };
    assert!(with("settings = { \"/TemperatureType\" = 1 }").is_empty());
    assert!(with("settings = { \"/Humidity\" = 1 }")[0].contains(
        "'/Humidity' is not a setting (the persisted paths are /CustomName, /TemperatureType)"
    ));
    assert!(with("settings = { \"/TemperatureType\" = 9 }")[0].contains("outside 0..6"));
    assert!(with("settings = { \"/TemperatureType\" = \"fridge\" }")[0]
        .contains("expected a whole number"));
    assert!(with("settings = { \"/CustomName\" = \"x\" }")[0].contains("'name' key"));
    assert!(with("const = { \"/Status\" = 0 }").is_empty());
    assert!(with("const = { \"/Temperature\" = 3 }")[0]
        .contains("both fixed in 'const' and read from a source"));
}

#[test]
fn a_setting_is_not_fed_from_a_source() {
    let e = errors("[[device]]\nid = \"a\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"x\"\n\"/TemperatureType\" = \"$\"\n");
    assert!(e[0].contains("is a setting kept in localsettings"), "{e:?}");
}

#[test]
fn computed_paths() {
    let d = one(r#"
[[device]]
id = "a"
service = "acload"
[[device.source]]
topic = "x"
"/Ac/L1/Power" = "p1"
"/Ac/L2/Power" = "p2"
"/Ac/Power" = { sum = ["/Ac/L1/Power", "/Ac/L2/Power"] }
"/Ac/Energy/Forward" = { integrate = "/Ac/Power" }
"#);
    assert_eq!(
        mapping(&d, "/Ac/Power")[0].rule,
        Rule::Sum(vec!["/Ac/L1/Power".into(), "/Ac/L2/Power".into()])
    );
    assert_eq!(
        mapping(&d, "/Ac/Energy/Forward")[0].rule,
        Rule::Integrate("/Ac/Power".into())
    );
    let bad = [
        (
            "\"/Ac/Power\" = { integrate = \"/Ac/L1/Power\" }",
            "only an energy counter",
        ),
        (
            "\"/Ac/Energy/Forward\" = { integrate = \"/Ac/L1/Voltage\" }",
            "not a power path",
        ),
        ("\"/Ac/Power\" = { sum = [] }", "at least one path"),
        (
            "\"/Ac/Power\" = { sum = [\"/Ac/L1/Powr\"] }",
            "not a path of acload",
        ),
        (
            "\"/Ac/Power\" = { sum = [\"/Ac/L1/Power\"], unit = \"kW\" }",
            "already in the D-Bus units",
        ),
        (
            "\"/Ac/Power\" = { path = \"p\", sum = [\"/Ac/L1/Power\"] }",
            "takes one of",
        ),
        ("\"/Ac/Power\" = { scale = 2 }", "needs 'path'"),
        ("\"/Ac/Power\" = 5", "must be a JSON path"),
    ];
    for (line, want) in bad {
        let e = errors(&format!("[[device]]\nid = \"a\"\nservice = \"acload\"\n[[device.source]]\ntopic = \"x\"\n\"/Ac/L1/Power\" = \"p\"\n{line}\n"));
        assert_eq!(e.len(), 1, "{line}: {e:?}");
        assert!(e[0].contains(want), "{line}: {}", e[0]);
    }
}

#[test]
fn transforms_are_checked_at_load() {
    let bad = [
        (
            "{ path = \"p\", unit = \"Wh\" }",
            "cannot be converted into this path's unit (W)",
        ),
        ("{ path = \"p\", unit = \"watt\" }", "unknown unit 'watt'"),
        ("{ path = \"p\", min = 5, max = 1 }", "min 5 is above max 1"),
        (
            "{ path = \"p\", round = 20 }",
            "round is the number of decimals",
        ),
        ("{ path = \"p\", map = {} }", "the map is empty"),
        (
            "{ path = \"p\", invert = \"yes\" }",
            "expected true or false",
        ),
        ("{ path = \"a..b\" }", "is not a JSON path"),
        ("{ path = \"p\", element = -1 }", "element must be"),
    ];
    for (value, want) in bad {
        let e = errors(&format!("[[device]]\nid = \"a\"\nservice = \"acload\"\n[[device.source]]\ntopic = \"x\"\n\"/Ac/Power\" = {value}\n"));
        assert_eq!(e.len(), 1, "{value}: {e:?}");
        assert!(e[0].contains(want), "{value}: {}", e[0]);
    }
    let d = one("[[device]]\nid = \"a\"\nservice = \"pvinverter\"\n[[device.source]]\ntopic = \"x\"\n\"/StatusCode\" = { path = \"$\", map = { \"1\" = 7, \"0\" = 8 } }\n");
    assert_eq!(d.sources[0].mappings[0].transform.map.len(), 2);
}

#[test]
fn writes_go_to_writeable_paths_and_plain_topics() {
    let base = "[[device]]\nid = \"a\"\nservice = \"pvinverter\"\n[[device.source]]\ntopic = \"x\"\n\"/Ac/Power\" = \"$\"\n[[device.write]]\n";
    let bad = [
        (
            "path = \"/Ac/PowerLimit\"\ntopic = \"a/+/b\"",
            "cannot contain '+' or '#'",
        ),
        (
            "path = \"/Ac/PowerLimit\"\ntopic = \"a\"\nformat = \"{\\\"limit\\\": 1}\"",
            "format must contain {value}",
        ),
        ("path = \"/Ac/PowerLimit\"", "write has no 'topic'"),
        ("topic = \"a\"", "write has no 'path'"),
        (
            "path = \"/Ac/Limit\"\ntopic = \"a\"",
            "not a path of pvinverter",
        ),
        (
            "path = \"/Ac/PowerLimit\"\ntopic = \"a\"\nretian = true",
            "unknown key 'retian' in write (did you mean 'retain'?)",
        ),
    ];
    for (lines, want) in bad {
        let e = errors(&format!("{base}{lines}\n"));
        assert_eq!(e.len(), 1, "{lines}: {e:?}");
        assert!(e[0].contains(want), "{lines}: {}", e[0]);
    }
}

#[test]
fn a_device_needs_something_to_read() {
    let e = errors("[[device]]\nid = \"a\"\nservice = \"temperature\"\n");
    assert_eq!(
        e,
        ["devices.toml:1:1: device 'a': has no [[device.source]] with a topic, so nothing would ever reach D-Bus"]
    );
    let e = errors("[[device]]\nservice = \"temperature\"\n[[device.source]]\ntopic = \"x\"\n\"/Temperature\" = \"$\"\n");
    assert_eq!(
        e,
        ["devices.toml:1:1: has no 'id' (letters, digits and '_')"]
    );
}

#[test]
fn availability_is_a_table_or_an_array_of_tables() {
    let d = one("[[device]]\nid = \"a\"\nservice = \"temperature\"\navailability = { topic = \"z/a/availability\", path = \"state\" }\n[[device.source]]\ntopic = \"z/a\"\n\"/Temperature\" = \"temperature\"\n");
    assert_eq!(d.availability.len(), 1);
    assert_eq!(d.availability[0].path, Some("state".parse().unwrap()));
    let e = errors("[[device]]\nid = \"a\"\nservice = \"temperature\"\navailability = { topic = \"x\", online = \"1\", offline = [\"0\", \"1\"] }\n[[device.source]]\ntopic = \"z/a\"\n\"/Temperature\" = \"temperature\"\n");
    assert!(
        e[0].contains("'1' is both an online and an offline payload"),
        "{e:?}"
    );
}

#[test]
fn printed_declarations_read_back_the_same() {
    for text in [
        SOURCE_EXAMPLE,
        r#"
[[device]]
id = "x"
service = "pvinverter"
name = "Roof \"east\""
serial = "S/1"
stale_after = 1.25
on_stale = "remove"
settings = { "/Position" = 2 }
const = { "/Ac/MaxPower" = 600 }
availability = [{ topic = "a/+/b", online = ["1", "2"], offline = "0" }]
[[device.source]]
topic = "t/#"
"/Ac/Power" = { path = 'a."b.c"[2]', element = 1, scale = 0.5, offset = -1.5, abs = true, min = 0, max = 900, round = 1 }
"/StatusCode" = { path = "$", map = { "1" = 7, "ON" = 8 } }
"/Ac/L1/Power" = "p"
[[device.source]]
"/Ac/Energy/Forward" = { integrate = "/Ac/Power" }
[[device.write]]
path = "/Ac/PowerLimit"
topic = "t/cmd"
format = "{\"limit\": {value}}"
retain = true
min = 5
max = 800
"#,
    ] {
        let d = one(text);
        let printed = print::to_toml(&d);
        let again = one(&printed);
        assert_eq!(again, d, "{printed}");
    }
}
