//! What the mapped-device runtime tells the operator tools of each mapped device: where it
//! is declared and whether the declaration holds, the topics it follows, what came on them
//! and what each D-Bus path became, and why it is not on D-Bus when it is not. Written by
//! the runtime ([`crate::mapped::runtime`]) and its device tasks, read by the listings and
//! `doctor`. Cheap on the message path: one short lock, no wake-up unless a listing changes.

use super::activity::{unix_now, ErrorNote};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// Longest raw payload kept per path, in bytes (a Shelly `em:0` status is about 600; what
/// matters to a person is the start, and the retained device state must stay small).
pub const RAW_MAX: usize = 256;

/// A value as it came and as it went to D-Bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathSample {
    /// The MQTT topic it came on.
    pub topic: String,
    /// The payload as received (text, cut to [`RAW_MAX`] bytes, `…` when cut).
    pub raw_payload: String,
    /// What the path became on D-Bus (`null`: invalid).
    pub converted_value: Json,
    /// Unix seconds.
    pub at: u64,
}

/// A declaration as the runtime read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarationNote {
    pub id: String,
    /// `file:line:column`, or the retained topic it came on.
    pub origin: String,
    /// Declared by a retained `dbus-mqtt-devices/mapped/<id>` (else by a file).
    pub by_topic: bool,
    /// Its service type, if it got that far.
    pub service_type: Option<String>,
    /// The topic filters it is subscribed to.
    pub topics: Vec<String>,
    /// What is wrong with it (and warnings), each with file, line and column.
    pub diagnostics: Vec<String>,
    /// Served by the running daemon (possibly as declared before, if the file has a mistake
    /// now). False: refused, or read by the command line with the daemon stopped.
    pub served: bool,
    /// No error in its declaration now (warnings aside).
    pub valid: bool,
}

/// Everything known of one mapped device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappedStatus {
    pub declaration: Option<DeclarationNote>,
    /// Messages received on its topics since the daemon started.
    pub messages: u64,
    /// The last message that fed a path (its converted value: that of the last path it
    /// feeds); availability messages are counted in `messages` only.
    pub last: Option<PathSample>,
    /// The last value of each D-Bus path it maps.
    pub paths: BTreeMap<String, PathSample>,
    /// Unix seconds of the last value set on D-Bus from a message.
    pub last_value: Option<u64>,
    /// On D-Bus now (its service registered).
    pub registered: bool,
    /// Its availability as the device (or its silence) says: `/Connected`.
    pub available: Option<bool>,
    /// The last thing that went wrong (a registration refused, a payload not understood).
    pub last_error: Option<ErrorNote>,
    /// Why it is not on D-Bus although declared (a registration refused: the name is
    /// taken, no instance, the service limit); cleared once registered.
    pub refusal: Option<String>,
}

/// The mapped devices' statuses; shared.
#[derive(Debug, Default)]
pub struct MappedActivity {
    devices: Mutex<BTreeMap<String, MappedStatus>>,
    /// Mistakes in declaration files that name no device (a file that is not TOML).
    unattributed: Mutex<Vec<String>>,
    changed: Notify,
}

/// `payload` as text, cut to [`RAW_MAX`] bytes at a character boundary.
pub fn raw_text(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    if text.len() <= RAW_MAX {
        return text.into_owned();
    }
    let mut end = RAW_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = text.get(..end).unwrap_or_default().to_owned();
    cut.push('…');
    cut
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the data consistent: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MappedActivity {
    /// The declarations in effect now, served or refused, and the mistakes that name no
    /// device. What is known of a device still declared is kept; a device no longer declared
    /// keeps its entry only while it is on D-Bus (it is leaving).
    pub fn declarations(&self, notes: Vec<DeclarationNote>, unattributed: Vec<String>) {
        let changed = {
            let mut devices = lock(&self.devices);
            let before = devices.clone();
            let mut notes: BTreeMap<String, DeclarationNote> =
                notes.into_iter().map(|n| (n.id.clone(), n)).collect();
            devices.retain(|id, s| notes.contains_key(id) || s.registered);
            for (id, s) in devices.iter_mut() {
                s.declaration = notes.remove(id);
            }
            for (id, note) in notes {
                devices.insert(
                    id,
                    MappedStatus {
                        declaration: Some(note),
                        ..MappedStatus::default()
                    },
                );
            }
            let mut u = lock(&self.unattributed);
            let changed = *devices != before || *u != unattributed;
            *u = unattributed;
            changed
        };
        if changed {
            self.changed.notify_one();
        }
    }

    fn with(&self, id: &str, f: impl FnOnce(&mut MappedStatus) -> bool) {
        let changed = lock(&self.devices).get_mut(id).is_some_and(f);
        if changed {
            self.changed.notify_one();
        }
    }

    /// A message came on one of the device's topics; `values` are the paths it set.
    pub fn message(&self, id: &str, topic: &str, payload: &[u8], values: Vec<(String, Json)>) {
        let at = unix_now();
        let raw = raw_text(payload);
        self.with(id, |s| {
            s.messages = s.messages.saturating_add(1);
            let mut changed = s.messages == 1;
            let last_value = values.last().map(|(_, v)| v.clone());
            if !values.is_empty() {
                s.last_value = Some(at);
            }
            for (path, value) in values {
                let sample = PathSample {
                    topic: topic.to_owned(),
                    raw_payload: raw.clone(),
                    converted_value: value,
                    at,
                };
                match s.paths.get_mut(&path) {
                    Some(p) => *p = sample,
                    None => {
                        s.paths.insert(path, sample);
                        changed = true;
                    }
                }
            }
            if let Some(value) = last_value {
                s.last = Some(PathSample {
                    topic: topic.to_owned(),
                    raw_payload: raw,
                    converted_value: value,
                    at,
                });
            }
            // The first message, or a path's first value, changes what `doctor` says; later
            // ones only ages and values (the retained states are refreshed for those anyway).
            changed
        });
    }

    /// The device is served anew (declared, or declared as another service): what came
    /// before is of the earlier declaration. Its declaration is kept.
    pub fn serving(&self, id: &str) {
        self.with(id, |s| {
            let fresh = MappedStatus {
                declaration: s.declaration.clone(),
                ..MappedStatus::default()
            };
            let changed = *s != fresh;
            *s = fresh;
            changed
        });
    }

    /// The declaration changed: only the paths it still maps keep their last values.
    pub fn keep_paths(&self, id: &str, mapped: &std::collections::BTreeSet<String>) {
        self.with(id, |s| {
            let before = s.paths.len();
            s.paths.retain(|p, _| mapped.contains(p));
            s.paths.len() != before
        });
    }

    /// The service went on D-Bus (`true`) or left it.
    pub fn registered(&self, id: &str, on_bus: bool) {
        self.with(id, |s| {
            let changed = s.registered != on_bus;
            s.registered = on_bus;
            if on_bus {
                s.refusal = None;
            }
            changed
        });
    }

    /// `/Connected` changed.
    pub fn available(&self, id: &str, available: bool) {
        self.with(id, |s| {
            let changed = s.available != Some(available);
            s.available = Some(available);
            changed
        });
    }

    /// The device could not be put on D-Bus, for `why`.
    pub fn refused(&self, id: &str, why: String) {
        self.with(id, |s| {
            let changed = s.refusal.as_ref() != Some(&why);
            s.refusal = Some(why.clone());
            s.last_error = Some(ErrorNote {
                at: unix_now(),
                message: why,
            });
            changed
        });
    }

    /// Something went wrong for the device (a payload not understood).
    pub fn error(&self, id: &str, message: String) {
        self.with(id, |s| {
            let changed = s.last_error.as_ref().is_none_or(|e| e.message != message);
            s.last_error = Some(ErrorNote {
                at: unix_now(),
                message,
            });
            changed
        });
    }

    /// Forgets a device (removed by the operator).
    pub fn forget(&self, id: &str) {
        lock(&self.devices).remove(id);
        self.changed.notify_one();
    }

    /// Everything known now.
    pub fn snapshot(&self) -> BTreeMap<String, MappedStatus> {
        lock(&self.devices).clone()
    }

    /// Mistakes in declaration files that name no device.
    pub fn unattributed(&self) -> Vec<String> {
        lock(&self.unattributed).clone()
    }

    /// Completes at the next change a listing shows.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn note(id: &str, served: bool) -> DeclarationNote {
        DeclarationNote {
            id: id.into(),
            origin: "devices.toml:1:1".into(),
            by_topic: false,
            service_type: Some("grid".into()),
            topics: vec!["a/#".into()],
            diagnostics: vec![],
            served,
            valid: served,
        }
    }

    #[test]
    fn keeps_what_came_while_declared() {
        let m = MappedActivity::default();
        m.declarations(vec![note("a", true), note("b", false)], vec![]);
        m.message("a", "a/x", b"{\"p\":1}", vec![("/Ac/Power".into(), json!(1.0))]);
        m.message("zz", "a/x", b"", vec![]);
        m.registered("a", true);
        let s = m.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s["a"].messages, 1);
        assert_eq!(s["a"].paths["/Ac/Power"].raw_payload, "{\"p\":1}");
        assert_eq!(s["a"].last.as_ref().unwrap().converted_value, json!(1.0));
        // Redeclared: kept. Undeclared while on D-Bus: kept until it leaves.
        m.declarations(vec![note("a", true)], vec![]);
        assert_eq!(m.snapshot()["a"].messages, 1);
        m.declarations(vec![], vec!["x.toml:1:1: bad".into()]);
        assert!(m.snapshot()["a"].declaration.is_none());
        m.registered("a", false);
        m.declarations(vec![], vec![]);
        assert!(m.snapshot().is_empty());
    }

    #[test]
    fn a_new_declaration_starts_afresh() {
        let m = MappedActivity::default();
        m.declarations(vec![note("a", true)], vec![]);
        let values = vec![("/Ac/Power".into(), json!(1)), ("/Ac/L1/Power".into(), json!(1))];
        m.message("a", "a/x", b"1", values);
        m.keep_paths("a", &std::collections::BTreeSet::from(["/Ac/Power".to_string()]));
        let s = m.snapshot();
        assert_eq!(s["a"].paths.keys().collect::<Vec<_>>(), ["/Ac/Power"]);
        m.serving("a");
        let s = m.snapshot();
        assert_eq!(s["a"].messages, 0);
        assert!(s["a"].paths.is_empty() && s["a"].declaration.is_some());
    }

    #[test]
    fn raw_payloads_are_cut_at_a_character() {
        assert_eq!(raw_text(b"abc"), "abc");
        let long = "é".repeat(200);
        let cut = raw_text(long.as_bytes());
        assert!(cut.len() <= RAW_MAX + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
