//! The built-in service types: one TOML file per Venus service type in
//! `types/`, compiled into the binary. Knows nothing but the file list; a unit
//! test checks that every file in `types/` is listed here and parses.

/// One built-in catalog file.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedFile {
    /// The service type it describes (the file name without `.toml`).
    pub name: &'static str,
    /// The file's TOML text.
    pub text: &'static str,
}

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(EmbeddedFile { name: $name, text: include_str!(concat!("types/", $name, ".toml")) }),*]
    };
}

/// Every built-in type, sorted by name.
pub const FILES: &[EmbeddedFile] = embedded![
    "acload",
    "alternator",
    "battery",
    "dcload",
    "dcsource",
    "dcsystem",
    "digitalinput",
    "evcharger",
    "genset",
    "gps",
    "grid",
    "heatpump",
    "meteo",
    "pulsemeter",
    "pvinverter",
    "solarcharger",
    "tank",
    "temperature",
    "vebus",
];
