//! What the operator tools read and change on D-Bus: our services and their values,
//! our settings in localsettings, `RemoveSettings`, and single values of other services
//! (systemcalc, the AC input settings). Every call has a time limit, so a hung service
//! makes a check fail instead of hanging the command.

use super::inventory::{split_bus_name, BusService};
use crate::dbus::{Value, BUSITEM_INTERFACE};
use crate::settings::{SETTINGS_INTERFACE, SETTINGS_SERVICE};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use zbus::OwnedVariant as OwnedValue;
use zbus::Connection;

/// The longest a single D-Bus call may take here.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The groups of localsettings our settings live in.
pub const SETTINGS_GROUPS: [&str; 2] = ["/Settings/Devices", "/Settings/MqttDevices"];

async fn call(
    conn: &Connection,
    destination: &str,
    path: &str,
    interface: &str,
    method: &str,
    body: &(impl serde::Serialize + zbus::zvariant::DynamicType),
) -> Result<zbus::Message, String> {
    let fut = conn.call_method(Some(destination), path, Some(interface), method, body);
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(format!("{method} on {destination}{path}: {e}")),
        Err(_) => Err(format!(
            "{method} on {destination}{path}: no answer within {} s",
            CALL_TIMEOUT.as_secs()
        )),
    }
}

/// Every name on the bus.
pub async fn names(conn: &Connection) -> Result<Vec<String>, String> {
    let reply = call(
        conn,
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "ListNames",
        &(),
    )
    .await?;
    reply.body().deserialize().map_err(|e| e.to_string())
}

/// Whether `name` has an owner.
pub async fn has_owner(conn: &Connection, name: &str) -> Result<bool, String> {
    let reply = call(
        conn,
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        &(name,),
    )
    .await?;
    reply.body().deserialize().map_err(|e| e.to_string())
}

fn to_json(v: &OwnedValue) -> Json {
    Value::from_variant(v).map(|v| v.to_json()).unwrap_or(Json::Null)
}

/// `GetItems` of a service: path → value.
pub async fn items(conn: &Connection, service: &str) -> Result<BTreeMap<String, Json>, String> {
    let reply = call(conn, service, "/", BUSITEM_INTERFACE, "GetItems", &()).await?;
    let items: HashMap<String, HashMap<String, OwnedValue>> =
        reply.body().deserialize().map_err(|e| e.to_string())?;
    Ok(items
        .into_iter()
        .map(|(path, entry)| {
            let value = entry.get("Value").map(to_json).unwrap_or(Json::Null);
            (path, value)
        })
        .collect())
}

/// `GetValue` of one path; `Null` for an invalid value.
pub async fn value(conn: &Connection, service: &str, path: &str) -> Result<Json, String> {
    let reply = call(conn, service, path, BUSITEM_INTERFACE, "GetValue", &()).await?;
    let v: OwnedValue = reply.body().deserialize().map_err(|e| e.to_string())?;
    Ok(to_json(&v))
}

/// Our services on D-Bus with their values (a service that does not answer is listed
/// with no values).
pub async fn our_services(conn: &Connection) -> Result<Vec<BusService>, String> {
    let mut services = Vec::new();
    for name in names(conn).await? {
        if split_bus_name(&name).is_none() {
            continue;
        }
        let items = items(conn, &name).await.unwrap_or_default();
        services.push(BusService { name, items });
    }
    Ok(services)
}

/// Every setting in our groups, by absolute path (a group localsettings does not have
/// yet is empty).
pub async fn our_settings(conn: &Connection) -> Result<BTreeMap<String, Json>, String> {
    let mut all = BTreeMap::new();
    for group in SETTINGS_GROUPS {
        let reply = match call(conn, SETTINGS_SERVICE, group, BUSITEM_INTERFACE, "GetValue", &())
            .await
        {
            Ok(r) => r,
            Err(e) if e.contains("UnknownObject") => continue,
            Err(e) => return Err(e),
        };
        let v: OwnedValue = reply.body().deserialize().map_err(|e| e.to_string())?;
        let Ok(Value::Dict(map)) = Value::from_variant(&v) else {
            continue;
        };
        for (relative, value) in map {
            all.insert(format!("{group}/{relative}"), value.to_json());
        }
    }
    Ok(all)
}

/// `RemoveSettings`: 0 removed, -1 not there, per path.
pub async fn remove_settings(conn: &Connection, paths: &[String]) -> Result<Vec<i32>, String> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let reply = call(conn, SETTINGS_SERVICE, "/", SETTINGS_INTERFACE, "RemoveSettings", &(paths,))
        .await?;
    reply.body().deserialize().map_err(|e| e.to_string())
}
