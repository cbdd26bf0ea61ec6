//! Shared by the unit tests: the built-in catalog and presets, parsed once
//! (a debug build takes tens of milliseconds for each), and loading a
//! declaration text.

use std::sync::OnceLock;

use super::load::{load_files, DeclarationFile, Loaded};
use super::preset::Presets;
use crate::catalog::Catalog;

pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::embedded)
}

pub(crate) fn presets() -> &'static Presets {
    static PRESETS: OnceLock<Presets> = OnceLock::new();
    PRESETS.get_or_init(Presets::builtin)
}

/// Loads `text` as `devices.toml` with the built-in presets.
pub(crate) fn load(text: &str) -> Loaded {
    load_with(presets(), text)
}

/// Loads `text` as `devices.toml` with these presets.
pub(crate) fn load_with(presets: &Presets, text: &str) -> Loaded {
    load_files(
        &[DeclarationFile {
            label: "devices.toml".into(),
            text: text.into(),
        }],
        presets,
        catalog(),
    )
}
