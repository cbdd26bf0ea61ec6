//! The state file that lets the daemon survive its own restart: the Status
//! payload of every connected device, written atomically (temporary file,
//! fsync, rename). Knows ids and payloads, not what they mean.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the state file in the data directory.
pub const STATE_FILE: &str = "state.json";

/// Version of the file format.
const FORMAT: u32 = 1;

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
    /// The file is not what this version writes.
    #[error("the state file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
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

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    format: u32,
    devices: Vec<SavedDevice>,
}

/// Reads the remembered devices; a missing file is an empty list.
pub fn load(dir: &Path) -> Result<Vec<SavedDevice>, Error> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                action: "reading",
                path,
                source,
            })
        }
    };
    let file: StateFile =
        serde_json::from_slice(&text).map_err(|source| Error::Parse { path, source })?;
    Ok(file.devices)
}

/// Writes the devices: to a temporary file, synced, then renamed over the
/// old one, so a power cut leaves either the old or the new file.
pub fn save(dir: &Path, devices: &[SavedDevice]) -> Result<(), Error> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating the directory of", &path))?;
    let body = serde_json::to_vec_pretty(&StateFile {
        format: FORMAT,
        devices: devices.to_vec(),
    })
    .map_err(|source| Error::Parse {
        path: path.clone(),
        source,
    })?;
    let mut file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    file.write_all(&body).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("replacing", &path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Makes the rename itself durable; not all filesystems allow it.
        let _ = d.sync_all();
    }
    Ok(())
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
    fn a_broken_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert!(matches!(load(dir.path()), Err(Error::Parse { .. })));
    }
}
