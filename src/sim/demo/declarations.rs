//! The declarations of the demo's Shelly and OpenDTU, in `<data dir>/devices.d/demo.toml`,
//! where a user's own declarations live: the daemon reads them like any other, and the file
//! shows what to write for a real device.
//!
//! The file is the user's once it exists: it is created only when absent, never overwritten,
//! and (so that the demo devices do not linger, disconnected, in a `sim` without `--demo`)
//! removed only while it is exactly as written here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{opendtu, shelly_pro3em};

/// The file, relative to the data directory.
pub const FILE: &str = "devices.d/demo.toml";

/// The demo's declarations: a grid meter and a PV inverter, written the way a user would.
pub fn text() -> String {
    format!(
        r#"# The devices of `dbus-mqtt-devices sim --demo`: a simulated Shelly Pro 3EM as
# grid meter and a simulated Hoymiles HM-800 behind OpenDTU, both publishing their
# own topics. The same lines serve the real devices: put in your Shelly's topic
# prefix and your inverter's serial number. See docs/mapped-devices.md.
#
# Edit freely: sim never overwrites this file. While it is unchanged, sim without
# --demo removes it (the simulated devices run only with --demo).

[[device]]
id       = "demo_grid"
service  = "grid"
preset   = "shelly-pro3em"
topic    = "{shelly}"
name     = "Demo grid meter"
instance = 40

[[device]]
id       = "demo_pv"
service  = "pvinverter"
preset   = "opendtu"
serial   = "{serial}"
phase    = "L1"
name     = "Demo HM-800"
settings = {{ "/Position" = 0, "/Ac/MaxPower" = {max_power} }}
"#,
        shelly = shelly_pro3em::TOPIC,
        serial = opendtu::SERIAL,
        max_power = opendtu::MAX_POWER,
    )
}

/// What [`prepare`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The file was written.
    Created(PathBuf),
    /// The file was there (as written, or edited) and is left as it is.
    Kept(PathBuf),
}

/// With the demo: creates the file when it is absent.
pub fn prepare(data_dir: &Path) -> Result<Prepared> {
    let path = data_dir.join(FILE);
    if path.symlink_metadata().is_ok() {
        return Ok(Prepared::Kept(path));
    }
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::atomic_file::replace(&path, text().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Prepared::Created(path))
}

/// Without the demo: removes the file when it is exactly as [`text`] writes it; returns
/// whether it did.
pub fn withdraw(data_dir: &Path) -> Result<bool> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(found) if found == text() => {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::mapped::load::load_data_dir;

    #[test]
    fn the_demo_declarations_are_valid_and_expand_to_a_grid_meter_and_an_inverter() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            prepare(dir.path()).unwrap(),
            Prepared::Created(dir.path().join(FILE))
        );
        let (_, loaded) = load_data_dir(dir.path(), &Catalog::embedded());
        assert!(
            loaded.diagnostics.is_empty(),
            "{:#?}",
            loaded.diagnostics
        );
        let devices: Vec<_> = loaded
            .devices
            .iter()
            .map(|d| (d.declaration.id.as_str(), d.declaration.service.as_str()))
            .collect();
        assert_eq!(devices, [("demo_grid", "grid"), ("demo_pv", "pvinverter")]);
        let pv = &loaded.devices[1].declaration;
        let write = pv.writes.first().expect("the preset's limit write");
        assert_eq!(
            write.topic.as_str(),
            format!("solar/{}/cmd/limit_nonpersistent_absolute", opendtu::SERIAL)
        );
        let meter = &loaded.devices[0].declaration;
        assert!(meter
            .sources
            .iter()
            .filter_map(|s| s.topic.as_ref())
            .any(|t| t.as_str() == format!("{}/status/em:0", shelly_pro3em::TOPIC)));
    }

    #[test]
    fn the_docs_show_the_declarations_the_demo_writes() {
        let docs = include_str!("../../../docs/mapped-devices.md");
        let declarations = text();
        let devices = declarations
            .find("[[device]]")
            .and_then(|start| declarations.get(start..))
            .expect("the devices");
        assert!(
            docs.contains(devices),
            "docs/mapped-devices.md (Try it on a PC) does not show the declarations:\n{devices}"
        );
    }

    #[test]
    fn an_edited_file_is_neither_overwritten_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let edited = text().replace("Demo grid meter", "My meter");
        std::fs::write(&path, &edited).unwrap();
        assert_eq!(prepare(dir.path()).unwrap(), Prepared::Kept(path.clone()));
        assert!(!withdraw(dir.path()).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    }

    #[test]
    fn an_unchanged_file_is_kept_with_the_demo_and_removed_without() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        prepare(dir.path()).unwrap();
        assert_eq!(prepare(dir.path()).unwrap(), Prepared::Kept(path.clone()));
        assert!(withdraw(dir.path()).unwrap());
        assert!(!path.exists());
        assert!(!withdraw(dir.path()).unwrap(), "nothing left to remove");
    }
}
