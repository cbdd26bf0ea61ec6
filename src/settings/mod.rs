//! localsettings (`com.victronenergy.settings`): a client for drivers ([`SettingsClient`]) and
//! a service of our own that behaves like it ([`SettingsService`]), the project's test peer and
//! the settings store of PC mode. Knows no MQTT and no devices.

pub mod client;
pub mod service;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

use crate::dbus::{Value, ValueError};

pub use client::SettingsClient;
pub use service::{run_until, SettingsService};

/// The well-known name of localsettings.
pub const SETTINGS_SERVICE: &str = "com.victronenergy.settings";
/// The interface of `AddSettings`, `AddSetting`, `RemoveSettings` (on groups and `/`).
pub const SETTINGS_INTERFACE: &str = "com.victronenergy.Settings";

/// One setting to create with `AddSettings`.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingSpec {
    /// Absolute path, e.g. `/Settings/Devices/<unique>/CustomName`.
    pub path: String,
    /// Default; its D-Bus type decides the setting's type (`i`/`x` integer, `d` float, `s` string).
    pub default: Value,
    /// Lowest allowed value (numbers only; `min == max == 0` means no limits).
    pub min: Option<Value>,
    /// Highest allowed value.
    pub max: Option<Value>,
    /// Changes are not logged by localsettings.
    pub silent: bool,
}

impl SettingSpec {
    /// A setting without limits, not silent.
    pub fn new(path: impl Into<String>, default: Value) -> SettingSpec {
        SettingSpec {
            path: path.into(),
            default,
            min: None,
            max: None,
            silent: false,
        }
    }

    /// The same setting with limits.
    pub fn with_limits(mut self, min: Value, max: Value) -> SettingSpec {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
}

/// One entry of the `AddSettings` reply.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingResult {
    /// The path as sent.
    pub path: String,
    /// 0 or a negative [`store::codes`] value.
    pub error: i32,
    /// The stored value (an existing setting keeps its value).
    pub value: Value,
}

impl SettingResult {
    /// The value, or [`Error::Rejected`] naming the path and code when `error != 0`.
    pub fn into_result(self) -> Result<Value, Error> {
        if self.error == 0 {
            Ok(self.value)
        } else {
            Err(Error::Rejected {
                path: self.path,
                code: self.error,
            })
        }
    }
}

/// A change of a setting, made by anyone (PropertiesChanged or ItemsChanged of localsettings).
#[derive(Clone, Debug, PartialEq)]
pub struct SettingChange {
    /// Absolute path.
    pub path: String,
    /// New value.
    pub value: Value,
}

/// Parses a `ClassAndVrmInstance` value such as `"temperature:20"`.
pub fn parse_class_and_instance(s: &str) -> Option<(String, u32)> {
    let (class, instance) = s.split_once(':')?;
    if class.is_empty() || instance.is_empty() || !instance.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((class.to_string(), instance.parse().ok()?))
}

/// What went wrong talking to, or running, a settings service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting to the bus failed.
    #[error("connecting to the d-bus ({bus}) for settings")]
    Connect {
        /// The bus that was tried.
        bus: String,
        /// The cause.
        #[source]
        source: zbus::Error,
    },
    /// A D-Bus call to localsettings failed or its reply had the wrong shape.
    #[error("calling {method} on {path} of com.victronenergy.settings")]
    Call {
        /// The method.
        method: &'static str,
        /// The object path (setting or `/`).
        path: String,
        /// The cause.
        #[source]
        source: zbus::Error,
    },
    /// localsettings refused a setting or a value (AddSettings error code, or SetValue -1).
    #[error("settings refused {path} (error {code})")]
    Rejected {
        /// The setting path.
        path: String,
        /// The code localsettings returned.
        code: i32,
    },
    /// A value from localsettings has no Venus meaning.
    #[error("value of setting {path} cannot be read")]
    Value {
        /// The setting path.
        path: String,
        /// The cause.
        #[source]
        source: ValueError,
    },
    /// `com.victronenergy.settings` did not appear in time.
    #[error("waiting for com.victronenergy.settings: not there after {0:?}")]
    Timeout(Duration),
    /// Our settings service could not take its name or talk on the bus.
    #[error("{what} for the settings service")]
    Bus {
        /// What was being attempted.
        what: &'static str,
        /// The cause.
        #[source]
        source: zbus::Error,
    },
    /// `com.victronenergy.settings` is already owned by another connection.
    #[error("starting the settings service: com.victronenergy.settings is already owned")]
    NameTaken,
    /// Reading or writing the settings file failed.
    #[error("{what} {path}")]
    Io {
        /// What was being attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The settings file is not valid.
    #[error("parsing settings file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_and_instance_parsing() {
        assert_eq!(
            parse_class_and_instance("temperature:20"),
            Some(("temperature".to_string(), 20))
        );
        assert_eq!(parse_class_and_instance("temperature"), None);
        assert_eq!(parse_class_and_instance(":3"), None);
        assert_eq!(parse_class_and_instance("tank:-1"), None);
        assert_eq!(parse_class_and_instance("tank:x"), None);
    }
}
