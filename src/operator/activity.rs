//! What the running daemon knows of each device beyond D-Bus and localsettings: when it was
//! last heard from, when each service last got a value, and the last refusal. Kept in memory
//! by the device tasks (cheap updates on their paths) and read by the operator tools.
//! Wall-clock times (unix seconds): they are shown to people and kept across restarts.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// The time now in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Most devices tracked: past this, devices not tracked yet are not (a flood of made-up
/// client ids must not grow the daemon's memory). Well above `--max-devices`.
pub const MAX_TRACKED: usize = 1024;

/// Most services tracked per device: the ids of values and refusals are the device's own
/// words, so made-up ones must not grow the daemon's memory. Room for every service a
/// Status may declare (16, the protocol's limit) and as many refused ones.
pub const MAX_SERVICES_TRACKED: usize = 32;

/// A refusal, as the device was told it on `device/<id>/Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorNote {
    /// Unix seconds.
    pub at: u64,
    /// `<code>: <message>`.
    pub message: String,
}

/// One service's activity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceActivity {
    /// Unix seconds of the last value (Values, or a write through the gateway).
    pub last_value: Option<u64>,
    pub last_error: Option<ErrorNote>,
}

/// One device's activity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceActivity {
    /// Unix seconds of the last message or value from the device.
    pub last_seen: Option<u64>,
    /// The last refusal not about one service.
    pub last_error: Option<ErrorNote>,
    pub services: BTreeMap<String, ServiceActivity>,
}

/// The activity of every device heard from since the daemon started; shared.
#[derive(Debug, Default)]
pub struct Activity {
    devices: Mutex<HashMap<String, DeviceActivity>>,
    /// Woken when something a listing shows has changed.
    changed: Notify,
    /// What the mapped-device runtime reports of its devices.
    pub mapped: super::mapped_activity::MappedActivity,
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, DeviceActivity>> {
        // Every update leaves the map consistent: a poisoned lock is still usable.
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message from the device (raw client id) arrived.
    pub fn seen(&self, client: &str) {
        let now = unix_now();
        let mut devices = self.lock();
        let full = devices.len() >= MAX_TRACKED;
        match devices.get_mut(client) {
            Some(d) => d.last_seen = Some(now),
            None if !full => {
                devices.insert(
                    client.to_owned(),
                    DeviceActivity {
                        last_seen: Some(now),
                        ..DeviceActivity::default()
                    },
                );
                drop(devices);
                self.changed.notify_one();
            }
            None => {}
        }
    }

    /// The device's entry, unless it is new and [`MAX_TRACKED`] are tracked already.
    fn entry<'a>(
        devices: &'a mut HashMap<String, DeviceActivity>,
        client: &str,
    ) -> Option<&'a mut DeviceActivity> {
        // Looked up before anything is allocated: this runs for every Values message.
        if !devices.contains_key(client) {
            if devices.len() >= MAX_TRACKED {
                return None;
            }
            devices.insert(client.to_owned(), DeviceActivity::default());
        }
        devices.get_mut(client)
    }

    /// A value for one of the device's services arrived.
    pub fn value(&self, client: &str, service: &str) {
        let now = unix_now();
        let mut devices = self.lock();
        let Some(device) = Self::entry(&mut devices, client) else {
            return;
        };
        device.last_seen = Some(now);
        let full = device.services.len() >= MAX_SERVICES_TRACKED;
        match device.services.get_mut(service) {
            Some(s) => s.last_value = Some(now),
            None if full => {}
            None => {
                device.services.insert(
                    service.to_owned(),
                    ServiceActivity {
                        last_value: Some(now),
                        last_error: None,
                    },
                );
                drop(devices);
                self.changed.notify_one();
            }
        }
    }

    /// The device was refused something (about `service`, if about one). A listing changes
    /// only when the message does: a device repeating one mistake wakes no one.
    pub fn error(&self, client: &str, service: Option<&str>, message: String) {
        let changed = {
            let mut devices = self.lock();
            let Some(device) = Self::entry(&mut devices, client) else {
                return;
            };
            // About a service not tracked when no more can be: told as the device's.
            let room = device.services.len() < MAX_SERVICES_TRACKED;
            let service = service.filter(|s| room || device.services.contains_key(*s));
            let slot = match service {
                Some(s) => &mut device.services.entry(s.to_owned()).or_default().last_error,
                None => &mut device.last_error,
            };
            let changed = slot.as_ref().is_none_or(|n| n.message != message);
            *slot = Some(ErrorNote {
                at: unix_now(),
                message,
            });
            changed
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// Forgets a device (it was removed).
    pub fn forget(&self, client: &str) {
        self.lock().remove(client);
        self.changed.notify_one();
    }

    /// Everything known now.
    pub fn snapshot(&self) -> BTreeMap<String, DeviceActivity> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The last-seen time of every device heard from.
    pub fn last_seen(&self) -> BTreeMap<String, u64> {
        self.lock()
            .iter()
            .filter_map(|(k, v)| v.last_seen.map(|t| (k.clone(), t)))
            .collect()
    }

    /// Completes at the next change a listing shows (a device or service heard from for
    /// the first time, a refusal, a removal; a mapped device's declaration or state).
    pub async fn changed(&self) {
        tokio::select! {
            _ = self.changed.notified() => {}
            _ = self.mapped.changed() => {}
        }
    }

    /// Wakes whoever waits in [`Activity::changed`] (a device registered or left).
    pub fn touch(&self) {
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_errors_and_forgetting() {
        let a = Activity::default();
        a.value("fe001", "t1");
        a.error("fe001", Some("t2"), "unknown_service_type: x".into());
        a.error("fe001", None, "invalid_json: y".into());
        let s = a.snapshot();
        let d = &s["fe001"];
        assert!(d.last_seen.is_some());
        assert!(d.services["t1"].last_value.is_some());
        assert_eq!(
            d.services["t2"].last_error.as_ref().unwrap().message,
            "unknown_service_type: x"
        );
        assert!(d.last_error.is_some());
        assert_eq!(a.last_seen().len(), 1);
        a.forget("fe001");
        assert!(a.snapshot().is_empty());
    }

    #[test]
    fn made_up_service_ids_do_not_grow_a_device_without_limit() {
        let a = Activity::default();
        for i in 0..10 * MAX_SERVICES_TRACKED {
            a.value("d", &format!("v{i}"));
            a.error("d", Some(&format!("e{i}")), "unknown_service: x".into());
        }
        let snapshot = a.snapshot();
        assert_eq!(snapshot["d"].services.len(), MAX_SERVICES_TRACKED);
        // Those tracked are still updated, and a refusal past the limit is still told.
        a.error("d", Some("v0"), "invalid_value: y".into());
        let d = &a.snapshot()["d"];
        assert_eq!(d.services["v0"].last_error.as_ref().unwrap().message, "invalid_value: y");
        assert_eq!(d.last_error.as_ref().unwrap().message, "unknown_service: x");
    }
}
