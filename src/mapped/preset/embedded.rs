//! The built-in presets: one TOML file per preset in `presets/`, compiled
//! into the binary. Knows nothing but the file list; a unit test checks that
//! every file in `presets/` is listed here, loads and checks.

/// One built-in preset file.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPreset {
    /// The preset's name (the file name without `.toml`).
    pub name: &'static str,
    /// The file's TOML text.
    pub text: &'static str,
}

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(EmbeddedPreset { name: $name, text: include_str!(concat!("../presets/", $name, ".toml")) }),*]
    };
}

/// Every built-in preset, sorted by name.
pub const FILES: &[EmbeddedPreset] = embedded![
    "ahoydtu",
    "esphome",
    "opendtu",
    "shelly-em",
    "shelly-gen1-em",
    "shelly-pm",
    "shelly-pro3em",
    "tasmota-energy",
    "zigbee2mqtt",
];
