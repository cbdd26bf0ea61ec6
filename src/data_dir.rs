//! Where the daemon keeps the user's files on a GX device, and the one-time
//! move from the directory that earlier versions used.
//!
//! The data directory is `/data/conf/dbus-mqtt-devices`, next to
//! localsettings' `settings.xml` (Victron keeps service configuration in
//! `/data/conf`, e.g. Signal K's). Nothing that installs or updates the daemon
//! writes there: not the installer, not SetupHelper's PackageManager (which
//! replaces `/data/<package>` wholesale on every update), not opkg (rootfs
//! only), not a firmware update (only the rootfs). Older versions kept these
//! files in `/data/dbus-mqtt-devices`, the package's own directory, where a
//! PackageManager update deleted them.
//!
//! The move is safe to interrupt: each entry is renamed (atomic on the one
//! `/data` filesystem) or, across filesystems, copied to a temporary name,
//! synced, renamed, and only then removed from the old place. A file that
//! already exists at the destination is never overwritten: the old copy is
//! kept beside it under a `.legacy` name.

use crate::atomic_file::sync_dir;
use std::io;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The data directory on a GX device.
pub const DEFAULT_DATA_DIR: &str = "/data/conf/dbus-mqtt-devices";

/// Where earlier versions kept the same files (the package's own directory).
pub const LEGACY_DATA_DIR: &str = "/data/dbus-mqtt-devices";

/// The configuration file in the data directory.
pub const CONFIG_FILE: &str = "config.toml";

/// The user's catalog override (types and paths added or changed).
pub const CATALOG_FILE: &str = "catalog.toml";

/// The daemon's record of the devices it serves (see `persist`).
pub const STATE_FILE: &str = "state.json";

/// Mapped-device declarations: one file, and a directory of files.
pub const DEVICES_FILE: &str = "devices.toml";
pub const DEVICES_DIR: &str = "devices.d";

/// The user's own presets for mapped devices.
pub const PRESETS_DIR: &str = "presets.d";

/// The energy counters the daemon integrates for mapped devices (see
/// `mapped::runtime::energy_file`).
pub const MAPPED_ENERGY_FILE: &str = "mapped-energy.json";

/// Everything in the data directory that belongs to the user or the daemon,
/// as opposed to the package's own files (binaries, scripts, examples) that
/// share the legacy directory. Only these are moved.
pub const USER_FILES: &[&str] = &[
    CONFIG_FILE,
    CATALOG_FILE,
    DEVICES_FILE,
    DEVICES_DIR,
    PRESETS_DIR,
    STATE_FILE,
    MAPPED_ENERGY_FILE,
];

/// Suffix of an old copy kept beside a file that already existed at the
/// destination.
const KEPT_SUFFIX: &str = "legacy";

/// What [`migrate`] did with one entry of the legacy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Now at the same name in the data directory.
    Moved(PathBuf),
    /// The destination already existed with the same content; the old copy
    /// was removed.
    AlreadyThere(PathBuf),
    /// The destination already existed with other content: it was kept, and
    /// the old copy was moved beside it under this name.
    KeptBoth { kept: PathBuf, old_copy: PathBuf },
}

/// Moves the user's files from `legacy` into `dir`, see the module comment.
/// Returns what happened to each entry that existed in `legacy`; an empty
/// list when there was nothing to move (every start after the first).
pub fn migrate(legacy: &Path, dir: &Path) -> io::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    if legacy == dir || !legacy.is_dir() {
        return Ok(outcomes);
    }
    for name in USER_FILES {
        let from = legacy.join(name);
        if std::fs::symlink_metadata(&from).is_err() {
            continue;
        }
        std::fs::create_dir_all(dir)?;
        move_entry(&from, &dir.join(name), &mut outcomes)?;
    }
    if !outcomes.is_empty() {
        sync_dir(dir);
        sync_dir(legacy);
    }
    Ok(outcomes)
}

/// On a GX device (data directory left at its default), moves the files of
/// an older version into it and logs what moved. A failure is logged and the
/// daemon carries on; the next start tries again.
pub fn adopt_legacy_files(data_dir: &Path) {
    if data_dir != Path::new(DEFAULT_DATA_DIR) {
        return;
    }
    let legacy = Path::new(LEGACY_DATA_DIR);
    match migrate(legacy, data_dir) {
        Ok(outcomes) => log_outcomes(legacy, data_dir, &outcomes),
        Err(e) => warn!(
            error = %e,
            "could not move the files of an older version from {} to {}; they stay where they are",
            legacy.display(),
            data_dir.display()
        ),
    }
}

fn log_outcomes(legacy: &Path, dir: &Path, outcomes: &[Outcome]) {
    let names = |f: fn(&Outcome) -> Option<&PathBuf>| {
        outcomes
            .iter()
            .filter_map(f)
            .filter_map(|p| p.strip_prefix(dir).ok())
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let moved = names(|o| match o {
        Outcome::Moved(p) | Outcome::AlreadyThere(p) => Some(p),
        Outcome::KeptBoth { .. } => None,
    });
    if !moved.is_empty() {
        info!(
            "moved {moved} from {} to {}, where package updates cannot touch them",
            legacy.display(),
            dir.display()
        );
    }
    for o in outcomes {
        if let Outcome::KeptBoth { kept, old_copy } = o {
            warn!(
                "{} existed already and is used; the older copy from {} is kept as {}",
                kept.display(),
                legacy.display(),
                old_copy.display()
            );
        }
    }
}

/// Moves one file or directory; directories are merged entry by entry when
/// the destination directory exists already.
fn move_entry(from: &Path, to: &Path, outcomes: &mut Vec<Outcome>) -> io::Result<()> {
    let from_meta = std::fs::symlink_metadata(from)?;
    let to_meta = match std::fs::symlink_metadata(to) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match to_meta {
        None => {
            rename_or_copy(from, to)?;
            outcomes.push(Outcome::Moved(to.to_path_buf()));
        }
        Some(to_meta) if from_meta.is_dir() && to_meta.is_dir() => {
            let mut children: Vec<_> = std::fs::read_dir(from)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            children.sort();
            for child in children {
                move_entry(&from.join(&child), &to.join(&child), outcomes)?;
            }
            // Empty now unless a child could not be moved (then it errs above).
            std::fs::remove_dir(from)?;
        }
        Some(to_meta) if from_meta.is_file() && to_meta.is_file() && same_content(from, to)? => {
            std::fs::remove_file(from)?;
            outcomes.push(Outcome::AlreadyThere(to.to_path_buf()));
        }
        Some(_) => {
            let old_copy = free_name(to)?;
            rename_or_copy(from, &old_copy)?;
            outcomes.push(Outcome::KeptBoth {
                kept: to.to_path_buf(),
                old_copy,
            });
        }
    }
    Ok(())
}

/// `<to>.legacy`, or `<to>.legacy.2`, … whichever does not exist yet.
fn free_name(to: &Path) -> io::Result<PathBuf> {
    let base = to.as_os_str().to_owned();
    for n in 1..1000 {
        let mut name = base.clone();
        name.push(".");
        name.push(KEPT_SUFFIX);
        if n > 1 {
            name.push(format!(".{n}"));
        }
        let candidate = PathBuf::from(name);
        if std::fs::symlink_metadata(&candidate).is_err() {
            return Ok(candidate);
        }
    }
    Err(io::Error::other(format!(
        "no free name for an old copy of {}",
        to.display()
    )))
}

/// Renames; across filesystems, copies to a temporary name next to the
/// destination, syncs, renames it into place, then removes the source.
fn rename_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    // A half copy left by an earlier, interrupted run.
    let tmp = temporary_name(to);
    remove_any(&tmp)?;
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(EXDEV) => {
            copy_tree(from, &tmp)?;
            std::fs::rename(&tmp, to)?;
            if let Some(parent) = to.parent() {
                sync_dir(parent);
            }
            remove_any(from)
        }
        Err(e) => Err(e),
    }
}

/// errno of a rename across filesystems (the same on every Linux target).
const EXDEV: i32 = 18;

fn temporary_name(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".moving");
    PathBuf::from(name)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        sync_dir(to);
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else {
        std::fs::copy(from, to)?;
        std::fs::File::open(to)?.sync_all()?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    Ok(std::fs::read(a)? == std::fs::read(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// A legacy directory as the installer or SetupHelper left it: the
    /// package's files and the user's.
    fn legacy_dir(root: &Path) -> PathBuf {
        let old = root.join("dbus-mqtt-devices");
        write(&old.join("bin/armv7/dbus-mqtt-devices"), "binary");
        write(&old.join("config.toml.example"), "# example");
        write(&old.join("version"), "v0.1.0");
        write(&old.join("config.toml"), "mqtt-host = \"broker\"\n");
        write(&old.join("catalog.toml"), "# my catalog\n");
        write(&old.join("state.json"), "{\"format\":1,\"devices\":[]}");
        write(&old.join("devices.d/shelly.toml"), "# shelly\n");
        write(&old.join("presets.d/mine.toml"), "# preset\n");
        old
    }

    #[test]
    fn moves_the_users_files_and_leaves_the_packages() {
        let root = tempfile::tempdir().unwrap();
        let old = legacy_dir(root.path());
        let new = root.path().join("conf/dbus-mqtt-devices");

        let outcomes = migrate(&old, &new).unwrap();

        assert_eq!(read(&new.join("config.toml")), "mqtt-host = \"broker\"\n");
        assert_eq!(read(&new.join("catalog.toml")), "# my catalog\n");
        assert_eq!(read(&new.join("devices.d/shelly.toml")), "# shelly\n");
        assert_eq!(read(&new.join("presets.d/mine.toml")), "# preset\n");
        assert!(new.join("state.json").is_file());
        for gone in [
            "config.toml",
            "catalog.toml",
            "state.json",
            "devices.d",
            "presets.d",
        ] {
            assert!(
                !old.join(gone).exists(),
                "{gone} still in the old directory"
            );
        }
        for kept in [
            "bin/armv7/dbus-mqtt-devices",
            "config.toml.example",
            "version",
        ] {
            assert!(old.join(kept).exists(), "package file {kept} was touched");
            assert!(!new.join(kept).exists(), "package file {kept} was moved");
        }
        assert_eq!(outcomes.len(), 5);
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Moved(_))));
    }

    #[test]
    fn runs_once_only() {
        let root = tempfile::tempdir().unwrap();
        let old = legacy_dir(root.path());
        let new = root.path().join("conf/dbus-mqtt-devices");
        assert!(!migrate(&old, &new).unwrap().is_empty());
        assert_eq!(migrate(&old, &new).unwrap(), vec![]);
    }

    #[test]
    fn nothing_to_do_without_a_legacy_directory() {
        let root = tempfile::tempdir().unwrap();
        let new = root.path().join("conf/dbus-mqtt-devices");
        assert_eq!(migrate(&root.path().join("missing"), &new).unwrap(), vec![]);
        assert!(
            !new.exists(),
            "the data directory is created only when needed"
        );
        assert_eq!(migrate(&new, &new).unwrap(), vec![]);
    }

    #[test]
    fn never_overwrites_a_file_at_the_destination() {
        let root = tempfile::tempdir().unwrap();
        let old = legacy_dir(root.path());
        let new = root.path().join("conf/dbus-mqtt-devices");
        write(&new.join("config.toml"), "mqtt-host = \"newer\"\n");
        write(&new.join("devices.d/shelly.toml"), "# newer shelly\n");

        let outcomes = migrate(&old, &new).unwrap();

        assert_eq!(read(&new.join("config.toml")), "mqtt-host = \"newer\"\n");
        assert_eq!(
            read(&new.join("config.toml.legacy")),
            "mqtt-host = \"broker\"\n"
        );
        assert_eq!(read(&new.join("devices.d/shelly.toml")), "# newer shelly\n");
        assert_eq!(
            read(&new.join("devices.d/shelly.toml.legacy")),
            "# shelly\n"
        );
        assert!(outcomes.contains(&Outcome::KeptBoth {
            kept: new.join("config.toml"),
            old_copy: new.join("config.toml.legacy"),
        }));
        assert!(!old.join("devices.d").exists());

        // A third copy gets the next free name; none is ever lost.
        write(&old.join("config.toml"), "mqtt-host = \"third\"\n");
        migrate(&old, &new).unwrap();
        assert_eq!(
            read(&new.join("config.toml.legacy.2")),
            "mqtt-host = \"third\"\n"
        );
        assert_eq!(read(&new.join("config.toml")), "mqtt-host = \"newer\"\n");
    }

    #[test]
    fn an_interrupted_copy_is_finished_without_a_duplicate() {
        // A move across filesystems that stopped after the copy was in place
        // but before the source was removed: same content on both sides.
        let root = tempfile::tempdir().unwrap();
        let old = legacy_dir(root.path());
        let new = root.path().join("conf/dbus-mqtt-devices");
        write(&new.join("catalog.toml"), "# my catalog\n");

        let outcomes = migrate(&old, &new).unwrap();

        assert!(outcomes.contains(&Outcome::AlreadyThere(new.join("catalog.toml"))));
        assert!(!old.join("catalog.toml").exists());
        assert!(!new.join("catalog.toml.legacy").exists());
    }

    #[test]
    fn a_copy_interrupted_before_its_rename_is_redone() {
        // Across filesystems a file is copied to "<name>.moving" first; a
        // power cut then leaves that half copy and the intact source.
        let root = tempfile::tempdir().unwrap();
        let old = legacy_dir(root.path());
        let new = root.path().join("conf/dbus-mqtt-devices");
        write(&new.join("config.toml.moving"), "mqtt-ho");

        migrate(&old, &new).unwrap();

        assert_eq!(read(&new.join("config.toml")), "mqtt-host = \"broker\"\n");
        assert!(!old.join("config.toml").exists());
        assert!(!new.join("config.toml.moving").exists());
    }

    #[test]
    fn copies_across_filesystems_through_a_temporary_name() {
        // /dev/shm is a tmpfs: a rename from the test's temporary directory
        // to it fails with EXDEV where the two differ.
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let root = tempfile::tempdir().unwrap();
        let old = legacy_dir(root.path());
        let new = shm.path().join("dbus-mqtt-devices");
        let probe = root.path().join("probe");
        std::fs::write(&probe, "").unwrap();
        if std::fs::rename(&probe, shm.path().join("probe")).is_ok() {
            return; // the same filesystem here: nothing to show
        }
        migrate(&old, &new).unwrap();
        assert_eq!(read(&new.join("devices.d/shelly.toml")), "# shelly\n");
        assert_eq!(read(&new.join("config.toml")), "mqtt-host = \"broker\"\n");
        assert!(!old.join("devices.d").exists() && !old.join("config.toml").exists());
        assert!(!new.join("config.toml.moving").exists());
    }

    #[test]
    fn the_uninstaller_keeps_the_same_files() {
        // uninstall.sh --keep-config keeps what this module calls the
        // user's files when they are still in the old directory.
        let script = include_str!("../packaging/installer/uninstall.sh");
        for name in USER_FILES {
            assert!(script.contains(name), "uninstall.sh does not know {name}");
        }
    }
}
