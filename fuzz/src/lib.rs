//! What the fuzz targets share: the properties of `tests/generated` (one
//! definition for both) and a scratch directory for the file parsers.

#[path = "../../tests/generated/properties.rs"]
pub mod properties;

use std::path::Path;
use std::sync::OnceLock;

/// A directory for the state and settings files, made once per process (in
/// memory when /dev/shm exists, so a run is not slowed by the disk).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let made = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        };
        made.expect("a scratch directory")
    })
    .path()
}

/// The input as text, when it is UTF-8 (MQTT topics and TOML files are).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
