//! Whether the declaration files changed: the name, size and modification
//! time of `devices.toml` and of every entry of `devices.d/` and
//! `presets.d/`, compared between two looks. Cheap enough to do every two
//! seconds on a GX, and needs no file-notification support of the kernel
//! or the filesystem.

use std::path::Path;
use std::time::SystemTime;

use crate::data_dir::{DEVICES_DIR, DEVICES_FILE, PRESETS_DIR};

/// What the declaration files look like from outside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(String, u64, Option<SystemTime>)>);

/// The fingerprint of a data directory's declaration files now.
pub fn fingerprint(dir: &Path) -> Fingerprint {
    let mut entries = Vec::new();
    let mut note = |path: &Path| {
        if let Ok(meta) = std::fs::metadata(path) {
            entries.push((
                path.display().to_string(),
                meta.len(),
                meta.modified().ok(),
            ));
        }
    };
    note(&dir.join(DEVICES_FILE));
    for sub in [DEVICES_DIR, PRESETS_DIR] {
        let sub = dir.join(sub);
        note(&sub);
        if let Ok(read) = std::fs::read_dir(&sub) {
            for entry in read.filter_map(Result::ok) {
                note(&entry.path());
            }
        }
    }
    entries.sort();
    Fingerprint(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_changed_or_removed_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let empty = fingerprint(dir.path());
        assert_eq!(empty, fingerprint(dir.path()));
        std::fs::write(dir.path().join(DEVICES_FILE), "").unwrap();
        let one = fingerprint(dir.path());
        assert_ne!(one, empty);
        std::fs::create_dir(dir.path().join(DEVICES_DIR)).unwrap();
        std::fs::write(dir.path().join(DEVICES_DIR).join("a.toml"), "x").unwrap();
        let two = fingerprint(dir.path());
        assert_ne!(two, one);
        std::fs::write(dir.path().join(DEVICES_DIR).join("a.toml"), "xy").unwrap();
        let three = fingerprint(dir.path());
        assert_ne!(three, two);
        std::fs::remove_file(dir.path().join(DEVICES_DIR).join("a.toml")).unwrap();
        assert_ne!(fingerprint(dir.path()), three);
    }
}
