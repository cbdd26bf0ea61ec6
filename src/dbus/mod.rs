//! The Venus OS BusItem dialect on zbus: values, item trees, a dispatcher that accepts calls
//! without an interface header, and services with one connection each.
//! Knows nothing of MQTT or of this daemon's devices; usable by any Rust driver on Venus OS.
//!
//! Facts behind every rule here: velib_python's `vedbus.py`/`ve_utils.py` and what dbus-mqtt,
//! dbus-flashmq, dbusmonitor and gui-v2 were seen to accept.

pub mod dispatch;
pub mod error;
pub mod json;
pub mod service;
pub mod tree;
pub mod value;

pub use dispatch::BUSITEM_INTERFACE;
pub use error::{Error, ErrorReply};
pub use json::json_type_name;
pub use service::{RemoteWrite, Service, WriteHook, REMOTE_WRITE_QUEUE};
pub use tree::Item;
pub use value::{TextFormat, Value, ValueError, ValueType, VariantMap, INVALID_TEXT, MAX_NESTING};

use std::fmt;

/// Which bus to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus (Venus OS).
    System,
    /// The session bus (`DBUS_SESSION_BUS_ADDRESS`).
    Session,
    /// A bus at a D-Bus address such as `unix:path=/run/x`.
    Address(String),
}

impl BusAddress {
    /// velib's rule: the session bus when `DBUS_SESSION_BUS_ADDRESS` is set, else the system bus.
    pub fn from_env() -> BusAddress {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            BusAddress::Session
        } else {
            BusAddress::System
        }
    }

    /// Opens a new connection (each service needs its own).
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        self.builder().build().await
    }

    /// A connection whose incoming-message queue holds at most `max_queued`
    /// messages. zbus allocates that queue up front; a service connection sees
    /// little but method calls, which its dispatcher drains at once, so a
    /// short queue keeps hundreds of services small in memory.
    pub async fn connect_with_queue(
        &self,
        max_queued: std::num::NonZeroUsize,
    ) -> zbus::Result<zbus::Connection> {
        self.builder().max_queued(max_queued).build().await
    }

    fn builder(&self) -> zbus::connection::Builder<'_> {
        match self {
            BusAddress::System => zbus::connection::Builder::system(),
            BusAddress::Session => zbus::connection::Builder::session(),
            BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str()),
        }
    }
}

impl fmt::Display for BusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAddress::System => f.write_str("system bus"),
            BusAddress::Session => f.write_str("session bus"),
            BusAddress::Address(a) => write!(f, "bus at {a}"),
        }
    }
}
