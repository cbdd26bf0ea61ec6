//! Resolved settings of the daemon: command line over configuration file
//! over defaults. Knows no clap internals, no tokio, no bus, no broker.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
    )
)]
use crate::cli::{defaults, DaemonArgs};
use crate::data_dir::{CONFIG_FILE, LEGACY_DATA_DIR};
use crate::ids::PortalId;
use std::path::{Path, PathBuf};
use std::time::Duration;



/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("reading the configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown keys.
    #[error("parsing the configuration file {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The configuration file: the daemon's options, with the long options'
/// names as keys (`--config` excepted).
pub type FileConfig = DaemonArgs;

/// How to reach the MQTT broker.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
}

/// Which D-Bus to use.
#[derive(Debug, Clone, PartialEq)]
pub enum BusChoice {
    /// velib's rule: the session bus when `DBUS_SESSION_BUS_ADDRESS` is set, else the system bus.
    FromEnvironment,
    /// An explicit address (`unix:path=…`).
    Address(String),
}

/// Documented limits that keep one daemon within what a GX can host.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_devices: usize,
    pub max_services: usize,
}

/// Everything the daemon needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub portal_id: Option<PortalId>,
    pub bus: BusChoice,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub syslog: bool,
    pub limits: Limits,
    pub default_timeout: Option<Duration>,
}

impl Config {
    /// Resolves the command line, reading the configuration file it names
    /// (or `<data-dir>/config.toml` when that exists).
    pub fn resolve(args: &DaemonArgs) -> Result<Config, Error> {
        let default_dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR));
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => {
                let path = default_dir.join(CONFIG_FILE);
                // Until the first start moves it (data_dir::adopt_legacy_files),
                // an older version's file is still in the old place.
                let legacy = Path::new(LEGACY_DATA_DIR).join(CONFIG_FILE);
                if path.exists() {
                    read_file(&path)?
                } else if args.data_dir.is_none() && legacy.exists() {
                    read_file(&legacy)?
                } else {
                    FileConfig::default()
                }
            }
        };
        Config::merge(args, file)
    }

    /// Command line over file over defaults.
    pub fn merge(args: &DaemonArgs, file: FileConfig) -> Result<Config, Error> {
        let tls = args.tls || file.tls;
        let port = args.mqtt_port.or(file.mqtt_port).unwrap_or(if tls {
            defaults::MQTT_TLS_PORT
        } else {
            defaults::MQTT_PORT
        });
        if port == 0 {
            return Err(Error::Invalid("the MQTT port must not be 0".into()));
        }
        let portal_id = match args.portal_id.clone().or(file.portal_id) {
            Some(id) => Some(
                PortalId::parse(&id).map_err(|e| Error::Invalid(format!("--portal-id: {e}")))?,
            ),
            None => None,
        };
        let bus = match args.dbus_address.clone().or(file.dbus_address) {
            Some(a) if a.trim().is_empty() => {
                return Err(Error::Invalid("--dbus-address is empty".into()))
            }
            Some(a) => BusChoice::Address(a),
            None => BusChoice::FromEnvironment,
        };
        let limits = Limits {
            max_devices: args
                .max_devices
                .or(file.max_devices)
                .unwrap_or(defaults::MAX_DEVICES),
            max_services: args
                .max_services
                .or(file.max_services)
                .unwrap_or(defaults::MAX_SERVICES),
        };
        if limits.max_devices == 0 || limits.max_services == 0 {
            return Err(Error::Invalid(
                "--max-devices and --max-services must be at least 1".into(),
            ));
        }
        let default_timeout = match args.default_timeout.or(file.default_timeout) {
            None | Some(0.0) => None,
            Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => {
                Some(Duration::from_secs_f64(t))
            }
            Some(t) => {
                return Err(Error::Invalid(format!(
                    "--default-timeout must be between 0 and 86400 seconds, got {t}"
                )))
            }
        };
        let user = args.mqtt_user.clone().or(file.mqtt_user);
        let password = args.mqtt_password.clone().or(file.mqtt_password);
        if password.is_some() && user.is_none() {
            return Err(Error::Invalid("--mqtt-password needs --mqtt-user".into()));
        }
        Ok(Config {
            mqtt: MqttConfig {
                host: args
                    .mqtt_host
                    .clone()
                    .or(file.mqtt_host)
                    .unwrap_or_else(|| defaults::MQTT_HOST.into()),
                port,
                user,
                password,
                tls,
                ca_file: args.ca_file.clone().or(file.ca_file),
            },
            portal_id,
            bus,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR)),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| defaults::LOG_LEVEL.into()),
            syslog: args.syslog || file.syslog,
            limits,
            default_timeout,
        })
    }

    /// A configuration for tests and the PC mode: given bus and broker, no syslog.
    #[cfg(any(feature = "sim", feature = "internals"))]
    pub fn for_local(bus_address: &str, mqtt_port: u16, data_dir: &Path) -> Config {
        Config {
            mqtt: MqttConfig {
                host: defaults::MQTT_HOST.into(),
                port: mqtt_port,
                user: None,
                password: None,
                tls: false,
                ca_file: None,
            },
            portal_id: None,
            bus: BusChoice::Address(bus_address.into()),
            data_dir: data_dir.to_path_buf(),
            log_level: defaults::LOG_LEVEL.into(),
            syslog: false,
            limits: Limits {
                max_devices: defaults::MAX_DEVICES,
                max_services: defaults::MAX_SERVICES,
            },
            default_timeout: None,
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    FileConfig::parse(&text, path)
}

impl FileConfig {
    /// Parses the text of a configuration file; `path` names it in the error.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, Error> {
        toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            // One line for the log and the terminal: the message and where.
            line: e.span().map_or(1, |span| line_of(text, span.start)),
            message: e.message().replace('\n', " "),
        })
    }
}

/// The 1-based line of byte `offset` in `text` (counted in bytes, so an
/// offset inside a character or past the end still has a line).
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    before
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_a_gx_device() {
        let c = Config::merge(&DaemonArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(c.mqtt.host, "127.0.0.1");
        assert_eq!(c.mqtt.port, 1883);
        assert_eq!(c.bus, BusChoice::FromEnvironment);
        assert_eq!(c.data_dir, PathBuf::from(crate::data_dir::DEFAULT_DATA_DIR));
        assert_eq!(c.portal_id, None);
        assert_eq!(c.default_timeout, None);
    }

    #[test]
    fn command_line_wins_over_file() {
        let file: FileConfig =
            toml::from_str("mqtt-host = \"broker\"\nmqtt-port = 1884\ntls = true\n").unwrap();
        let args = DaemonArgs {
            mqtt_port: Some(1999),
            ..Default::default()
        };
        let c = Config::merge(&args, file).unwrap();
        assert_eq!(c.mqtt.host, "broker");
        assert_eq!(c.mqtt.port, 1999);
        assert!(c.mqtt.tls);
    }

    #[test]
    fn tls_changes_the_default_port() {
        let args = DaemonArgs {
            tls: true,
            ..Default::default()
        };
        assert_eq!(
            Config::merge(&args, FileConfig::default())
                .unwrap()
                .mqtt
                .port,
            8883
        );
    }

    #[test]
    fn the_shipped_example_names_only_real_keys() {
        let example = include_str!("../packaging/config.toml.example");
        let uncommented: String = example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .unwrap_or("")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let file: FileConfig = toml::from_str(&uncommented).expect("every example key is known");
        assert_eq!(file.mqtt_port, Some(1883));
        assert_eq!(file.max_services, Some(128));
        assert!(Config::merge(&DaemonArgs::default(), file).is_ok());
    }

    #[test]
    fn unusable_values_are_refused_with_a_reason() {
        let bad = [
            DaemonArgs {
                mqtt_port: Some(0),
                ..Default::default()
            },
            DaemonArgs {
                portal_id: Some("a/b".into()),
                ..Default::default()
            },
            DaemonArgs {
                default_timeout: Some(-1.0),
                ..Default::default()
            },
            DaemonArgs {
                mqtt_password: Some("x".into()),
                ..Default::default()
            },
        ];
        for args in bad {
            assert!(
                Config::merge(&args, FileConfig::default()).is_err(),
                "{args:?}"
            );
        }
        assert!(toml::from_str::<FileConfig>("mqtt-hots = \"x\"").is_err());
    }

    #[test]
    fn the_file_cannot_name_another_file() {
        let e = FileConfig::parse("config = \"other.toml\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `config`"), "{e}");
    }
}
