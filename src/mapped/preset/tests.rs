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
    let problems = presets.check(&Catalog::embedded());
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
