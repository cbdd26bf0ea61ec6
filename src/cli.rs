//! The command line, as clap types. Their doc comments (or `help`, for an
//! option with a default) are the `--help` text. The daemon's options are
//! also the keys of the configuration file. Knows no tokio, D-Bus or MQTT;
//! [`crate::config`] turns them into settings.

use crate::portal;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::path::PathBuf;

/// Lets MQTT devices (ESP32, Arduino, Raspberry Pi, Shelly, Node-RED) register
/// themselves on the Venus OS D-Bus, so they show up on the GX and in VRM.
#[derive(Debug, Parser)]
#[command(
    name = "dbus-mqtt-devices",
    version,
    after_help = "Exit codes: 0 clean stop, 1 runtime failure, 2 bad command line or configuration.\n\
                  Every option can also be set in the configuration file (same name, without the dashes).\n\
                  Examples:\n  dbus-mqtt-devices                     run the daemon\n  \
                  dbus-mqtt-devices list                every MQTT device the GX knows\n  \
                  dbus-mqtt-devices doctor fe001        why a device is not where you look\n  \
                  dbus-mqtt-devices remove fe001 --yes  remove a device, free its instances"
)]
pub struct Cli {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the daemon, each defined once for the command line and the
/// configuration file alike: a field is the long flag `--mqtt-host` and the
/// file key `mqtt-host`. All optional here, so that the file can supply what
/// the command line leaves out; [`crate::config`] applies the [`defaults`].
/// The help text of an option with a default names it from [`defaults`].
#[derive(Debug, Args, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonArgs {
    #[arg(long, global = true, value_name = "HOST",
        help = with_default("MQTT broker host", defaults::MQTT_HOST))]
    pub mqtt_host: Option<String>,

    #[arg(long, global = true, value_name = "PORT",
        help = with_default("MQTT broker port", format_args!(
            "{}, or {} with --tls", defaults::MQTT_PORT, defaults::MQTT_TLS_PORT)))]
    pub mqtt_port: Option<u16>,

    /// MQTT user name
    #[arg(long, global = true, value_name = "USER")]
    pub mqtt_user: Option<String>,

    /// MQTT password
    #[arg(long, global = true, value_name = "PASSWORD")]
    pub mqtt_password: Option<String>,

    /// Connect to the broker with TLS
    #[arg(long, global = true)]
    #[serde(default)]
    pub tls: bool,

    /// CA certificate (PEM) for --tls [default: the system's roots]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    #[arg(long, global = true, value_name = "ID",
        help = with_default("Portal id (VRM id)", format_args!(
            "{}, else /Serial of com.victronenergy.system, else the retained {}, \
             else the MAC address of eth0 or $VRM_IFACE",
            portal::VENUS_UNIQUE_ID_FILE, portal::SERIAL_SUBSCRIPTION)))]
    pub portal_id: Option<String>,

    /// D-Bus address [default: the session bus when DBUS_SESSION_BUS_ADDRESS
    /// is set, else the system bus]
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub dbus_address: Option<String>,

    #[arg(long, global = true, value_name = "DIR",
        help = with_default(
            "Directory for the configuration file, the catalog override and the state file",
            defaults::DATA_DIR))]
    pub data_dir: Option<PathBuf>,

    /// Configuration file (TOML) [default: <data-dir>/config.toml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    // Command line only: a configuration file cannot name another.
    #[serde(skip)]
    pub config: Option<PathBuf>,

    #[arg(long, global = true, value_name = "LEVEL",
        help = with_default(
            "Log level or tracing filter (error, warn, info, debug, trace)",
            defaults::LOG_LEVEL))]
    pub log_level: Option<String>,

    /// Log to syslog instead of stderr
    #[arg(long, global = true)]
    #[serde(default)]
    pub syslog: bool,

    #[arg(long, global = true, value_name = "N",
        help = with_default("Most devices served at once", defaults::MAX_DEVICES))]
    pub max_devices: Option<usize>,

    #[arg(long, global = true, value_name = "N",
        help = with_default("Most D-Bus services (all devices together)", defaults::MAX_SERVICES))]
    pub max_services: Option<usize>,

    /// Liveness timeout in seconds for devices that declare none [default: off]
    #[arg(long, global = true, value_name = "SECONDS")]
    pub default_timeout: Option<f64>,
}

/// The default of each option that has one, for the help text and for
/// [`crate::config`].
pub mod defaults {
    /// `--mqtt-host`: the broker on the GX itself.
    pub const MQTT_HOST: &str = "127.0.0.1";
    /// `--mqtt-port` without TLS.
    pub const MQTT_PORT: u16 = 1883;
    /// `--mqtt-port` with `--tls`.
    pub const MQTT_TLS_PORT: u16 = 8883;
    /// `--data-dir`.
    pub const DATA_DIR: &str = crate::data_dir::DEFAULT_DATA_DIR;
    /// `--log-level`.
    pub const LOG_LEVEL: &str = "info";
    /// `--max-devices`.
    pub const MAX_DEVICES: usize = 64;
    /// `--max-services`.
    pub const MAX_SERVICES: usize = 128;
}

/// The help line of an option: what it is, then its default.
fn with_default(what: &str, default: impl std::fmt::Display) -> String {
    format!("{what} [default: {default}]")
}

/// Subcommands besides the daemon itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every MQTT device the GX knows (connected or not): services, instances, names,
    /// states, last values and errors
    List(crate::operator::cli::ListArgs),
    /// Remove a device (or a service of it): off D-Bus, its settings in localsettings (the
    /// VRM instance is free again), its retained Status, its state
    Remove(crate::operator::cli::RemoveArgs),
    /// Check the GX and the devices, one line per check with the fix
    Doctor(crate::operator::cli::DoctorArgs),
    /// Run a settings service (com.victronenergy.settings) that behaves like
    /// Venus' localsettings, for a PC or for tests
    SettingsService,
    /// Run the whole Venus side on a PC: a broker, a private D-Bus, settings,
    /// an MQTT gateway and the daemon, with a live view
    #[cfg(feature = "sim")]
    Sim(SimArgs),
    /// Check the mapped-device declarations (devices.toml, devices.d/*.toml)
    /// and presets (presets.d/*.toml) of the data directory: print each
    /// device fully expanded, every mistake with file, line and column;
    /// exit 0 when all are valid, 2 otherwise
    CheckConfig,
}

impl Command {
    /// `list`, `remove` and `doctor`: short-lived commands that print their answer.
    pub fn is_operator_tool(&self) -> bool {
        matches!(
            self,
            Command::List(_) | Command::Remove(_) | Command::Doctor(_)
        )
    }
}

/// Options of `sim`. The global `--portal-id` and `--data-dir` apply too (defaults:
/// `5157e0000001` and `~/.local/share/dbus-mqtt-devices-sim`).
#[cfg(feature = "sim")]
#[derive(Debug, Args)]
#[command(
    after_help = "In sim, --portal-id defaults to 5157e0000001 and --data-dir to \
    $XDG_DATA_HOME/dbus-mqtt-devices-sim (else ~/.local/share/dbus-mqtt-devices-sim); \
    the --mqtt-* options do not apply (the daemon uses the embedded broker).\n\
    Exit codes: 0 clean stop (Ctrl-C, SIGTERM), 1 runtime failure, 2 bad command line."
)]
pub struct SimArgs {
    /// Address the MQTT broker listens on; 0.0.0.0:1883 lets devices on the LAN connect
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
    pub listen: std::net::SocketAddr,

    /// One JSON object per line on stdout (ready, service_added, service_removed, value)
    /// instead of the live view
    #[arg(long)]
    pub json: bool,

    /// Also run built-in demo devices: `demo` (protocol v3: a fridge thermometer and a water
    /// tank), and a Shelly Pro 3EM grid meter and an OpenDTU inverter as mapped devices
    /// (declared in `devices.d/demo.toml` of the data dir)
    #[arg(long)]
    pub demo: bool,

    /// Which D-Bus to run
    #[arg(long, value_enum, default_value = "auto")]
    pub bus: BusKind,
}

/// Which bus implementation to run.
#[cfg(feature = "sim")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BusKind {
    /// `dbus-daemon` when it is installed, else the embedded bus
    Auto,
    /// `dbus-daemon` (package dbus); fail when it is not installed
    DbusDaemon,
    /// The bus built into this program (busd), no system package needed
    Embedded,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_help_names_the_defaults_that_apply() {
        let help = Cli::command().render_help().to_string();
        for line in [
            "MQTT broker host [default: 127.0.0.1]",
            "MQTT broker port [default: 1883, or 8883 with --tls]",
            "Portal id (VRM id) [default: /data/venus/unique-id, else /Serial of \
             com.victronenergy.system, else the retained N/+/system/0/Serial, else the MAC \
             address of eth0 or $VRM_IFACE]",
            "the catalog override and the state file [default: /data/conf/dbus-mqtt-devices]",
            "(error, warn, info, debug, trace) [default: info]",
            "Most devices served at once [default: 64]",
            "Most D-Bus services (all devices together) [default: 128]",
        ] {
            assert!(help.contains(line), "{line} not in {help}");
        }
    }
}
