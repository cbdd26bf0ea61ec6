//! Values that did not fit in a device's queue, folded together so that the
//! newest value of every path still arrives, in order, without the queue
//! growing: a device that floods loses intermediate values, never its last.

use crate::protocol::ValuesMessage;
use std::sync::Mutex;
use tokio::sync::Notify;
use tracing::warn;

/// Most path values held here per device; beyond that a flood of distinct
/// paths is refused rather than kept.
pub const MAX_PENDING_VALUES: usize = 1024;

/// Shared by the registry (which fills it) and the device task (which takes
/// it once its queue is empty, so that everything queued before is older).
#[derive(Default)]
pub struct ValuesOverflow {
    pending: Mutex<Option<ValuesMessage>>,
    notify: Notify,
}

impl ValuesOverflow {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ValuesMessage>> {
        // Merging cannot leave the message half-updated in a way that
        // matters (a panic there would only lose values), so a poisoned lock
        // is still usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while values wait here: newer values must then come here too,
    /// not into the queue, to stay behind them.
    pub fn is_pending(&self) -> bool {
        self.lock().is_some()
    }

    /// Folds `values` into what waits, and wakes the device task.
    pub fn push(&self, client_id: &str, values: ValuesMessage) {
        let mut pending = self.lock();
        match pending.as_mut() {
            Some(p) if p.len() + values.len() > MAX_PENDING_VALUES => {
                warn!(client_id, "too many distinct paths waiting; values dropped");
                return;
            }
            Some(p) => p.merge(values),
            None => *pending = Some(values),
        }
        drop(pending);
        self.notify.notify_one();
    }

    /// What waits, if anything.
    pub fn take(&self) -> Option<ValuesMessage> {
        self.lock().take()
    }

    /// Completes when values were pushed since the last call.
    pub async fn pushed(&self) {
        self.notify.notified().await
    }
}
