//! The command line, as clap types. Their doc comments are the `--help` text.
//! Knows no tokio, D-Bus or MQTT; [`crate::config`] turns it into settings.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Lets MQTT devices (ESP32, Arduino, Raspberry Pi, Shelly, Node-RED) register
/// themselves on the Venus OS D-Bus, so they show up on the GX and in VRM.
#[derive(Debug, Parser)]
#[command(
    name = "dbus-mqtt-devices",
    version,
    after_help = "Exit codes: 0 clean stop, 1 runtime failure, 2 bad command line or configuration.\n\
                  Every option can also be set in the configuration file (same name, without the dashes)."
)]
pub struct Cli {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the daemon. All optional here, so that the configuration file
/// can supply them; [`crate::config`] applies the defaults.
#[derive(Debug, Args, Default, Clone)]
pub struct DaemonArgs {
    /// MQTT broker host [default: 127.0.0.1]
    #[arg(long, global = true, value_name = "HOST")]
    pub mqtt_host: Option<String>,

    /// MQTT broker port [default: 1883, or 8883 with --tls]
    #[arg(long, global = true, value_name = "PORT")]
    pub mqtt_port: Option<u16>,

    /// MQTT user name
    #[arg(long, global = true, value_name = "USER")]
    pub mqtt_user: Option<String>,

    /// MQTT password
    #[arg(long, global = true, value_name = "PASSWORD")]
    pub mqtt_password: Option<String>,

    /// Connect to the broker with TLS
    #[arg(long, global = true)]
    pub tls: bool,

    /// CA certificate (PEM) for --tls [default: the system's roots]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Portal id (VRM id) [default: /data/venus/unique-id, else /Serial of
    /// com.victronenergy.system, else the retained N/+/system/0/Serial, else
    /// the MAC address of eth0 or $VRM_IFACE]
    #[arg(long, global = true, value_name = "ID")]
    pub portal_id: Option<String>,

    /// D-Bus address [default: the session bus when DBUS_SESSION_BUS_ADDRESS
    /// is set, else the system bus]
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub dbus_address: Option<String>,

    /// Directory for the configuration file, the catalog override and the
    /// state file [default: /data/conf/dbus-mqtt-devices]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Configuration file (TOML) [default: <data-dir>/config.toml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level or tracing filter (error, warn, info, debug, trace) [default: info]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log to syslog instead of stderr
    #[arg(long, global = true)]
    pub syslog: bool,

    /// Most devices served at once [default: 64]
    #[arg(long, global = true, value_name = "N")]
    pub max_devices: Option<usize>,

    /// Most D-Bus services (all devices together) [default: 128]
    #[arg(long, global = true, value_name = "N")]
    pub max_services: Option<usize>,

    /// Liveness timeout in seconds for devices that declare none [default: off]
    #[arg(long, global = true, value_name = "SECONDS")]
    pub default_timeout: Option<f64>,
}

/// Subcommands besides the daemon itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a settings service (com.victronenergy.settings) that behaves like
    /// Venus' localsettings, for a PC or for tests
    SettingsService,
    /// Run the whole Venus side on a PC: a broker, a private D-Bus, settings,
    /// an MQTT gateway and the daemon, with a live view
    #[cfg(feature = "sim")]
    Sim(crate::sim::SimArgs),
    /// Check the mapped-device declarations (devices.toml, devices.d/*.toml)
    /// and presets (presets.d/*.toml) of the data directory: print each
    /// device fully expanded, every mistake with file, line and column;
    /// exit 0 when all are valid, 2 otherwise
    CheckConfig,
}
