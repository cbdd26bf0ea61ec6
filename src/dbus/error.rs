//! Errors of the Venus D-Bus layer: `dbus::Error` for the program side, and the few D-Bus error
//! replies the dispatcher sends, named in one place. Knows no MQTT.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
/// What went wrong while running a BusItem service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting to the bus failed.
    #[error("connecting to the d-bus ({bus})")]
    Connect {
        /// The bus that was tried.
        bus: String,
        /// The cause.
        #[source]
        source: zbus::Error,
    },
    /// The well-known name is owned by another connection (RequestName with DO_NOT_QUEUE).
    #[error("requesting bus name {name}: already owned by another connection")]
    NameTaken {
        /// The service name.
        name: String,
    },
    /// A D-Bus call made for the service (RequestName, ReleaseName, a signal) failed.
    #[error("{what} for service {name}")]
    Bus {
        /// What was being attempted.
        what: &'static str,
        /// The service name.
        name: String,
        /// The cause.
        #[source]
        source: zbus::Error,
    },
    /// A path is not a valid D-Bus object path for an item (or is `/`).
    #[error("invalid item path {path:?} for service {name}")]
    InvalidPath {
        /// The service name.
        name: String,
        /// The path.
        path: String,
    },
    /// An item path is already used by an item, or an item would be a node of another.
    #[error("item path {path} of service {name} clashes with an existing item or node")]
    PathClash {
        /// The service name.
        name: String,
        /// The path.
        path: String,
    },
    /// No item at that path.
    #[error("no item {path} in service {name}")]
    UnknownPath {
        /// The service name.
        name: String,
        /// The path.
        path: String,
    },
    /// A value that D-Bus cannot carry (see [`super::Value::check_wire`]); nothing was stored.
    #[error("value for {path} of service {name} cannot be sent on d-bus")]
    InvalidValue {
        /// The service name.
        name: String,
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: super::ValueError,
    },
    /// The service name is not a valid bus name.
    #[error("invalid service name {name:?}")]
    InvalidName {
        /// The name.
        name: String,
        /// The cause.
        #[source]
        source: zbus::Error,
    },
}

/// The D-Bus error replies the dispatchers send (the names velib/dbus-python use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorReply {
    /// `org.freedesktop.DBus.Error.UnknownObject`: no object at that path.
    UnknownObject(String),
    /// `org.freedesktop.DBus.Error.UnknownMethod`: no such member (or a wrong interface) there.
    UnknownMethod(String),
    /// `org.freedesktop.DBus.Error.InvalidArgs`: the body does not fit the method.
    InvalidArgs(String),
    /// `org.freedesktop.DBus.Error.Failed`: anything else.
    Failed(String),
}

impl ErrorReply {
    /// The D-Bus error name.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorReply::UnknownObject(_) => "org.freedesktop.DBus.Error.UnknownObject",
            ErrorReply::UnknownMethod(_) => "org.freedesktop.DBus.Error.UnknownMethod",
            ErrorReply::InvalidArgs(_) => "org.freedesktop.DBus.Error.InvalidArgs",
            ErrorReply::Failed(_) => "org.freedesktop.DBus.Error.Failed",
        }
    }

    /// The human-readable message sent as the error body.
    pub fn message(&self) -> &str {
        match self {
            ErrorReply::UnknownObject(m)
            | ErrorReply::UnknownMethod(m)
            | ErrorReply::InvalidArgs(m)
            | ErrorReply::Failed(m) => m,
        }
    }
}
