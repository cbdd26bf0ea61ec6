//! `sim --demo` as a user runs it, for its mapped devices: the simulated Shelly Pro 3EM and
//! OpenDTU publish their own topics, the daemon serves them from the declarations the demo
//! wrote into the data directory, and a power limit written through the sim's gateway reaches
//! the simulated inverter, whose power follows it.

use super::sim::{timed, Sim};
use super::world::TestDevice;
use dbus_mqtt_devices::sim::demo::{declarations, opendtu};
use serde_json::Value as Json;

const GRID: &str = "com.victronenergy.grid.mqtt_demo_grid";
const PV: &str = "com.victronenergy.pvinverter.mqtt_demo_pv";

fn is_value(l: &Json, service: &str, path: &str) -> bool {
    l["event"] == "value" && l["service"] == service && l["path"] == path
}

#[tokio::test]
async fn sim_demo_serves_a_shelly_and_an_opendtu_and_forwards_a_power_limit_to_the_inverter() {
    timed(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sim = Sim::start(dir.path(), &["--demo"], None).await;
        let written = std::fs::read_to_string(dir.path().join(declarations::FILE))
            .expect("the demo's declarations in the data dir");
        assert_eq!(written, declarations::text());

        let grid = sim
            .expect_line("the Shelly's grid service", |l| {
                l["event"] == "service_added" && l["service"] == GRID
            })
            .await;
        assert_eq!(grid["type"], "grid");
        assert_eq!(grid["customName"], "Demo grid meter");
        assert_eq!(grid["instance"], 40, "the declared instance: {grid}");
        let pv = sim
            .expect_line("the OpenDTU's pvinverter service", |l| {
                l["event"] == "service_added" && l["service"] == PV
            })
            .await;
        assert_eq!(pv["customName"], "Demo HM-800");
        let instance = pv["instance"].as_i64().expect("an instance");

        // The meter's figures arrive, signed as the Shelly sends them (L1 exports what the
        // inverter makes beyond the load, so only the other phases are surely positive).
        let l2 = sim
            .expect_line("the grid's L2 power", |l| is_value(l, GRID, "/Ac/L2/Power"))
            .await;
        assert!(l2["value"].as_f64().is_some_and(|w| w > 0.0), "{l2}");
        let before = sim
            .expect_line("the inverter's power", |l| {
                is_value(l, PV, "/Ac/Power") && l["value"].is_number()
            })
            .await;
        assert!(
            before["value"].as_f64().is_some_and(|w| w > 150.0),
            "the sun gives more than 150 W in the demo: {before}"
        );

        // A GX client writes the limit, as ESS or the GUI would.
        let mut client = TestDevice::connect_with(
            sim.port,
            "gx-app",
            None,
            &[&format!("solar/{}/cmd/#", opendtu::SERIAL)],
        )
        .await;
        client
            .publish(
                &format!("W/{}/pvinverter/{instance}/Ac/PowerLimit", sim.portal),
                r#"{"value": 100}"#,
            )
            .await;
        let command = client
            .expect(&format!(
                "solar/{}/cmd/limit_nonpersistent_absolute",
                opendtu::SERIAL
            ))
            .await;
        assert_eq!(command.payload.trim().parse::<f64>().ok(), Some(100.0));
        assert!(!command.retained, "OpenDTU wants the limit not retained");

        let limited = sim
            .expect_line("the inverter's power under the limit", |l| {
                is_value(l, PV, "/Ac/Power") && l["value"].as_f64().is_some_and(|w| w <= 100.0)
            })
            .await;
        assert_eq!(limited["value"], 100.0, "{limited}");

        sim.stop_with("INT").await;
    })
    .await;
}

#[tokio::test]
async fn without_demo_the_unchanged_declarations_go_and_edited_ones_stay_and_are_served() {
    timed(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(declarations::FILE);
        let sim = Sim::start(dir.path(), &["--demo"], None).await;
        sim.stop_with("TERM").await;
        assert!(file.exists(), "written by --demo");

        // Without --demo nothing publishes for the demo's devices: the file goes before the
        // daemon starts, so they are not served as dead devices.
        let sim = Sim::start(dir.path(), &[], None).await;
        assert!(
            !file.exists(),
            "the unchanged demo declarations are removed"
        );
        sim.stop_with("TERM").await;

        // Edited, the file is the user's: kept, and served, without --demo too.
        std::fs::create_dir_all(file.parent().expect("devices.d")).expect("devices.d");
        let edited = declarations::text().replace("\"demo_grid\"", "\"my_grid\"");
        assert_ne!(edited, declarations::text());
        std::fs::write(&file, &edited).expect("editing");
        let mut sim = Sim::start(dir.path(), &[], None).await;
        let grid = sim
            .expect_line("the edited grid meter", |l| {
                l["event"] == "service_added"
                    && l["service"] == "com.victronenergy.grid.mqtt_my_grid"
            })
            .await;
        assert_eq!(grid["customName"], "Demo grid meter");
        sim.stop_with("TERM").await;
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), edited);
    })
    .await;
}
