//! The daemon's record of connected devices, written through to the state file: a device is
//! answered only once its registration is in the file (persist, then reply), so a reply
//! survives a SIGKILL the next instant; and what a device withdraws leaves the file at once.
//!
//! One writer task owns the record and the file. Changes queue to it; every write takes all
//! changes queued so far (group commit), so a burst of registrations costs a few writes, not
//! one each. Writes run on the blocking pool, so the disk never stalls the devices.
//!
//! A device is answered once the new file has replaced the old one (written and renamed):
//! from then on a daemon killed the next instant finds it at its restart. The fsync that
//! makes it survive a power cut follows at once, off the reply's path: it costs a few
//! milliseconds per write on flash, and localsettings, which holds the device's instance,
//! writes its own file seconds later anyway.
//!
//! A write that fails (read-only or full data directory) is retried with the next change,
//! and logged at most once per [`WARN_INTERVAL`]: the daemon keeps serving without it.

use crate::persist::{self, Known, LastSeen, SavedDevice};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// At most one warning about a failing state file per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

enum Command {
    Upsert(SavedDevice),
    /// The device left (raw client id, unix seconds): its last-seen time is written now.
    Remove(String, u64),
    /// Later last-seen times (raw client id → unix seconds); earlier ones are ignored, and
    /// so are those of devices that never registered (anything may publish on `device/`).
    Seen(LastSeen),
    /// First last-seen times of devices listed (known by their settings), kept as they are.
    Listed(LastSeen),
    /// Forgets a device entirely: its Status and its last-seen time (`remove`).
    Purge(String),
    /// Answered with the last-seen times held now.
    LastSeen(oneshot::Sender<LastSeen>),
    /// Answered with the devices that registered and were not removed.
    Known(oneshot::Sender<Known>),
    /// Answered with the devices held now.
    Devices(oneshot::Sender<Vec<SavedDevice>>),
    /// Answered once everything queued before is in the file (or its write failed).
    Sync(oneshot::Sender<()>),
}

/// A handle on the record; cheap to clone. The writer ends when every handle is gone.
#[derive(Clone)]
pub struct StateStore {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

impl StateStore {
    /// Starts the writer for the state file in `dir`, holding `initial` (what the file held
    /// at start: devices not yet restored must stay in it until they are).
    pub fn start(dir: PathBuf, initial: Vec<SavedDevice>) -> (StateStore, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let devices = initial
            .into_iter()
            .map(|d| (d.client_id.clone(), d))
            .collect();
        let task = tokio::spawn(write_through(dir, devices, rx));
        (StateStore { tx }, task)
    }

    /// Remembers (or replaces) a device.
    pub fn upsert(&self, device: SavedDevice) {
        let _ = self.tx.send(Command::Upsert(device));
    }

    /// Forgets a device's Status (by its raw client id): it left. Its last-seen time is
    /// written with it, so that a crash later does not restart its silence.
    pub fn remove(&self, client_id: &str) {
        let now = crate::operator::activity::unix_now();
        let _ = self.tx.send(Command::Remove(client_id.to_owned(), now));
    }

    /// Records when devices were last heard from (written with the next write, not
    /// waited for: a last-seen time is a hint, not a promise made to a device).
    pub fn seen(&self, times: LastSeen) {
        if !times.is_empty() {
            let _ = self.tx.send(Command::Seen(times));
        }
    }

    /// Gives devices listed without a last-seen time (known only by their settings) the
    /// time of that listing, so that `--not-seen-for` counts from there.
    pub fn listed(&self, times: LastSeen) {
        if !times.is_empty() {
            let _ = self.tx.send(Command::Listed(times));
        }
    }

    /// Forgets a device and its last-seen time (the operator removed it).
    pub fn purge(&self, client_id: &str) {
        let _ = self.tx.send(Command::Purge(client_id.to_owned()));
    }

    /// The last-seen times held now (those of the file at start, and later ones).
    pub async fn last_seen(&self) -> LastSeen {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::LastSeen(tx)).is_ok() {
            return rx.await.unwrap_or_default();
        }
        LastSeen::new()
    }

    /// The devices that registered and were not removed, with their service ids.
    pub async fn known(&self) -> Known {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Known(tx)).is_ok() {
            return rx.await.unwrap_or_default();
        }
        Known::new()
    }

    /// The devices held now (connected, or restored and not yet timed out).
    pub async fn devices(&self) -> Vec<SavedDevice> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Devices(tx)).is_ok() {
            return rx.await.unwrap_or_default();
        }
        Vec::new()
    }

    /// Completes when every change made before this call is in the file (renamed into
    /// place; synced to the disk right after), or its write failed (the failure is logged;
    /// the caller goes on either way).
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Remembers a device and waits until that is in the file: call before replying.
    pub async fn record(&self, device: SavedDevice) {
        self.upsert(device);
        self.sync().await;
    }
}

async fn write_through(
    dir: PathBuf,
    mut devices: BTreeMap<String, SavedDevice>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut failures = FailureLog::default();
    let mut dirty = false;
    // The last-seen times of the file at start (devices that left are only there).
    let start_dir = dir.clone();
    let file = tokio::task::spawn_blocking(move || persist::load_file(&start_dir))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut last_seen = file.last_seen;
    let mut known = file.known;
    // Files written before `known` existed: their devices are known all the same.
    for d in devices.values() {
        dirty |= learn(&mut known, d);
    }
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    // The fsync of the last write runs on its own, one at a time, off the replies' path.
    let mut syncing: Option<JoinHandle<Result<(), persist::Error>>> = None;
    let mut sync_again = false;
    loop {
        tokio::select! {
            command = rx.recv() => {
                let Some(first) = command else { break };
                let mut next = Some(first);
                // Everything queued now goes into this write.
                while let Some(command) = next {
                    match command {
                        Command::Upsert(d) => {
                            dirty |= learn(&mut known, &d);
                            if devices.get(&d.client_id) != Some(&d) {
                                devices.insert(d.client_id.clone(), d);
                                dirty = true;
                            }
                        }
                        Command::Remove(id, at) => {
                            if devices.remove(&id).is_some() {
                                dirty = true;
                                dirty |= later(&mut last_seen, id, at);
                            }
                        }
                        Command::Seen(times) => {
                            for (id, at) in times {
                                if known.contains_key(&id) || devices.contains_key(&id) {
                                    dirty |= later(&mut last_seen, id, at);
                                }
                            }
                        }
                        Command::Listed(times) => {
                            for (id, at) in times {
                                if let std::collections::btree_map::Entry::Vacant(e) =
                                    last_seen.entry(id)
                                {
                                    e.insert(at);
                                    dirty = true;
                                }
                            }
                        }
                        Command::Purge(id) => {
                            dirty |= devices.remove(&id).is_some();
                            dirty |= last_seen.remove(&id).is_some();
                            dirty |= known.remove(&id).is_some();
                        }
                        Command::Known(reply) => {
                            let _ = reply.send(known.clone());
                        }
                        Command::LastSeen(reply) => {
                            let _ = reply.send(last_seen.clone());
                        }
                        Command::Devices(reply) => {
                            let _ = reply.send(devices.values().cloned().collect());
                        }
                        Command::Sync(done) => waiting.push(done),
                    }
                    next = rx.try_recv().ok();
                }
            }
            synced = finished(&mut syncing) => {
                syncing = None;
                if let Err(e) = synced {
                    failures.failed(&e);
                }
                if std::mem::take(&mut sync_again) {
                    syncing = Some(start_sync(&dir));
                }
                continue;
            }
        }
        if dirty {
            let body = persist::encode(devices.values(), &last_seen, &known);
            let target = dir.clone();
            let replaced = tokio::task::spawn_blocking(move || persist::replace(&target, &body))
                .await
                .unwrap_or_else(|e| Err(lost_job(&dir, e)));
            match replaced {
                Ok(()) => {
                    dirty = false;
                    failures.succeeded();
                    match syncing {
                        Some(_) => sync_again = true,
                        None => syncing = Some(start_sync(&dir)),
                    }
                }
                // Still dirty: the next change tries again.
                Err(e) => failures.failed(&e),
            }
        }
        // In the file (or its write failed, which was logged): answered.
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    if let Some(job) = syncing {
        let _ = job.await;
    }
}

/// Adds a registered device's service ids to what is known of it; whether that changed.
fn learn(known: &mut Known, device: &SavedDevice) -> bool {
    let ids = known.entry(device.client_id.clone()).or_default();
    let before = ids.len();
    for id in persist::declared_service_ids(&device.status) {
        if !ids.iter().any(|k| k == id) {
            ids.push(id.to_owned());
        }
    }
    before != ids.len() || before == 0
}

/// Sets a last-seen time if it is later than the one held; whether it was.
fn later(last_seen: &mut LastSeen, id: String, at: u64) -> bool {
    let held = last_seen.entry(id).or_insert(0);
    let newer = at > *held;
    if newer {
        *held = at;
    }
    newer
}

fn start_sync(dir: &std::path::Path) -> JoinHandle<Result<(), persist::Error>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || persist::sync(&dir))
}

/// Completes when the running sync (if any) finishes; never while there is none.
async fn finished(
    syncing: &mut Option<JoinHandle<Result<(), persist::Error>>>,
) -> Result<(), persist::Error> {
    match syncing {
        Some(job) => job.await.unwrap_or_else(|e| {
            Err(persist::Error::Io {
                action: "syncing",
                path: PathBuf::from(crate::data_dir::STATE_FILE),
                source: std::io::Error::other(e.to_string()),
            })
        }),
        None => std::future::pending().await,
    }
}

fn lost_job(dir: &std::path::Path, e: tokio::task::JoinError) -> persist::Error {
    persist::Error::Io {
        action: "writing",
        path: dir.join(crate::data_dir::STATE_FILE),
        source: std::io::Error::other(e.to_string()),
    }
}

/// One warning per [`WARN_INTERVAL`] for a write that keeps failing, with the count of
/// failures in between; one line when it works again.
#[derive(Default)]
struct FailureLog {
    last_warning: Option<Instant>,
    since_warning: u64,
    failing: bool,
}

impl FailureLog {
    fn failed(&mut self, e: &persist::Error) {
        self.failing = true;
        let due = self
            .last_warning
            .is_none_or(|t| t.elapsed() >= WARN_INTERVAL);
        if due {
            warn!(
                error = %crate::logging::error_chain(e),
                failed_since_last_warning = self.since_warning,
                "could not write the state file; the daemon keeps serving, but devices registered now will not come back by themselves after a restart"
            );
            self.last_warning = Some(Instant::now());
            self.since_warning = 0;
        } else {
            self.since_warning += 1;
        }
    }

    fn succeeded(&mut self) {
        if self.failing {
            info!("the state file is written again");
        }
        *self = FailureLog::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(id: &str) -> SavedDevice {
        SavedDevice {
            client_id: id.into(),
            status: json!({"clientId": id, "connected": 1, "services": {}}),
        }
    }

    #[tokio::test]
    async fn a_recorded_device_is_in_the_file_when_record_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _task) = StateStore::start(dir.path().to_path_buf(), vec![device("old")]);
        store.record(device("new")).await;
        let saved = persist::load(dir.path()).unwrap();
        let ids: Vec<&str> = saved.iter().map(|d| d.client_id.as_str()).collect();
        assert_eq!(ids, ["new", "old"]);
        store.remove("old");
        store.sync().await;
        assert_eq!(persist::load(dir.path()).unwrap(), vec![device("new")]);
    }

    #[tokio::test]
    async fn last_seen_times_of_registered_devices_survive_and_a_purge_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = LastSeen::from([("gone".to_string(), 100)]);
        // A file written before `known` existed: its devices are known all the same.
        persist::save_file(dir.path(), &[device("gone")], &earlier, &Known::new()).unwrap();
        let (store, _task) = StateStore::start(dir.path().to_path_buf(), vec![device("gone")]);
        store.record(device("here")).await;
        // Anything may publish: only devices that registered get a last-seen time.
        store.seen(LastSeen::from([
            ("stranger".to_string(), 200),
            ("here".to_string(), 200),
            ("gone".to_string(), 50),
        ]));
        store.sync().await;
        let file = persist::load_file(dir.path()).unwrap();
        assert_eq!(
            file.last_seen,
            LastSeen::from([("gone".to_string(), 100), ("here".to_string(), 200)])
        );
        assert_eq!(file.known.keys().collect::<Vec<_>>(), ["gone", "here"]);
        // Leaving writes its last-seen time with it (no later flush is needed).
        store.remove("gone");
        store.sync().await;
        let file = persist::load_file(dir.path()).unwrap();
        assert_eq!(file.devices, vec![device("here")]);
        assert!(file.last_seen["gone"] > 1_000_000_000);
        // A device listed by its settings only gets the time of that listing.
        store.listed(LastSeen::from([("old".to_string(), 7), ("here".to_string(), 7)]));
        store.sync().await;
        let file = persist::load_file(dir.path()).unwrap();
        assert_eq!((file.last_seen["old"], file.last_seen["here"]), (7, 200));
        store.purge("gone");
        store.sync().await;
        let file = persist::load_file(dir.path()).unwrap();
        assert!(!file.last_seen.contains_key("gone") && !file.known.contains_key("gone"));
    }

    #[tokio::test]
    async fn a_device_is_known_by_its_raw_id_and_every_service_it_declared() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _task) = StateStore::start(dir.path().to_path_buf(), vec![]);
        let status = |services| SavedDevice {
            client_id: "ESP32-ABC".into(),
            status: json!({"clientId": "ESP32-ABC", "connected": 1, "services": services}),
        };
        store.record(status(json!({"t_1": "temperature"}))).await;
        store.record(status(json!({"tk": "tank"}))).await;
        store.remove("ESP32-ABC");
        store.sync().await;
        let file = persist::load_file(dir.path()).unwrap();
        assert!(file.devices.is_empty());
        assert_eq!(file.known["ESP32-ABC"], ["t_1", "tk"]);
        assert_eq!(store.known().await, file.known);
    }

    #[tokio::test]
    async fn a_failing_write_is_retried_with_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("state.json.tmp");
        std::fs::create_dir(&blocker).unwrap();
        std::fs::write(blocker.join("x"), "").unwrap();
        let (store, _task) = StateStore::start(dir.path().to_path_buf(), Vec::new());
        store.record(device("a")).await;
        assert!(persist::load(dir.path()).unwrap().is_empty());
        std::fs::remove_dir_all(&blocker).unwrap();
        store.record(device("b")).await;
        assert_eq!(persist::load(dir.path()).unwrap().len(), 2);
    }
}
