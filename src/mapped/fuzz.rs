//! Entry points for fuzz targets (cargo-fuzz style: bytes in, nothing out).
//! Each feeds arbitrary input where the daemon takes it from a user or a
//! device and checks what must hold: no panic, and the invariants named on
//! each function. A fuzz target is one line: `fuzz_target!(|d: &[u8]|
//! dbus_mqtt_devices::mapped::fuzz::declaration_file(d));`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::declaration::print::to_toml;
use super::declaration::{is_energy_counter, Declaration};
use super::device::MappedDevice;
use super::effect::{Effect, LogLevel};
use super::load::{load_files, parse_topic_declaration, DeclarationFile, TopicDeclaration};
use super::preset::Presets;
use super::routes::Input;
use crate::catalog::Catalog;
use crate::dbus::Value;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::embedded)
}

fn presets() -> &'static Presets {
    static PRESETS: OnceLock<Presets> = OnceLock::new();
    PRESETS.get_or_init(Presets::builtin)
}

/// A declaration file. Holds: every valid device prints as TOML that reads
/// back as the same declaration.
pub fn declaration_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let loaded = load_files(
        &[DeclarationFile {
            label: "fuzz.toml".into(),
            text: text.into_owned(),
        }],
        presets(),
        catalog(),
    );
    for device in &loaded.devices {
        assert_round_trip(&device.declaration);
    }
}

/// A retained declaration on `dbus-mqtt-devices/mapped/<id>`. Holds the
/// same as [`declaration_file`].
pub fn declaration_topic(data: &[u8]) {
    let result =
        parse_topic_declaration("dbus-mqtt-devices/mapped/fuzz", data, presets(), catalog());
    if let TopicDeclaration::Declared(d) = result {
        assert_round_trip(&d);
    }
}

/// A user preset file, checked and used by a device.
pub fn preset_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let (presets, _) =
        Presets::with_user_files([("fuzz".to_string(), "fuzz.toml".to_string(), text)]);
    let _ = presets.check(catalog());
    let loaded = load_files(
        &[DeclarationFile {
            label: "devices.toml".into(),
            text: "[[device]]\nid = \"f\"\nservice = \"temperature\"\npreset = \"fuzz\"\ntopic = \"t\"\n".into(),
        }],
        &presets,
        catalog(),
    );
    for device in &loaded.devices {
        assert_round_trip(&device.declaration);
    }
}

/// Device messages: `data` is split into chunks, each given to one input of
/// a device of one of the built-in presets (chosen by the first byte) as a
/// payload, retained or not, with clock ticks between. Holds: every number
/// set on D-Bus is finite, and an energy counter never goes down on D-Bus
/// unless a reset was logged.
pub fn source_payload(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let declarations = preset_devices();
    let Some(declaration) = declarations.get(usize::from(choice) % declarations.len().max(1))
    else {
        return;
    };
    let Some(service) = catalog().get(&declaration.service) else {
        return;
    };
    let mut device = MappedDevice::new(declaration.clone(), service);
    let mut now = Instant::now();
    let mut check = Invariants::default();
    check.effects(&device.start(now));
    let inputs = declaration.sources.len() + declaration.availability.len();
    for chunk in rest.split(|b| *b == 0xff) {
        let Some((&head, payload)) = chunk.split_first() else {
            continue;
        };
        now += Duration::from_secs(u64::from(head >> 4) * 37);
        check.effects(&device.on_tick(now));
        let index = usize::from(head & 0x07) % inputs.max(1);
        let input = if index < declaration.sources.len() {
            Input::Source(index)
        } else {
            Input::Availability(index - declaration.sources.len())
        };
        let retained = head & 0x08 != 0;
        check.effects(&device.on_message(input, "fuzz/topic", payload, retained, now));
    }
}

/// One device of each built-in preset, for every service it allows.
fn preset_devices() -> &'static [Declaration] {
    static DEVICES: OnceLock<Vec<Declaration>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut text = String::new();
        for (i, preset) in presets().iter().enumerate() {
            let services = preset
                .services
                .clone()
                .unwrap_or_else(|| vec!["temperature".to_string()]);
            for (j, service) in services.iter().enumerate() {
                text.push_str(&format!(
                    "[[device]]\nid = \"d{i}_{j}\"\nservice = \"{service}\"\npreset = \"{}\"\n",
                    preset.name
                ));
                for p in &preset.parameters {
                    if p.table {
                        text.push_str(&format!("{} = {{ \"/Temperature\" = \"t\" }}\n", p.name));
                    } else if p.default.is_none() && !p.optional {
                        text.push_str(&format!("{} = \"x\"\n", p.name));
                    }
                }
                if preset.name.contains("dtu") {
                    text.push_str("stale_after = 60\n");
                }
            }
        }
        let loaded = load_files(
            &[DeclarationFile {
                label: "fuzz.toml".into(),
                text,
            }],
            presets(),
            catalog(),
        );
        loaded.devices.into_iter().map(|d| d.declaration).collect()
    })
}

fn assert_round_trip(d: &Declaration) {
    let printed = to_toml(d);
    let again = load_files(
        &[DeclarationFile {
            label: "printed.toml".into(),
            text: printed.clone(),
        }],
        presets(),
        catalog(),
    );
    let same = again.devices.first().map(|x| &x.declaration);
    let expected = Declaration {
        preset: None,
        ..d.clone()
    };
    let got = same.map(|x| Declaration {
        preset: None,
        ..x.clone()
    });
    assert!(
        got.as_ref() == Some(&expected),
        "printed declaration does not read back the same:\n{printed}\n{:?}",
        again.diagnostics
    );
}

/// What must hold across a device's effects.
#[derive(Default)]
struct Invariants {
    counters: std::collections::BTreeMap<String, f64>,
}

impl Invariants {
    fn effects(&mut self, effects: &[Effect]) {
        let reset = effects.iter().any(|e| {
            matches!(e, Effect::Log(l) if l.level == LogLevel::Info && l.message.contains("reset"))
        });
        for e in effects {
            let Effect::Set(changes) = e else {
                continue;
            };
            for (path, value) in changes {
                if let Value::F64(x) = value {
                    assert!(x.is_finite(), "{path} = {x}");
                }
                if !is_energy_counter(path) {
                    continue;
                }
                if let Some(x) = value.as_f64() {
                    if let Some(last) = self.counters.get(path) {
                        assert!(reset || x >= *last, "{path} went from {last} to {x}");
                    }
                    self.counters.insert(path.clone(), x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_preset_and_service_prints_back_the_same() {
        let devices = preset_devices();
        // Every preset with each of its services (esphome with one).
        assert_eq!(devices.len(), 4 + 4 + 2 + 3 + 3 + 1 + 1 + 1 + 1);
        for d in devices {
            assert_round_trip(d);
        }
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "(nan|NaN|-nan||online|true|1|0|[0-9.]{1,8}|\\PC{0,6})"
                .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    "(power|total_act|a_act_power|ENERGY|Power|Total|temperature|state|params|em:0|apower|aenergy|total)",
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_text_as_a_declaration_file_is_handled(text in "\\PC{0,200}") {
            declaration_file(text.as_bytes());
        }

        #[test]
        fn declaration_like_text_is_handled(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("[[device]]".to_string()),
                    Just("[[device.source]]".to_string()),
                    Just("[[device.availability]]".to_string()),
                    Just("[[device.write]]".to_string()),
                    "(id|service|preset|topic|serial|phase|stale_after|on_stale|name|instance|path|online|offline|format|min|max) = (\"[a-z0-9_/+#]{0,8}\"|[0-9]{1,3}|true|\"L2\"|\"pvinverter\"|\"grid\"|\"opendtu\"|\"30s\")",
                    "\"/(Ac/Power|Ac/L1/Power|Temperature|Ac/Energy/Forward|Ac/PowerLimit)\" = (\"[a-z.$]{1,6}\"|\\{ path = \"[a-z$]{1,4}\", unit = \"(Wh|kW|%|mV)\" \\}|\\{ sum = \\[\"/Ac/L1/Power\"\\] \\}|\\{ integrate = \"/Ac/Power\" \\})",
                ],
                0..16,
            )
        ) {
            declaration_file(lines.join("\n").as_bytes());
        }

        #[test]
        fn any_json_as_a_topic_declaration_is_handled(v in json()) {
            declaration_topic(v.to_string().as_bytes());
        }

        #[test]
        fn any_text_as_a_preset_is_handled(text in "\\PC{0,200}") {
            preset_file(text.as_bytes());
        }

        #[test]
        fn any_payloads_keep_values_finite_and_counters_forward(
            choice: u8,
            messages in proptest::collection::vec((any::<u8>(), json()), 1..12),
        ) {
            let mut data = vec![choice];
            for (head, payload) in messages {
                data.push(head);
                data.extend(payload.to_string().bytes().filter(|b| *b != 0xff));
                data.push(0xff);
            }
            source_payload(&data);
        }

        #[test]
        fn counters_on_dbus_only_go_back_after_a_logged_reset(
            steps in proptest::collection::vec((0.0f64..1000.0, 0u64..400, any::<bool>()), 1..40),
        ) {
            // OpenDTU's yieldtotal and a Gen1 3EM's total: plain counters.
            let devices: Vec<_> = preset_devices()
                .iter()
                .filter(|d| d.preset.as_ref().is_some_and(|p| p.name == "opendtu" || p.name == "shelly-gen1-em"))
                .collect();
            prop_assert_eq!(devices.len(), 1 + 3);
            for d in devices {
                let topic = d
                    .sources
                    .iter()
                    .position(|s| s.mappings.iter().any(|m| is_energy_counter(&m.path)))
                    .unwrap();
                let mut device = MappedDevice::new(d.clone(), catalog().get(&d.service).unwrap());
                let mut now = Instant::now();
                let mut check = Invariants::default();
                check.effects(&device.start(now));
                for (value, dt, retained) in &steps {
                    now += Duration::from_secs(*dt);
                    let payload = format!("{value:.3}");
                    check.effects(&device.on_message(Input::Source(topic), "t", payload.as_bytes(), *retained, now));
                    check.effects(&device.on_tick(now));
                }
            }
        }

        #[test]
        fn any_bytes_as_payloads_are_handled(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            source_payload(&data);
        }
    }
}
