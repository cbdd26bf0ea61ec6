//! Every preset fed the payloads devices really send (verbatim from
//! `foreign-devices.md` where it quotes one), routed by topic as the daemon
//! will route them: the D-Bus paths, values in the catalog's units, signs,
//! counters and `/Connected`.

use std::time::{Duration, Instant};

use crate::dbus::Value;
use crate::mapped::device::MappedDevice;
use crate::mapped::effect::Effect;
use crate::mapped::routes::Routes;
use crate::mapped::test_support::{catalog, load};

/// One declared device, fed messages by topic.
struct Bench {
    device: MappedDevice,
    routes: Routes,
    now: Instant,
    connected: Option<bool>,
    effects: Vec<Effect>,
}

impl Bench {
    fn new(declaration: &str) -> Bench {
        let loaded = load(declaration);
        assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
        let d = loaded.devices.into_iter().next().unwrap().declaration;
        let routes = Routes::new([&d]);
        let mut device = MappedDevice::new(d.clone(), catalog().get(&d.service).unwrap());
        let now = Instant::now();
        let start = device.start(now);
        let mut bench = Bench {
            device,
            routes,
            now,
            connected: None,
            effects: Vec::new(),
        };
        bench.absorb(start);
        bench
    }

    fn absorb(&mut self, effects: Vec<Effect>) {
        for e in &effects {
            if let Effect::Connected(c) = e {
                self.connected = Some(*c);
            }
        }
        self.effects = effects;
    }

    /// A live message.
    fn send(&mut self, topic: &str, payload: &str) -> &mut Bench {
        self.deliver(topic, payload, false)
    }

    /// The broker's retained copy, at subscription.
    fn retained(&mut self, topic: &str, payload: &str) -> &mut Bench {
        self.deliver(topic, payload, true)
    }

    fn deliver(&mut self, topic: &str, payload: &str, retained: bool) -> &mut Bench {
        self.now += Duration::from_millis(100);
        let inputs: Vec<_> = self.routes.route(topic).map(|r| r.input).collect();
        assert!(!inputs.is_empty(), "no route for {topic}");
        for input in inputs {
            let e = self
                .device
                .on_message(input, topic, payload.as_bytes(), retained, self.now);
            self.absorb(e);
        }
        self
    }

    fn value(&self, path: &str) -> Value {
        self.device.value(path).cloned().unwrap_or(Value::Invalid)
    }

    fn float(&self, path: &str) -> f64 {
        match self.value(path) {
            Value::F64(x) => x,
            other => panic!("{path} is {other:?}, not a float"),
        }
    }

    fn has(&self, path: &str) -> bool {
        self.device.value(path).is_some()
    }

    fn warned(&self) -> Vec<String> {
        crate::mapped::device::tests::warnings(&self.effects)
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

// --- Shelly Pro 3EM (foreign-devices §1.1) ---

const EM0: &str = r#"{"id":0,"a_current":3.761,"a_voltage":121.7,"a_act_power":342.8,"a_aprt_power":457.5,"a_pf":-0.80,"b_current":8.109,"b_voltage":121.0,"b_act_power":957.3,"b_aprt_power":980.7,"b_pf":-0.98,"c_current":0.025,"c_voltage":121.7,"c_act_power":0.2,"c_aprt_power":3.1,"c_pf":-1.00,"n_current":null,"total_current":11.896,"total_act_power":1300.252,"total_aprt_power":1441.226, "user_calibrated_phase":[]}"#;
const EMDATA0: &str = r#"{"id":0,"a_total_act_energy":1075513.08,"a_total_act_ret_energy":0.00,"b_total_act_energy":1776542.72,"b_total_act_ret_energy":0.00,"c_total_act_energy":0.01,"c_total_act_ret_energy":0.00,"total_act":2852055.81, "total_act_ret":0.00}"#;

fn pro3em(service: &str) -> Bench {
    Bench::new(&format!(
        "[[device]]\nid = \"shelly\"\nservice = \"{service}\"\npreset = \"shelly-pro3em\"\ntopic = \"shellypro3em-08f9e0eb4dd0\"\n"
    ))
}

#[test]
fn shelly_pro3em_as_grid_meter() {
    let mut b = pro3em("grid");
    assert_eq!(b.connected, Some(false));
    b.retained("shellypro3em-08f9e0eb4dd0/online", "true");
    assert_eq!(b.connected, Some(true));
    b.send("shellypro3em-08f9e0eb4dd0/status/em:0", EM0);
    assert!(b.warned().is_empty(), "{:?}", b.warned());
    close(b.float("/Ac/Power"), 1300.252);
    close(b.float("/Ac/L1/Power"), 342.8);
    close(b.float("/Ac/L2/Power"), 957.3);
    close(b.float("/Ac/L3/Power"), 0.2);
    close(b.float("/Ac/L1/Voltage"), 121.7);
    close(b.float("/Ac/L2/Current"), 8.109);
    close(b.float("/Ac/L1/PowerFactor"), -0.8);
    close(b.float("/Ac/L3/PowerFactor"), -1.0);
    b.send("shellypro3em-08f9e0eb4dd0/status/emdata:0", EMDATA0);
    // Wh on the wire, kWh on D-Bus.
    assert_eq!(b.value("/Ac/Energy/Forward"), Value::F64(2852.05581));
    close(b.float("/Ac/L1/Energy/Forward"), 1075.51308);
    close(b.float("/Ac/L3/Energy/Forward"), 0.00001);
    // `total_act_ret` 0.00 on a meter that never exported: a counter's
    // first value is taken, 0 included.
    assert_eq!(b.value("/Ac/Energy/Reverse"), Value::F64(0.0));
    // Exporting: negative power stays negative on a grid meter.
    b.send(
        "shellypro3em-08f9e0eb4dd0/events/rpc",
        r#"{"src":"shellypro3em-08f9e0eb4dd0","dst":"shellypro3em-08f9e0eb4dd0/events","method":"NotifyStatus","params":{"ts":1700000000.00,"em:0":{"id":0,"a_act_power":-812.4,"total_act_power":-512.6}}}"#,
    );
    close(b.float("/Ac/Power"), -512.6);
    close(b.float("/Ac/L1/Power"), -812.4);
    close(b.float("/Ac/L2/Power"), 957.3); // not in the delta: unchanged
    b.send("shellypro3em-08f9e0eb4dd0/online", "false");
    assert_eq!(b.connected, Some(false));
    assert_eq!(b.value("/Ac/Power"), Value::Invalid);
}

#[test]
fn shelly_pro3em_as_pv_inverter_reports_production_positive() {
    let mut b = pro3em("pvinverter");
    b.send("shellypro3em-08f9e0eb4dd0/online", "true");
    // The same meter measuring an inverter: production is negative power
    // and returned energy on the Shelly.
    let producing = EM0
        .replace("\"a_act_power\":342.8", "\"a_act_power\":-342.8")
        .replace(
            "\"total_act_power\":1300.252",
            "\"total_act_power\":-1300.252",
        )
        .replace("\"a_current\":3.761", "\"a_current\":-3.761");
    b.send("shellypro3em-08f9e0eb4dd0/status/em:0", &producing);
    close(b.float("/Ac/Power"), 1300.252);
    close(b.float("/Ac/L1/Power"), 342.8);
    close(b.float("/Ac/L1/Current"), 3.761);
    // No power factor on a pvinverter service: left out, not refused.
    assert!(!b.has("/Ac/L1/PowerFactor"));
    let returned = EMDATA0
        .replace("\"total_act_ret\":0.00", "\"total_act_ret\":12345.6")
        .replace(
            "\"a_total_act_ret_energy\":0.00",
            "\"a_total_act_ret_energy\":12345.6",
        );
    b.send("shellypro3em-08f9e0eb4dd0/status/emdata:0", &returned);
    // Returned energy is what the inverter produced: Forward on Venus.
    close(b.float("/Ac/Energy/Forward"), 12.3456);
    close(b.float("/Ac/L1/Energy/Forward"), 12.3456);
    assert!(b.warned().is_empty(), "{:?}", b.warned());
}

// --- Shelly Pro EM / EM Gen3 (em1, foreign-devices §1.1) ---

const EM1: &str = r#"{"id":1,"current":2.681,"voltage":236.7,"act_power":-607.3,"aprt_power":636.0,"pf":0.95,"freq":50.0,"calibration":"factory"}"#;

#[test]
fn shelly_em_channel_as_grid_meter_on_its_phase() {
    let mut b = Bench::new(
        "[[device]]\nid = \"em\"\nservice = \"grid\"\npreset = \"shelly-em\"\ntopic = \"shellyproem50\"\nchannel = \"1\"\nphase = \"L2\"\n",
    );
    b.send("shellyproem50/status/em1:1", EM1);
    assert_eq!(b.connected, Some(true));
    // Negative is export.
    close(b.float("/Ac/Power"), -607.3);
    close(b.float("/Ac/L2/Power"), -607.3);
    close(b.float("/Ac/L2/Voltage"), 236.7);
    close(b.float("/Ac/L2/Current"), 2.681);
    close(b.float("/Ac/L2/PowerFactor"), 0.95);
    close(b.float("/Ac/Frequency"), 50.0);
    assert!(!b.has("/Ac/L1/Power"));
    b.send(
        "shellyproem50/status/em1data:1",
        r#"{"id":1,"total_act_energy":16426.63,"total_act_ret_energy":2051.42}"#,
    );
    close(b.float("/Ac/Energy/Forward"), 16.42663);
    close(b.float("/Ac/Energy/Reverse"), 2.05142);
    close(b.float("/Ac/L2/Energy/Reverse"), 2.05142);
}

#[test]
fn shelly_em_as_pv_inverter_takes_abs_of_power_and_current() {
    let mut b = Bench::new(
        "[[device]]\nid = \"em\"\nservice = \"pvinverter\"\npreset = \"shelly-em\"\ntopic = \"shellyproem50\"\n",
    );
    b.send("shellyproem50/status/em1:0", EM1);
    close(b.float("/Ac/Power"), 607.3);
    close(b.float("/Ac/L1/Power"), 607.3);
    close(b.float("/Ac/L1/Current"), 2.681);
}

// --- Shelly Plus 1PM (switch:0, foreign-devices §1.1, the Go converter's capture) ---

#[test]
fn shelly_pm_capture_of_a_plus_1pm() {
    let mut b = Bench::new(
        "[[device]]\nid = \"pm\"\nservice = \"acload\"\npreset = \"shelly-pm\"\ntopic = \"shellies/plus1pm\"\n",
    );
    b.send("shellies/plus1pm/online", "true");
    assert_eq!(b.connected, Some(true));
    b.send(
        "shellies/plus1pm/events/rpc",
        r#"{"src":"shellyplus1pm-4417939341dc","dst":"shellies/plus1pm/events","method":"NotifyStatus","params":{"ts":1661517385.44,"switch:0":{"id":0,"voltage":232.7}}}"#,
    );
    close(b.float("/Ac/L1/Voltage"), 232.7);
    assert!(
        !b.has("/Ac/Power"),
        "a delta without apower leaves power alone"
    );
    b.send(
        "shellies/plus1pm/status/switch:0",
        r#"{"id":0, "source":"init", "output":false, "apower":0.0, "voltage":232.7, "current":0.000, "aenergy":{"total":0.000,"by_minute":[0.000,0.000,0.000],"minute_ts":1661517385},"temperature":{"tC":39.2, "tF":102.5}}"#,
    );
    close(b.float("/Ac/Power"), 0.0);
    close(b.float("/Ac/L1/Current"), 0.0);
    close(b.float("/Ac/Energy/Forward"), 0.0); // a counter's first value, 0 included
    b.send(
        "shellies/plus1pm/status/switch:0",
        r#"{"id":0,"apower":123.4,"voltage":231.9,"current":0.561,"freq":50.01,"aenergy":{"total":4521.337},"ret_aenergy":{"total":0.000}}"#,
    );
    close(b.float("/Ac/Energy/Forward"), 4.521337);
    close(b.float("/Ac/Frequency"), 50.01);
    b.send("shellies/plus1pm/online", "false");
    assert_eq!(b.connected, Some(false));
}

#[test]
fn shelly_pm_mini_as_pv_inverter_counts_returned_energy_as_produced() {
    let mut b = Bench::new(
        "[[device]]\nid = \"pv\"\nservice = \"pvinverter\"\npreset = \"shelly-pm\"\ntopic = \"shellypmminig3-84fce63e6cb4\"\ncomponent = \"pm1:0\"\n",
    );
    b.send(
        "shellypmminig3-84fce63e6cb4/status/pm1:0",
        r#"{"id":0,"voltage":229.4,"current":1.912,"apower":-421.8,"freq":50.0,"aenergy":{"total":12.5},"ret_aenergy":{"total":98765.4}}"#,
    );
    close(b.float("/Ac/Power"), 421.8);
    close(b.float("/Ac/L1/Current"), 1.912);
    close(b.float("/Ac/Energy/Forward"), 98.7654);
}

// --- Shelly Gen1 3EM / EM (plain values, foreign-devices §1.2) ---

#[test]
fn shelly_gen1_3em_plain_values_per_phase_with_totals_summed() {
    let mut b = Bench::new(
        "[[device]]\nid = \"em3\"\nservice = \"grid\"\npreset = \"shelly-gen1-em\"\ntopic = \"shellies/shellies/shellyem3\"\n",
    );
    b.retained("shellies/shellies/shellyem3/online", "true");
    assert_eq!(b.connected, Some(true));
    // The capture in the research notes.
    b.send("shellies/shellies/shellyem3/emeter/0/power", "0.00");
    b.send("shellies/shellies/shellyem3/emeter/0/voltage", "230.35");
    b.send("shellies/shellies/shellyem3/emeter/0/total", "0.0");
    close(b.float("/Ac/L1/Power"), 0.0);
    close(b.float("/Ac/L1/Voltage"), 230.35);
    close(b.float("/Ac/L1/Energy/Forward"), 0.0); // a counter's first value, 0 included
    assert!(!b.has("/Ac/Power"), "no total before every phase reported");
    b.send("shellies/shellies/shellyem3/emeter/1/power", "1204.51");
    b.send("shellies/shellies/shellyem3/emeter/2/power", "-310.2");
    close(b.float("/Ac/Power"), 894.31);
    for (i, wh) in [(0, "1075513.0"), (1, "1776542.7"), (2, "10.0")] {
        b.send(&format!("shellies/shellies/shellyem3/emeter/{i}/total"), wh);
        b.send(
            &format!("shellies/shellies/shellyem3/emeter/{i}/total_returned"),
            "2000.0",
        );
    }
    close(b.float("/Ac/Energy/Forward"), 2852.0657);
    close(b.float("/Ac/Energy/Reverse"), 6.0);
    b.send("shellies/shellies/shellyem3/emeter/2/pf", "-0.41");
    close(b.float("/Ac/L3/PowerFactor"), -0.41);
}

#[test]
fn shelly_gen1_3em_as_pv_inverter_sums_the_returned_energy_as_produced() {
    let mut b = Bench::new(
        "[[device]]\nid = \"em3\"\nservice = \"pvinverter\"\npreset = \"shelly-gen1-em\"\ntopic = \"shellies/shellyem3-ECFABC\"\n",
    );
    for i in 0..3 {
        b.send(
            &format!("shellies/shellyem3-ECFABC/emeter/{i}/power"),
            "-100.5",
        );
        b.send(
            &format!("shellies/shellyem3-ECFABC/emeter/{i}/total"),
            "3.0",
        );
        b.send(
            &format!("shellies/shellyem3-ECFABC/emeter/{i}/total_returned"),
            "1000.0",
        );
    }
    close(b.float("/Ac/L1/Power"), 100.5);
    close(b.float("/Ac/Power"), 301.5);
    close(b.float("/Ac/L2/Energy/Forward"), 1.0);
    close(b.float("/Ac/Energy/Forward"), 3.0);
}

#[test]
fn shelly_gen1_em_one_channel() {
    let mut b = Bench::new(
        "[[device]]\nid = \"em\"\nservice = \"acload\"\npreset = \"shelly-gen1-em\"\ntopic = \"shellies/shellyem-B9A5C1\"\nchannel = \"1\"\n",
    );
    b.send("shellies/shellyem-B9A5C1/emeter/1/power", "412.07");
    b.send("shellies/shellyem-B9A5C1/emeter/1/total", "52341.9");
    close(b.float("/Ac/Power"), 412.07);
    close(b.float("/Ac/L1/Power"), 412.07);
    close(b.float("/Ac/Energy/Forward"), 52.3419);
    assert!(b
        .routes
        .route("shellies/shellyem-B9A5C1/emeter/0/power")
        .next()
        .is_none());
}

// --- Tasmota (foreign-devices §1.3) ---

const TASMOTA_SENSOR: &str = r#"{"Time":"2023-05-19T20:52:56","ENERGY":{"TotalStartTime":"2022-03-20T15:20:48","Total":514.153,"Yesterday":1.495,"Today":0.537,"Period":0,"Power":56,"ApparentPower":92,"ReactivePower":73,"Factor":0.61,"Voltage":234,"Current":0.392}}"#;

#[test]
fn tasmota_plug_on_the_fridge() {
    let mut b = Bench::new(
        "[[device]]\nid = \"fridge\"\nservice = \"acload\"\npreset = \"tasmota-energy\"\ntopic = \"tasmota_8A1B2C\"\n",
    );
    b.retained("tele/tasmota_8A1B2C/LWT", "Online");
    assert_eq!(b.connected, Some(true));
    b.send("tele/tasmota_8A1B2C/SENSOR", TASMOTA_SENSOR);
    close(b.float("/Ac/Power"), 56.0);
    close(b.float("/Ac/L1/Power"), 56.0);
    close(b.float("/Ac/L1/Voltage"), 234.0);
    close(b.float("/Ac/L1/Current"), 0.392);
    // Total is kWh already.
    close(b.float("/Ac/Energy/Forward"), 514.153);
    b.send(
        "stat/tasmota_8A1B2C/STATUS10",
        &format!(
            "{{\"StatusSNS\":{}}}",
            TASMOTA_SENSOR.replace("\"Power\":56", "\"Power\":61")
        ),
    );
    close(b.float("/Ac/Power"), 61.0);
    b.send("tele/tasmota_8A1B2C/LWT", "Offline");
    assert_eq!(b.connected, Some(false));
}

#[test]
fn tasmota_multi_channel_arrays_give_their_first_element() {
    let mut b = Bench::new(
        "[[device]]\nid = \"dual\"\nservice = \"acload\"\npreset = \"tasmota-energy\"\ntopic = \"sonoff_dual\"\n",
    );
    b.send(
        "tele/sonoff_dual/SENSOR",
        r#"{"ENERGY":{"Power":[52,5],"Voltage":235,"Current":[0.278,0.044]}}"#,
    );
    close(b.float("/Ac/Power"), 52.0);
    close(b.float("/Ac/L1/Voltage"), 235.0);
    close(b.float("/Ac/L1/Current"), 0.278);
}

// --- OpenDTU (foreign-devices §1.4) ---

fn opendtu() -> Bench {
    Bench::new(
        "[[device]]\nid = \"hm800\"\nservice = \"pvinverter\"\npreset = \"opendtu\"\nserial = \"116181234567\"\nphase = \"L2\"\n",
    )
}

#[test]
fn opendtu_base_topic_as_opendtu_writes_it_with_its_trailing_slash() {
    let mut b = Bench::new(
        "[[device]]\nid = \"hm800\"\nservice = \"pvinverter\"\npreset = \"opendtu\"\ntopic = \"solar/\"\nserial = \"116181234567\"\n",
    );
    b.send("solar/116181234567/0/power", "612.4");
    close(b.float("/Ac/Power"), 612.4);
}

#[test]
fn opendtu_inverter_by_day() {
    let mut b = opendtu();
    b.retained("solar/dtu/status", "online");
    b.retained("solar/116181234567/status/reachable", "1");
    assert_eq!(b.connected, Some(true));
    b.send("solar/116181234567/0/power", "612.4");
    b.send("solar/116181234567/0/voltage", "231.2");
    b.send("solar/116181234567/0/current", "2.65");
    b.send("solar/116181234567/0/yieldtotal", "465.294");
    // yieldday is in Wh and no total: not read at all.
    assert!(b
        .routes
        .route("solar/116181234567/0/yieldday")
        .next()
        .is_none());
    b.send("solar/116181234567/status/producing", "1");
    close(b.float("/Ac/Power"), 612.4);
    close(b.float("/Ac/L2/Power"), 612.4);
    close(b.float("/Ac/L2/Voltage"), 231.2);
    close(b.float("/Ac/L2/Current"), 2.65);
    close(b.float("/Ac/Energy/Forward"), 465.294);
    close(b.float("/Ac/L2/Energy/Forward"), 465.294);
    assert_eq!(b.value("/StatusCode"), Value::I32(7));
    assert!(b.warned().is_empty(), "{:?}", b.warned());
}

#[test]
fn opendtu_inverter_at_night_zeroes_power_and_keeps_its_counter() {
    let mut b = opendtu();
    b.send("solar/dtu/status", "online");
    b.send("solar/116181234567/status/reachable", "1");
    b.send("solar/116181234567/0/power", "12.0");
    b.send("solar/116181234567/0/yieldtotal", "465.294");
    b.send("solar/116181234567/status/producing", "0");
    assert_eq!(b.value("/StatusCode"), Value::I32(8));
    b.send("solar/116181234567/status/reachable", "0");
    assert_eq!(b.connected, Some(false));
    close(b.float("/Ac/Power"), 0.0);
    close(b.float("/Ac/L2/Power"), 0.0);
    // Every 5 s OpenDTU repeats the inverter's status: it stays disconnected.
    for _ in 0..3 {
        b.send("solar/116181234567/status/limit_absolute", "800.00");
        b.send("solar/116181234567/status/reachable", "0");
        b.send("solar/116181234567/status/producing", "0");
        assert_eq!(b.connected, Some(false));
    }
    // "Zero runtime data" publishes zeros once, and zeroes the total: the
    // fresh values bring it back, power stays 0, the counter is not applied.
    b.send("solar/116181234567/0/power", "0");
    b.send("solar/116181234567/0/yieldtotal", "0");
    assert_eq!(b.connected, Some(true));
    close(b.float("/Ac/Power"), 0.0);
    close(b.float("/Ac/L2/Power"), 0.0);
    close(b.float("/Ac/Energy/Forward"), 465.294);
    b.send("solar/116181234567/status/reachable", "0");
    assert_eq!(b.connected, Some(false));
    close(b.float("/Ac/Power"), 0.0);
    close(b.float("/Ac/Energy/Forward"), 465.294);
    // Morning.
    b.send("solar/116181234567/status/reachable", "1");
    assert_eq!(b.connected, Some(true));
    b.send("solar/116181234567/0/yieldtotal", "465.301");
    close(b.float("/Ac/Energy/Forward"), 465.301);
}

#[test]
fn opendtu_retained_values_of_a_sleeping_inverter_are_not_live() {
    let mut b = opendtu();
    b.retained("solar/116181234567/0/power", "301.7");
    b.retained("solar/116181234567/status/reachable", "0");
    b.retained("solar/dtu/status", "online");
    assert_eq!(b.connected, Some(false));
    close(b.float("/Ac/Power"), 0.0);
}

#[test]
fn opendtu_power_limit_goes_to_the_command_topic_not_retained() {
    let mut b = opendtu();
    let outcome = b
        .device
        .on_write("/Ac/PowerLimit", &Value::F64(250.0), b.now);
    let crate::mapped::WriteOutcome::Forwarded(e) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(e.contains(&Effect::Publish(crate::mapped::Publish {
        topic: "solar/116181234567/cmd/limit_nonpersistent_absolute".into(),
        payload: "250".into(),
        retain: false,
    })));
}

// --- AhoyDTU (foreign-devices §1.5; values from the Ahoy manual's table) ---

#[test]
fn ahoydtu_inverter_by_name() {
    let mut b = Bench::new(
        "[[device]]\nid = \"balcony\"\nservice = \"pvinverter\"\npreset = \"ahoydtu\"\ntopic = \"inverter\"\nserial = \"HM600\"\n",
    );
    b.retained("inverter/HM600/available", "2");
    assert_eq!(b.connected, Some(true));
    b.send("inverter/HM600/ch0/U_AC", "233.300");
    b.send("inverter/HM600/ch0/I_AC", "0.300");
    b.send("inverter/HM600/ch0/P_AC", "71.000");
    b.send("inverter/HM600/ch0/YieldTotal", "465.294");
    close(b.float("/Ac/L1/Voltage"), 233.3);
    close(b.float("/Ac/L1/Current"), 0.3);
    close(b.float("/Ac/Power"), 71.0);
    close(b.float("/Ac/Energy/Forward"), 465.294);
    b.send("inverter/HM600/available", "0");
    assert_eq!(b.connected, Some(false));
    close(b.float("/Ac/Power"), 0.0);
    b.send("inverter/HM600/available", "1");
    assert_eq!(b.connected, Some(true));
}

// --- Zigbee2MQTT (foreign-devices §1.6) ---

#[test]
fn zigbee2mqtt_climate_sensor() {
    let mut b = Bench::new(
        "[[device]]\nid = \"fridge\"\nservice = \"temperature\"\npreset = \"zigbee2mqtt\"\ntopic = \"zigbee2mqtt/fridge\"\nsettings = { \"/TemperatureType\" = 1 }\n",
    );
    b.send(
        "zigbee2mqtt/fridge",
        r#"{"battery":100,"humidity":63.84,"linkquality":102,"temperature":27.13,"voltage":3000}"#,
    );
    assert_eq!(b.connected, Some(true));
    close(b.float("/Temperature"), 27.13);
    close(b.float("/Humidity"), 63.84);
    // mV on the wire, V on D-Bus.
    close(b.float("/BatteryVoltage"), 3.0);
    b.send("zigbee2mqtt/fridge/availability", r#"{"state":"offline"}"#);
    assert_eq!(b.connected, Some(false));
    assert_eq!(b.value("/Temperature"), Value::Invalid);
    b.send("zigbee2mqtt/fridge/availability", "online");
    assert_eq!(b.connected, Some(true));
    b.send(
        "zigbee2mqtt/fridge",
        r#"{"temperature":4.2,"pressure":1012.6}"#,
    );
    close(b.float("/Temperature"), 4.2);
    close(b.float("/Pressure"), 1012.6);
}

// --- ESPHome (foreign-devices §1.7) ---

#[test]
fn esphome_sensors_named_per_path() {
    let mut b = Bench::new(
        "[[device]]\nid = \"outside\"\nservice = \"temperature\"\npreset = \"esphome\"\ntopic = \"mynode\"\nsensors = { \"/Temperature\" = \"outdoor_temperature\", \"/Humidity\" = \"outdoor_humidity\" }\n",
    );
    b.retained("mynode/status", "online");
    b.retained("mynode/sensor/outdoor_temperature/state", "21.4");
    assert_eq!(b.connected, Some(true));
    close(b.float("/Temperature"), 21.4);
    b.send("mynode/sensor/outdoor_humidity/state", "55.2");
    close(b.float("/Humidity"), 55.2);
    b.send("mynode/sensor/outdoor_temperature/state", "nan");
    assert_eq!(b.value("/Temperature"), Value::Invalid);
    b.send("mynode/status", "offline");
    assert_eq!(b.connected, Some(false));
}

#[test]
fn esphome_sensor_paths_are_checked_as_the_users_own() {
    let loaded = load(
        "[[device]]\nid = \"n\"\nservice = \"tank\"\npreset = \"esphome\"\ntopic = \"n\"\nsensors = { \"/Levl\" = \"level\" }\n",
    );
    assert!(loaded.devices.is_empty());
    assert_eq!(
        loaded.diagnostics[0].to_string(),
        "devices.toml:6:13: device 'n': '/Levl' is not a path of tank (did you mean '/Level'?)"
    );
}
