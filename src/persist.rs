//! The state file that lets the daemon survive its own restart: the Status
//! payload of every connected device, replaced atomically (temporary file,
//! rename) and then synced. A file that cannot be used is set aside (renamed,
//! never deleted) so that the daemon starts and the user can still look at it.
//! Knows ids and payloads, not what they mean; [`crate::state`] decides when
//! it is written.

use crate::atomic_file;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data_dir::STATE_FILE;

/// Version of the file format this daemon writes and reads.
pub const FORMAT: u32 = 1;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing failed.
    #[error("{action} the state file {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not what this version writes (truncated, corrupted).
    #[error("the state file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a newer version of the daemon.
    #[error("the state file {path} has format {found}, newer than this version reads ({FORMAT})")]
    FutureFormat { path: PathBuf, found: u64 },
}

/// One device as remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedDevice {
    /// The client id as the device wrote it.
    #[serde(rename = "clientId")]
    pub client_id: String,
    /// Its Status payload, as received.
    pub status: serde_json::Value,
}

/// When each device was last heard from (raw client id → unix seconds), kept after the
/// device left so that `remove --not-seen-for` works across restarts. Absent from files
/// written before it existed (read as empty); older daemons ignore it.
pub type LastSeen = BTreeMap<String, u64>;

/// Every device that registered and was not removed: raw client id → the service ids it
/// ever declared. Its settings are known by these (the unique ids cannot be split back
/// into client and service ids), also after it left; its retained Status is on the topic
/// of the raw id. Absent from files written before it existed (read as empty).
pub type Known = BTreeMap<String, Vec<String>>;

/// The service ids a Status payload declares (accepted or refused alike: both may have
/// settings), as written.
pub fn declared_service_ids(status: &serde_json::Value) -> impl Iterator<Item = &str> {
    status
        .get("services")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|services| services.keys().map(String::as_str))
}

/// What is read (the format number is checked apart, see [`FormatOnly`]).
#[derive(Debug, Default, Deserialize)]
pub struct StateFile {
    pub devices: Vec<SavedDevice>,
    #[serde(default, rename = "lastSeen")]
    pub last_seen: LastSeen,
    #[serde(default)]
    pub known: Known,
}

/// What is written: the same shape, borrowing the devices.
#[derive(Serialize)]
struct StateFileRef<'a, I: Iterator<Item = &'a SavedDevice> + Clone> {
    format: u32,
    #[serde(serialize_with = "serialize_devices")]
    devices: I,
    #[serde(rename = "lastSeen", skip_serializing_if = "BTreeMap::is_empty")]
    last_seen: &'a LastSeen,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    known: &'a Known,
}

fn serialize_devices<'a, I, S>(devices: &I, serializer: S) -> Result<S::Ok, S::Error>
where
    I: Iterator<Item = &'a SavedDevice> + Clone,
    S: serde::Serializer,
{
    serializer.collect_seq(devices.clone())
}

/// The file's content for `devices`, the last-seen times and the known devices.
pub fn encode<'a>(
    devices: impl Iterator<Item = &'a SavedDevice> + Clone,
    last_seen: &'a LastSeen,
    known: &'a Known,
) -> Vec<u8> {
    // Serialising plain JSON values cannot fail; an empty list is the fallback all the same.
    serde_json::to_vec_pretty(&StateFileRef {
        format: FORMAT,
        devices,
        last_seen,
        known,
    })
    .unwrap_or_else(|_| format!("{{\"format\": {FORMAT}, \"devices\": []}}").into_bytes())
}

/// Only the format number, read before the rest so that a newer file is
/// recognised as such, not reported as corrupted.
#[derive(Deserialize)]
struct FormatOnly {
    format: u64,
}

/// Reads the remembered devices; a missing file is an empty list.
pub fn load(dir: &Path) -> Result<Vec<SavedDevice>, Error> {
    load_file(dir).map(|f| f.devices)
}

/// Reads the whole file (devices and last-seen times); a missing file is an empty one.
pub fn load_file(dir: &Path) -> Result<StateFile, Error> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StateFile::default()),
        Err(source) => {
            return Err(Error::Io {
                action: "reading",
                path,
                source,
            })
        }
    };
    if let Ok(FormatOnly { format }) = serde_json::from_slice::<FormatOnly>(&text) {
        if format > u64::from(FORMAT) {
            return Err(Error::FutureFormat {
                path,
                found: format,
            });
        }
    }
    serde_json::from_slice(&text).map_err(|source| Error::Parse { path, source })
}

/// Renames an unusable state file to `state.json.set-aside-<unix time>` (with
/// a counter if that exists) and returns the new path.
pub fn set_aside(dir: &Path) -> Result<PathBuf, Error> {
    let path = dir.join(STATE_FILE);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut target = dir.join(format!("{STATE_FILE}.set-aside-{stamp}"));
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{STATE_FILE}.set-aside-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(&path, &target).map_err(|source| Error::Io {
        action: "setting aside",
        path,
        source,
    })?;
    Ok(target)
}

/// Writes the devices and syncs them to the disk: [`replace`], then [`sync`].
#[cfg(test)]
pub fn save(dir: &Path, devices: &[SavedDevice]) -> Result<(), Error> {
    save_file(dir, devices, &LastSeen::new(), &Known::new())
}

/// Writes devices and last-seen times and syncs them to the disk (for `remove` while the
/// daemon is not running; the daemon itself writes through [`crate::state`]).
pub fn save_file(
    dir: &Path,
    devices: &[SavedDevice],
    last_seen: &LastSeen,
    known: &Known,
) -> Result<(), Error> {
    replace(dir, &encode(devices.iter(), last_seen, known))?;
    sync(dir)
}

/// Writes `body` (see [`encode`]) to a temporary file and renames it over the
/// old one (see [`atomic_file::replace`]): once this returns, the new file is
/// what any later reader sees, even if the daemon is killed the next instant.
pub fn replace(dir: &Path, body: &[u8]) -> Result<(), Error> {
    atomic_file::replace(&dir.join(STATE_FILE), body).map_err(Error::from)
}

/// Makes the file and its rename durable on the disk (against a power cut).
pub fn sync(dir: &Path) -> Result<(), Error> {
    atomic_file::sync(&dir.join(STATE_FILE)).map_err(Error::from)
}

impl From<atomic_file::Error> for Error {
    fn from(e: atomic_file::Error) -> Self {
        Error::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saves_and_loads_devices() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let devices = vec![SavedDevice {
            client_id: "fe001".into(),
            status: json!({"clientId": "fe001", "connected": 1, "services": {"t1": "temperature"}}),
        }];
        save(dir.path(), &devices).unwrap();
        assert_eq!(load(dir.path()).unwrap(), devices);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn last_seen_times_are_kept_and_files_without_them_still_read() {
        let dir = tempfile::tempdir().unwrap();
        // A file as the first version wrote it.
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"format": 1, "devices": [{"clientId": "a", "status": {}}]}"#,
        )
        .unwrap();
        let old = load_file(dir.path()).unwrap();
        assert_eq!(old.devices.len(), 1);
        assert!(old.last_seen.is_empty() && old.known.is_empty());
        let seen = LastSeen::from([("gone".to_string(), 1_700_000_000)]);
        let known = Known::from([("ESP32-ABC".to_string(), vec!["t_1".to_string()])]);
        save_file(dir.path(), &old.devices, &seen, &known).unwrap();
        let new = load_file(dir.path()).unwrap();
        assert_eq!(new.devices, old.devices);
        assert_eq!(new.last_seen, seen);
        assert_eq!(new.known, known);
    }

    #[test]
    fn a_broken_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert!(matches!(load(dir.path()), Err(Error::Parse { .. })));
    }

    #[test]
    fn a_newer_format_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"format": 2, "devices": {"a": "new shape"}}"#,
        )
        .unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(Error::FutureFormat { found: 2, .. })
        ));
    }

    #[test]
    fn setting_aside_keeps_the_file_under_another_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        let first = set_aside(dir.path()).unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "[").unwrap();
        let second = set_aside(dir.path()).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(first).unwrap(), "{");
        assert_eq!(std::fs::read_to_string(second).unwrap(), "[");
        assert!(!dir.path().join(STATE_FILE).exists());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &[]).unwrap();
        // A directory where the temporary file goes makes the write fail.
        std::fs::create_dir(dir.path().join("state.json.tmp")).unwrap();
        std::fs::write(dir.path().join("state.json.tmp/x"), "").unwrap();
        let devices = vec![SavedDevice {
            client_id: "a".into(),
            status: json!({}),
        }];
        assert!(save(dir.path(), &devices).is_err());
        assert!(load(dir.path()).unwrap().is_empty());
    }
}
