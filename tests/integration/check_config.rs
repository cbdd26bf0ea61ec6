//! `dbus-mqtt-devices check-config`, as a user runs it on a GX: every file of
//! the data directory checked, each device printed fully expanded, mistakes
//! with file, line and column, exit 0 or 2.

use std::path::Path;
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_dbus-mqtt-devices");

fn check(dir: &Path) -> Output {
    Command::new(BINARY)
        .arg("check-config")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GRID_METER: &str = r#"
[[device]]
id       = "grid_shelly"
service  = "grid"
preset   = "shelly-pro3em"
topic    = "shellypro3em-08f9e0eb4dd0"
name     = "Shelly Pro 3EM"
instance = 40
"#;

#[test]
fn valid_declarations_print_expanded_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("devices.toml"), GRID_METER).unwrap();
    std::fs::create_dir(dir.path().join("devices.d")).unwrap();
    std::fs::write(
        dir.path().join("devices.d/10-roof.toml"),
        "[[device]]\nid = \"roof\"\nservice = \"pvinverter\"\npreset = \"opendtu\"\nserial = \"116181234567\"\n",
    )
    .unwrap();
    let out = check(dir.path());
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.ends_with(": 2 devices, 0 errors, 0 warnings\n"),
        "{stderr}"
    );
    // Files in order, each device expanded with its preset's sources.
    let grid = stdout.find("id = \"grid_shelly\"").unwrap();
    let roof = stdout.find("id = \"roof\"").unwrap();
    assert!(grid < roof);
    assert!(stdout.contains("topic = \"shellypro3em-08f9e0eb4dd0/status/em:0\""));
    assert!(stdout.contains("\"/Ac/Energy/Forward\" = { path = \"total_act\", unit = \"Wh\" }"));
    assert!(stdout.contains("topic = \"solar/116181234567/cmd/limit_nonpersistent_absolute\""));

    // What it printed is itself a valid declaration of the same devices.
    let again = tempfile::tempdir().unwrap();
    std::fs::write(again.path().join("devices.toml"), &stdout).unwrap();
    let out2 = check(again.path());
    assert_eq!(out2.status.code(), Some(0), "{}", text(&out2.stderr));
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&text(&out2.stdout)), body(&stdout));
}

#[test]
fn mistakes_name_file_line_and_column_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("devices.toml"), GRID_METER).unwrap();
    std::fs::create_dir(dir.path().join("devices.d")).unwrap();
    let bad = dir.path().join("devices.d/20-garage.toml");
    std::fs::write(
        &bad,
        "[[device]]\nid = \"garage\"\nservice = \"acload\"\npreset = \"tasmota-energy\"\ntopic = \"tasmota_1\"\nstale_afer = 30\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("devices.d/30-broken.toml"), "[[device]\n").unwrap();
    let out = check(dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{}:6:1: device 'garage': unknown key 'stale_afer' (did you mean 'stale_after'?)",
            bad.display()
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:1:",
            dir.path().join("devices.d/30-broken.toml").display()
        )),
        "{stderr}"
    );
    assert!(
        lines[2].ends_with(": 1 device, 2 errors, 0 warnings"),
        "{stderr}"
    );
    // The broken files never stop the valid one.
    assert!(text(&out.stdout).contains("id = \"grid_shelly\""));
}

#[test]
fn an_empty_data_directory_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).ends_with(": 0 devices, 0 errors, 0 warnings\n"));
}
