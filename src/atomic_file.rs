//! Replacing a file so that a reader sees either the old content or the new,
//! never a mix: the new content goes to `<file>.tmp` next to it, which is then
//! renamed over the file (atomic on one filesystem). The one place where the
//! daemon's own files (state, quarantine, settings) are written.
//!
//! Durability against a power cut is a separate step ([`sync`]), because the
//! state file answers devices once the rename is done and syncs afterwards,
//! off the replies' path; [`replace_durably`] does both in the safe order for
//! files that are written seldom.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A step of a write that failed: what was done, to which file, and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}", path.display())]
pub struct Error {
    /// The step, as a verb phrase ("writing", "replacing", …).
    pub action: &'static str,
    /// The file the step worked on (the temporary file for the first steps).
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The temporary file that [`replace`] writes before the rename. A name of
/// its own (not a random one) so that a file left by a killed process is
/// overwritten by the next write instead of piling up.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `body` to the temporary file and renames it over `path`, creating
/// the directory if needed. Once this returns, the new content is what any
/// later reader sees, even if the process is killed the next instant (the
/// kernel holds it). A failed write leaves the old file and removes what it
/// wrote.
pub fn replace(path: &Path, body: &[u8]) -> Result<(), Error> {
    write_and_rename(path, body, false)
}

/// [`replace`], with the content synced to the disk before the rename and the
/// rename synced after it: after a power cut the file is the old or the new
/// one, whole.
pub fn replace_durably(path: &Path, body: &[u8]) -> Result<(), Error> {
    write_and_rename(path, body, true)?;
    sync_parent(path);
    Ok(())
}

/// Makes the content of `path` and its last rename durable on the disk
/// (against a power cut).
pub fn sync(path: &Path) -> Result<(), Error> {
    let file = std::fs::File::open(path).map_err(step("opening", path))?;
    file.sync_all().map_err(step("syncing", path))?;
    sync_parent(path);
    Ok(())
}

/// Makes renames in `dir` durable; not every filesystem allows it, and a
/// failure leaves valid files, so it is not reported.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn sync_parent(path: &Path) {
    sync_dir(parent(path));
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn step(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error {
        action,
        path,
        source,
    }
}

fn write_and_rename(path: &Path, body: &[u8], sync_first: bool) -> Result<(), Error> {
    let tmp = temporary_path(path);
    let result = (|| {
        std::fs::create_dir_all(parent(path)).map_err(step("creating the directory of", path))?;
        let mut file = std::fs::File::create(&tmp).map_err(step("creating", &tmp))?;
        file.write_all(body).map_err(step("writing", &tmp))?;
        if sync_first {
            file.sync_all().map_err(step("syncing", &tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(step("replacing", path))
    })();
    if result.is_err() {
        // A full disk must not keep a half-written file on top of it.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("f.json");
        replace(&path, b"one").unwrap();
        replace_durably(&path, b"two").unwrap();
        sync(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        replace(&path, b"old").unwrap();
        // A directory where the temporary file goes makes the write fail.
        std::fs::create_dir(temporary_path(&path)).unwrap();
        let e = replace_durably(&path, b"new").unwrap_err();
        assert_eq!(e.action, "creating");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
