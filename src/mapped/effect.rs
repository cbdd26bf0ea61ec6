//! What a mapped device asks of the device state machine: the interface
//! between this pure core and the device room that owns the D-Bus service,
//! the MQTT client and the state file. Effects are data; applying them in
//! order is all the executor does.
//!
//! ```text
//! start            → [Register, Set([("/Ac/MaxPower", 800)]), Connected(false)]
//! em:0 (fresh)     → [Set([("/Ac/Power", 1300.3), ("/Ac/L1/Power", 342.8), …]), Connected(true)]
//! online = false   → [Set([("/Ac/Power", Invalid), …]), Connected(false)]
//! SetValue /Ac/PowerLimit 2 → [Set([("/Ac/PowerLimit", 5.0)]),
//!                              Publish { topic: "solar/1161…/cmd/limit_nonpersistent_absolute", payload: "5", retain: false }]
//! ```

use crate::dbus::Value;

pub use super::integrate::EnergyState;

/// One thing for the device state machine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Put the service on D-Bus as the declaration describes it (type,
    /// `mqtt_<id>`, name, instance, settings, product, serial, connection).
    /// A `Set` with every value known, and a `Connected`, follow.
    Register,
    /// Take the service off D-Bus (`on_stale = "remove"`); its settings stay.
    /// A later `Register` brings it back.
    Remove,
    /// Set these paths (absolute, `"/Ac/Power"`), in one `ItemsChanged`.
    /// [`Value::Invalid`] makes a path invalid. Only changes are listed.
    Set(Vec<(String, Value)>),
    /// `/Connected`: 1 while the device is alive, 0 while it is stale or
    /// its availability says offline.
    Connected(bool),
    /// Publish to the device (a forwarded D-Bus write).
    Publish(Publish),
    /// Tell the operator (the executor adds the device id).
    Log(Log),
    /// The integrated energy counters changed: save them (at most once a
    /// minute; [`super::MappedDevice::restore_energy`] takes them back).
    SaveEnergy(EnergyState),
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

/// A line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: LogLevel,
    pub message: String,
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Something worth knowing happened (a counter reset accepted).
    Info,
    /// A value was not applied, or input was not understood.
    Warn,
}

impl Effect {
    pub(crate) fn warn(message: impl Into<String>) -> Effect {
        Effect::Log(Log {
            level: LogLevel::Warn,
            message: message.into(),
        })
    }

    pub(crate) fn info(message: impl Into<String>) -> Effect {
        Effect::Log(Log {
            level: LogLevel::Info,
            message: message.into(),
        })
    }
}
