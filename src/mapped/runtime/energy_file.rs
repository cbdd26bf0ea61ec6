//! The energy counters the daemon integrates from power (`integrate =
//! "/Ac/Power"`), kept across restarts in `<data-dir>/mapped-energy.json`:
//! `{"<id>": {"/Ac/Energy/Forward": 12.345}}`, in kWh. A device saves at
//! most once a minute ([`crate::mapped::device::ENERGY_SAVE_INTERVAL`]) and
//! once more when it stops, so a power cut loses at most a minute.
//!
//! A file that cannot be read is logged and the counters start from 0; it
//! is replaced at the next save. Counters of devices no longer declared are
//! kept, so a device declared again continues where it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::data_dir::MAPPED_ENERGY_FILE;
use crate::mapped::effect::EnergyState;

/// Every mapped device's integrated counters, by id.
pub type Energies = BTreeMap<String, EnergyState>;

/// The file in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(MAPPED_ENERGY_FILE)
}

/// Reads the file; missing is empty, unusable is logged and empty.
pub fn load(data_dir: &Path) -> Energies {
    let path = path(data_dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Energies::new(),
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the integrated energy counters; they start from 0");
            return Energies::new();
        }
    };
    match serde_json::from_slice::<Energies>(&text) {
        Ok(energies) => energies
            .into_iter()
            .map(|(id, state)| {
                // A counter that is not a finite, non-negative number is not continued.
                let kept = state
                    .0
                    .into_iter()
                    .filter(|(_, kwh)| kwh.is_finite() && *kwh >= 0.0)
                    .collect();
                (id, EnergyState(kept))
            })
            .collect(),
        Err(e) => {
            warn!(file = %path.display(), error = %e, "the integrated energy counters cannot be read; they start from 0");
            Energies::new()
        }
    }
}

/// Replaces the file (whole, durably: it is written at most a few times a minute).
pub fn save(data_dir: &Path, energies: &Energies) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(energies).map_err(|e| e.to_string())?;
    crate::atomic_file::replace_durably(&path(data_dir), &body)
        .map_err(|e| crate::logging::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_save_and_a_load_and_broken_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let mut energies = Energies::new();
        energies.insert(
            "plug".into(),
            EnergyState([("/Ac/Energy/Forward".to_string(), 12.5)].into()),
        );
        save(dir.path(), &energies).unwrap();
        assert_eq!(load(dir.path()), energies);

        std::fs::write(
            path(dir.path()),
            r#"{"plug": {"/Ac/Energy/Forward": -1, "/Ac/Energy/Reverse": 2.5}}"#,
        )
        .unwrap();
        let loaded = load(dir.path());
        assert_eq!(
            loaded["plug"].0,
            BTreeMap::from([("/Ac/Energy/Reverse".to_string(), 2.5)])
        );

        std::fs::write(path(dir.path()), "not json").unwrap();
        assert!(load(dir.path()).is_empty());
    }
}
