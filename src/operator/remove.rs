//! `remove`: which devices and services a request selects, which settings that removes,
//! and the report of what was done. The steps that depend on whether the daemon runs
//! (taking services off D-Bus, the state file) are carried out by the callers:
//! [`super::service`] in the daemon, [`super::cli`] when the daemon is not running.

use super::inventory::split_setting_path;
use super::report::{DeviceReport, ServiceState};
use super::request::Target;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::time::Duration;

/// What is said after every removal.
pub const STILL_POWERED: &str = "A device that is still powered registers again at its next \
    Status (it gets the first free instance, and the default name). Power it off or change its \
    Status first to keep it away.";

/// What `remove` is asked to select.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub target: Option<Target>,
    /// Only devices not connected and not heard from for this long.
    pub not_seen_for: Option<Duration>,
}

/// One device (or some of its services) to remove.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    pub client_id: String,
    /// The whole device (else only the services listed).
    pub whole_device: bool,
    /// Unique ids of the services removed.
    pub services: Vec<String>,
    /// Its localsettings paths (instance, name, persisted settings).
    pub settings: Vec<String>,
    /// Whether services of it were on D-Bus (taken off first).
    pub connected: bool,
    /// A mapped device, or what is left of one: its declaration topic, if any, is cleared
    /// and its integrated energy forgotten (by the running daemon).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mapped: bool,
    /// Its client id is known as the device wrote it (not guessed from a unique id): its
    /// retained Status is on `device/<client id>/Status`.
    #[serde(skip)]
    pub client_id_known: bool,
}

/// Why a retained Status is not cleared: the device is known only by its settings.
pub fn status_topic_unknown(id: &str) -> String {
    format!(
        "{id} is known only by its settings, not by the client id it used: a retained Status \
         of it, if any, is not cleared (clear device/<its client id>/Status on the broker)"
    )
}

/// What was done, as answered and printed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub client_id: String,
    pub services: Vec<String>,
    /// Services taken off D-Bus.
    pub taken_off_dbus: usize,
    /// Settings localsettings removed.
    pub settings_removed: usize,
    /// The retained `device/<id>/Status` was cleared.
    pub retained_status_cleared: bool,
    /// The device is no longer in the state file.
    pub state_file_updated: bool,
    /// A mapped device (or what was left of one).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mapped: bool,
    /// A mapped device's retained declaration topic, cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declaration_cleared: Option<String>,
    /// A mapped device's integrated energy was forgotten.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub energy_forgotten: bool,
    /// What went wrong, if anything (the rest was still done).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

fn settings_of(settings: &BTreeMap<String, Json>, unique: &str) -> Vec<String> {
    settings
        .keys()
        .filter(|p| split_setting_path(p).is_some_and(|(u, _)| u == unique))
        .cloned()
        .collect()
}

fn matches(report: &DeviceReport, target: &Target) -> bool {
    report.client_id == target.client.raw() || report.client_id == target.client.legal()
}

/// Whether a device qualifies for `--not-seen-for`: not connected, and last heard from
/// longer ago than `d`. A device with no last-seen time does not: unknown is not old (the
/// daemon gives every device it lists one, counting from then).
pub fn unseen_for(report: &DeviceReport, d: Duration, now: u64) -> bool {
    !report.connected
        && report
            .last_seen
            .is_some_and(|t| now.saturating_sub(t) >= d.as_secs())
}

/// The removals a selection asks for, from a listing and the settings of our groups.
pub fn plan(
    reports: &[DeviceReport],
    settings: &BTreeMap<String, Json>,
    selection: &Selection,
    now: u64,
) -> Result<Vec<Removal>, String> {
    let mut removals = Vec::new();
    for report in reports {
        if let Some(target) = &selection.target {
            if !matches(report, target) {
                continue;
            }
        }
        if let Some(d) = selection.not_seen_for {
            if !unseen_for(report, d, now) {
                if selection.target.is_some() {
                    return Err(format!(
                        "{} was seen less than {} ago (or is connected); nothing removed",
                        report.client_id,
                        super::duration::human(d.as_secs())
                    ));
                }
                continue;
            }
        }
        let mapped = report.kind == "mapped";
        if mapped {
            check_mapped(report)?;
        }
        let service = selection.target.as_ref().and_then(|t| t.service.as_ref());
        let services: Vec<_> = report
            .services
            .iter()
            .filter(|s| service.is_none_or(|id| s.service_id.as_deref() == Some(id.as_str())))
            .collect();
        if let Some(id) = service {
            if services.is_empty() {
                return Err(format!("{} has no service {id}", report.client_id));
            }
            if services.iter().any(|s| s.state != ServiceState::Offline) && report.connected {
                return Err(format!(
                    "{}/{id} belongs to a connected device that still declares it; \
                     remove the service from the device's Status first, or remove the whole device",
                    report.client_id
                ));
            }
        }
        removals.push(Removal {
            client_id: report.client_id.clone(),
            whole_device: service.is_none(),
            services: services.iter().map(|s| s.unique_id.clone()).collect(),
            settings: services
                .iter()
                .flat_map(|s| settings_of(settings, &s.unique_id))
                .collect(),
            connected: report.connected,
            mapped: mapped && report.services.iter().any(|s| s.mapped.is_some()),
            client_id_known: !report.client_id_guessed,
        });
    }
    if removals.is_empty() {
        if let Some(target) = &selection.target {
            if let Some(r) = by_unique_id(reports, settings, target) {
                return Ok(vec![r]);
            }
            return Err(format!("no device {target} is known on this GX"));
        }
    }
    Ok(removals)
}

/// Whether a mapped device can be removed here: not while a file declares it (the file
/// would bring it back), nor while it is on D-Bus and no running daemon says where it is
/// declared.
fn check_mapped(report: &DeviceReport) -> Result<(), String> {
    let id = &report.client_id;
    let detail = report.services.iter().find_map(|s| s.mapped.as_ref());
    let declared = detail.and_then(|m| Some((m.declared_by.as_deref()?, m.origin.as_deref()?)));
    match declared {
        Some(("file", origin)) => Err(format!(
            "{id} is a mapped device declared in {origin}: delete its declaration there first \
             (the daemon notices within a few seconds), then remove {id} here to free its instance"
        )),
        // Declared by a retained topic: the removal clears it.
        Some(_) => Ok(()),
        None if report.connected => Err(format!(
            "{id} is a mapped device on D-Bus, and the daemon that serves it does not answer: \
             start it (or delete the declaration) and try again"
        )),
        None => Ok(()),
    }
}

/// A device whose only trace is the settings of unique id `mqtt_<target>` (a mapped device
/// whose declaration is gone: its id cannot be told from its unique id alone). Removed as a
/// mapped device's leftovers: its integrated energy, if any, is forgotten too.
fn by_unique_id(
    reports: &[DeviceReport],
    settings: &BTreeMap<String, Json>,
    target: &Target,
) -> Option<Removal> {
    if target.service.is_some() {
        return None;
    }
    let unique = format!("{}{}", super::inventory::UNIQUE_PREFIX, target.client.legal());
    let (report, service) = reports.iter().find_map(|r| {
        let s = r.services.iter().find(|s| s.unique_id == unique)?;
        Some((r, s))
    })?;
    // Only a service that is nowhere now: one on D-Bus belongs to something running.
    if service.state != ServiceState::Offline {
        return None;
    }
    Some(Removal {
        client_id: report.client_id.clone(),
        whole_device: false,
        services: vec![unique.clone()],
        settings: settings_of(settings, &unique),
        connected: false,
        mapped: true,
        client_id_known: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::report::ServiceReport;
    use serde_json::json;

    fn device(id: &str, connected: bool, last_seen: Option<u64>) -> DeviceReport {
        DeviceReport {
            client_id: id.into(),
            client_id_guessed: false,
            kind: "native".into(),
            connected,
            last_seen,
            last_error: None,
            services: vec![ServiceReport {
                service_id: Some("t1".into()),
                unique_id: format!("mqtt_{id}_t1"),
                dbus_name: None,
                service_type: Some("temperature".into()),
                instance: Some(1),
                custom_name: None,
                state: if connected {
                    ServiceState::Online
                } else {
                    ServiceState::Offline
                },
                last_value_at: None,
                last_error: None,
                last_error_at: None,
                mapped: None,
            }],
        }
    }

    #[test]
    fn a_mapped_device_declared_in_a_file_is_not_removed() {
        let mut d = device("grid_shelly", true, None);
        d.kind = "mapped".into();
        let settings = BTreeMap::new();
        let target = Selection {
            target: Some(Target::parse("grid_shelly").unwrap()),
            not_seen_for: None,
        };
        // Unknown to a running daemon and on D-Bus: refused.
        assert!(plan(std::slice::from_ref(&d), &settings, &target, 0).is_err());
        let mut detail = crate::operator::report::MappedDetail {
            last_topic: None,
            raw_payload: None,
            converted_value: None,
            at: None,
            origin: Some("devices.toml:3:1".into()),
            declared_by: Some("file".into()),
            declaration_valid: Some(true),
            diagnostics: vec![],
            topics: vec![],
            messages: None,
            available: None,
            paths: BTreeMap::new(),
        };
        d.services[0].mapped = Some(detail.clone());
        let e = plan(std::slice::from_ref(&d), &settings, &target, 0).unwrap_err();
        assert!(e.contains("devices.toml:3:1"), "{e}");
        detail.declared_by = Some("topic".into());
        d.services[0].mapped = Some(detail);
        let p = plan(std::slice::from_ref(&d), &settings, &target, 0).unwrap();
        assert!(p[0].mapped && p[0].whole_device);
    }

    #[test]
    fn settings_left_by_a_mapped_device_are_found_by_its_id() {
        // `mqtt_grid_shelly` alone is read as client `grid`, service `shelly`.
        let mut d = device("grid", false, None);
        d.services[0].service_id = Some("shelly".into());
        d.services[0].unique_id = "mqtt_grid_shelly".into();
        let settings: BTreeMap<String, Json> = serde_json::from_value(json!({
            "/Settings/Devices/mqtt_grid_shelly/ClassAndVrmInstance": "grid:40",
        }))
        .unwrap();
        let target = Selection {
            target: Some(Target::parse("grid_shelly").unwrap()),
            not_seen_for: None,
        };
        let p = plan(&[d], &settings, &target, 0).unwrap();
        assert_eq!(p[0].services, ["mqtt_grid_shelly"]);
        assert_eq!(p[0].settings.len(), 1);
        assert!(!p[0].whole_device && p[0].mapped);
    }

    #[test]
    fn selects_by_target_and_by_age() {
        let settings: BTreeMap<String, Json> = serde_json::from_value(json!({
            "/Settings/Devices/mqtt_a_t1/ClassAndVrmInstance": "temperature:1",
            "/Settings/MqttDevices/mqtt_a_t1/CustomName": "A",
            "/Settings/Devices/mqtt_b_t1/ClassAndVrmInstance": "temperature:2",
        }))
        .unwrap();
        let reports = [
            device("a", false, Some(0)),
            device("b", false, Some(1000)),
            device("c", true, None),
            device("never", false, None),
        ];
        let by_target = Selection {
            target: Some(Target::parse("a").unwrap()),
            not_seen_for: None,
        };
        let plan_a = plan(&reports, &settings, &by_target, 2000).unwrap();
        assert_eq!(plan_a.len(), 1);
        assert_eq!(plan_a[0].settings.len(), 2);
        let by_age = Selection {
            target: None,
            not_seen_for: Some(Duration::from_secs(1500)),
        };
        let old = plan(&reports, &settings, &by_age, 2000).unwrap();
        assert_eq!(old.iter().map(|r| r.client_id.as_str()).collect::<Vec<_>>(), ["a"]);
        let guarded = Selection {
            target: Some(Target::parse("b").unwrap()),
            not_seen_for: Some(Duration::from_secs(1500)),
        };
        assert!(plan(&reports, &settings, &guarded, 2000).is_err());
        let connected_service = Selection {
            target: Some(Target::parse("c/t1").unwrap()),
            not_seen_for: None,
        };
        assert!(plan(&reports, &settings, &connected_service, 2000).is_err());
        let unknown = Selection {
            target: Some(Target::parse("zz").unwrap()),
            not_seen_for: None,
        };
        assert!(plan(&reports, &settings, &unknown, 2000).is_err());
    }
}
