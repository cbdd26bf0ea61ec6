//! Mapped devices on D-Bus: every preset fed the payloads devices really
//! send (research notes, foreign-devices.md), through a real broker, checked
//! on a real bus with the settings service: values in the catalog's units,
//! signs, `/Connected`, counters, instances and names.
//!
//! One daemon serves many devices per test, so the file stays fast. Each
//! device's first message is its retained availability (as Shelly, Tasmota
//! and OpenDTU keep it): `/Connected` 1 then proves the daemon's
//! subscriptions are in place before live values are published.

use super::world::*;
use zbus::OwnedVariant;

/// `com.victronenergy.<service>.mqtt_<id>`.
pub fn svc(service: &str, id: &str) -> String {
    format!("com.victronenergy.{service}.mqtt_{id}")
}

/// A world whose data directory holds `devices` as `devices.toml`; the
/// daemon is not started.
pub async fn world_declaring(devices: &str) -> World {
    let world = World::start_without_daemon().await;
    std::fs::write(world.data_dir().join("devices.toml"), devices).expect("devices.toml");
    world
}

/// A client publishing as the devices do.
pub async fn feeder(world: &World) -> TestDevice {
    TestDevice::connect_with(world.port(), "mapped-feeder", None, &[]).await
}

pub fn is_invalid(v: &OwnedVariant) -> bool {
    v.value_signature().to_string() == "ai"
}

fn as_f64(v: &OwnedVariant) -> Option<f64> {
    f64::try_from(v.try_clone().ok()?)
        .ok()
        .or_else(|| i32::try_from(v.try_clone().ok()?).ok().map(f64::from))
}

/// Waits until `path` of `service` is `want` (within 1e-6).
pub async fn expect_f64(world: &World, service: &str, path: &str, want: f64) {
    wait_name_owned(&world.conn, service).await;
    wait_for_value(&world.conn, service, path, |v| {
        as_f64(v).is_some_and(|x| (x - want).abs() < 1e-6)
    })
    .await;
}

/// Waits until `path` of `service` is invalid.
pub async fn expect_invalid(world: &World, service: &str, path: &str) {
    wait_name_owned(&world.conn, service).await;
    wait_for_value(&world.conn, service, path, is_invalid).await;
}

/// Waits until `/Connected` of `service` is `want`.
pub async fn expect_connected(world: &World, service: &str, want: bool) {
    wait_name_owned(&world.conn, service).await;
    wait_for_value(&world.conn, service, "/Connected", |v| {
        i32::try_from(v.try_clone().expect("clone")).ok() == Some(i32::from(want))
    })
    .await;
}

/// Waits until the text `path` of `service` is `want`.
pub async fn expect_text(world: &World, service: &str, path: &str, want: &str) {
    wait_name_owned(&world.conn, service).await;
    wait_for_value(&world.conn, service, path, |v| {
        String::try_from(v.try_clone().expect("clone"))
            .ok()
            .as_deref()
            == Some(want)
    })
    .await;
}

/// The value of `path` now.
pub async fn value(world: &World, service: &str, path: &str) -> OwnedVariant {
    get_value(&world.conn, service, path).await
}

const EM0: &str = r#"{"id":0,"a_current":3.761,"a_voltage":121.7,"a_act_power":342.8,"a_aprt_power":457.5,"a_pf":-0.80,"b_current":8.109,"b_voltage":121.0,"b_act_power":957.3,"b_aprt_power":980.7,"b_pf":-0.98,"c_current":0.025,"c_voltage":121.7,"c_act_power":0.2,"c_aprt_power":3.1,"c_pf":-1.00,"n_current":null,"total_current":11.896,"total_act_power":1300.252,"total_aprt_power":1441.226, "user_calibrated_phase":[]}"#;
const EMDATA0: &str = r#"{"id":0,"a_total_act_energy":1075513.08,"a_total_act_ret_energy":0.00,"b_total_act_energy":1776542.72,"b_total_act_ret_energy":0.00,"c_total_act_energy":0.01,"c_total_act_ret_energy":0.00,"total_act":2852055.81, "total_act_ret":0.00}"#;
const TASMOTA_SENSOR: &str = r#"{"Time":"2023-05-19T20:52:56","ENERGY":{"TotalStartTime":"2022-03-20T15:20:48","Total":514.153,"Yesterday":1.495,"Today":0.537,"Period":0,"Power":56,"ApparentPower":92,"ReactivePower":73,"Factor":0.61,"Voltage":234,"Current":0.392}}"#;

/// Every preset, one device each, in one daemon.
const EVERY_PRESET: &str = r#"
[[device]]
id = "grid_3em"
service = "grid"
preset = "shelly-pro3em"
topic = "shellypro3em-08f9e0eb4dd0"
name = "Shelly Pro 3EM"
instance = 40

[[device]]
id = "pv_3em"
service = "pvinverter"
preset = "shelly-pro3em"
topic = "shellypro3em-pv"

[[device]]
id = "em_l2"
service = "grid"
preset = "shelly-em"
topic = "shellyproem50"
channel = "1"
phase = "L2"

[[device]]
id = "pm_load"
service = "acload"
preset = "shelly-pm"
topic = "shellies/plus1pm"

[[device]]
id = "pm_pv"
service = "pvinverter"
preset = "shelly-pm"
topic = "shellypmminig3-84fce63e6cb4"
component = "pm1:0"

[[device]]
id = "em3_gen1"
service = "grid"
preset = "shelly-gen1-em"
topic = "shellies/shellies/shellyem3"

[[device]]
id = "plug"
service = "acload"
preset = "tasmota-energy"
topic = "tasmota_8A1B2C"

[[device]]
id = "hm800"
service = "pvinverter"
preset = "opendtu"
serial = "116181234567"
phase = "L2"
const = { "/Ac/MaxPower" = 800 }

[[device]]
id = "balcony"
service = "pvinverter"
preset = "ahoydtu"
topic = "inverter"
serial = "HM600"

[[device]]
id = "fridge"
service = "temperature"
preset = "zigbee2mqtt"
topic = "zigbee2mqtt/fridge"
settings = { "/TemperatureType" = 1 }

[[device]]
id = "outside"
service = "temperature"
preset = "esphome"
topic = "mynode"
sensors = { "/Temperature" = "outdoor_temperature", "/Humidity" = "outdoor_humidity" }
"#;

#[tokio::test]
async fn every_preset_served_with_the_payloads_devices_send() {
    let mut world = world_declaring(EVERY_PRESET).await;
    let feed = feeder(&world).await;
    // OpenDTU retains everything: what the broker holds from the evening
    // before is shown, but a sleeping inverter is not live.
    feed.publish_retained("solar/116181234567/0/power", "301.7")
        .await;
    feed.publish_retained("solar/116181234567/status/reachable", "0")
        .await;
    feed.publish_retained("solar/dtu/status", "online").await;
    world.start_daemon().await;

    // --- Shelly Pro 3EM as grid meter ---
    let s = svc("grid", "grid_3em");
    feed.publish_retained("shellypro3em-08f9e0eb4dd0/online", "true")
        .await;
    expect_connected(&world, &s, true).await;
    expect_text(&world, &s, "/CustomName", "Shelly Pro 3EM").await;
    expect_f64(&world, &s, "/DeviceInstance", 40.0).await;
    expect_text(
        &world,
        &s,
        "/Mgmt/Connection",
        "MQTT shelly-pro3em shellypro3em-08f9e0eb4dd0",
    )
    .await;
    feed.publish("shellypro3em-08f9e0eb4dd0/status/em:0", EM0)
        .await;
    expect_f64(&world, &s, "/Ac/Power", 1300.252).await;
    expect_f64(&world, &s, "/Ac/L1/Power", 342.8).await;
    expect_f64(&world, &s, "/Ac/L2/Power", 957.3).await;
    expect_f64(&world, &s, "/Ac/L3/Power", 0.2).await;
    expect_f64(&world, &s, "/Ac/L1/Voltage", 121.7).await;
    expect_f64(&world, &s, "/Ac/L2/Current", 8.109).await;
    expect_f64(&world, &s, "/Ac/L1/PowerFactor", -0.8).await;
    feed.publish("shellypro3em-08f9e0eb4dd0/status/emdata:0", EMDATA0)
        .await;
    // Wh on the wire, kWh on D-Bus; a counter's first value is taken, 0
    // included (`total_act_ret` 0.00: never exported).
    expect_f64(&world, &s, "/Ac/Energy/Forward", 2852.05581).await;
    expect_f64(&world, &s, "/Ac/L1/Energy/Forward", 1075.51308).await;
    expect_f64(&world, &s, "/Ac/Energy/Reverse", 0.0).await;
    // Exporting, as an RPC delta: negative on a grid meter, the rest kept.
    feed.publish(
        "shellypro3em-08f9e0eb4dd0/events/rpc",
        r#"{"src":"shellypro3em-08f9e0eb4dd0","dst":"shellypro3em-08f9e0eb4dd0/events","method":"NotifyStatus","params":{"ts":1700000000.00,"em:0":{"id":0,"a_act_power":-812.4,"total_act_power":-512.6}}}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", -512.6).await;
    expect_f64(&world, &s, "/Ac/L1/Power", -812.4).await;
    expect_f64(&world, &s, "/Ac/L2/Power", 957.3).await;
    feed.publish("shellypro3em-08f9e0eb4dd0/online", "false")
        .await;
    expect_connected(&world, &s, false).await;
    expect_invalid(&world, &s, "/Ac/Power").await;

    // --- Shelly Pro 3EM measuring an inverter: production positive ---
    let s = svc("pvinverter", "pv_3em");
    feed.publish_retained("shellypro3em-pv/online", "true")
        .await;
    expect_connected(&world, &s, true).await;
    let producing = EM0
        .replace("\"a_act_power\":342.8", "\"a_act_power\":-342.8")
        .replace(
            "\"total_act_power\":1300.252",
            "\"total_act_power\":-1300.252",
        )
        .replace("\"a_current\":3.761", "\"a_current\":-3.761");
    feed.publish("shellypro3em-pv/status/em:0", &producing)
        .await;
    expect_f64(&world, &s, "/Ac/Power", 1300.252).await;
    expect_f64(&world, &s, "/Ac/L1/Power", 342.8).await;
    expect_f64(&world, &s, "/Ac/L1/Current", 3.761).await;
    let returned = EMDATA0
        .replace("\"total_act_ret\":0.00", "\"total_act_ret\":12345.6")
        .replace(
            "\"a_total_act_ret_energy\":0.00",
            "\"a_total_act_ret_energy\":12345.6",
        );
    feed.publish("shellypro3em-pv/status/emdata:0", &returned)
        .await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 12.3456).await;
    expect_f64(&world, &s, "/Ac/L1/Energy/Forward", 12.3456).await;
    // /Position is a setting, default 0.
    expect_f64(&world, &s, "/Position", 0.0).await;

    // --- Shelly Pro EM channel 1 on L2 ---
    let s = svc("grid", "em_l2");
    feed.publish_retained("shellyproem50/online", "true").await;
    expect_connected(&world, &s, true).await;
    feed.publish(
        "shellyproem50/status/em1:1",
        r#"{"id":1,"current":2.681,"voltage":236.7,"act_power":-607.3,"aprt_power":636.0,"pf":0.95,"freq":50.0,"calibration":"factory"}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", -607.3).await;
    expect_f64(&world, &s, "/Ac/L2/Power", -607.3).await;
    expect_f64(&world, &s, "/Ac/L2/Voltage", 236.7).await;
    expect_f64(&world, &s, "/Ac/Frequency", 50.0).await;
    assert!(is_invalid(&value(&world, &s, "/Ac/L1/Power").await));
    feed.publish(
        "shellyproem50/status/em1data:1",
        r#"{"id":1,"total_act_energy":16426.63,"total_act_ret_energy":2051.42}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 16.42663).await;
    expect_f64(&world, &s, "/Ac/L2/Energy/Reverse", 2.05142).await;

    // --- Shelly Plus 1PM: the capture from the research notes ---
    let s = svc("acload", "pm_load");
    feed.publish_retained("shellies/plus1pm/online", "true")
        .await;
    expect_connected(&world, &s, true).await;
    feed.publish(
        "shellies/plus1pm/events/rpc",
        r#"{"src":"shellyplus1pm-4417939341dc","dst":"shellies/plus1pm/events","method":"NotifyStatus","params":{"ts":1661517385.44,"switch:0":{"id":0,"voltage":232.7}}}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/L1/Voltage", 232.7).await;
    assert!(is_invalid(&value(&world, &s, "/Ac/Power").await));
    feed.publish(
        "shellies/plus1pm/status/switch:0",
        r#"{"id":0,"apower":123.4,"voltage":231.9,"current":0.561,"freq":50.01,"aenergy":{"total":4521.337},"ret_aenergy":{"total":0.000}}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", 123.4).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 4.521337).await;
    // A counter going backwards (a reboot sends 0, then a lower value) is not applied.
    feed.publish(
        "shellies/plus1pm/status/switch:0",
        r#"{"id":0,"apower":120.0,"aenergy":{"total":12.0}}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", 120.0).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 4.521337).await;

    // --- Shelly PM Mini as PV inverter ---
    let s = svc("pvinverter", "pm_pv");
    feed.publish_retained("shellypmminig3-84fce63e6cb4/online", "true")
        .await;
    expect_connected(&world, &s, true).await;
    feed.publish(
        "shellypmminig3-84fce63e6cb4/status/pm1:0",
        r#"{"id":0,"voltage":229.4,"current":1.912,"apower":-421.8,"freq":50.0,"aenergy":{"total":12.5},"ret_aenergy":{"total":98765.4}}"#,
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", 421.8).await;
    expect_f64(&world, &s, "/Ac/L1/Current", 1.912).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 98.7654).await;

    // --- Shelly Gen1 3EM: plain values per phase, totals summed ---
    let s = svc("grid", "em3_gen1");
    feed.publish_retained("shellies/shellies/shellyem3/online", "true")
        .await;
    expect_connected(&world, &s, true).await;
    for (topic, payload) in [
        ("emeter/0/power", "0.00"),
        ("emeter/0/voltage", "230.35"),
        ("emeter/1/power", "1204.51"),
        ("emeter/2/power", "-310.2"),
        ("emeter/0/total", "1075513.0"),
        ("emeter/1/total", "1776542.7"),
        ("emeter/2/total", "10.0"),
    ] {
        feed.publish(&format!("shellies/shellies/shellyem3/{topic}"), payload)
            .await;
    }
    expect_f64(&world, &s, "/Ac/L1/Voltage", 230.35).await;
    expect_f64(&world, &s, "/Ac/Power", 894.31).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 2852.0657).await;

    // --- Tasmota plug ---
    let s = svc("acload", "plug");
    feed.publish_retained("tele/tasmota_8A1B2C/LWT", "Online")
        .await;
    expect_connected(&world, &s, true).await;
    feed.publish("tele/tasmota_8A1B2C/SENSOR", TASMOTA_SENSOR)
        .await;
    expect_f64(&world, &s, "/Ac/Power", 56.0).await;
    expect_f64(&world, &s, "/Ac/L1/Voltage", 234.0).await;
    expect_f64(&world, &s, "/Ac/L1/Current", 0.392).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 514.153).await;
    feed.publish(
        "stat/tasmota_8A1B2C/STATUS10",
        &format!(
            "{{\"StatusSNS\":{}}}",
            TASMOTA_SENSOR.replace("\"Power\":56", "\"Power\":61")
        ),
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", 61.0).await;
    // What is not understood changes nothing (a warning in the log); the
    // next good message applies.
    for garbage in [
        "{not json",
        "",
        "[1,2]",
        "\u{0}\u{ff}",
        "{\"ENERGY\":{\"Power\":\"nan\"}}",
    ] {
        feed.publish("tele/tasmota_8A1B2C/SENSOR", garbage).await;
    }
    feed.publish(
        "tele/tasmota_8A1B2C/SENSOR",
        &TASMOTA_SENSOR.replace("\"Power\":56", "\"Power\":63"),
    )
    .await;
    expect_f64(&world, &s, "/Ac/Power", 63.0).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 514.153).await;
    feed.publish("tele/tasmota_8A1B2C/LWT", "Offline").await;
    expect_connected(&world, &s, false).await;

    // --- OpenDTU: retained at start, then morning ---
    let s = svc("pvinverter", "hm800");
    wait_name_owned(&world.conn, &s).await;
    expect_connected(&world, &s, false).await;
    expect_f64(&world, &s, "/Ac/Power", 0.0).await;
    feed.publish("solar/116181234567/status/reachable", "1")
        .await;
    expect_connected(&world, &s, true).await;
    for (topic, payload) in [
        ("0/power", "612.4"),
        ("0/voltage", "231.2"),
        ("0/current", "2.65"),
        ("0/yieldtotal", "465.294"),
        ("status/producing", "1"),
    ] {
        feed.publish(&format!("solar/116181234567/{topic}"), payload)
            .await;
    }
    expect_f64(&world, &s, "/Ac/Power", 612.4).await;
    expect_f64(&world, &s, "/Ac/L2/Power", 612.4).await;
    expect_f64(&world, &s, "/Ac/L2/Voltage", 231.2).await;
    expect_f64(&world, &s, "/Ac/L2/Current", 2.65).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 465.294).await;
    expect_f64(&world, &s, "/StatusCode", 7.0).await;
    // A fixed value of a persisted path: shown, and kept in localsettings.
    expect_f64(&world, &s, "/Ac/MaxPower", 800.0).await;
    expect_f64(
        &world,
        "com.victronenergy.settings",
        "/Settings/MqttDevices/mqtt_hm800/Ac/MaxPower",
        800.0,
    )
    .await;
    // Night: zeroed, the counter kept (OpenDTU zeroes it: not applied).
    feed.publish("solar/116181234567/status/reachable", "0")
        .await;
    expect_connected(&world, &s, false).await;
    expect_f64(&world, &s, "/Ac/Power", 0.0).await;
    feed.publish("solar/116181234567/0/yieldtotal", "0").await;
    feed.publish("solar/116181234567/status/producing", "0")
        .await;
    expect_f64(&world, &s, "/StatusCode", 8.0).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 465.294).await;

    // --- AhoyDTU ---
    let s = svc("pvinverter", "balcony");
    feed.publish_retained("inverter/HM600/available", "2").await;
    expect_connected(&world, &s, true).await;
    for (topic, payload) in [
        ("U_AC", "233.300"),
        ("I_AC", "0.300"),
        ("P_AC", "71.000"),
        ("YieldTotal", "465.294"),
    ] {
        feed.publish(&format!("inverter/HM600/ch0/{topic}"), payload)
            .await;
    }
    expect_f64(&world, &s, "/Ac/L1/Voltage", 233.3).await;
    expect_f64(&world, &s, "/Ac/Power", 71.0).await;
    expect_f64(&world, &s, "/Ac/Energy/Forward", 465.294).await;
    feed.publish("inverter/HM600/available", "0").await;
    expect_connected(&world, &s, false).await;
    expect_f64(&world, &s, "/Ac/Power", 0.0).await;

    // --- Zigbee2MQTT climate sensor ---
    let s = svc("temperature", "fridge");
    feed.publish_retained("zigbee2mqtt/fridge/availability", "online")
        .await;
    expect_connected(&world, &s, true).await;
    expect_f64(&world, &s, "/TemperatureType", 1.0).await;
    feed.publish(
        "zigbee2mqtt/fridge",
        r#"{"battery":100,"humidity":63.84,"linkquality":102,"temperature":27.13,"voltage":3000}"#,
    )
    .await;
    expect_f64(&world, &s, "/Temperature", 27.13).await;
    expect_f64(&world, &s, "/Humidity", 63.84).await;
    expect_f64(&world, &s, "/BatteryVoltage", 3.0).await;
    feed.publish("zigbee2mqtt/fridge/availability", r#"{"state":"offline"}"#)
        .await;
    expect_connected(&world, &s, false).await;
    expect_invalid(&world, &s, "/Temperature").await;

    // --- ESPHome ---
    let s = svc("temperature", "outside");
    feed.publish_retained("mynode/status", "online").await;
    expect_connected(&world, &s, true).await;
    feed.publish("mynode/sensor/outdoor_temperature/state", "21.4")
        .await;
    feed.publish("mynode/sensor/outdoor_humidity/state", "55.2")
        .await;
    expect_f64(&world, &s, "/Temperature", 21.4).await;
    expect_f64(&world, &s, "/Humidity", 55.2).await;
    feed.publish("mynode/sensor/outdoor_temperature/state", "nan")
        .await;
    expect_invalid(&world, &s, "/Temperature").await;

    // Every declared device, and nothing else, is on D-Bus.
    let mut want: Vec<String> = [
        ("grid", "grid_3em"),
        ("pvinverter", "pv_3em"),
        ("grid", "em_l2"),
        ("acload", "pm_load"),
        ("pvinverter", "pm_pv"),
        ("grid", "em3_gen1"),
        ("acload", "plug"),
        ("pvinverter", "hm800"),
        ("pvinverter", "balcony"),
        ("temperature", "fridge"),
        ("temperature", "outside"),
    ]
    .iter()
    .map(|(t, i)| svc(t, i))
    .collect();
    want.sort();
    assert_eq!(device_services(&world.conn).await, want);
    world.stop_daemon().await;
    assert!(device_services(&world.conn).await.is_empty());
}
