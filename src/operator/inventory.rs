//! Builds the device reports from what can be read: our services on D-Bus, the settings in
//! localsettings, the state file, and (in the daemon) the devices' activity. Pure: the
//! reading is done by [`super::bus`] and the callers. One device per client id; services
//! known only by a unique id in localsettings are attached to a device only when the unique
//! id cannot be another device's, else listed on their own under the unique id.

use super::activity::{DeviceActivity, ErrorNote};
use super::mapped_activity::MappedStatus;
use super::report::{DeviceReport, MappedDetail, ServiceReport, ServiceState};
use crate::ids::{ClientId, ServiceId, UniqueId};
use crate::persist::{Known, LastSeen, SavedDevice};
use crate::protocol::Status;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// One of our services on D-Bus: its name and its values (path → JSON value).
#[derive(Debug, Clone, Default)]
pub struct BusService {
    pub name: String,
    pub items: BTreeMap<String, Json>,
}

/// What a listing is made from.
#[derive(Debug, Default)]
pub struct Sources {
    /// Our services on D-Bus (`com.victronenergy.<type>.mqtt_*`).
    pub services: Vec<BusService>,
    /// localsettings paths under `/Settings/Devices/mqtt_*` and `/Settings/MqttDevices/`.
    pub settings: BTreeMap<String, Json>,
    /// The state file's devices.
    pub saved: Vec<SavedDevice>,
    pub last_seen: LastSeen,
    /// The devices that registered and were not removed (state file), by raw client id.
    pub known: Known,
    /// The running daemon's knowledge; `None` when the CLI lists on its own.
    pub activity: Option<BTreeMap<String, DeviceActivity>>,
    /// The running daemon's mapped devices, by declaration id (served or refused).
    pub mapped: BTreeMap<String, MappedStatus>,
}

/// The prefix of every unique id of ours.
pub const UNIQUE_PREFIX: &str = "mqtt_";

/// `com.victronenergy.<type>.<unique>` → (type, unique), for our unique ids only.
pub fn split_bus_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("com.victronenergy.")?;
    let (service_type, unique) = rest.split_once('.')?;
    unique
        .starts_with(UNIQUE_PREFIX)
        .then_some((service_type, unique))
}

/// `/Settings/Devices/<unique>/ClassAndVrmInstance` or `/Settings/MqttDevices/<unique>/<key>`
/// → (unique, key), for our unique ids only.
pub fn split_setting_path(path: &str) -> Option<(&str, &str)> {
    let rest = path
        .strip_prefix("/Settings/Devices/")
        .or_else(|| path.strip_prefix("/Settings/MqttDevices/"))?;
    let (unique, key) = rest.split_once('/')?;
    unique.starts_with(UNIQUE_PREFIX).then_some((unique, key))
}

#[derive(Default)]
struct Device {
    legal: String,
    guessed: bool,
    /// Described by a file (its service says where its data comes from, not `MQTT:<id>`).
    mapped: bool,
    /// The daemon serves it now (in its state file while it runs).
    served: bool,
    services: BTreeMap<String, Entry>,
}

struct Entry {
    report: ServiceReport,
    declared: bool,
    on_bus: bool,
}

impl Entry {
    fn new(unique: &str, service_id: Option<&str>) -> Entry {
        Entry {
            report: ServiceReport {
                service_id: service_id.map(str::to_owned),
                unique_id: unique.to_owned(),
                dbus_name: None,
                service_type: None,
                instance: None,
                custom_name: None,
                state: ServiceState::Offline,
                last_value_at: None,
                last_error: None,
                last_error_at: None,
                mapped: None,
            },
            declared: false,
            on_bus: false,
        }
    }
}

struct Builder {
    devices: BTreeMap<String, Device>,
    /// unique id → raw client id.
    owners: BTreeMap<String, String>,
    /// unique id → (raw client id, service id) of every service a registered device
    /// declared, also after it left.
    registered: BTreeMap<String, (String, String)>,
}

impl Builder {
    fn entry(&mut self, client: &str, unique: &str, service_id: Option<&str>) -> &mut Entry {
        self.owners.insert(unique.to_owned(), client.to_owned());
        let device = self.devices.entry(client.to_owned()).or_default();
        device
            .services
            .entry(unique.to_owned())
            .or_insert_with(|| Entry::new(unique, service_id))
    }

    /// The device a unique id belongs to: its known owner, the one device it can belong to
    /// by its only split into client and service ids, or else the unique id on its own.
    fn owner_of(&mut self, unique: &str, hint: Option<(&str, &str)>) -> (String, Option<String>) {
        if let Some(owner) = self.owners.get(unique) {
            if self.devices.get(owner).is_some_and(|d| d.mapped) {
                return (owner.clone(), None);
            }
            let legal = self.devices.get(owner).map(|d| d.legal.clone());
            let service = legal.and_then(|l| service_part(unique, &l).map(str::to_owned));
            return (owner.clone(), service);
        }
        if let Some((raw, service)) = self.registered.get(unique).cloned() {
            let device = self.devices.entry(raw.clone()).or_default();
            if let Ok(id) = ClientId::parse(&raw) {
                device.legal = id.legal().to_owned();
            }
            return (raw, Some(service));
        }
        if let Some((client, service)) = hint {
            if let Ok(id) = ClientId::parse(client) {
                if format!("{UNIQUE_PREFIX}{}_{service}", id.legal()) == unique {
                    let device = self.devices.entry(client.to_owned()).or_default();
                    device.legal = id.legal().to_owned();
                    return (client.to_owned(), Some(service.to_owned()));
                }
            }
        }
        // Not known: `mqtt_<legal client id>_<service id>`, where both may hold '_'. Only a
        // unique id that splits one way alone is given to a device; any other could be
        // another device's (`fe` + `001_t1` or `fe_001` + `t1`) and is listed on its own, so
        // that removing one device never takes another's instance and name.
        let bare = unique.strip_prefix(UNIQUE_PREFIX).unwrap_or(unique);
        let splits: Vec<(&str, &str)> = bare
            .match_indices('_')
            .filter_map(|(i, _)| Some((bare.get(..i)?, bare.get(i + 1..)?)))
            .filter(|(c, s)| !c.is_empty() && ServiceId::parse(s).is_ok())
            .collect();
        if let [(legal, service)] = splits[..] {
            let known: Vec<&String> = self
                .devices
                .iter()
                .filter(|(_, d)| !d.mapped && d.legal == legal)
                .map(|(raw, _)| raw)
                .collect();
            match known[..] {
                [raw] => return (raw.clone(), Some(service.to_owned())),
                [] if !self.devices.contains_key(legal) => {
                    let device = self.devices.entry(legal.to_owned()).or_default();
                    device.legal = legal.to_owned();
                    device.guessed = true;
                    return (legal.to_owned(), Some(service.to_owned()));
                }
                _ => {}
            }
        }
        let device = self.devices.entry(unique.to_owned()).or_default();
        device.legal = unique.to_owned();
        device.guessed = true;
        (unique.to_owned(), None)
    }
}

/// The service id of `unique` if it belongs to the device with legal id `legal`.
fn service_part<'a>(unique: &'a str, legal: &str) -> Option<&'a str> {
    if legal.is_empty() {
        return None;
    }
    let rest = unique.strip_prefix(UNIQUE_PREFIX)?.strip_prefix(legal)?;
    let service = rest.strip_prefix('_')?;
    ServiceId::parse(service).ok().map(|_| service)
}

fn text(items: &BTreeMap<String, Json>, path: &str) -> Option<String> {
    items
        .get(path)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn number(items: &BTreeMap<String, Json>, path: &str) -> Option<i64> {
    items.get(path).and_then(Json::as_i64)
}

fn note(n: &Option<ErrorNote>) -> Option<String> {
    n.as_ref().map(|n| n.message.clone())
}

/// A mapped device's service: its state and what the daemon knows of it.
fn fill_mapped(e: &mut Entry, m: &MappedStatus) {
    let declaration = m.declaration.as_ref();
    let served = declaration.is_some_and(|d| d.served);
    let r = &mut e.report;
    if !e.on_bus {
        r.state = match (declaration, &m.refusal) {
            (Some(d), _) if !d.valid && !d.served => ServiceState::Refused,
            (Some(_), Some(_)) => ServiceState::Refused,
            _ => ServiceState::Offline,
        };
    }
    r.last_value_at = m.last_value;
    r.last_error = match declaration {
        Some(d) if !d.valid && !served => d.diagnostics.first().cloned(),
        _ => m
            .refusal
            .clone()
            .or_else(|| m.last_error.as_ref().map(|n| n.message.clone())),
    };
    let last = m.last.as_ref();
    r.mapped = Some(MappedDetail {
        last_topic: last.map(|l| l.topic.clone()),
        raw_payload: last.map(|l| l.raw_payload.clone()),
        converted_value: last.map(|l| l.converted_value.clone()),
        at: last.map(|l| l.at),
        origin: declaration.map(|d| d.origin.clone()),
        declared_by: declaration.map(|d| if d.by_topic { "topic" } else { "file" }.to_owned()),
        declaration_valid: declaration.map(|d| d.valid),
        diagnostics: declaration.map(|d| d.diagnostics.clone()).unwrap_or_default(),
        topics: declaration.map(|d| d.topics.clone()).unwrap_or_default(),
        messages: served.then_some(m.messages),
        available: m.available,
        paths: m.paths.clone(),
    });
}

/// The reports, one per device, sorted by client id; services in declaration order for
/// devices the state file knows, else by unique id.
pub fn build(src: &Sources) -> Vec<DeviceReport> {
    let mut b = Builder {
        devices: BTreeMap::new(),
        owners: BTreeMap::new(),
        registered: BTreeMap::new(),
    };
    for (raw, services) in &src.known {
        let Ok(client) = ClientId::parse(raw) else {
            continue;
        };
        for service in services {
            if let Ok(id) = ServiceId::parse(service) {
                let unique = UniqueId::new(&client, &id).to_string();
                b.registered.insert(unique, (raw.clone(), service.clone()));
            }
        }
    }
    let from_daemon = src.activity.is_some();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // 1. The state file: what devices declared.
    for saved in &src.saved {
        let Ok(client) = ClientId::parse(&saved.client_id) else {
            continue;
        };
        let raw = client.raw().to_owned();
        {
            let device = b.devices.entry(raw.clone()).or_default();
            device.legal = client.legal().to_owned();
            device.served = from_daemon;
        }
        let Ok(status) = Status::from_json(&raw, &saved.status) else {
            continue;
        };
        let mut ids = Vec::new();
        for decl in &status.services {
            let unique = UniqueId::new(&client, &decl.id).to_string();
            let entry = b.entry(&raw, &unique, Some(decl.id.as_str()));
            entry.declared = true;
            entry.report.service_type = Some(decl.service_type.clone());
            ids.push(unique);
        }
        for refused in &status.refused_services {
            if let Ok(id) = ServiceId::parse(refused) {
                let unique = UniqueId::new(&client, &id).to_string();
                b.entry(&raw, &unique, Some(refused)).declared = true;
                ids.push(unique);
            }
        }
        order.insert(raw, ids);
    }
    // 1b. The mapped devices the daemon knows, by the id of their declaration.
    for (id, status) in &src.mapped {
        let unique = format!("{UNIQUE_PREFIX}{id}");
        {
            let device = b.devices.entry(id.clone()).or_default();
            device.legal = id.clone();
            device.mapped = true;
            device.served |= status.declaration.as_ref().is_some_and(|d| d.served);
        }
        let entry = b.entry(id, &unique, None);
        entry.declared = true;
        entry.report.service_type = status
            .declaration
            .as_ref()
            .and_then(|d| d.service_type.clone());
    }
    // 2. D-Bus: what is there now.
    for service in &src.services {
        let Some((service_type, unique)) = split_bus_name(&service.name) else {
            continue;
        };
        // A mapped device (issue 13) has the unique id `mqtt_<id>` and a `/Mgmt/Connection`
        // that names its topics; a native one says `MQTT:<client id>`.
        let mapped = text(&service.items, "/Mgmt/Connection")
            .is_some_and(|c| !c.starts_with("MQTT:"))
            && !b.owners.contains_key(unique);
        let hint = text(&service.items, "/DeviceName");
        let hint = hint.as_deref().and_then(|n| n.rsplit_once(':'));
        let (client, service_id) = if mapped {
            let id = unique.strip_prefix(UNIQUE_PREFIX).unwrap_or(unique).to_owned();
            let device = b.devices.entry(id.clone()).or_default();
            device.legal = id.clone();
            device.mapped = true;
            (id, None)
        } else {
            b.owner_of(unique, hint)
        };
        let entry = b.entry(&client, unique, service_id.as_deref());
        entry.on_bus = true;
        let r = &mut entry.report;
        r.dbus_name = Some(service.name.clone());
        r.service_type = Some(service_type.to_owned());
        r.instance = number(&service.items, "/DeviceInstance").and_then(|i| u32::try_from(i).ok());
        r.custom_name = text(&service.items, "/CustomName").or(r.custom_name.take());
        r.state = if number(&service.items, "/Connected") == Some(1) {
            ServiceState::Online
        } else {
            ServiceState::Stale
        };
    }
    // 3. localsettings: instances and names, also of devices not connected.
    for (path, value) in &src.settings {
        let Some((unique, key)) = split_setting_path(path) else {
            continue;
        };
        let (client, service_id) = b.owner_of(unique, None);
        let entry = b.entry(&client, unique, service_id.as_deref());
        let r = &mut entry.report;
        match key {
            "ClassAndVrmInstance" => {
                if let Some((class, instance)) = value
                    .as_str()
                    .and_then(crate::settings::parse_class_and_instance)
                {
                    r.service_type.get_or_insert(class);
                    r.instance.get_or_insert(instance);
                }
            }
            "CustomName" if r.custom_name.is_none() => {
                r.custom_name = value.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
            }
            _ => {}
        }
    }
    // 4. Activity and the states that follow from it.
    let mut reports = Vec::with_capacity(b.devices.len());
    for (raw, device) in b.devices {
        // A mapped device's activity is its own (a device of the protocol may have its id).
        let activity = src
            .activity
            .as_ref()
            .filter(|_| !device.mapped)
            .and_then(|a| a.get(&raw));
        let mapped = src.mapped.get(&raw).filter(|_| device.mapped);
        let mapped_unique = format!("{UNIQUE_PREFIX}{raw}");
        let connected = device.served || device.services.values().any(|e| e.on_bus);
        let ids = order.remove(&raw).unwrap_or_default();
        let mut entries: Vec<Entry> = Vec::with_capacity(device.services.len());
        let mut rest = device.services;
        for id in &ids {
            if let Some(e) = rest.remove(id) {
                entries.push(e);
            }
        }
        entries.extend(rest.into_values());
        let services = entries
            .into_iter()
            .map(|mut e| {
                if let Some(m) = mapped.filter(|_| e.report.unique_id == mapped_unique) {
                    fill_mapped(&mut e, m);
                    return e.report;
                }
                if !e.on_bus && e.declared && connected {
                    e.report.state = ServiceState::Refused;
                }
                if let Some(s) = activity.and_then(|a| {
                    e.report
                        .service_id
                        .as_ref()
                        .and_then(|id| a.services.get(id))
                }) {
                    e.report.last_value_at = s.last_value;
                    e.report.last_error = note(&s.last_error);
                    e.report.last_error_at = s.last_error.as_ref().map(|n| n.at);
                }
                e.report
            })
            .collect();
        let last_seen = [
            activity.and_then(|a| a.last_seen),
            src.last_seen.get(&raw).copied(),
        ]
        .into_iter()
        .flatten()
        .max();
        reports.push(DeviceReport {
            client_id: raw,
            client_id_guessed: device.guessed,
            kind: if device.mapped { "mapped" } else { "native" }.into(),
            connected,
            last_seen,
            last_error: activity.and_then(|a| note(&a.last_error)),
            services,
        });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bus(name: &str, items: Json) -> BusService {
        BusService {
            name: name.into(),
            items: serde_json::from_value(items).unwrap(),
        }
    }

    #[test]
    fn joins_bus_settings_and_state_file() {
        let src = Sources {
            services: vec![bus(
                "com.victronenergy.temperature.mqtt_fe_001_t1",
                json!({"/DeviceInstance": 20, "/Connected": 1, "/CustomName": "Fridge",
                       "/DeviceName": "fe_001:t1"}),
            )],
            settings: serde_json::from_value(json!({
                "/Settings/Devices/mqtt_fe_001_t1/ClassAndVrmInstance": "temperature:20",
                "/Settings/Devices/mqtt_fe_001_tk1/ClassAndVrmInstance": "tank:21",
                "/Settings/MqttDevices/mqtt_fe_001_tk1/CustomName": "Water",
                "/Settings/Devices/mqtt_old_t9/ClassAndVrmInstance": "temperature:25",
                "/Settings/Devices/cgwacs_ttyUSB0/ClassAndVrmInstance": "grid:30",
            }))
            .unwrap(),
            saved: vec![SavedDevice {
                client_id: "fe_001".into(),
                status: json!({"clientId": "fe_001", "connected": 1,
                               "services": {"t1": "temperature", "tk1": "tank", "x": "nope"}}),
            }],
            last_seen: LastSeen::from([("old".to_string(), 5)]),
            known: Known::new(),
            activity: None,
            mapped: BTreeMap::new(),
        };
        let reports = build(&src);
        let ids: Vec<&str> = reports.iter().map(|r| r.client_id.as_str()).collect();
        assert_eq!(ids, ["fe_001", "old"]);
        let fe = &reports[0];
        assert!(fe.connected && !fe.client_id_guessed);
        let states: Vec<(&str, ServiceState)> = fe
            .services
            .iter()
            .map(|s| (s.service_id.as_deref().unwrap(), s.state))
            .collect();
        assert_eq!(
            states,
            [
                ("t1", ServiceState::Online),
                ("tk1", ServiceState::Refused),
                ("x", ServiceState::Refused)
            ]
        );
        assert_eq!(fe.services[0].custom_name.as_deref(), Some("Fridge"));
        assert_eq!(fe.services[1].instance, Some(21));
        assert_eq!(fe.services[1].custom_name.as_deref(), Some("Water"));
        let old = &reports[1];
        assert!(old.client_id_guessed && !old.connected);
        assert_eq!(old.last_seen, Some(5));
        assert_eq!(old.services[0].state, ServiceState::Offline);
        assert_eq!(old.services[0].service_type.as_deref(), Some("temperature"));
    }

    #[test]
    fn the_daemon_lists_mapped_devices_by_their_declaration_served_or_refused() {
        use crate::operator::mapped_activity::{DeclarationNote, MappedStatus, PathSample};
        let note = |id: &str, served: bool| DeclarationNote {
            id: id.into(),
            origin: "devices.toml:1:1".into(),
            by_topic: false,
            service_type: served.then(|| "grid".into()),
            topics: vec!["em/#".into()],
            diagnostics: if served {
                vec![]
            } else {
                vec!["devices.toml:9:11: device 'bad_one': unknown service type".into()]
            },
            served,
            valid: served,
        };
        let sample = PathSample {
            topic: "em/status".into(),
            raw_payload: "{\"p\":5}".into(),
            converted_value: json!(5.0),
            at: 7,
        };
        let served = MappedStatus {
            declaration: Some(note("grid_shelly", true)),
            messages: 1,
            last: Some(sample.clone()),
            paths: BTreeMap::from([("/Ac/Power".to_string(), sample)]),
            last_value: Some(7),
            registered: true,
            ..MappedStatus::default()
        };
        // Served but its registration refused: the name is held by another service.
        let blocked = MappedStatus {
            declaration: Some(note("blocked", true)),
            refusal: Some("not registered: name taken".into()),
            ..MappedStatus::default()
        };
        let src = Sources {
            services: vec![bus(
                "com.victronenergy.grid.mqtt_grid_shelly",
                json!({"/DeviceInstance": 30, "/Connected": 1, "/Mgmt/Connection": "MQTT x"}),
            )],
            settings: serde_json::from_value(json!({
                "/Settings/Devices/mqtt_grid_shelly/ClassAndVrmInstance": "grid:30",
                "/Settings/Devices/mqtt_bad_one/ClassAndVrmInstance": "grid:31",
            }))
            .unwrap(),
            activity: Some(BTreeMap::new()),
            mapped: BTreeMap::from([
                ("grid_shelly".to_string(), served),
                ("bad_one".to_string(), MappedStatus {
                    declaration: Some(note("bad_one", false)),
                    ..MappedStatus::default()
                }),
                ("blocked".to_string(), blocked),
            ]),
            ..Sources::default()
        };
        let reports = build(&src);
        let ids: Vec<&str> = reports.iter().map(|r| r.client_id.as_str()).collect();
        // By the declaration's ids, not guesses from `mqtt_bad_one` and `mqtt_grid_shelly`.
        assert_eq!(ids, ["bad_one", "blocked", "grid_shelly"]);
        assert!(reports.iter().all(|r| r.kind == "mapped" && !r.client_id_guessed));
        let [bad, blocked, grid] = &reports[..] else {
            panic!("{reports:?}")
        };
        assert!(!bad.connected);
        assert_eq!(bad.services[0].state, ServiceState::Refused);
        assert_eq!(bad.services[0].instance, Some(31));
        assert!(bad.services[0].last_error.as_deref().unwrap().starts_with("devices.toml:9:11"));
        assert_eq!(blocked.services[0].state, ServiceState::Refused);
        assert!(blocked.services[0].last_error.as_deref().unwrap().contains("name taken"));
        let g = &grid.services[0];
        assert_eq!(grid.services.len(), 1);
        assert_eq!(g.state, ServiceState::Online);
        assert_eq!(g.last_value_at, Some(7));
        let m = g.mapped.as_ref().unwrap();
        assert_eq!(m.last_topic.as_deref(), Some("em/status"));
        assert_eq!(m.converted_value, Some(json!(5.0)));
        assert_eq!(m.paths["/Ac/Power"].raw_payload, "{\"p\":5}");
        assert_eq!(m.declared_by.as_deref(), Some("file"));
    }

    #[test]
    fn a_mapped_device_is_told_by_its_connection_text() {
        let src = Sources {
            services: vec![bus(
                "com.victronenergy.grid.mqtt_grid_shelly",
                json!({"/DeviceInstance": 30, "/Connected": 1,
                       "/Mgmt/Connection": "MQTT shelly-pro3em shellypro3em-abc"}),
            )],
            settings: serde_json::from_value(json!({
                "/Settings/Devices/mqtt_grid_shelly/ClassAndVrmInstance": "grid:30",
            }))
            .unwrap(),
            ..Sources::default()
        };
        let reports = build(&src);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].client_id, "grid_shelly");
        assert_eq!(reports[0].kind, "mapped");
        assert_eq!(reports[0].services.len(), 1);
        assert_eq!(reports[0].services[0].service_id, None);
        assert_eq!(reports[0].services[0].instance, Some(30));
    }

    #[test]
    fn a_prefix_of_another_client_id_does_not_take_its_settings() {
        let src = Sources {
            settings: serde_json::from_value(json!({
                "/Settings/Devices/mqtt_fe_t1/ClassAndVrmInstance": "temperature:1",
                "/Settings/Devices/mqtt_fe_001_t1/ClassAndVrmInstance": "temperature:2",
            }))
            .unwrap(),
            saved: vec![
                SavedDevice {
                    client_id: "fe".into(),
                    status: json!({"clientId": "fe", "connected": 1, "services": {"t1": "temperature"}}),
                },
                SavedDevice {
                    client_id: "fe_001".into(),
                    status: json!({"clientId": "fe_001", "connected": 1, "services": {"t1": "temperature"}}),
                },
            ],
            ..Sources::default()
        };
        let reports = build(&src);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].services.len(), 1);
        assert_eq!(reports[0].services[0].instance, Some(1));
        assert_eq!(reports[1].services[0].instance, Some(2));
    }

    #[test]
    fn a_unique_id_that_may_be_another_devices_is_listed_on_its_own() {
        // `fe` is connected; `fe_001` ("Freezer", instance 5) is not, known by its settings.
        let src = Sources {
            settings: serde_json::from_value(json!({
                "/Settings/Devices/mqtt_fe_t1/ClassAndVrmInstance": "temperature:1",
                "/Settings/Devices/mqtt_fe_001_t1/ClassAndVrmInstance": "temperature:5",
                "/Settings/MqttDevices/mqtt_fe_001_t1/CustomName": "Freezer",
                "/Settings/Devices/mqtt_fe_t2/ClassAndVrmInstance": "temperature:6",
            }))
            .unwrap(),
            saved: vec![SavedDevice {
                client_id: "fe".into(),
                status: json!({"clientId": "fe", "connected": 1, "services": {"t1": "temperature"}}),
            }],
            ..Sources::default()
        };
        let reports = build(&src);
        let ids: Vec<&str> = reports.iter().map(|r| r.client_id.as_str()).collect();
        assert_eq!(ids, ["fe", "mqtt_fe_001_t1"]);
        let fe: Vec<&str> = reports[0].services.iter().map(|s| s.unique_id.as_str()).collect();
        // Its own old service (one way to split) stays with it; the freezer does not.
        assert_eq!(fe, ["mqtt_fe_t1", "mqtt_fe_t2"]);
        let alone = &reports[1];
        assert!(alone.client_id_guessed);
        assert_eq!(alone.services[0].service_id, None);
        assert_eq!(alone.services[0].custom_name.as_deref(), Some("Freezer"));
        assert_eq!(alone.services[0].instance, Some(5));
    }

    #[test]
    fn a_device_that_left_is_listed_by_its_raw_id_and_its_services() {
        // `ESP32-ABC` (legal `ESP32_ABC_x<hash>`) with service `t_1` left: only its
        // settings remain, and their unique id splits three ways.
        let client = ClientId::parse("ESP32-ABC").unwrap();
        let unique = UniqueId::new(&client, &ServiceId::parse("t_1").unwrap());
        let src = Sources {
            settings: BTreeMap::from([(unique.instance_setting(), json!("temperature:7"))]),
            known: Known::from([("ESP32-ABC".to_string(), vec!["t_1".to_string()])]),
            last_seen: LastSeen::from([("ESP32-ABC".to_string(), 9)]),
            ..Sources::default()
        };
        let reports = build(&src);
        assert_eq!(reports.len(), 1);
        let d = &reports[0];
        assert_eq!(d.client_id, "ESP32-ABC");
        assert!(!d.client_id_guessed && !d.connected);
        assert_eq!(d.last_seen, Some(9));
        assert_eq!(d.services[0].service_id.as_deref(), Some("t_1"));
        assert_eq!(d.services[0].instance, Some(7));
    }
}
