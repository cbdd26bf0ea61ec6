//! Messages that made the daemon fail, set aside so that a restart does not replay them
//! into the same failure: no crash loop from a retained Status or from the state file.
//!
//! Two ways a message can make the daemon fail:
//! - a panic, caught at the device's boundary ([`crate::device::failure`]): its key is set
//!   aside at once;
//! - a hard crash (abort, out of memory, SIGKILL): nothing runs afterwards, so replays keep a
//!   journal. Before a replay (a Status restored from the state file, or a retained message
//!   from the broker) is handled, its key goes into the journal's in-flight list; once it is
//!   handled, it comes out. At the next start, what is still in flight was being handled
//!   when the daemon died. A single one is set aside. Several (replays run side by side):
//!   this time every replay is handled alone, one after the other ([`Quarantine::isolating`]),
//!   so a second failure pins down the one to blame.
//!
//! A set-aside message is not replayed: it is logged with the client id and the device is
//! answered `internal_error`. A live message is always handled, even one that failed before:
//! a device that sends it again gets a new chance, and a defect then costs that device only.
//! Everything here is forgotten when the daemon's version changes (the defect may be fixed).
//!
//! Only replays are journalled, so a daemon that is running costs nothing here. The file is
//! replaced by rename without fsync: it guards against the process dying, whose writes the
//! kernel keeps; after a power cut there is nothing to blame.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use tracing::warn;

/// Name of the file in the data directory.
pub const QUARANTINE_FILE: &str = "quarantine.json";

/// Most set-aside messages remembered; the oldest go first.
pub const MAX_SET_ASIDE: usize = 64;

const FORMAT: u32 = 1;

/// One message: its topic and a digest of its payload (FNV-1a, stable across builds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageKey {
    pub topic: String,
    pub digest: String,
}

impl MessageKey {
    /// The key of `payload` received on `topic`.
    pub fn of(topic: &str, payload: &[u8]) -> MessageKey {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(payload);
        MessageKey {
            topic: topic.to_owned(),
            digest: format!("{:016x}", hasher.finish()),
        }
    }

    /// The key of a JSON payload on `topic`: that of its compact text (`Value::to_string`),
    /// so that a Status restored from the state file has the key it had in earlier versions.
    pub fn of_json(topic: &str, payload: &serde_json::Value) -> MessageKey {
        MessageKey::of(topic, payload.to_string().as_bytes())
    }

    /// The client id in a `device/<id>/<kind>` topic, for logs and answers.
    pub fn client_id(&self) -> Option<&str> {
        let rest = self.topic.strip_prefix("device/")?;
        rest.split_once('/').map(|(id, _)| id)
    }
}

/// A message that made the daemon fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetAside {
    #[serde(flatten)]
    pub key: MessageKey,
    /// Why, in words.
    pub reason: String,
    /// When, in seconds since 1970.
    pub at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuarantineFile {
    format: u32,
    /// The daemon version that wrote the file.
    version: String,
    #[serde(default)]
    set_aside: Vec<SetAside>,
    #[serde(default)]
    in_flight: Vec<MessageKey>,
}

/// What to do with a replay.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Handle it (journalled).
    Handle,
    /// Do not handle it: it made the daemon fail before.
    SetAside(String),
}

/// Completion of one journalled replay: dropping it (the message was handled, or will never
/// be) takes the replay out of the journal. A process that dies keeps it in.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    done: mpsc::UnboundedSender<u64>,
}

impl Ticket {
    /// The id that [`Quarantine::completed`] returns once the ticket is dropped.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = self.done.send(self.id);
    }
}

/// The set-aside list and the journal of replays in flight.
pub struct Quarantine {
    dir: PathBuf,
    version: String,
    set_aside: Vec<SetAside>,
    in_flight: BTreeMap<u64, MessageKey>,
    isolating: bool,
    next_id: u64,
    done_tx: mpsc::UnboundedSender<u64>,
    done_rx: mpsc::UnboundedReceiver<u64>,
    warned: bool,
}

impl Quarantine {
    /// Reads the file in `dir` and judges what the last run left in flight. Returns the
    /// messages newly set aside by that judgement (to be logged and answered).
    pub fn open(dir: &Path, version: &str) -> (Quarantine, Vec<SetAside>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut q = Quarantine {
            dir: dir.to_path_buf(),
            version: version.to_owned(),
            set_aside: Vec::new(),
            in_flight: BTreeMap::new(),
            isolating: false,
            next_id: 0,
            done_tx,
            done_rx,
            warned: false,
        };
        let file = match std::fs::read(dir.join(QUARANTINE_FILE)) {
            Ok(bytes) => match serde_json::from_slice::<QuarantineFile>(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    warn!(error = %e, "the quarantine file is not valid; starting without it");
                    QuarantineFile::default()
                }
            },
            Err(_) => QuarantineFile::default(),
        };
        if file.version != version {
            // Another version: its defects are not ours to remember.
            return (q, Vec::new());
        }
        q.set_aside = file.set_aside;
        let mut newly = Vec::new();
        match file.in_flight.as_slice() {
            [] => {}
            [alone] => {
                let entry = SetAside {
                    key: alone.clone(),
                    reason: "the daemon stopped while handling it".into(),
                    at: now(),
                };
                q.remember(entry.clone());
                newly.push(entry);
            }
            _several => q.isolating = true,
        }
        let result = write_file(&q.dir, &q.file());
        q.written(result);
        (q, newly)
    }

    /// What to do with a replay of `key`.
    pub fn verdict(&self, key: &MessageKey) -> Verdict {
        if let Some(s) = self.set_aside.iter().find(|s| s.key == *key) {
            return Verdict::SetAside(s.reason.clone());
        }
        Verdict::Handle
    }

    /// True when the last run died with several replays in flight: replays are then to be
    /// handled one at a time, each alone in flight.
    pub fn isolating(&self) -> bool {
        self.isolating
    }

    /// Puts replays in flight (one write for all); each ticket takes its replay out again.
    pub async fn begin(&mut self, keys: &[MessageKey]) -> Vec<Ticket> {
        let tickets = keys
            .iter()
            .map(|key| {
                let id = self.next_id;
                self.next_id += 1;
                self.in_flight.insert(id, key.clone());
                Ticket {
                    id,
                    done: self.done_tx.clone(),
                }
            })
            .collect();
        if !keys.is_empty() {
            self.write().await;
        }
        tickets
    }

    /// Completes when a ticket was dropped; returns its id.
    pub async fn completed(&mut self) -> u64 {
        match self.done_rx.recv().await {
            Some(id) => id,
            // `self` holds a sender, so the channel never closes.
            None => std::future::pending().await,
        }
    }

    /// The id of a ticket dropped since, if any.
    pub fn try_completed(&mut self) -> Option<u64> {
        self.done_rx.try_recv().ok()
    }

    /// Takes completed replays out of the journal (one write for all).
    pub async fn end(&mut self, ids: &[u64]) {
        let mut changed = false;
        for id in ids {
            changed |= self.in_flight.remove(id).is_some();
        }
        if changed {
            self.write().await;
        }
    }

    /// Replays in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sets a message aside after it made the daemon fail (a caught panic).
    pub async fn set_aside(&mut self, key: MessageKey, reason: String) {
        self.remember(SetAside {
            key,
            reason,
            at: now(),
        });
        self.write().await;
    }

    /// A clean stop: nothing in flight is to blame.
    pub async fn close(mut self) {
        self.in_flight.clear();
        self.write().await;
    }

    fn remember(&mut self, entry: SetAside) {
        self.set_aside.retain(|s| s.key != entry.key);
        self.set_aside.push(entry);
        let excess = self.set_aside.len().saturating_sub(MAX_SET_ASIDE);
        self.set_aside.drain(..excess);
    }

    /// What the file holds now.
    fn file(&self) -> QuarantineFile {
        QuarantineFile {
            format: FORMAT,
            version: self.version.clone(),
            set_aside: self.set_aside.clone(),
            in_flight: self.in_flight.values().cloned().collect(),
        }
    }

    /// Writes the file on the blocking pool, and waits until it is in place: a replay is
    /// handled only once the journal has it.
    async fn write(&mut self) {
        let (dir, file) = (self.dir.clone(), self.file());
        let result = tokio::task::spawn_blocking(move || write_file(&dir, &file))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        self.written(result);
    }

    /// Logs a failed write once, until one succeeds again.
    fn written(&mut self, result: std::io::Result<()>) {
        match result {
            Ok(()) => self.warned = false,
            Err(e) if !self.warned => {
                self.warned = true;
                let path = self.dir.join(QUARANTINE_FILE);
                warn!(path = %path.display(), error = %e, "could not write the quarantine file; a message that crashes the daemon may crash it again after a restart");
            }
            Err(_) => {}
        }
    }
}

/// Replaces the file in `dir` with `file`, or removes it when there is nothing to keep.
fn write_file(dir: &Path, file: &QuarantineFile) -> std::io::Result<()> {
    let path = dir.join(QUARANTINE_FILE);
    if file.set_aside.is_empty() && file.in_flight.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    } else {
        replace(&path, file)
    }
}

fn replace(path: &Path, file: &QuarantineFile) -> std::io::Result<()> {
    let body = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    // The path is logged beside the error.
    crate::atomic_file::replace(path, &body).map_err(|e| e.source)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> MessageKey {
        MessageKey::of(&format!("device/d{n}/Status"), &[n])
    }

    #[test]
    fn the_digest_is_stable() {
        // FNV-1a 64 of "a": the published test vector.
        assert_eq!(MessageKey::of("t", b"a").digest, "af63dc4c8601ec8c");
        assert_eq!(key(1).client_id(), Some("d1"));
    }

    #[tokio::test]
    async fn a_replay_in_flight_at_a_crash_is_set_aside_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, newly) = Quarantine::open(dir.path(), "1");
        assert!(newly.is_empty());
        let tickets = q.begin(&[key(1)]).await;
        // The process dies: the ticket is never dropped.
        std::mem::forget(tickets);
        drop(q);
        let (q, newly) = Quarantine::open(dir.path(), "1");
        assert_eq!(newly.len(), 1);
        assert_eq!(newly[0].key, key(1));
        assert!(matches!(q.verdict(&key(1)), Verdict::SetAside(_)));
        assert_eq!(q.verdict(&key(2)), Verdict::Handle);
    }

    #[tokio::test]
    async fn several_in_flight_are_isolated_then_the_one_in_flight_alone_is_blamed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Quarantine::open(dir.path(), "1");
        std::mem::forget(q.begin(&[key(1), key(2), key(3)]).await);
        drop(q);
        let (mut q, newly) = Quarantine::open(dir.path(), "1");
        assert!(newly.is_empty());
        assert!(q.isolating());
        assert_eq!(q.verdict(&key(2)), Verdict::Handle);
        // Replayed alone: 1 is fine, 2 crashes.
        drop(q.begin(&[key(1)]).await);
        let id = q.try_completed().unwrap();
        q.end(&[id]).await;
        std::mem::forget(q.begin(&[key(2)]).await);
        drop(q);
        let (q, newly) = Quarantine::open(dir.path(), "1");
        assert_eq!(newly.iter().map(|s| &s.key).collect::<Vec<_>>(), [&key(2)]);
        assert_eq!(q.verdict(&key(1)), Verdict::Handle);
    }

    #[tokio::test]
    async fn handled_replays_and_a_clean_stop_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Quarantine::open(dir.path(), "1");
        let tickets = q.begin(&[key(1), key(2)]).await;
        drop(tickets);
        let ids: Vec<u64> = std::iter::from_fn(|| q.try_completed()).collect();
        q.end(&ids).await;
        assert_eq!(q.in_flight(), 0);
        std::mem::forget(q.begin(&[key(3)]).await);
        q.close().await;
        assert!(!dir.path().join(QUARANTINE_FILE).exists());
        let (_, newly) = Quarantine::open(dir.path(), "1");
        assert!(newly.is_empty());
    }

    #[tokio::test]
    async fn a_new_version_forgets_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Quarantine::open(dir.path(), "1");
        q.set_aside(key(1), "panic".into()).await;
        std::mem::forget(q.begin(&[key(2)]).await);
        drop(q);
        let (q, newly) = Quarantine::open(dir.path(), "2");
        assert!(newly.is_empty());
        assert_eq!(q.verdict(&key(1)), Verdict::Handle);
    }

    #[tokio::test]
    async fn the_list_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Quarantine::open(dir.path(), "1");
        for n in 0..=MAX_SET_ASIDE as u16 {
            q.set_aside(MessageKey::of("t", &n.to_le_bytes()), "x".into())
                .await;
        }
        assert_eq!(q.set_aside.len(), MAX_SET_ASIDE);
        assert_eq!(
            q.verdict(&MessageKey::of("t", &0u16.to_le_bytes())),
            Verdict::Handle
        );
    }
}
