//! The presets of the spec's table, as data: each loads, checks clean and
//! expands as the spec says.

use super::*;

#[test]
fn every_builtin_preset_file_is_listed_loads_and_checks_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mapped/presets");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = embedded::FILES.iter().map(|f| f.name).collect();
    assert_eq!(on_disk, listed, "presets/ and embedded::FILES differ");
    for file in embedded::FILES {
        let text = Arc::new(SourceText {
            name: file.name.into(),
            text: file.text.into(),
            kind: TextKind::Preset,
        });
        if let Err(e) = parse_preset(file.name, text, true) {
            panic!(
                "{}: {}",
                file.name,
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let presets = Presets::builtin();
    assert_eq!(presets.names().count(), embedded::FILES.len());
    let problems = presets.check(catalog());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_spec_table_has_a_preset_for_each_row() {
    let presets = Presets::builtin();
    let services = |name: &str| presets.get(name).unwrap().services.clone();
    let list = |s: &[&str]| Some(s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        services("shelly-pro3em"),
        list(&["grid", "acload", "pvinverter", "genset"])
    );
    assert_eq!(
        services("shelly-em"),
        list(&["grid", "acload", "pvinverter", "genset"])
    );
    assert_eq!(services("shelly-pm"), list(&["acload", "pvinverter"]));
    assert_eq!(
        services("shelly-gen1-em"),
        list(&["grid", "acload", "pvinverter"])
    );
    assert_eq!(
        services("tasmota-energy"),
        list(&["grid", "acload", "pvinverter"])
    );
    assert_eq!(services("opendtu"), list(&["pvinverter"]));
    assert_eq!(services("ahoydtu"), list(&["pvinverter"]));
    assert_eq!(services("zigbee2mqtt"), list(&["temperature"]));
    assert_eq!(services("esphome"), None);
}

use crate::mapped::test_support::{catalog, load_with};

fn errors(text: &str) -> Vec<String> {
    crate::mapped::test_support::load(text)
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn using_a_preset_wrongly_is_explained() {
    let cases = [
        ("preset = \"shelly-pro4em\"\nservice = \"grid\"\ntopic = \"x\"", "devices.toml:3:10: device 'a': unknown preset 'shelly-pro4em' (did you mean 'shelly-pro3em'?) (known: ahoydtu, esphome, opendtu, shelly-em, shelly-gen1-em, shelly-pm, shelly-pro3em, tasmota-energy, zigbee2mqtt)"),
        ("preset = \"opendtu\"\nservice = \"grid\"\nserial = \"1\"", "devices.toml:4:11: device 'a': preset 'opendtu' serves pvinverter, not grid"),
        ("preset = \"shelly-pro3em\"\nservice = \"grid\"", "devices.toml:3:1: device 'a': preset 'shelly-pro3em' needs 'topic': the Shelly's MQTT topic prefix, e.g. shellypro3em-08f9e0eb4dd0"),
        ("preset = \"zigbee2mqtt\"\nservice = \"temperature\"\ntopic = \"z/a\"\nchannel = \"1\"", "devices.toml:6:1: device 'a': preset 'zigbee2mqtt' takes no 'channel' (its parameters: topic)"),
        ("preset = \"esphome\"\nservice = \"tank\"\ntopic = \"n\"\nsensors = \"level\"", "devices.toml:6:11: device 'a': 'sensors' must be a table, got a string"),
    ];
    for (lines, want) in cases {
        let e = errors(&format!("[[device]]\nid = \"a\"\n{lines}\n"));
        assert_eq!(e, [want], "{lines}");
    }
}

#[test]
fn the_users_keys_win_over_the_presets() {
    let loaded = crate::mapped::test_support::load(
        r#"
[[device]]
id = "hm"
service = "pvinverter"
preset = "opendtu"
topic = "dtu"
serial = "116181234567"
on_stale = "invalidate"
availability_mode = "latest"
availability = { topic = "dtu/116181234567/status/reachable", online = "1", offline = "0" }
const = { "/Ac/MaxPower" = 800 }
[[device.source]]
topic = "dtu/116181234567/0/power"
"/Ac/Power" = { path = "$", max = 2000 }
[[device.write]]
path = "/Ac/PowerLimit"
topic = "dtu/116181234567/cmd/limit_persistent_absolute"
min = 20
"#,
    );
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let d = &loaded.devices[0].declaration;
    assert_eq!(d.on_stale, crate::mapped::OnStale::Invalidate);
    assert_eq!(
        d.availability.len(),
        1,
        "the user's availability replaces the preset's"
    );
    assert_eq!(d.constants.len(), 1);
    assert_eq!(d.serial.as_deref(), Some("116181234567"));
    // One mapping of /Ac/Power: the user's (with its max); the preset's
    // /Ac/L1/Power from the same topic stays.
    let power: Vec<_> = d.mappings().filter(|m| m.path == "/Ac/Power").collect();
    assert_eq!(power.len(), 1);
    assert_eq!(power[0].transform.max, Some(2000.0));
    assert!(d.mappings().any(|m| m.path == "/Ac/L1/Power"));
    assert_eq!(d.writes.len(), 1);
    assert_eq!(d.writes[0].min, Some(20.0));
    assert_eq!(
        d.writes[0].topic.as_str(),
        "dtu/116181234567/cmd/limit_persistent_absolute"
    );
    assert_eq!(d.connection, "MQTT opendtu dtu/116181234567");
    let preset = d.preset.as_ref().unwrap();
    assert_eq!(preset.name, "opendtu");
    assert_eq!(
        preset.parameters,
        [
            ("topic".to_string(), "dtu".to_string()),
            ("serial".to_string(), "116181234567".to_string())
        ]
    );
}

const MY_PRESET: &str = r#"
description = "My own meter"
services = ["acload"]
[parameters]
topic = { help = "where it publishes" }
[device]
product = "Homemade meter"
[[device.source]]
topic = "{topic}/power"
"/Ac/Power" = { path = "$", unit = "kW" }
"#;

#[test]
fn user_presets_add_to_and_replace_built_in_ones() {
    let (presets, diagnostics) = Presets::with_user_files([
        (
            "homemade".to_string(),
            "presets.d/homemade.toml".to_string(),
            MY_PRESET.to_string(),
        ),
        (
            "zigbee2mqtt".to_string(),
            "presets.d/zigbee2mqtt.toml".to_string(),
            MY_PRESET.replace("acload", "temperature").replace(
                "/Ac/Power\" = { path = \"$\", unit = \"kW\" }",
                "/Temperature\" = \"$\"",
            ),
        ),
    ]);
    let d: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        d,
        ["presets.d/zigbee2mqtt.toml: warning: replaces the built-in preset 'zigbee2mqtt'"]
    );
    assert!(presets.check(catalog()).is_empty());
    let loaded = load_with(
        &presets,
        "[[device]]\nid = \"m\"\nservice = \"acload\"\npreset = \"homemade\"\ntopic = \"shed\"\n",
    );
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let m = &loaded.devices[0].declaration;
    assert_eq!(m.product.as_deref(), Some("Homemade meter"));
    assert_eq!(m.sources[0].topic.as_ref().unwrap().as_str(), "shed/power");
    // kW into the catalog's W.
    assert_eq!(
        m.sources[0].mappings[0]
            .transform
            .convert
            .unwrap()
            .apply(1.5),
        1500.0
    );
    assert!(!presets.get("zigbee2mqtt").unwrap().builtin);
}

#[test]
fn a_broken_user_preset_is_reported_and_not_replaced_by_the_built_in_one() {
    let broken = "services = [\"temperature\"]\n[device]\nproduct = 1\n[[device.source]]\ntopic = \"{topik}/x\"\n\"/Temperatur\" = \"$\"\ncolour = \"red\"\n";
    let (presets, diagnostics) = Presets::with_user_files([(
        "zigbee2mqtt".to_string(),
        "presets.d/zigbee2mqtt.toml".to_string(),
        format!("{broken}[extra]\n"),
    )]);
    assert_eq!(
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["presets.d/zigbee2mqtt.toml:8:2: unknown key 'extra' in a preset"]
    );
    let e: Vec<String> = load_with(&presets, "[[device]]\nid = \"f\"\nservice = \"temperature\"\npreset = \"zigbee2mqtt\"\ntopic = \"z/f\"\n")
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e, ["devices.toml:4:10: device 'f': preset 'zigbee2mqtt' could not be loaded (see the errors of its file)"]);
    // The same template, structurally fine: its mistakes are named in the preset file.
    let (presets, _) = Presets::with_user_files([(
        "mine".to_string(),
        "presets.d/mine.toml".to_string(),
        broken.to_string(),
    )]);
    let problems: Vec<String> = presets
        .check(catalog())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "presets.d/mine.toml:5:9: '{topik}/x': a {placeholder} that is not a parameter of the preset",
            "presets.d/mine.toml:3:11: expected a string, got an integer",
            "presets.d/mine.toml:7:1: unknown key 'colour' in source; a source has a 'topic' and \"/D-Bus/Path\" = \"json.path\" entries",
            "presets.d/mine.toml:6:1: '/Temperatur' is a path of none of the preset's services",
        ]
    );
}
