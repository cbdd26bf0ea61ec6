//! How fast one device's `Values` are taken in: at most [`RATE`] messages a second (after a
//! burst of [`BURST`]). Parsing is most of what a message costs the daemon, and all devices
//! share one broker connection, read in order: a device that floods faster than the daemon
//! parses would queue every other device's messages behind its own, at the broker. Past its
//! rate, a device's messages are therefore set aside unparsed, and only the newest is kept,
//! to be taken at the next free slot: a flood costs the daemon almost nothing per message,
//! the device's newest values still arrive, and the messages in between are skipped (as the
//! folding of [`super::overflow`] skips intermediate values).
//!
//! No sensor sends two hundred messages a second; a device that does is logged (at most once a
//! minute, with how many messages were skipped).

#![deny(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;

/// `Values` messages taken per second and device, sustained.
pub const RATE: f64 = 200.0;
/// `Values` messages a device may send at once before its rate applies.
pub const BURST: f64 = 200.0;
/// At most one log line per device about skipped messages per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What to do with a `Values` payload that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Parse and apply it now.
    Now,
    /// It waits (unparsed) as the device's newest; taken by [`Pace::due`].
    Later,
}

/// One device's pace (a token bucket with a slot for the newest waiting message).
#[derive(Debug)]
pub struct Pace {
    tokens: f64,
    refilled: Instant,
    waiting: Option<Bytes>,
    skipped: u64,
    warned: Option<Instant>,
}

impl Pace {
    /// A full bucket.
    pub fn new(now: Instant) -> Pace {
        Pace {
            tokens: BURST,
            refilled: now,
            waiting: None,
            skipped: 0,
            warned: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        self.refilled = now;
    }

    /// A `Values` payload arrived.
    pub fn offer(&mut self, now: Instant, payload: &Bytes) -> Offer {
        self.refill(now);
        if self.waiting.is_none() && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Offer::Now;
        }
        // Newer than what waits: it takes its place, the older one is skipped.
        if self.waiting.replace(payload.clone()).is_some() {
            self.skipped += 1;
        }
        Offer::Later
    }

    /// The waiting payload, once a slot is free.
    pub fn due(&mut self, now: Instant) -> Option<Bytes> {
        self.waiting.as_ref()?;
        self.refill(now);
        if self.tokens < 1.0 {
            return None;
        }
        self.tokens -= 1.0;
        self.waiting.take()
    }

    /// True while a payload waits.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// How many messages were skipped since the last time this said so, when it is time
    /// to say so again.
    pub fn skipped_to_report(&mut self, now: Instant) -> Option<u64> {
        if self.skipped == 0 {
            return None;
        }
        let due = self
            .warned
            .is_none_or(|t| now.saturating_duration_since(t) >= WARN_INTERVAL);
        if !due {
            return None;
        }
        self.warned = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn payload(n: u32) -> Bytes {
        Bytes::from(n.to_string())
    }

    #[test]
    fn a_burst_is_taken_then_only_the_newest_waits() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        for n in 0..BURST as u32 {
            assert_eq!(pace.offer(t0, &payload(n)), Offer::Now);
        }
        for n in 0..10 {
            assert_eq!(pace.offer(t0, &payload(1000 + n)), Offer::Later);
        }
        assert_eq!(pace.due(t0), None, "no slot yet");
        let later = t0 + Duration::from_secs_f64(1.0 / RATE);
        assert_eq!(pace.due(later), Some(payload(1009)), "the newest");
        assert_eq!(pace.due(later), None);
        assert_eq!(pace.skipped_to_report(later), Some(9));
        assert_eq!(pace.skipped_to_report(later), None);
    }

    #[test]
    fn a_device_within_its_rate_is_never_held_back() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        for n in 0..10_000u32 {
            let now = t0 + Duration::from_secs_f64(f64::from(n) / (RATE * 0.9));
            assert_eq!(pace.offer(now, &payload(n)), Offer::Now);
        }
    }

    #[test]
    fn a_message_that_waits_keeps_the_order() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        for n in 0..BURST as u32 {
            pace.offer(t0, &payload(n));
        }
        assert_eq!(pace.offer(t0, &payload(500)), Offer::Later);
        // A slot is free again, but a message waits: the new one must not overtake it.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pace.offer(later, &payload(501)), Offer::Later);
        assert_eq!(pace.due(later), Some(payload(501)));
    }
}
