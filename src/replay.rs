//! Replays — devices restored from the state file, retained messages from the broker — go
//! through the quarantine ([`crate::quarantine`]): one that made the daemon fail before is
//! set aside; the others are journalled while they are handled, side by side, or one at a
//! time after a crash that left several in flight. Live messages never come here.

use crate::mqtt::Message;
use crate::persist::SavedDevice;
use crate::protocol::device_topic;
use crate::quarantine::{MessageKey, Quarantine, SetAside, Ticket, Verdict};
use std::collections::VecDeque;
use std::path::Path;

/// A message handled again rather than sent now.
#[derive(Debug, Clone)]
pub enum Replay {
    /// A device remembered in the state file: its Status, already parsed.
    Restore(SavedDevice),
    /// A retained message the broker delivered on subscribing.
    Retained(Message),
}

impl Replay {
    /// The topic the message came (or would come) on.
    pub fn topic(&self) -> String {
        match self {
            Replay::Restore(saved) => device_topic(&saved.client_id, "Status"),
            Replay::Retained(m) => m.topic.clone(),
        }
    }

    /// Its key in the quarantine (a restored Status has the key of its compact text).
    pub fn key(&self) -> MessageKey {
        match self {
            Replay::Restore(saved) => restore_key(saved),
            Replay::Retained(m) => MessageKey::of(&m.topic, &m.payload),
        }
    }
}

/// The key in the quarantine of a device restored from the state file: that of its Status.
pub fn restore_key(saved: &SavedDevice) -> MessageKey {
    MessageKey::of_json(&device_topic(&saved.client_id, "Status"), &saved.status)
}

/// What to do with a replay now.
#[derive(Debug)]
pub enum Next {
    /// Handle it; drop the ticket once it is handled.
    Handle(Replay, Ticket),
    /// Do not: it made the daemon fail before (the reason).
    SetAside(Replay, String),
}

/// The quarantine, and the replays waiting for their turn while isolating.
pub struct Replays {
    quarantine: Quarantine,
    queue: VecDeque<Replay>,
    /// The replay handled alone now (isolating), by ticket id.
    alone: Option<u64>,
}

impl Replays {
    /// Opens the quarantine in `dir`; returns what the last run's crash set aside.
    pub fn open(dir: &Path, version: &str) -> (Replays, Vec<SetAside>) {
        let (quarantine, newly) = Quarantine::open(dir, version);
        (
            Replays {
                quarantine,
                queue: VecDeque::new(),
                alone: None,
            },
            newly,
        )
    }

    /// Takes replays that arrive now; returns what to do with each that can go now.
    pub async fn admit(&mut self, replays: Vec<Replay>) -> Vec<Next> {
        let mut next = Vec::new();
        let mut go = Vec::new();
        for replay in replays {
            match self.quarantine.verdict(&replay.key()) {
                Verdict::SetAside(reason) => next.push(Next::SetAside(replay, reason)),
                Verdict::Handle if self.quarantine.isolating() => self.queue.push_back(replay),
                Verdict::Handle => go.push(replay),
            }
        }
        let keys: Vec<MessageKey> = go.iter().map(Replay::key).collect();
        let tickets = self.quarantine.begin(&keys).await;
        next.extend(
            go.into_iter()
                .zip(tickets)
                .map(|(replay, ticket)| Next::Handle(replay, ticket)),
        );
        next.extend(self.next_alone().await);
        next
    }

    /// A live message on `topic` came: a replay of the same topic still waiting is older and
    /// must not overwrite it.
    pub fn superseded(&mut self, topic: &str) {
        self.queue.retain(|r| r.topic() != topic);
    }

    /// Completes when a handled replay's ticket was dropped; returns its id.
    pub async fn completed(&mut self) -> u64 {
        self.quarantine.completed().await
    }

    /// Takes handled replays (`first` and any others completed since) out of the journal;
    /// returns the next replay to handle alone, if isolating.
    pub async fn complete(&mut self, first: u64) -> Vec<Next> {
        let mut ids = vec![first];
        ids.extend(std::iter::from_fn(|| self.quarantine.try_completed()));
        if self.alone.is_some_and(|id| ids.contains(&id)) {
            self.alone = None;
        }
        self.quarantine.end(&ids).await;
        self.next_alone().await
    }

    /// While isolating and nothing is handled alone now: the next waiting replay to handle
    /// (after any that are set aside meanwhile).
    async fn next_alone(&mut self) -> Vec<Next> {
        let mut next = Vec::new();
        if self.alone.is_some() {
            return next;
        }
        while let Some(replay) = self.queue.pop_front() {
            if let Verdict::SetAside(reason) = self.quarantine.verdict(&replay.key()) {
                next.push(Next::SetAside(replay, reason));
                continue;
            }
            if let Some(ticket) = self.quarantine.begin(&[replay.key()]).await.pop() {
                self.alone = Some(ticket.id());
                next.push(Next::Handle(replay, ticket));
            }
            break;
        }
        next
    }

    /// Sets a message aside after it made the daemon fail (a caught panic).
    pub async fn set_aside(&mut self, key: MessageKey, reason: String) {
        self.quarantine.set_aside(key, reason).await;
    }

    /// Replays in the journal now.
    pub fn in_flight(&self) -> usize {
        self.quarantine.in_flight()
    }

    /// A clean stop: nothing in flight is to blame.
    pub async fn close(self) {
        self.quarantine.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retained(id: &str) -> Replay {
        Replay::Retained(Message {
            topic: format!("device/{id}/Status"),
            payload: bytes::Bytes::from(format!("{{\"clientId\": \"{id}\"}}")),
            retained: true,
        })
    }

    fn handled(next: &[Next]) -> Vec<String> {
        next.iter()
            .filter_map(|n| match n {
                Next::Handle(r, _) => Some(r.topic()),
                Next::SetAside(..) => None,
            })
            .collect()
    }

    /// A data directory whose last run died with `ids` in flight.
    async fn crashed_with(ids: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (mut replays, _) = Replays::open(dir.path(), "1");
        let next = replays
            .admit(ids.iter().map(|id| retained(id)).collect())
            .await;
        // The process dies: no ticket is ever dropped.
        std::mem::forget(next);
        std::mem::forget(replays);
        dir
    }

    #[test]
    fn a_restored_device_has_the_topic_and_key_its_status_had() {
        let status =
            serde_json::json!({"clientId": "a", "connected": 1, "services": {"t1": "tank"}});
        let restore = Replay::Restore(SavedDevice {
            client_id: "a".into(),
            status: status.clone(),
        });
        assert_eq!(restore.topic(), "device/a/Status");
        // FNV-1a 64 of `{"clientId":"a","connected":1,"services":{"t1":"tank"}}`, the text
        // earlier versions replayed: what they set aside is still recognised.
        assert_eq!(restore.key().digest, "3a9bb1b923ccb1d5");
        assert_eq!(
            restore.key(),
            Replay::Retained(Message {
                topic: "device/a/Status".into(),
                payload: bytes::Bytes::from(
                    r#"{"clientId":"a","connected":1,"services":{"t1":"tank"}}"#
                ),
                retained: true,
            })
            .key()
        );
    }

    #[tokio::test]
    async fn replays_go_side_by_side_normally() {
        let dir = tempfile::tempdir().unwrap();
        let (mut replays, newly) = Replays::open(dir.path(), "1");
        assert!(newly.is_empty());
        let next = replays.admit(vec![retained("a"), retained("b")]).await;
        assert_eq!(handled(&next).len(), 2);
        assert_eq!(replays.in_flight(), 2);
    }

    #[tokio::test]
    async fn after_a_crash_with_several_in_flight_they_go_one_at_a_time() {
        let dir = crashed_with(&["a", "b", "c"]).await;
        let (mut replays, newly) = Replays::open(dir.path(), "1");
        assert!(newly.is_empty(), "nobody to blame yet");
        let next = replays
            .admit(vec![retained("a"), retained("b"), retained("c")])
            .await;
        assert_eq!(handled(&next), ["device/a/Status"]);
        // A live message for c supersedes its replay.
        replays.superseded("device/c/Status");
        let id = match &next[0] {
            Next::Handle(_, ticket) => ticket.id(),
            Next::SetAside(..) => panic!("handled"),
        };
        drop(next);
        let next = replays.complete(id).await;
        assert_eq!(handled(&next), ["device/b/Status"]);
        let id = match &next[0] {
            Next::Handle(_, ticket) => ticket.id(),
            Next::SetAside(..) => panic!("handled"),
        };
        drop(next);
        // c was superseded: nothing is left.
        assert!(replays.complete(id).await.is_empty());
        assert_eq!(replays.in_flight(), 0);
    }

    #[tokio::test]
    async fn the_one_alone_in_flight_at_a_crash_is_set_aside() {
        let dir = crashed_with(&["a"]).await;
        let (mut replays, newly) = Replays::open(dir.path(), "1");
        assert_eq!(newly.len(), 1);
        let next = replays.admit(vec![retained("a"), retained("b")]).await;
        assert!(matches!(&next[0], Next::SetAside(r, _) if r.topic() == "device/a/Status"));
        assert_eq!(handled(&next), ["device/b/Status"]);
    }
}
