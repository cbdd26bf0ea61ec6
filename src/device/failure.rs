//! Containment: a defect met while handling one device's message costs that device, not the
//! daemon. The device's task catches the panic at its boundary (one event), removes the
//! device's services, answers it `internal_error` and reports the failure, with the message
//! to blame, to the registry, which forgets the device and sets the message aside
//! ([`crate::quarantine`]) so that no restart replays it. Every other device goes on.
//!
//! This needs `panic = "unwind"` (the release profile's setting): with `abort` a panic ends
//! the process before anything here runs.

use crate::ids::ClientId;
use crate::protocol::{device_topic, MessageKind};
use crate::quarantine::{MessageKey, Ticket};
use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Where an event came from, when it came from a device's message: what to blame if handling
/// it fails, and the journal ticket of a replay (dropped once the event is handled).
#[derive(Debug)]
pub struct Origin {
    pub kind: MessageKind,
    pub message: Blame,
    pub ticket: Option<Ticket>,
}

/// The message to blame.
#[derive(Debug)]
pub enum Blame {
    /// A payload as received (a cheap reference-counted copy); its key is computed only
    /// if it is ever blamed.
    Received(bytes::Bytes),
    /// A Status restored from the state file, by its key in the quarantine.
    Saved(MessageKey),
}

impl Origin {
    /// The key of the message, as the quarantine knows it.
    pub fn key(&self, client: &ClientId) -> MessageKey {
        match &self.message {
            Blame::Received(payload) => {
                MessageKey::of(&device_topic(client.raw(), leaf(self.kind)), payload)
            }
            Blame::Saved(key) => key.clone(),
        }
    }
}

/// A device task that failed, as reported to the registry.
#[derive(Debug)]
pub struct DeviceFailure {
    /// Which incarnation of the device (a newer one may exist by the time this arrives).
    pub generation: u64,
    pub client: ClientId,
    /// The message being handled, when the failure was in handling one.
    pub key: Option<MessageKey>,
    /// What went wrong (the panic's message).
    pub reason: String,
}

/// A caught panic: its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Panic(pub String);

/// Runs `f`, turning a panic inside it into `Err`.
///
/// What `f` borrows may be left half-updated by the panic; the callers only use it afterwards
/// to tear the device down, which is why asserting unwind safety is acceptable here.
pub async fn contain<F: Future>(f: F) -> Result<F::Output, Panic> {
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|payload| Panic(panic_message(payload.as_ref())))
}

/// The text of a panic payload (`panic!` with a literal or with formatting).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The topic leaf of a message kind.
pub fn leaf(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Status => "Status",
        MessageKind::Proxy => "Proxy",
        MessageKind::Values => "Values",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message() {
        let n = 3;
        let caught = contain(async move {
            if n == 3 {
                panic!("bad {n}");
            }
        })
        .await;
        assert_eq!(caught, Err(Panic("bad 3".into())));
        assert_eq!(contain(async { 5 }).await, Ok(5));
    }
}
