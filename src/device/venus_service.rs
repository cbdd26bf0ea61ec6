//! One registered device service: its settings in localsettings (device
//! instance and persisted paths), its D-Bus service with the mandatory paths
//! and the paths of its type, and the tasks that carry D-Bus writes and
//! settings changes back to the device task.
//!
//! Everything a service holds is given back when it is dropped, even without
//! [`DeviceService::close`] (a device torn down by a caught panic): its slot
//! of the budget, its forwarding tasks, and its bus connection (the bus then
//! releases the name).

use super::budget::ServiceSlot;
use super::machine::Registered;
use super::DeviceEvent;
use crate::catalog::{PathSpec, ServiceType, ValueKind};
use crate::dbus::{self, BusAddress, Item, Service, TextFormat, Value, ValueType};
use crate::ids::{ClientId, ServiceId, UniqueId};
use crate::protocol::ServiceDecl;
use crate::settings::{self, parse_class_and_instance, SettingSpec, SettingsClient};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// `/Mgmt/ProcessName`, as the Python driver wrote it.
pub const PROCESS_NAME: &str = "dbus-mqtt-devices";

/// Why a service could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// localsettings did not answer or refused the device instance.
    #[error("allocating the device instance of {unique} in localsettings")]
    Settings {
        unique: String,
        #[source]
        source: settings::Error,
    },
    /// localsettings answered with something that is not `<class>:<instance>`.
    #[error("localsettings returned {value:?} for {path}, not <class>:<instance>")]
    BadInstance { path: String, value: String },
    /// The D-Bus service could not be registered (name taken, bus gone…).
    #[error("registering {name} on D-Bus")]
    Dbus {
        name: String,
        #[source]
        source: dbus::Error,
    },
}

/// What registration needs from the device.
pub struct RegistrationContext<'a> {
    pub bus: &'a BusAddress,
    pub settings: &'a SettingsClient,
    pub client: &'a ClientId,
    /// `version` from the Status message.
    pub version: Option<&'a serde_json::Value>,
    /// Where D-Bus writes and settings changes of this service are sent.
    pub events: mpsc::Sender<DeviceEvent>,
    /// The service's share of the configured limit.
    pub slot: ServiceSlot,
}

/// A device service that is on D-Bus. What localsettings answered for it
/// goes to the device's machine ([`Registered`]); this is what must be given back.
pub struct DeviceService {
    pub id: ServiceId,
    pub service: Service,
    forwarders: Forwarders,
    _slot: ServiceSlot,
}

/// The tasks that carry a service's D-Bus writes and settings changes to the device task;
/// stopped when the service goes, however it goes.
struct Forwarders(Vec<JoinHandle<()>>);

impl Forwarders {
    /// Carries the D-Bus writes of service `id` and the changes of its settings
    /// (device instance included) to the device task.
    fn start(
        id: &ServiceId,
        unique: &UniqueId,
        writes: mpsc::Receiver<dbus::RemoteWrite>,
        settings: &SettingsClient,
        events: mpsc::Sender<DeviceEvent>,
    ) -> Forwarders {
        let service = id.clone();
        let write_event = move |w: dbus::RemoteWrite| DeviceEvent::RemoteWrite {
            service: service.clone(),
            path: w.path,
            value: w.value,
        };
        let service = id.clone();
        let setting_event = move |c: settings::SettingChange| DeviceEvent::SettingChanged {
            service: service.clone(),
            path: c.path,
            value: c.value,
        };
        Forwarders(vec![
            forward(writes, events.clone(), write_event),
            forward(
                settings.subscribe(&unique.settings_prefix()),
                events.clone(),
                setting_event.clone(),
            ),
            forward(
                settings.subscribe(&unique.instance_setting()),
                events,
                setting_event,
            ),
        ])
    }
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        for f in &self.0 {
            f.abort();
        }
    }
}

/// Who a service is on the GX: its unique id (D-Bus name, localsettings
/// paths) and the mandatory paths that say where it comes from. A device of
/// the protocol has it from its client id and service id; a mapped device
/// from its declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub unique: UniqueId,
    /// `/Mgmt/Connection`.
    pub connection: String,
    /// `/DeviceName`.
    pub device_name: String,
    /// `/Serial`.
    pub serial: String,
}

impl Identity {
    /// A service of a device that speaks the protocol, as the Python driver named it.
    pub fn native(client: &ClientId, service: &ServiceId) -> Identity {
        let unique = UniqueId::new(client, service);
        Identity {
            connection: format!("MQTT:{}", client.raw()),
            device_name: format!("{}:{service}", client.raw()),
            serial: unique.to_string(),
            unique,
        }
    }
}

impl DeviceService {
    /// Allocates the instance, creates the settings, registers the service.
    pub async fn register(
        reg: RegistrationContext<'_>,
        decl: &ServiceDecl,
        service_type: &ServiceType,
    ) -> Result<(DeviceService, Registered), Error> {
        let identity = Identity::native(reg.client, &decl.id);
        DeviceService::register_as(reg, &identity, decl, service_type, &[]).await
    }

    /// [`DeviceService::register`] under another identity, with `initial`
    /// values (absolute paths) instead of the catalog's defaults, so the
    /// service appears with them at once (no flicker of `/Connected`).
    pub async fn register_as(
        reg: RegistrationContext<'_>,
        identity: &Identity,
        decl: &ServiceDecl,
        service_type: &ServiceType,
        initial: &[(String, Value)],
    ) -> Result<(DeviceService, Registered), Error> {
        let unique = identity.unique.clone();
        let persisted_paths: Vec<&PathSpec> = service_type.persisted().collect();
        // One AddSettings call: the instance first, then every persisted path.
        let specs = setting_specs(&unique, decl, service_type, &persisted_paths);
        // While localsettings is away (restarting), the registration waits for it: an
        // instance is only ever what localsettings answered.
        let results = reg
            .settings
            .add_settings_when_available(&specs)
            .await
            .map_err(|source| Error::Settings {
                unique: unique.to_string(),
                source,
            })?;
        let (class, instance) = instance_of(&unique, results.first()).map_err(|e| *e)?;
        if class != service_type.name {
            warn!(
                client_id = %reg.client, service_id = %decl.id, class, service_type = %service_type.name,
                "localsettings holds another class for this device; keeping the declared type"
            );
        }
        let (stored, persisted) = stored_settings(
            reg.client,
            decl,
            &unique,
            &persisted_paths,
            results.iter().skip(1),
        );

        let mut items = build_items(
            identity,
            decl,
            service_type,
            instance,
            reg.version,
            &stored,
        );
        for (path, value) in initial {
            // A persisted path shows what localsettings holds, not a default.
            let persisted = persisted.contains_key(path);
            if let Some(item) = items.iter_mut().find(|i| i.path == *path) {
                if !persisted {
                    item.value = value.clone();
                }
            }
        }
        let name = unique.bus_name(&service_type.name);
        let (service, writes) = Service::register(reg.bus, &name, items, None)
            .await
            .map_err(|source| Error::Dbus {
                name: name.clone(),
                source,
            })?;
        info!(
            client_id = %reg.client, service_id = %decl.id, service = %name, instance,
            "registered"
        );
        let forwarders = Forwarders::start(&decl.id, &unique, writes, reg.settings, reg.events);
        let service = DeviceService {
            id: decl.id.clone(),
            service,
            forwarders,
            _slot: reg.slot,
        };
        let registered = Registered {
            unique,
            instance,
            persisted,
        };
        Ok((service, registered))
    }

    /// Removes the service from D-Bus (its settings stay).
    pub async fn close(self) {
        let DeviceService {
            service,
            forwarders,
            _slot,
            ..
        } = self;
        drop(forwarders);
        let name = service.name().to_owned();
        if let Err(e) = service.close().await {
            warn!(service = %name, error = %e, "closing the D-Bus service failed");
        }
    }
}

/// What one AddSettings call asks for: the device instance, then every persisted path.
fn setting_specs(
    unique: &UniqueId,
    decl: &ServiceDecl,
    service_type: &ServiceType,
    persisted_paths: &[&PathSpec],
) -> Vec<SettingSpec> {
    let preferred = decl.instance.unwrap_or(service_type.preferred_instance);
    let mut specs = vec![SettingSpec {
        path: unique.instance_setting(),
        default: Value::Str(format!("{}:{preferred}", service_type.name)),
        min: None,
        max: None,
        silent: false,
    }];
    for spec in persisted_paths {
        specs.push(setting_spec(unique, spec, decl, service_type));
    }
    specs
}

/// The class and device instance localsettings answered.
fn instance_of(
    unique: &UniqueId,
    result: Option<&settings::SettingResult>,
) -> Result<(String, u32), Box<Error>> {
    let text = match result {
        Some(r) if r.error == 0 => r.value.as_str().unwrap_or_default().to_owned(),
        Some(r) => {
            return Err(Box::new(Error::Settings {
                unique: unique.to_string(),
                source: settings::Error::Rejected {
                    path: r.path.clone(),
                    code: r.error,
                },
            }))
        }
        None => String::new(),
    };
    parse_class_and_instance(&text).ok_or_else(|| {
        Box::new(Error::BadInstance {
            path: unique.instance_setting(),
            value: text.clone(),
        })
    })
}

/// Values of persisted paths: what localsettings holds (by catalog path), and the
/// localsettings path of each (by D-Bus path). A setting localsettings refused (e.g. a type
/// stored differently) is left out: the path then starts from its default and is not persisted.
fn stored_settings<'r>(
    client: &ClientId,
    decl: &ServiceDecl,
    unique: &UniqueId,
    persisted_paths: &[&PathSpec],
    results: impl Iterator<Item = &'r settings::SettingResult>,
) -> (HashMap<String, Value>, HashMap<String, String>) {
    let mut stored = HashMap::new();
    let mut persisted = HashMap::new();
    for (spec, result) in persisted_paths.iter().zip(results) {
        if result.error == 0 {
            stored.insert(spec.path.clone(), result.value.clone());
            persisted.insert(format!("/{}", spec.path), unique.setting_path(&spec.path));
        } else {
            warn!(
                client_id = %client, service_id = %decl.id, path = %result.path, code = result.error,
                "localsettings refused a setting; the path works but is not persisted"
            );
        }
    }
    (stored, persisted)
}

/// The localsettings entry of one persisted path. The default's D-Bus type
/// decides the setting's type, so it follows the path's kind.
fn setting_spec(
    unique: &UniqueId,
    spec: &PathSpec,
    decl: &ServiceDecl,
    service_type: &ServiceType,
) -> SettingSpec {
    let declared = decl
        .settings
        .get(&spec.path)
        .and_then(|v| Value::from_json_as(v, ValueType::from(spec.kind)).ok())
        .filter(Value::is_valid);
    let named = (spec.path == "CustomName")
        .then(|| decl.name.clone().map(Value::Str))
        .flatten();
    let catalog = spec
        .default
        .as_ref()
        .and_then(|v| Value::from_json_as(v, ValueType::from(spec.kind)).ok())
        .filter(Value::is_valid);
    let fallback = || match spec.kind {
        ValueKind::Int => Value::I32(0),
        ValueKind::Float => Value::F64(0.0),
        ValueKind::Str | ValueKind::Any => {
            if spec.path == "CustomName" {
                Value::Str(service_type.custom_name.clone())
            } else {
                Value::Str(String::new())
            }
        }
    };
    let default = declared.or(named).or(catalog).unwrap_or_else(fallback);
    let limit = |l: Option<f64>| {
        l.map(|v| match default {
            Value::F64(_) => Value::F64(v),
            _ => Value::int(v as i64),
        })
    };
    let limits = spec.persist.as_ref();
    SettingSpec {
        path: unique.setting_path(&spec.path),
        default: default.clone(),
        min: limit(limits.and_then(|p| p.min).or(spec.min)),
        max: limit(limits.and_then(|p| p.max).or(spec.max)),
        silent: false,
    }
}

/// The mandatory paths (as velib's `add_mandatory_paths` and the Python
/// driver add them), then the paths of the type.
fn build_items(
    identity: &Identity,
    decl: &ServiceDecl,
    service_type: &ServiceType,
    instance: u32,
    version: Option<&serde_json::Value>,
    stored: &HashMap<String, Value>,
) -> Vec<Item> {
    let product_name = decl
        .product
        .clone()
        .unwrap_or_else(|| service_type.product_name.clone());
    let mut items = vec![
        Item::new("/Mgmt/ProcessName", Value::Str(PROCESS_NAME.into())),
        Item::new(
            "/Mgmt/ProcessVersion",
            Value::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        Item::new(
            "/Mgmt/Connection",
            Value::Str(identity.connection.clone()),
        ),
        Item::new("/DeviceInstance", Value::int(i64::from(instance))),
        Item::new("/DeviceName", Value::Str(identity.device_name.clone())),
        Item::new("/ProductId", Value::int(i64::from(service_type.product_id))),
        Item::new("/ProductName", Value::Str(product_name)),
        Item::new(
            "/FirmwareVersion",
            firmware_value(version, service_type.numeric_firmware),
        ),
        Item::new("/HardwareVersion", Value::Invalid),
        Item::new("/Connected", Value::I32(1)),
        Item::new("/Serial", Value::Str(identity.serial.clone())),
    ];
    for spec in &service_type.paths {
        let value = stored.get(&spec.path).cloned().unwrap_or_else(|| {
            spec.default
                .as_ref()
                .and_then(|d| Value::from_json_as(d, ValueType::from(spec.kind)).ok())
                .unwrap_or(Value::Invalid)
        });
        items.push(catalog_item(spec, value));
    }
    items
}

/// The D-Bus item of a catalog path.
pub fn catalog_item(spec: &PathSpec, value: Value) -> Item {
    let mut item = Item::new(format!("/{}", spec.path), value)
        .with_type(ValueType::from(spec.kind))
        .with_limits(spec.min, spec.max)
        .with_description(spec.description.clone());
    if spec.unit.is_some() || spec.decimals.is_some() {
        item = item.with_text(TextFormat::Fixed {
            decimals: spec.decimals,
            unit: spec.unit.clone(),
        });
    }
    if spec.writeable {
        item = item.writeable();
    }
    item
}

/// `/FirmwareVersion`: the device's `version`. Where systemcalc compares it
/// as a number, only an integer is published (else it stays invalid).
pub fn firmware_value(version: Option<&serde_json::Value>, numeric: bool) -> Value {
    match version {
        None => Value::Invalid,
        Some(serde_json::Value::Number(n)) => n.as_i64().map(Value::int).unwrap_or(Value::Invalid),
        Some(serde_json::Value::String(s)) if numeric => {
            let digits = s.trim().trim_start_matches(['v', 'V']);
            match digits.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16)
                    .map(Value::int)
                    .unwrap_or(Value::Invalid),
                None => digits
                    .parse::<i64>()
                    .map(Value::int)
                    .unwrap_or(Value::Invalid),
            }
        }
        Some(serde_json::Value::String(s)) => Value::Str(s.clone()),
        Some(_) => Value::Invalid,
    }
}

/// Carries what a channel of the D-Bus layer reports to the device task, as
/// device events, until either side is gone.
fn forward<T: Send + 'static>(
    mut source: mpsc::Receiver<T>,
    events: mpsc::Sender<DeviceEvent>,
    to_event: impl Fn(T) -> DeviceEvent + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(item) = source.recv().await {
            if events.send(to_event(item)).await.is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn firmware_is_the_device_version_or_a_number_where_systemcalc_compares() {
        assert_eq!(
            firmware_value(Some(&json!("v1.0")), false),
            Value::Str("v1.0".into())
        );
        assert_eq!(firmware_value(Some(&json!("v1.0")), true), Value::Invalid);
        assert_eq!(
            firmware_value(Some(&json!("0x422")), true),
            Value::I32(0x422)
        );
        assert_eq!(firmware_value(Some(&json!(1062)), true), Value::I32(1062));
        assert_eq!(firmware_value(None, false), Value::Invalid);
    }
}
