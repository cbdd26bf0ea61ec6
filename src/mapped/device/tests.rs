//! A mapped device, input by input, as the spec describes it: retained
//! values, liveness, the stale policies, merging, counters, sums, energy
//! from power, writes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::mapped::test_support::{catalog, load};
use crate::mapped::LogLevel;

pub(crate) fn device(text: &str) -> MappedDevice {
    let loaded = load(text);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let d = loaded.devices.into_iter().next().unwrap().declaration;
    let service = catalog().get(&d.service).unwrap();
    MappedDevice::new(d, service)
}

/// Every value set by these effects (later ones win).
pub(crate) fn sets(effects: &[Effect]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in effects {
        if let Effect::Set(changes) = e {
            out.extend(changes.iter().cloned());
        }
    }
    out
}

pub(crate) fn warnings(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log(l) if l.level == crate::mapped::LogLevel::Warn => Some(l.message.clone()),
            _ => None,
        })
        .collect()
}

fn connected(effects: &[Effect]) -> Option<bool> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Connected(c) => Some(*c),
        _ => None,
    })
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

const METER: &str = r#"
[[device]]
id = "meter"
service = "acload"
stale_after = "30s"
const = { "/NrOfPhases" = 1 }
[[device.source]]
topic = "m/status"
"/Ac/Power" = "power"
"/Ac/L1/Voltage" = "voltage"
"/Ac/L1/Current" = "current"
"/Ac/Energy/Forward" = { path = "energy", unit = "Wh" }
"#;

const SRC: Input = Input::Source(0);

#[test]
fn start_registers_with_fixed_values_not_yet_connected() {
    let mut d = device(METER);
    let e = d.start(Instant::now());
    assert_eq!(
        e,
        [
            Effect::Register,
            Effect::Set(vec![("/NrOfPhases".into(), Value::I32(1))]),
            Effect::Connected(false)
        ]
    );
}

#[test]
fn retained_values_are_shown_but_only_a_fresh_message_makes_the_device_alive() {
    let t0 = Instant::now();
    let mut d = device(METER);
    d.start(t0);
    let e = d.on_message(SRC, "m/status", br#"{"power": 812.5}"#, true, t0);
    assert_eq!(sets(&e).get("/Ac/Power"), Some(&Value::F64(812.5)));
    assert_eq!(connected(&e), None);
    assert!(!d.is_alive());
    let e = d.on_message(SRC, "m/status", br#"{"power": 815}"#, false, secs(t0, 1));
    assert_eq!(
        e,
        [
            Effect::Set(vec![("/Ac/Power".into(), Value::F64(815.0))]),
            Effect::Connected(true)
        ]
    );
}

#[test]
fn messages_merge_a_missing_key_is_no_update() {
    let t0 = Instant::now();
    let mut d = device(METER);
    d.start(t0);
    d.on_message(
        SRC,
        "m/status",
        br#"{"power": 100, "voltage": 230.1}"#,
        false,
        t0,
    );
    let e = d.on_message(SRC, "m/status", br#"{"current": 0.45}"#, false, secs(t0, 1));
    assert_eq!(
        sets(&e),
        BTreeMap::from([("/Ac/L1/Current".into(), Value::F64(0.45))])
    );
    assert_eq!(d.value("/Ac/Power"), Some(&Value::F64(100.0)));
    assert_eq!(d.value("/Ac/L1/Voltage"), Some(&Value::F64(230.1)));
}

#[test]
fn nan_null_and_empty_make_a_path_invalid_never_zero() {
    let t0 = Instant::now();
    let mut d = device(
        "[[device]]\nid = \"t\"\nservice = \"temperature\"\n[[device.source]]\ntopic = \"n/sensor/t/state\"\n\"/Temperature\" = \"$\"\n[[device.source]]\ntopic = \"z\"\n\"/Humidity\" = \"humidity\"\n",
    );
    d.start(t0);
    for payload in [&b"nan"[..], b"", b"null", b"-nan"] {
        d.on_message(SRC, "n/sensor/t/state", b"21.4", false, t0);
        let e = d.on_message(SRC, "n/sensor/t/state", payload, false, t0);
        assert_eq!(
            sets(&e).get("/Temperature"),
            Some(&Value::Invalid),
            "{payload:?}"
        );
    }
    let e = d.on_message(Input::Source(1), "z", br#"{"humidity": null}"#, false, t0);
    assert_eq!(sets(&e).get("/Humidity"), Some(&Value::Invalid));
}

#[test]
fn a_stale_device_disconnects_and_invalidates_its_measurements() {
    let t0 = Instant::now();
    let mut d = device(METER);
    d.start(t0);
    d.on_message(
        SRC,
        "m/status",
        br#"{"power": 100, "energy": 5000}"#,
        false,
        t0,
    );
    assert_eq!(d.next_tick(), Some(secs(t0, 30)));
    assert!(d.on_tick(secs(t0, 29)).is_empty());
    let e = d.on_tick(secs(t0, 30));
    assert_eq!(connected(&e), Some(false));
    let s = sets(&e);
    assert_eq!(s.get("/Ac/Power"), Some(&Value::Invalid));
    assert_eq!(s.get("/Ac/Energy/Forward"), Some(&Value::Invalid));
    // Fixed values are not measurements.
    assert!(!s.contains_key("/NrOfPhases"));
    assert_eq!(d.next_tick(), None);
    // Back: connected, and only what arrives is shown (old values stay invalid).
    let e = d.on_message(
        SRC,
        "m/status",
        br#"{"voltage": 229}"#,
        false,
        secs(t0, 100),
    );
    assert_eq!(connected(&e), Some(true));
    assert_eq!(d.value("/Ac/Power"), Some(&Value::Invalid));
}

#[test]
fn on_stale_zero_is_what_a_pv_inverter_at_night_needs() {
    let t0 = Instant::now();
    let mut d = device(
        r#"
[[device]]
id = "pv"
service = "pvinverter"
stale_after = 60
on_stale = "zero"
[[device.source]]
topic = "pv"
"/Ac/Power" = "p"
"/Ac/L1/Current" = "i"
"/Ac/L1/Voltage" = "u"
"/Ac/Energy/Forward" = "e"
"/StatusCode" = { path = "producing", map = { "1" = 7, "0" = 8 } }
"#,
    );
    d.start(t0);
    d.on_message(
        SRC,
        "pv",
        br#"{"p": 612, "i": 2.6, "u": 231, "e": 465.294, "producing": 1}"#,
        false,
        t0,
    );
    let e = d.on_tick(secs(t0, 60));
    assert_eq!(connected(&e), Some(false));
    let s = sets(&e);
    assert_eq!(s.get("/Ac/Power"), Some(&Value::F64(0.0)));
    assert_eq!(s.get("/Ac/L1/Current"), Some(&Value::F64(0.0)));
    assert_eq!(s.get("/Ac/L1/Voltage"), Some(&Value::Invalid));
    assert!(!s.contains_key("/Ac/Energy/Forward"), "the counter is kept");
    assert_eq!(d.value("/Ac/Energy/Forward"), Some(&Value::F64(465.294)));
    assert_eq!(
        d.value("/StatusCode"),
        Some(&Value::I32(7)),
        "status is not a measurement"
    );
}

#[test]
fn on_stale_keep_only_disconnects() {
    let t0 = Instant::now();
    let mut d = device(&METER.replace(
        "stale_after = \"30s\"",
        "stale_after = \"30s\"\non_stale = \"keep\"",
    ));
    d.start(t0);
    d.on_message(SRC, "m/status", br#"{"power": 100}"#, false, t0);
    let e = d.on_tick(secs(t0, 31));
    assert_eq!(e, [Effect::Connected(false)]);
    assert_eq!(d.value("/Ac/Power"), Some(&Value::F64(100.0)));
}

#[test]
fn on_stale_remove_leaves_dbus_and_comes_back_with_its_values() {
    let t0 = Instant::now();
    let mut d = device(&METER.replace(
        "stale_after = \"30s\"",
        "stale_after = \"30s\"\non_stale = \"remove\"",
    ));
    assert_eq!(d.start(t0), []);
    // Retained: nothing on D-Bus yet.
    assert_eq!(
        d.on_message(SRC, "m/status", br#"{"power": 1}"#, true, t0),
        []
    );
    let e = d.on_message(SRC, "m/status", br#"{"voltage": 230}"#, false, t0);
    assert_eq!(e[0], Effect::Register);
    assert_eq!(
        sets(&e),
        BTreeMap::from([
            ("/Ac/L1/Voltage".into(), Value::F64(230.0)),
            ("/Ac/Power".into(), Value::F64(1.0)),
            ("/NrOfPhases".into(), Value::I32(1)),
        ])
    );
    assert_eq!(connected(&e), Some(true));
    assert_eq!(d.on_tick(secs(t0, 30)), [Effect::Remove]);
    let e = d.on_message(SRC, "m/status", br#"{"power": 2}"#, false, secs(t0, 40));
    assert_eq!(e[0], Effect::Register);
    assert_eq!(
        sets(&e).len(),
        3,
        "every value again after registering: {e:?}"
    );
}

const INVERTER: &str = r#"
[[device]]
id = "hm"
service = "pvinverter"
preset = "opendtu"
serial = "116181234567"
"#;

#[test]
fn availability_offline_disconnects_and_online_or_a_fresh_measurement_reconnects() {
    let t0 = Instant::now();
    let mut d = device(INVERTER);
    d.start(t0);
    let reachable = Input::Availability(0);
    let dtu = Input::Availability(1);
    d.on_message(dtu, "solar/dtu/status", b"online", true, t0);
    let e = d.on_message(
        reachable,
        "solar/116181234567/status/reachable",
        b"1",
        true,
        t0,
    );
    assert_eq!(
        connected(&e),
        Some(true),
        "a retained online counts: the broker keeps it current"
    );
    let power = Input::Source(0);
    d.on_message(power, "solar/116181234567/0/power", b"612.4", false, t0);
    let e = d.on_message(
        reachable,
        "solar/116181234567/status/reachable",
        b"0",
        false,
        secs(t0, 5),
    );
    assert_eq!(connected(&e), Some(false));
    assert_eq!(sets(&e).get("/Ac/Power"), Some(&Value::F64(0.0)));
    // OpenDTU repeats the status of an unreachable inverter: no sign of life.
    let producing = Input::Source(4);
    let e = d.on_message(
        producing,
        "solar/116181234567/status/producing",
        b"0",
        false,
        secs(t0, 10),
    );
    assert_eq!(connected(&e), None);
    assert_eq!(sets(&e).get("/StatusCode"), Some(&Value::I32(8)));
    // A fresh measurement brings it back, though the availability last said offline.
    let e = d.on_message(
        power,
        "solar/116181234567/0/power",
        b"3.5",
        false,
        secs(t0, 11),
    );
    assert_eq!(connected(&e), Some(true));
    assert_eq!(sets(&e).get("/Ac/Power"), Some(&Value::F64(3.5)));
    let e = d.on_message(
        reachable,
        "solar/116181234567/status/reachable",
        b"0",
        false,
        secs(t0, 12),
    );
    assert_eq!(connected(&e), Some(false));
    assert_eq!(sets(&e).get("/Ac/Power"), Some(&Value::F64(0.0)));
    let e = d.on_message(dtu, "solar/dtu/status", b"offline", false, secs(t0, 12));
    assert_eq!(e, []);
    d.on_message(dtu, "solar/dtu/status", b"online", false, secs(t0, 13));
    let e = d.on_message(
        reachable,
        "solar/116181234567/status/reachable",
        b"1",
        false,
        secs(t0, 20),
    );
    assert_eq!(connected(&e), Some(true));
}

#[test]
fn retained_power_at_midnight_is_not_live() {
    let t0 = Instant::now();
    let mut d = device(INVERTER);
    d.start(t0);
    // Retained messages in any order: the inverter is known unreachable.
    d.on_message(
        Input::Availability(0),
        "solar/116181234567/status/reachable",
        b"0",
        true,
        t0,
    );
    let e = d.on_message(
        Input::Source(0),
        "solar/116181234567/0/power",
        b"301.7",
        true,
        t0,
    );
    assert_eq!(sets(&e).get("/Ac/Power"), Some(&Value::F64(0.0)));
    assert!(!d.is_alive());
}

#[test]
fn energy_counters_only_go_forward() {
    let t0 = Instant::now();
    let mut d = device(METER);
    d.start(t0);
    let energy = |d: &mut MappedDevice, wh: &str, t| {
        d.on_message(
            SRC,
            "m/status",
            format!("{{\"energy\": {wh}}}").as_bytes(),
            false,
            t,
        )
    };
    energy(&mut d, "2852055.81", t0);
    assert_eq!(d.value("/Ac/Energy/Forward"), Some(&Value::F64(2852.05581)));
    let e = energy(&mut d, "0", t0);
    assert!(
        !sets(&e).contains_key("/Ac/Energy/Forward"),
        "0 after a real value (a reboot) is not applied"
    );
    let e = energy(&mut d, "1000", secs(t0, 1));
    assert_eq!(warnings(&e).len(), 1, "{e:?}");
    assert!(
        warnings(&e)[0].contains("1 is lower than 2852.05581"),
        "{e:?}"
    );
    assert!(sets(&e).is_empty());
    let e = energy(&mut d, "1001", secs(t0, 2));
    assert!(warnings(&e).is_empty(), "warned once: {e:?}");
    // Still lower ten minutes later: a real reset, applied and logged.
    let e = energy(&mut d, "1500", secs(t0, 601));
    assert_eq!(sets(&e).get("/Ac/Energy/Forward"), Some(&Value::F64(1.5)));
    assert!(
        matches!(&e[1], Effect::Log(l) if l.level == LogLevel::Info && l.message.contains("accepted as a reset")),
        "{e:?}"
    );
}

#[test]
fn a_counter_that_starts_at_zero_takes_it_and_its_sum_is_valid() {
    // Shelly Gen1 3EM: an unused clamp reports `total 0.0` for good, and a
    // phase that never exported reports `total_returned 0.0`.
    let t0 = Instant::now();
    let mut d = device(
        r#"
[[device]]
id = "em3"
service = "grid"
[[device.source]]
topic = "e/+"
"/Ac/L1/Energy/Forward" = { path = "a", unit = "Wh" }
"/Ac/L2/Energy/Forward" = { path = "b", unit = "Wh" }
"/Ac/L3/Energy/Forward" = { path = "c", unit = "Wh" }
"/Ac/Energy/Forward" = { sum = ["/Ac/L1/Energy/Forward", "/Ac/L2/Energy/Forward", "/Ac/L3/Energy/Forward"] }
"#,
    );
    d.start(t0);
    let e = d.on_message(SRC, "e/x", br#"{"a": 1000, "b": 2000, "c": 0.0}"#, false, t0);
    assert_eq!(sets(&e).get("/Ac/L3/Energy/Forward"), Some(&Value::F64(0.0)));
    assert_eq!(sets(&e).get("/Ac/Energy/Forward"), Some(&Value::F64(3.0)));
}

#[test]
fn sums_are_computed_when_every_part_is_known() {
    let t0 = Instant::now();
    let mut d = device(
        r#"
[[device]]
id = "m3"
service = "grid"
[[device.source]]
topic = "p/+"
"/Ac/L1/Power" = "a"
"/Ac/L2/Power" = "b"
"/Ac/L3/Power" = "c"
"/Ac/Power" = { sum = ["/Ac/L1/Power", "/Ac/L2/Power", "/Ac/L3/Power"] }
"#,
    );
    d.start(t0);
    let e = d.on_message(SRC, "p/x", br#"{"a": 342.8, "b": 957.3}"#, false, t0);
    assert!(!sets(&e).contains_key("/Ac/Power"), "no partial sum");
    let e = d.on_message(SRC, "p/x", br#"{"c": 0.2}"#, false, t0);
    let p = sets(&e)["/Ac/Power"].as_f64().unwrap();
    assert!((p - 1300.3).abs() < 1e-9, "{p}");
    let e = d.on_message(SRC, "p/x", br#"{"b": null}"#, false, t0);
    assert_eq!(sets(&e).get("/Ac/Power"), Some(&Value::Invalid));
}

#[test]
fn a_silent_device_stops_integrating_despite_the_clock_ticks() {
    // No stale_after: the held power stands for 15 minutes at most, however
    // often the clock ticks in between.
    let t0 = Instant::now();
    let mut d = device(
        r#"
[[device]]
id = "plug"
service = "acload"
[[device.source]]
topic = "plug"
"/Ac/Power" = "$"
"/Ac/Energy/Forward" = { integrate = "/Ac/Power" }
"#,
    );
    d.start(t0);
    d.on_message(SRC, "plug", b"1000", false, t0);
    let mut t = t0;
    while let Some(next) = d.next_tick().filter(|n| *n <= secs(t0, 7200)) {
        t = next.max(t);
        d.on_tick(t);
        if d.next_tick() == Some(t) {
            break;
        }
    }
    let kwh = d
        .value("/Ac/Energy/Forward")
        .and_then(Value::as_f64)
        .unwrap();
    assert!((kwh - 0.25).abs() < 1e-9, "{kwh}");
}

#[test]
fn energy_is_integrated_from_power_saved_and_restored() {
    let t0 = Instant::now();
    let text = r#"
[[device]]
id = "plug"
service = "acload"
stale_after = "5m"
[[device.source]]
topic = "plug"
"/Ac/Power" = "$"
"/Ac/Energy/Forward" = { integrate = "/Ac/Power" }
"#;
    let mut d = device(text);
    d.start(t0);
    d.on_message(SRC, "plug", b"1000", false, t0);
    assert_eq!(
        d.next_tick(),
        Some(t0),
        "the first tick starts the save clock"
    );
    assert!(d.on_tick(t0).is_empty());
    // 1 kW held for 30 minutes, reported every minute.
    let mut saves = 0;
    for m in 1..=30 {
        let t = secs(t0, 60 * m);
        d.on_message(SRC, "plug", b"1000", false, t);
        assert!(d.next_tick().is_some_and(|n| n <= t + ENERGY_SAVE_INTERVAL));
        for e in d.on_tick(t) {
            if let Effect::SaveEnergy(state) = e {
                saves += 1;
                assert!((state.0["/Ac/Energy/Forward"] - m as f64 / 60.0).abs() < 1e-9);
            }
        }
    }
    assert_eq!(saves, 30);
    let kwh = d
        .value("/Ac/Energy/Forward")
        .and_then(Value::as_f64)
        .unwrap();
    assert!((kwh - 0.5).abs() < 1e-9, "{kwh}");
    // After a restart the counter goes on from the saved state.
    let mut again = device(text);
    again.restore_energy(&d.energy_state());
    let e = again.start(secs(t0, 4000));
    assert_eq!(
        sets(&e).get("/Ac/Energy/Forward"),
        Some(&Value::F64(d.energy_state().0["/Ac/Energy/Forward"]))
    );
}

#[test]
fn writes_are_clamped_published_and_shown_until_the_device_reports() {
    let t0 = Instant::now();
    let mut d = device(INVERTER);
    d.start(t0);
    let WriteOutcome::Forwarded(e) = d.on_write("/Ac/PowerLimit", &Value::F64(2.0), t0) else {
        panic!()
    };
    assert_eq!(
        e,
        [
            Effect::Set(vec![("/Ac/PowerLimit".into(), Value::F64(5.0))]),
            Effect::Publish(Publish {
                topic: "solar/116181234567/cmd/limit_nonpersistent_absolute".into(),
                payload: "5".into(),
                retain: false
            })
        ]
    );
    let WriteOutcome::Forwarded(e) = d.on_write("/Ac/PowerLimit", &Value::F64(250.5), t0) else {
        panic!()
    };
    assert!(matches!(&e[1], Effect::Publish(p) if p.payload == "250.5"));
    // The inverter reports the limit it applied.
    let e = d.on_message(
        Input::Source(5),
        "solar/116181234567/status/limit_absolute",
        b"250",
        false,
        t0,
    );
    assert_eq!(sets(&e).get("/Ac/PowerLimit"), Some(&Value::F64(250.0)));
    assert_eq!(
        d.on_write("/Position", &Value::I32(1), t0),
        WriteOutcome::NotForwarded
    );
    assert!(matches!(
        d.on_write("/Ac/PowerLimit", &Value::Invalid, t0),
        WriteOutcome::Refused(_)
    ));
}

#[test]
fn a_json_format_template_carries_the_value() {
    let t0 = Instant::now();
    let mut d = device(
        "[[device]]\nid = \"x\"\nservice = \"pvinverter\"\n[[device.source]]\ntopic = \"x\"\n\"/Ac/Power\" = \"$\"\n[[device.write]]\npath = \"/Ac/PowerLimit\"\ntopic = \"x/set\"\nformat = '{\"limit\": {value}}'\nretain = true\nmax = 800\n",
    );
    d.start(t0);
    let WriteOutcome::Forwarded(e) = d.on_write("/Ac/PowerLimit", &Value::F64(1200.0), t0) else {
        panic!()
    };
    assert!(
        matches!(&e[1], Effect::Publish(p) if p.payload == r#"{"limit": 800}"# && p.retain),
        "{e:?}"
    );
}

#[test]
fn refused_values_are_warned_once_until_the_device_gets_it_right() {
    let t0 = Instant::now();
    let mut d = device(
        "[[device]]\nid = \"g\"\nservice = \"grid\"\n[[device.source]]\ntopic = \"g\"\n\"/Ac/L1/Power\" = { path = \"p\", max = 23000 }\n",
    );
    d.start(t0);
    let e = d.on_message(SRC, "g", br#"{"p": 99999}"#, false, t0);
    assert_eq!(
        warnings(&e),
        ["g → /Ac/L1/Power: 99999 is above the maximum 23000; not applied"]
    );
    assert!(!sets(&e).contains_key("/Ac/L1/Power"));
    assert!(warnings(&d.on_message(SRC, "g", br#"{"p": 99999}"#, false, t0)).is_empty());
    d.on_message(SRC, "g", br#"{"p": 100}"#, false, t0);
    assert_eq!(
        warnings(&d.on_message(SRC, "g", br#"{"p": 99999}"#, false, t0)).len(),
        1
    );
    let e = d.on_message(SRC, "g", b"garbage", false, t0);
    assert_eq!(
        warnings(&e),
        ["g: 'garbage' is not a JSON object; its values are not applied"]
    );
    d.on_message(SRC, "g", br#"{"p": 1}"#, false, t0);
    let e = d.on_message(SRC, "g", &[0xff, 0xfe], false, t0);
    assert_eq!(warnings(&e), ["g: the payload is not UTF-8 text"]);
}

#[test]
fn a_changed_declaration_keeps_liveness_and_the_state_of_the_paths_it_still_maps() {
    let t0 = Instant::now();
    let mut d = device(METER);
    d.start(t0);
    d.on_message(SRC, "m/status", br#"{"power": 5, "energy": 2000}"#, false, t0);
    assert!(d.is_alive());
    // Only the name changed, and `/Ac/L1/Voltage` is no longer mapped.
    let changed = METER
        .replace("stale_after", "name = \"Boat meter\"\nstale_after")
        .replace("\"/Ac/L1/Voltage\" = \"voltage\"\n", "");
    let loaded = load(&changed);
    let declaration = loaded.devices.into_iter().next().unwrap().declaration;
    let service = catalog().get(&declaration.service).unwrap();
    let e = d.redeclare(declaration, service);
    assert!(d.is_alive());
    assert_eq!(connected(&e), None, "/Connected stays as it was: {e:?}");
    assert!(!e.contains(&Effect::Register), "{e:?}");
    assert_eq!(d.value("/Ac/Power"), Some(&Value::F64(5.0)));
    assert_eq!(d.value("/Ac/L1/Voltage"), None);
    // The counter guard still knows the last value: a 0 is held back.
    let e = d.on_message(SRC, "m/status", br#"{"energy": 0}"#, false, secs(t0, 1));
    assert!(!sets(&e).contains_key("/Ac/Energy/Forward"), "{e:?}");
    assert_eq!(d.value("/Ac/Energy/Forward"), Some(&Value::F64(2.0)));
    // Still stale after `stale_after` since the last sign of life.
    let e = d.on_tick(secs(t0, 31));
    assert_eq!(connected(&e), Some(false));
}

#[test]
fn a_changed_declaration_continues_the_integrated_counters() {
    let t0 = Instant::now();
    let text = r#"
[[device]]
id = "plug"
service = "acload"
[[device.source]]
topic = "plug"
"/Ac/Power" = "$"
"/Ac/Energy/Forward" = { integrate = "/Ac/Power" }
"#;
    let mut d = device(text);
    d.start(t0);
    d.on_message(SRC, "plug", b"3600", false, t0);
    d.on_message(SRC, "plug", b"3600", false, secs(t0, 60));
    let loaded = load(&text.replace("service = \"acload\"", "service = \"acload\"\nname = \"Plug\""));
    let declaration = loaded.devices.into_iter().next().unwrap().declaration;
    let service = catalog().get(&declaration.service).unwrap();
    d.redeclare(declaration, service);
    // 3600 W for 120 s = 0.12 kWh, the held power counted on.
    d.on_message(SRC, "plug", b"0", false, secs(t0, 120));
    let kwh = d.value("/Ac/Energy/Forward").and_then(Value::as_f64).unwrap();
    assert!((kwh - 0.12).abs() < 1e-9, "{kwh}");
}
