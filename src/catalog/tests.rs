//! Tests of the built-in catalog data and of merging a user file.

use super::*;
use serde_json::json;

/// What the daemon makes of `json` sent for path `p` (device Values, defaults).
fn device_value(p: &PathSpec, json: &Value) -> Result<crate::dbus::Value, String> {
    crate::dbus::Value::from_json_as(json, p.kind.into())
}

fn names_in_types_dir() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/catalog/types");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("types dir is readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_embedded_file_is_listed_and_parses_without_errors() {
    let listed: Vec<String> = embedded::FILES.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(
        listed,
        names_in_types_dir(),
        "embedded.rs must list every types/*.toml, sorted"
    );
    let (catalog, errors) = Catalog::load(None);
    assert!(errors.is_empty(), "embedded catalog errors: {errors:#?}");
    let names: Vec<&str> = catalog.type_names().collect();
    assert_eq!(names, listed.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(Catalog::embedded(), catalog);
}

#[test]
fn every_file_names_its_source_in_a_header_comment() {
    for f in embedded::FILES {
        let header: String = f.text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(
            header.contains(&format!("com.victronenergy.{}", f.name))
                && header.contains("Research notes"),
            "{}.toml: header must name the service and cite its sources",
            f.name
        );
    }
}

#[test]
fn required_types_are_present() {
    let catalog = Catalog::embedded();
    for name in [
        "temperature",
        "tank",
        "pvinverter",
        "grid",
        "gps",
        "evcharger",
        "battery",
        "vebus",
        "acload",
        "genset",
        "heatpump",
        "meteo",
        "digitalinput",
        "pulsemeter",
        "dcload",
        "dcsource",
        "dcsystem",
        "alternator",
        "solarcharger",
    ] {
        assert!(catalog.get(name).is_some(), "missing type {name}");
    }
    assert!(catalog.get("nonsense").is_none());
}

#[test]
fn every_type_has_a_persisted_custom_name_first_and_no_mandatory_path() {
    for t in Catalog::embedded().iter() {
        let first = &t.paths[0];
        assert_eq!(first.path, CUSTOM_NAME_PATH, "{}", t.name);
        assert_eq!(first.kind, ValueKind::Str, "{}", t.name);
        assert!(
            first.persist.is_some() && first.writeable && !first.measured,
            "{}",
            t.name
        );
        assert_eq!(first.default, Some(json!(t.custom_name)), "{}", t.name);
        let mut seen = BTreeSet::new();
        for p in &t.paths {
            assert!(
                !MANDATORY_PATHS.contains(&p.path.as_str()),
                "{}: {}",
                t.name,
                p.path
            );
            assert!(seen.insert(&p.path), "{}: {} listed twice", t.name, p.path);
            assert!(!p.path.starts_with('/'), "{}: {}", t.name, p.path);
        }
        assert!(!t.product_name.is_empty(), "{}", t.name);
    }
}

#[test]
fn kinds_defaults_and_limits_are_consistent() {
    for t in Catalog::embedded().iter() {
        for p in &t.paths {
            let at = format!("{} {}", t.name, p.path);
            if let (Some(min), Some(max)) = (p.min, p.max) {
                assert!(min <= max, "{at}");
            }
            if let Some(persist) = p.persist {
                if let (Some(min), Some(max)) = (persist.min, persist.max) {
                    assert!(min <= max, "{at}");
                }
                assert!(
                    p.writeable && !p.measured,
                    "{at}: a setting is writeable, not measured"
                );
                assert!(
                    matches!(p.default, Some(Value::Number(_) | Value::String(_))),
                    "{at}: a setting needs a number or string default"
                );
            }
            if let Some(d) = &p.default {
                match p.kind {
                    ValueKind::Int => assert!(d.is_i64(), "{at}: {d}"),
                    ValueKind::Float => assert!(d.is_f64(), "{at}: {d}"),
                    ValueKind::Str => assert!(d.is_string(), "{at}: {d}"),
                    ValueKind::Any => assert!(!d.is_object(), "{at}: {d}"),
                }
                assert_eq!(
                    device_value(p, d),
                    crate::dbus::Value::from_json(d).map_err(|e| e.to_string()),
                    "{at}: a default is already of its path's kind"
                );
                if let Some(x) = d.as_f64() {
                    assert!(
                        p.min.is_none_or(|m| m <= x) && p.max.is_none_or(|m| x <= m),
                        "{at}: default {d} within min..max"
                    );
                }
            }
            if p.kind == ValueKind::Str {
                assert!(
                    p.decimals.is_none() && p.min.is_none() && p.max.is_none(),
                    "{at}"
                );
            }
            assert!(!p.description.is_empty(), "{at}: needs a description");
        }
    }
}

#[test]
fn systemcalc_and_gui_paths_are_present() {
    let catalog = Catalog::embedded();
    let has = |t: &str, p: &str| {
        assert!(
            catalog.get(t).and_then(|t| t.path(p)).is_some(),
            "{t} lacks {p}"
        );
    };
    has("temperature", "Status");
    has("tank", "Status");
    for t in ["dcsource", "dcload", "dcsystem", "alternator"] {
        has(t, "Dc/0/Power");
        has(t, "Dc/0/Voltage");
    }
    for p in [
        "Dc/0/Voltage",
        "Dc/0/Current",
        "Yield/Power",
        "Yield/User",
        "State",
        "Pv/V",
    ] {
        has("solarcharger", p);
    }
    assert!(catalog
        .get("solarcharger")
        .is_some_and(|t| t.numeric_firmware));
    assert!(catalog.get("vebus").is_some_and(|t| t.numeric_firmware));
    assert!(!catalog
        .get("temperature")
        .is_some_and(|t| t.numeric_firmware));
}

/// One key of the Python driver 0.9's services.yml: type, key, default,
/// persisted, settings min/max (as given to localsettings; 0/0 = none).
struct PythonKey {
    service_type: &'static str,
    key: String,
    default: Option<Value>,
    persist: bool,
    limits: (f64, f64),
}

fn py(t: &'static str, key: &str, default: Option<Value>, persist: bool) -> PythonKey {
    PythonKey {
        service_type: t,
        key: key.to_string(),
        default,
        persist,
        limits: (0.0, 0.0),
    }
}

fn py_lim(
    t: &'static str,
    key: &str,
    default: Value,
    persist: bool,
    limits: (f64, f64),
) -> PythonKey {
    PythonKey {
        service_type: t,
        key: key.to_string(),
        default: Some(default),
        persist,
        limits,
    }
}

/// Every key of the Python catalog (service-types §13), with its default.
fn python_catalog() -> Vec<PythonKey> {
    let mut keys = vec![
        py(
            "temperature",
            "CustomName",
            Some(json!("My Temperature Sensor")),
            true,
        ),
        py_lim("temperature", "TemperatureType", json!(2), true, (0.0, 2.0)),
        py_lim("temperature", "Status", json!(0), false, (0.0, 4.0)),
        py_lim(
            "temperature",
            "Alarms/LowBattery",
            json!(0),
            false,
            (0.0, 2.0),
        ),
        py("tank", "CustomName", Some(json!("My Tank Sensor")), true),
        py_lim("tank", "Status", json!(0), false, (0.0, 3.0)),
        py_lim("tank", "FluidType", json!(1), true, (0.0, 11.0)),
        py("tank", "Capacity", Some(json!(0.1)), true),
        py(
            "pvinverter",
            "CustomName",
            Some(json!("My PV Inverter")),
            true,
        ),
        py("pvinverter", "ErrorCode", Some(json!(0)), false),
        py_lim("pvinverter", "Position", json!(0), true, (0.0, 2.0)),
        py_lim("pvinverter", "StatusCode", json!(7), false, (0.0, 10.0)),
        py(
            "pvinverter",
            "AllowedRoles",
            Some(json!(["grid", "pvinverter", "genset", "acload"])),
            false,
        ),
        py("pvinverter", "Role", Some(json!("pvinverter")), true),
        py("pvinverter", "Ac/MaxPower", Some(json!(0)), true),
        py("grid", "CustomName", Some(json!("My Grid Meter")), true),
        py("grid", "ErrorCode", Some(json!(0)), false),
        py("grid", "DeviceType", Some(json!("grid")), true),
        py("gps", "CustomName", Some(json!("My GPS Sensor")), true),
        py(
            "evcharger",
            "CustomName",
            Some(json!("My EV Charger")),
            true,
        ),
        py("evcharger", "AutoStart", Some(json!(0)), true),
        py("evcharger", "ChargingTime", Some(json!(0)), false),
        py("evcharger", "Current", Some(json!(0)), false),
        py("evcharger", "EnableDisplay", Some(json!(1)), true),
        py("evcharger", "MaxCurrent", Some(json!(0)), true),
        py_lim("evcharger", "Mode", json!(0), true, (0.0, 2.0)),
        py("evcharger", "Model", Some(json!("AC22NS")), false),
        py_lim("evcharger", "Position", json!(0), true, (0.0, 2.0)),
        py("evcharger", "SetCurrent", Some(json!(0)), true),
        py("evcharger", "StartStop", Some(json!(0)), true),
        py_lim("evcharger", "Status", json!(1), false, (0.0, 20.0)),
        py("evcharger", "Role", None, false),
        py("battery", "CustomName", Some(json!("MQTT BMS")), true),
        py("vebus", "CustomName", Some(json!("My VEBUS System")), true),
        py_lim("vebus", "State", json!(0), false, (0.0, 252.0)),
        py_lim("vebus", "Mode", json!(4), false, (1.0, 4.0)),
        py_lim("vebus", "ModeIsAdjustable", json!(1), false, (0.0, 1.0)),
        py("vebus", "Ac/ActiveIn/ActiveInput", None, false),
        py("vebus", "Ac/ActiveIn/Connected", None, false),
        py("vebus", "Ac/NumberOfAcInputs", Some(json!(1)), false),
        py("vebus", "Ac/NumberOfPhases", Some(json!(1)), false),
        py("vebus", "Ac/ActiveIn/CurrentLimit", Some(json!(50)), true),
        py(
            "vebus",
            "Ac/ActiveIn/CurrentLimitIsAdjustable",
            Some(json!(1)),
            true,
        ),
        py("vebus", "Ac/In/1/CurrentLimit", Some(json!(50)), true),
        py(
            "vebus",
            "Ac/In/1/CurrentLimitIsAdjustable",
            Some(json!(1)),
            true,
        ),
    ];
    let value_only: &[(&str, &[&str])] = &[
        (
            "temperature",
            &[
                "Temperature",
                "Pressure",
                "Humidity",
                "BatteryVoltage",
                "TxPower",
            ],
        ),
        ("tank", &["Level", "Remaining"]),
        (
            "pvinverter",
            &["Ac/Energy/Forward", "Ac/Current", "Ac/Power"],
        ),
        (
            "grid",
            &[
                "Ac/Energy/Forward",
                "Ac/Energy/Reverse",
                "Ac/Power",
                "Ac/Current",
                "Ac/Frequency",
            ],
        ),
        (
            "gps",
            &[
                "Position/Longitude",
                "Position/Latitude",
                "Course",
                "Speed",
                "Fix",
                "Altitude",
                "NrOfSatellites",
            ],
        ),
        (
            "evcharger",
            &[
                "Ac/Energy/Forward",
                "Ac/L1/Power",
                "Ac/L2/Power",
                "Ac/L3/Power",
                "Ac/Power",
            ],
        ),
        (
            "battery",
            &[
                "Capacity",
                "InstalledCapacity",
                "Dc/0/Voltage",
                "Dc/0/Current",
                "Dc/0/Power",
                "Dc/0/Temperature",
                "Soc",
                "Balancing",
                "Io/AllowToCharge",
                "Io/AllowToDischarge",
                "ConsumedAmphours",
                "System/MinCellVoltage",
                "System/MaxCellVoltage",
                "System/NrOfCellsPerBattery",
                "System/NrOfBatteries",
                "System/BatteriesParallel",
                "System/BatteriesSeries",
            ],
        ),
        (
            "vebus",
            &[
                "Ac/ActiveIn/P",
                "Ac/Out/P",
                "Dc/0/Voltage",
                "Dc/0/Current",
                "Dc/0/Power",
                "Dc/0/Temperature",
                "Soc",
                "Alarms/HighDcCurrent",
                "Alarms/HighDcVoltage",
                "Alarms/LowBattery",
                "Alarms/PhaseRotation",
                "Alarms/Ripple",
                "Alarms/TemperatureSensor",
            ],
        ),
    ];
    for (t, paths) in value_only {
        for p in *paths {
            keys.push(py(t, p, None, false));
        }
    }
    for l in ["L1", "L2", "L3"] {
        for leaf in ["Voltage", "Current", "Power", "Energy/Forward"] {
            keys.push(py("pvinverter", &format!("Ac/{l}/{leaf}"), None, false));
        }
        for leaf in [
            "Current",
            "Energy/Forward",
            "Energy/Reverse",
            "Power",
            "Voltage",
        ] {
            keys.push(py("grid", &format!("Ac/{l}/{leaf}"), None, false));
        }
        for side in ["ActiveIn", "Out"] {
            for leaf in ["V", "I", "P", "F"] {
                keys.push(py("vebus", &format!("Ac/{side}/{l}/{leaf}"), None, false));
            }
        }
        for leaf in ["HighTemperature", "LowBattery", "Overload", "Ripple"] {
            keys.push(py("vebus", &format!("Alarms/{l}/{leaf}"), None, false));
        }
    }
    keys
}

/// Settings whose limits were widened on purpose (documented in
/// docs/catalog.md): the Python value, then ours.
const WIDENED_SETTING_LIMITS: &[(&str, &str, (f64, f64))] =
    &[("temperature", "TemperatureType", (0.0, 6.0))];

#[test]
fn python_driver_keys_keep_their_defaults_settings_and_writeability() {
    let catalog = Catalog::embedded();
    let keys = python_catalog();
    assert!(keys.len() > 150, "table covers the whole Python catalog");
    for k in keys {
        let at = format!("{} {}", k.service_type, k.key);
        let t = catalog
            .get(k.service_type)
            .unwrap_or_else(|| panic!("{at}: type missing"));
        assert_eq!(
            t.preferred_instance, 1,
            "{at}: the Python driver asked for <type>:1"
        );
        let p = t
            .path(&k.key)
            .unwrap_or_else(|| panic!("{at}: path missing"));
        assert!(
            p.writeable,
            "{at}: the Python driver registered every key writeable"
        );
        assert_eq!(p.persist.is_some(), k.persist, "{at}: persist flag");
        match (&k.default, &p.default) {
            // A setting's default must keep its JSON type (int vs float vs
            // string): localsettings refuses a type change of a stored setting.
            (Some(want), Some(got)) if k.persist => assert_eq!(got, want, "{at}: default"),
            (Some(want), Some(got)) if want.is_number() => {
                assert_eq!(got.as_f64(), want.as_f64(), "{at}: default")
            }
            (Some(want), Some(got)) => assert_eq!(got, want, "{at}: default"),
            (None, None) => {}
            (want, got) => panic!("{at}: default {got:?}, Python {want:?}"),
        }
        if let Some(persist) = p.persist {
            let want = WIDENED_SETTING_LIMITS
                .iter()
                .find(|(t, key, _)| *t == k.service_type && *key == k.key)
                .map_or(k.limits, |(_, _, l)| *l);
            let got = (persist.min.unwrap_or(0.0), persist.max.unwrap_or(0.0));
            assert_eq!(got, want, "{at}: localsettings limits");
        }
    }
}

#[test]
fn python_driver_product_ids_and_names_are_kept() {
    let catalog = Catalog::embedded();
    for (t, id, name) in [
        ("temperature", 41314, "My Temperature Sensor"),
        ("tank", 41313, "My Tank Sensor"),
        ("pvinverter", 45069, "My PV Inverter"),
        ("grid", 65535, "My Grid Meter"),
        ("gps", 65535, "My GPS Sensor"),
        ("evcharger", 65535, "My EV Charger"),
        ("battery", 65535, "MQTT BMS"),
        ("vebus", 9760, "My VEBUS System"),
    ] {
        let st = catalog.get(t).expect("type");
        assert_eq!((st.product_id, st.custom_name.as_str()), (id, name), "{t}");
    }
}

#[test]
fn user_override_adds_a_type_overrides_a_default_and_adds_a_path() {
    let user = r#"
        [temperature]
        preferred_instance = 20

        [[temperature.path]]
        path = "TemperatureType"
        default = 1

        [[temperature.path]]
        path = "Dewpoint"
        kind = "float"
        unit = "°C"
        decimals = 1
        description = "Dew point"

        [watermaker]
        product_id = 0xFFFF
        product_name = "Watermaker"
        custom_name = "My Watermaker"
        path = [
          { path = "Flow", kind = "float", unit = "l/h" },
          { path = "Mode", kind = "int", default = 0, persist = true, min = 0, max = 3 },
        ]
    "#;
    let (catalog, errors) = Catalog::load_str(user, "catalog.toml");
    assert!(errors.is_empty(), "{errors:#?}");

    let t = catalog.get("temperature").expect("temperature");
    assert_eq!(t.preferred_instance, 20);
    let tt = t.path("TemperatureType").expect("TemperatureType");
    assert_eq!(tt.default, Some(json!(1)));
    assert_eq!(
        (tt.min, tt.max),
        (Some(0.0), Some(6.0)),
        "untouched keys stay"
    );
    assert!(tt.persist.is_some());
    assert_eq!(
        t.paths.last().map(|p| p.path.as_str()),
        Some("Dewpoint"),
        "new path appended"
    );
    assert_eq!(t.product_id, 0xA162, "untouched fields stay");

    let w = catalog.get("watermaker").expect("new type");
    assert_eq!(w.preferred_instance, DEFAULT_PREFERRED_INSTANCE);
    assert_eq!(
        w.paths.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        ["CustomName", "Flow", "Mode"]
    );
    let mode = w.path("Mode").expect("Mode");
    assert_eq!(
        mode.persist,
        Some(Persist {
            min: Some(0.0),
            max: Some(3.0)
        })
    );
    assert!(
        !mode.measured,
        "a persisted path is not measured by default"
    );
    assert!(w
        .path("Flow")
        .is_some_and(|p| p.measured && p.writeable && p.default.is_none()));
    assert_eq!(catalog.len(), Catalog::embedded().len() + 1);
    assert!(catalog.type_names().collect::<Vec<_>>().is_sorted());
}

#[test]
fn a_broken_override_names_file_type_and_key_and_keeps_embedded_types() {
    let user = r#"
        [temperature]
        product_id = "abc"
        colour = "red"

        [[temperature.path]]
        path = "TemperatureType"
        default = "fridge"

        [[temperature.path]]
        path = "Humidity"
        min = 10
        max = 5

        [[temperature.path]]
        path = "DeviceInstance"

        [tank]
        custom_name = "Water"

        [[tank.path]]
        path = "Level"
        unti = "%"

        [incomplete]
        product_name = "Incomplete"
    "#;
    let (catalog, errors) = Catalog::load_str(user, "catalog.toml");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expect = |needle: &str| {
        assert!(
            shown.iter().any(|e| e.starts_with(needle)),
            "no error starting with {needle:?} in {shown:#?}"
        );
    };
    expect("catalog.toml: type 'temperature', key 'product_id': ");
    expect("catalog.toml: type 'temperature', key 'colour': unknown key");
    expect("catalog.toml: type 'temperature', path 'TemperatureType', key 'default': ");
    expect("catalog.toml: type 'temperature', path 'Humidity', key 'min': ");
    expect("catalog.toml: type 'temperature', path 'DeviceInstance', key 'path': ");
    expect("catalog.toml: type 'tank', path 'Level', key 'unti': unknown key");
    expect("catalog.toml: type 'incomplete', key 'product_id': missing");
    expect("catalog.toml: type 'incomplete', key 'custom_name': missing");

    // Every built-in type is still there, with the built-in data where the
    // override was wrong and the user's data where it was right.
    let embedded = Catalog::embedded();
    for name in embedded.type_names() {
        assert!(catalog.get(name).is_some(), "{name} lost");
    }
    assert!(catalog.get("incomplete").is_none());
    let t = catalog.get("temperature").expect("temperature");
    assert_eq!(t.product_id, 0xA162);
    assert_eq!(
        t.path("TemperatureType"),
        embedded
            .get("temperature")
            .and_then(|t| t.path("TemperatureType"))
    );
    assert_eq!(
        t.path("Humidity"),
        embedded.get("temperature").and_then(|t| t.path("Humidity"))
    );
    assert!(t.path("DeviceInstance").is_none());
    let tank = catalog.get("tank").expect("tank");
    assert_eq!(tank.custom_name, "Water");
    assert_eq!(tank.paths[0].default, Some(json!("Water")));
}

#[test]
fn a_file_with_bad_syntax_is_reported_with_its_line_and_changes_nothing() {
    let (catalog, errors) = Catalog::load_str("[temperature]\nproduct_id = = 3\n", "my.toml");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .to_string()
            .starts_with("my.toml: line 2, column "),
        "{}",
        errors[0]
    );
    assert_eq!(catalog, Catalog::embedded());
}

#[test]
fn a_missing_user_file_is_not_an_error_and_a_present_one_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("catalog.toml");
    let (catalog, errors) = Catalog::load(Some(&file));
    assert!(errors.is_empty());
    assert_eq!(catalog, Catalog::embedded());

    std::fs::write(&file, "[gps]\ncustom_name = \"Boat\"\n").expect("write");
    let (catalog, errors) = Catalog::load(Some(&file));
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        catalog.get("gps").map(|t| t.custom_name.as_str()),
        Some("Boat")
    );
}

#[test]
fn the_example_override_file_loads_cleanly_also_with_its_examples_uncommented() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/catalog.example.toml");
    let (_, errors) = Catalog::load(Some(&file));
    assert!(errors.is_empty(), "{errors:#?}");

    let text = std::fs::read_to_string(&file).expect("example file");
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.starts_with("  {")
                    || rest.starts_with(']')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (catalog, errors) = Catalog::load_str(&uncommented, "catalog.example.toml");
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        catalog.get("switch").is_some(),
        "the example's new type loads"
    );
    assert_eq!(
        catalog.get("temperature").map(|t| t.preferred_instance),
        Some(20)
    );
}

#[test]
fn persist_limits_can_differ_from_the_write_limits() {
    let user = r#"
        [[vebus.path]]
        path = "Ac/In/1/CurrentLimit"
        max = 63
        persist = { min = 0, max = 0 }
    "#;
    let (catalog, errors) = Catalog::load_str(user, "catalog.toml");
    assert!(errors.is_empty(), "{errors:#?}");
    let p = catalog
        .get("vebus")
        .and_then(|t| t.path("Ac/In/1/CurrentLimit"))
        .expect("path");
    assert_eq!(p.max, Some(63.0));
    assert_eq!(
        p.persist,
        Some(Persist {
            min: Some(0.0),
            max: Some(0.0)
        })
    );
}

#[test]
fn a_path_cannot_also_be_a_node_and_built_in_paths_win() {
    let user = r#"
        [[grid.path]]
        path = "Ac/L1"
        kind = "float"

        [[grid.path]]
        path = "Ac/Power/Max"
        kind = "float"
    "#;
    let (catalog, errors) = Catalog::load_str(user, "catalog.toml");
    let paths: BTreeSet<_> = errors.iter().filter_map(|e| e.path.as_deref()).collect();
    assert_eq!(
        paths,
        BTreeSet::from(["Ac/L1", "Ac/Power/Max"]),
        "{errors:#?}"
    );
    let grid = catalog.get("grid").expect("grid");
    assert!(grid.path("Ac/L1").is_none() && grid.path("Ac/Power/Max").is_none());
    assert!(grid.path("Ac/L1/Power").is_some() && grid.path("Ac/Power").is_some());
}

#[test]
fn float_defaults_written_as_integers_become_floats() {
    let user = "[[tank.path]]\npath = \"Capacity\"\ndefault = 2\n";
    let (catalog, errors) = Catalog::load_str(user, "catalog.toml");
    assert!(errors.is_empty(), "{errors:#?}");
    let d = catalog
        .get("tank")
        .and_then(|t| t.path("Capacity"))
        .and_then(|p| p.default.clone());
    assert!(d.as_ref().is_some_and(Value::is_f64), "{d:?}");
}

/// Limits apply to remote writes (SetValue answers 2) and GetMin/GetMax, not
/// to values a device sends, as in the Python driver: a device reports what it measures.
#[test]
fn device_values_follow_the_kind_not_the_limits() {
    use crate::dbus::Value as V;
    let catalog = Catalog::embedded();
    let t = catalog.get("temperature").expect("temperature");
    let temp = t.path("Temperature").expect("Temperature");
    assert_eq!(device_value(temp, &json!(21)), Ok(V::F64(21.0)));
    assert_eq!(device_value(temp, &Value::Null), Ok(V::Invalid));
    assert_eq!(device_value(temp, &json!("21")), Ok(V::F64(21.0)));
    let tt = t.path("TemperatureType").expect("TemperatureType");
    assert_eq!(device_value(tt, &json!(3.0)), Ok(V::I32(3)));
    assert_eq!(device_value(tt, &json!(true)), Ok(V::I32(1)));
    assert!(device_value(tt, &json!(2.5)).is_err());
    assert_eq!(tt.max, Some(6.0));
    assert_eq!(device_value(tt, &json!(7)), Ok(V::I32(7)));
    assert_eq!(device_value(tt, &json!(-1)), Ok(V::I32(-1)));
    let name = t.path("CustomName").expect("CustomName");
    assert_eq!(device_value(name, &json!(5)), Ok(V::Str("5".into())));
    assert!(device_value(name, &json!([5])).is_err());
    let roles = catalog
        .get("pvinverter")
        .and_then(|t| t.path("AllowedRoles"))
        .expect("AllowedRoles");
    assert!(device_value(roles, &json!(["grid"])).is_ok());
    let limit = catalog
        .get("vebus")
        .and_then(|t| t.path("Ac/In/1/CurrentLimit"))
        .expect("limit");
    assert_eq!(device_value(limit, &json!(16.5)), Ok(V::F64(16.5)));
}

#[test]
fn the_temperature_is_shown_with_one_decimal_and_its_unit() {
    let catalog = Catalog::embedded();
    let t = catalog.get("temperature").expect("type");
    let temp = t.path("Temperature").expect("path");
    let text = crate::dbus::TextFormat::Fixed {
        decimals: temp.decimals,
        unit: temp.unit.clone(),
    };
    assert_eq!(text.text("/Temperature", &crate::dbus::Value::F64(21.456)), "21.5 °C");
    let name = t.path("CustomName").expect("path");
    assert_eq!((name.decimals, name.unit.as_deref()), (None, None));
}

#[test]
fn catalog_error_display_leaves_out_what_does_not_apply() {
    let e = CatalogError {
        file: "catalog.toml".into(),
        service_type: Some("x".into()),
        path: Some("y".into()),
        key: None,
        reason: "bad".into(),
    };
    assert_eq!(e.to_string(), "catalog.toml: type 'x', path 'y': bad");
    let e = CatalogError {
        service_type: None,
        path: None,
        key: Some("k".into()),
        ..e
    };
    assert_eq!(e.to_string(), "catalog.toml: key 'k': bad");
}

#[test]
fn the_user_documentation_lists_every_type_and_path() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/catalog.md"))
            .expect("docs/catalog.md");
    for t in Catalog::embedded().iter() {
        let section = doc
            .split_once(&format!("\n### {}\n", t.name))
            .map(|(_, rest)| rest.split("\n### ").next().unwrap_or(rest))
            .unwrap_or_else(|| panic!("docs/catalog.md has no section for {}", t.name));
        for p in &t.paths {
            assert!(
                section.contains(&format!("| `{}` |", p.path)),
                "docs/catalog.md: {} lacks {}",
                t.name,
                p.path
            );
        }
    }
}

#[test]
fn the_user_documentation_example_loads_cleanly() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/catalog.md"))
            .expect("docs/catalog.md");
    let example = doc
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("a toml example in docs/catalog.md");
    let (catalog, errors) = Catalog::load_str(example, "docs example");
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(catalog
        .get("watermaker")
        .is_some_and(|t| t.paths.len() == 3));
}

/// See: issue 10. Text from the user file goes to D-Bus (ProductName,
/// CustomName, GetText with the unit, GetDescription, defaults); with a NUL
/// in it every service of the type lost its connection. Such keys are
/// refused (the built-in value stays), as are defaults D-Bus cannot carry.
#[test]
fn issue_10_user_text_d_bus_cannot_carry_is_refused() {
    let user = r#"
        [temperature]
        product_name = "a\u0000"
        custom_name = "b\u0000"

        [[temperature.path]]
        path = "Temperature"
        unit = "°C\u0000"

        [[temperature.path]]
        path = "Humidity"
        description = "\u0000"

        [[temperature.path]]
        path = "Label"
        kind = "str"
        default = "x\u0000"

        [[temperature.path]]
        path = "Deep"
        default = [[[[[[[[[[1]]]]]]]]]]
    "#;
    let (catalog, errors) = Catalog::load_str(user, "catalog.toml");
    let keys: Vec<_> = errors
        .iter()
        .map(|e| (e.path.as_deref(), e.key.as_deref()))
        .collect();
    for want in [
        (None, Some("product_name")),
        (None, Some("custom_name")),
        (Some("Temperature"), Some("unit")),
        (Some("Humidity"), Some("description")),
        (Some("Label"), Some("default")),
        (Some("Deep"), Some("default")),
    ] {
        assert!(keys.contains(&want), "{want:?} not in {errors:#?}");
    }
    let t = catalog.get("temperature").expect("built-in type kept");
    let text = |s: &str| !s.contains('\0');
    assert!(text(&t.product_name) && text(&t.custom_name));
    for p in &t.paths {
        assert!(
            text(&p.description) && p.unit.as_deref().is_none_or(text),
            "{p:?}"
        );
        if let Some(d) = &p.default {
            assert!(crate::dbus::Value::from_json(d).is_ok(), "{p:?}");
        }
    }
}

/// See: issue 10. 2^63 on an int path passed the range check and was cast
/// to i64::MAX, another number than the one written.
#[test]
fn issue_10_a_whole_float_past_i64_is_refused_on_an_int_path() {
    let catalog = Catalog::embedded();
    let p = catalog
        .get("temperature")
        .and_then(|t| t.path("TemperatureType"))
        .unwrap();
    assert!(device_value(p, &json!(9_223_372_036_854_775_808.0)).is_err());
    assert_eq!(
        device_value(p, &json!(-8_000_000_000_000_000.0)),
        Ok(crate::dbus::Value::I64(-8_000_000_000_000_000))
    );
}
