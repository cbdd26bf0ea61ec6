//! `dbus-mqtt-devices check-config`: every declaration file and user preset
//! of the data directory checked as the daemon would load them, each device
//! printed fully expanded (what its preset became), every mistake with its
//! file, line and column.

use std::fmt::Write as _;
use std::path::Path;

use super::declaration::print::to_toml;
use super::diagnostic::{Diagnostic, Severity};
use super::load::{load_data_dir, LoadedDevice};
use crate::catalog::Catalog;

/// What `check-config` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Every valid device as TOML, each after a comment naming where it was
    /// declared (for standard output).
    pub expanded: String,
    /// Every mistake and warning, in file order (for standard error).
    pub diagnostics: Vec<Diagnostic>,
    /// How many devices are valid.
    pub devices: usize,
}

impl CheckReport {
    /// `true` when nothing was left out (warnings allowed).
    pub fn ok(&self) -> bool {
        !self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// One closing line: `3 devices, 1 error, 0 warnings`.
    pub fn summary(&self) -> String {
        let errors = self.diagnostics.iter().filter(|d| d.is_error()).count();
        let warnings = self.diagnostics.len() - errors;
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        format!(
            "{}, {}, {}",
            plural(self.devices, "device"),
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

/// Checks the data directory: the catalog override (the service types
/// declarations may use), the user's presets and every declaration file.
pub fn check_config(data_dir: &Path) -> CheckReport {
    let (catalog, catalog_errors) = Catalog::load(Some(&data_dir.join(crate::data_dir::CATALOG_FILE)));
    let mut diagnostics: Vec<Diagnostic> = catalog_errors
        .iter()
        .map(|e| Diagnostic {
            severity: Severity::Error,
            place: String::new(),
            device: None,
            message: e.to_string(),
        })
        .collect();
    let (_presets, loaded) = load_data_dir(data_dir, &catalog);
    diagnostics.extend(loaded.diagnostics);
    for device in &loaded.devices {
        diagnostics.extend(empty_topic_levels(device));
    }
    let mut expanded = String::new();
    for (i, device) in loaded.devices.iter().enumerate() {
        if i > 0 {
            expanded.push('\n');
        }
        let _ = writeln!(expanded, "# {}", device.origin);
        expanded.push_str(&to_toml(&device.declaration));
    }
    CheckReport {
        expanded,
        diagnostics,
        devices: loaded.devices.len(),
    }
}

/// A source topic with an empty level (`solar//x`, a leading or trailing
/// '/') is a valid MQTT filter, but almost always a typo that never
/// matches what the device publishes: warned.
fn empty_topic_levels(device: &LoadedDevice) -> Vec<Diagnostic> {
    device
        .declaration
        .sources
        .iter()
        .filter_map(|s| s.topic.as_ref())
        .filter(|t| t.as_str().split('/').any(str::is_empty))
        .map(|t| Diagnostic {
            severity: Severity::Warning,
            place: device.origin.clone(),
            device: Some(device.declaration.id.to_string()),
            message: format!(
                "topic '{}' has an empty level (a '/' doubled, leading or trailing); it matches only topics written the same way",
                t.as_str()
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_dir::{DEVICES_DIR, DEVICES_FILE, PRESETS_DIR};

    #[test]
    fn reports_every_file_and_expands_every_device() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DEVICES_FILE),
            "[[device]]\nid = \"fridge\"\nservice = \"temperature\"\npreset = \"zigbee2mqtt\"\ntopic = \"zigbee2mqtt/fridge\"\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join(DEVICES_DIR)).unwrap();
        std::fs::write(
            dir.path().join(DEVICES_DIR).join("b.toml"),
            "[[device]]\nid = \"x\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(DEVICES_DIR).join("a.toml~"), "not read").unwrap();
        std::fs::create_dir(dir.path().join(PRESETS_DIR)).unwrap();
        std::fs::write(dir.path().join(PRESETS_DIR).join("p.toml"), "[device\n").unwrap();
        let report = check_config(dir.path());
        assert!(!report.ok());
        assert_eq!(report.devices, 1);
        assert!(
            report.expanded.contains("preset \"zigbee2mqtt\""),
            "{}",
            report.expanded
        );
        assert!(report
            .expanded
            .contains("\"/Temperature\" = \"temperature\""));
        let d: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
        let b = dir
            .path()
            .join(DEVICES_DIR)
            .join("b.toml")
            .display()
            .to_string();
        let p = dir
            .path()
            .join(PRESETS_DIR)
            .join("p.toml")
            .display()
            .to_string();
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(
            d[0],
            format!("{p}:1:8: unclosed table, expected `]`")
        );
        assert_eq!(d[1], format!("{b}:1:1: device 'x': has no 'service' (a service type such as grid, pvinverter or temperature)"));
        assert_eq!(report.summary(), "1 device, 2 errors, 0 warnings");
    }

    #[test]
    fn an_empty_level_in_a_source_topic_is_warned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DEVICES_FILE),
            "[[device]]\nid = \"m\"\nservice = \"acload\"\n[[device.source]]\ntopic = \"solar//power\"\n\"/Ac/Power\" = \"$\"\n",
        )
        .unwrap();
        let report = check_config(dir.path());
        assert!(report.ok());
        let d: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].contains("device 'm': topic 'solar//power' has an empty level"), "{}", d[0]);
        assert_eq!(report.summary(), "1 device, 0 errors, 1 warning");
    }
}
