//! How fast one device's `Values` are taken in: at most [`RATE`] messages a second (after a
//! burst of [`BURST`]). Parsing is most of what a message costs the daemon, and all devices
//! share one broker connection, read in order: a device that floods faster than the daemon
//! parses would queue every other device's messages behind its own, at the broker.
//!
//! Past its rate, a device's messages wait unparsed, to be taken at the next free slots, and a
//! waiting message is dropped only when a newer one carries the same paths (its `Shape`):
//! applying the newer one alone then ends where applying both would have. A device that
//! floods full snapshots thus costs one skim per message, and a device that floods partial
//! updates (one service or one path per message) still has the newest value of every path
//! applied, in order.
//!
//! No sensor sends two hundred messages a second; a device that does is logged (at most once a
//! minute, with how many messages were skipped).

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// `Values` messages taken per second and device, sustained.
pub const RATE: f64 = 200.0;
/// `Values` messages a device may send at once before its rate applies.
pub const BURST: f64 = 200.0;
/// Messages of distinct shapes that may wait per device; a further one makes the oldest
/// be taken at once (out of pace, in order), so that nothing is dropped.
pub const MAX_WAITING: usize = 32;
/// At most one log line per device about skipped messages per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What to do with a `Values` payload that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Parse and apply it now.
    Now,
    /// It waits (unparsed); taken by [`Pace::due`]. If too many messages of distinct shapes
    /// were waiting, the oldest of them is handed back, to be applied now, before it.
    Later(Option<Bytes>),
}

/// The paths a `Values` payload sets (service id and path key, as the payload spells them),
/// as a 64-bit digest that does not depend on their order: two payloads with the same paths
/// have the same shape. The keys are hashed as they are read, the values skipped unconverted,
/// and nothing is allocated, so that a flood costs little more than reading it. Two different
/// sets of paths share a digest with a probability of about 2^-64.
///
/// Anything that is not a JSON object has the shape [`Shape::Unreadable`] (the parser refuses
/// it; of a flood of those, the newest is answered).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Shape {
    Paths(u64),
    Unreadable,
}

impl Shape {
    fn of(payload: &[u8]) -> Shape {
        let mut reader = serde_json::Deserializer::from_slice(payload);
        match PathsDigest
            .deserialize(&mut reader)
            .and_then(|digest| reader.end().map(|()| digest))
        {
            Ok(digest) => Shape::Paths(digest),
            Err(_) => Shape::Unreadable,
        }
    }
}

/// splitmix64's finaliser: spreads the bits of a key's hash, so that the sum of the pairs'
/// hashes is a good digest of the set.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key_hash(key: &str) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    std::hash::Hasher::write(&mut hasher, key.as_bytes());
    mix(std::hash::Hasher::finish(&hasher))
}

/// A path's hash: the service's and the key's, in that order.
fn pair_hash(service: u64, key: u64) -> u64 {
    mix(service.rotate_left(17) ^ key)
}

/// The hash of a key, read without keeping it.
struct KeyHash;

impl<'de> DeserializeSeed<'de> for KeyHash {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyHash {
    type Value = u64;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<u64, E> {
        Ok(key_hash(key))
    }
}

/// The digest of a whole payload: the sum of its paths' hashes.
struct PathsDigest;

impl<'de> DeserializeSeed<'de> for PathsDigest {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PathsDigest {
    type Value = u64;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of services")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut digest = 0u64;
        while let Some(service) = map.next_key_seed(KeyHash)? {
            digest = digest.wrapping_add(map.next_value_seed(ServicePaths { service })?);
        }
        Ok(digest)
    }
}

/// The sum of one service's paths' hashes; a service whose value is not an object counts
/// as one path of its own.
struct ServicePaths {
    service: u64,
}

impl<'de> DeserializeSeed<'de> for ServicePaths {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ServicePaths {
    fn not_an_object(&self) -> u64 {
        mix(self.service ^ 0x6e6f_745f_616e_5f6f)
    }
}

impl<'de> Visitor<'de> for ServicePaths {
    type Value = u64;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut sum = 0u64;
        while let Some(key) = map.next_key_seed(KeyHash)? {
            map.next_value::<IgnoredAny>()?;
            sum = sum.wrapping_add(pair_hash(self.service, key));
        }
        Ok(sum)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.not_an_object())
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<u64, E> {
        Ok(self.not_an_object())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<u64, E> {
        Ok(self.not_an_object())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<u64, E> {
        Ok(self.not_an_object())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<u64, E> {
        Ok(self.not_an_object())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<u64, E> {
        Ok(self.not_an_object())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<u64, E> {
        Ok(self.not_an_object())
    }
}

/// One device's pace: a token bucket, and the messages waiting for a slot in arrival order,
/// at most one per shape.
#[derive(Debug)]
pub struct Pace {
    tokens: f64,
    refilled: Instant,
    waiting: VecDeque<(Shape, Bytes)>,
    skipped: u64,
    warned: Option<Instant>,
}

impl Pace {
    /// A full bucket.
    pub fn new(now: Instant) -> Pace {
        Pace {
            tokens: BURST,
            refilled: now,
            waiting: VecDeque::new(),
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
        if self.waiting.is_empty() && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Offer::Now;
        }
        let shape = Shape::of(payload);
        // A waiting message with the same paths is superseded: the new one goes last, after
        // every message that was older than it, and sets each of those paths itself.
        if let Some(at) = self.waiting.iter().position(|(s, _)| *s == shape) {
            self.waiting.remove(at);
            self.skipped += 1;
        }
        let pushed_out = if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front().map(|(_, oldest)| oldest)
        } else {
            None
        };
        self.waiting.push_back((shape, payload.clone()));
        Offer::Later(pushed_out)
    }

    /// The oldest waiting payload, if a slot is free.
    pub fn due(&mut self, now: Instant) -> Option<Bytes> {
        if self.waiting.is_empty() {
            return None;
        }
        self.refill(now);
        if self.tokens < 1.0 {
            return None;
        }
        self.tokens -= 1.0;
        self.waiting.pop_front().map(|(_, payload)| payload)
    }

    /// True while a payload waits.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A full snapshot: the same paths every time.
    fn snapshot(n: u32) -> Bytes {
        Bytes::from(format!(
            r#"{{"t1": {{"Temperature": {n}, "Humidity": 40}}}}"#
        ))
    }

    fn fill_burst(pace: &mut Pace, t0: Instant) {
        for n in 0..BURST as u32 {
            assert_eq!(pace.offer(t0, &snapshot(n)), Offer::Now);
        }
    }

    #[test]
    fn a_burst_is_taken_then_only_the_newest_snapshot_waits() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        fill_burst(&mut pace, t0);
        for n in 0..10 {
            assert_eq!(pace.offer(t0, &snapshot(1000 + n)), Offer::Later(None));
        }
        assert_eq!(pace.due(t0), None, "no slot yet");
        let later = t0 + Duration::from_secs_f64(1.0 / RATE);
        assert_eq!(pace.due(later), Some(snapshot(1009)), "the newest");
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
            assert_eq!(pace.offer(now, &snapshot(n)), Offer::Now);
        }
    }

    #[test]
    fn a_message_that_waits_keeps_the_order() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        fill_burst(&mut pace, t0);
        assert_eq!(pace.offer(t0, &snapshot(500)), Offer::Later(None));
        // A slot is free again, but a message waits: the new one must not overtake it.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pace.offer(later, &snapshot(501)), Offer::Later(None));
        assert_eq!(pace.due(later), Some(snapshot(501)));
    }

    #[test]
    fn partial_updates_each_keep_their_newest() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        fill_burst(&mut pace, t0);
        let t1 = |n: u32| Bytes::from(format!(r#"{{"t1": {{"Temperature": {n}}}}}"#));
        let tk = |n: u32| Bytes::from(format!(r#"{{"tk1": {{"Level": {n}}}}}"#));
        for n in 0..5 {
            pace.offer(t0, &t1(n));
            pace.offer(t0, &tk(n));
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pace.due(later), Some(t1(4)));
        assert_eq!(pace.due(later), Some(tk(4)));
        assert_eq!(pace.due(later), None);
    }

    #[test]
    fn a_message_with_fewer_paths_does_not_supersede_one_with_more() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        fill_burst(&mut pace, t0);
        let both = Bytes::from(r#"{"t1": {"Temperature": 1, "Humidity": 2}}"#);
        let one = Bytes::from(r#"{"t1": {"Temperature": 3}}"#);
        let both_again = Bytes::from(r#"{"t1": {"Humidity": 5, "Temperature": 4}}"#);
        pace.offer(t0, &both);
        pace.offer(t0, &one);
        pace.offer(t0, &both_again);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pace.due(later), Some(one), "older than the newest snapshot");
        assert_eq!(pace.due(later), Some(both_again));
        assert_eq!(pace.due(later), None);
    }

    #[test]
    fn too_many_distinct_shapes_hand_back_the_oldest() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        fill_burst(&mut pace, t0);
        let path = |n: usize| Bytes::from(format!(r#"{{"t1": {{"P{n}": 1}}}}"#));
        for n in 0..MAX_WAITING {
            assert_eq!(pace.offer(t0, &path(n)), Offer::Later(None));
        }
        assert_eq!(
            pace.offer(t0, &path(MAX_WAITING)),
            Offer::Later(Some(path(0)))
        );
    }

    #[test]
    fn unreadable_payloads_wait_as_one_shape() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        fill_burst(&mut pace, t0);
        pace.offer(t0, &Bytes::from("{not json"));
        pace.offer(t0, &Bytes::from("[1, 2]"));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pace.due(later), Some(Bytes::from("[1, 2]")));
        assert_eq!(pace.due(later), None);
    }

    #[test]
    fn a_shape_is_the_set_of_paths_whatever_the_order_and_values() {
        let shape = |p: &str| Shape::of(p.as_bytes());
        let a =
            shape(r#"{"t1": {"Temperature": 1, "Humidity": [1, {"x": 2}]}, "tk1": {"Level": 5}}"#);
        assert_eq!(
            a,
            shape(r#"{"tk1": {"Level": null}, "t1": {"Humidity": 3, "Temperature": "x"}}"#)
        );
        assert_ne!(a, shape(r#"{"t1": {"Temperature": 1, "Humidity": 2}}"#));
        assert_ne!(
            a,
            shape(r#"{"t1": {"Temperature": 1, "Level": 2}, "tk1": {"Humidity": 5}}"#)
        );
        assert_ne!(
            shape(r#"{"t1": {"A": 1}}"#),
            shape(r#"{"t1": {"A": 1, "A": 2}}"#)
        );
        assert_ne!(shape(r#"{"t1": 5}"#), shape(r#"{"t1": {}}"#));
        assert_eq!(shape("[1]"), Shape::Unreadable);
        assert_eq!(shape(r#"{"t1": {"A": 1}} trailing"#), Shape::Unreadable);
    }

    /// Applies a Values payload to a map of (service, path) → value, as the device does.
    fn apply(state: &mut BTreeMap<(String, String), serde_json::Value>, payload: &[u8]) {
        let message: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
            serde_json::from_slice(payload).unwrap();
        for (service, paths) in message {
            for (path, value) in paths {
                state.insert((service.clone(), path), value);
            }
        }
    }

    proptest! {
        /// Whatever a device floods, what the pace lets through ends where applying every
        /// message in order ends, path by path.
        #[test]
        fn a_flood_ends_where_every_message_would(
            messages in prop::collection::vec(
                (prop::collection::btree_map(0..3u8, prop::collection::btree_set(0..3u8, 1..3), 1..3), 0..10u32, 0..3u32),
                1..600,
            )
        ) {
            let t0 = Instant::now();
            let mut pace = Pace::new(t0);
            let mut expected = BTreeMap::new();
            let mut got = BTreeMap::new();
            let mut now = t0;
            for (n, (services, value, gap_ms)) in messages.iter().enumerate() {
                let body: BTreeMap<String, BTreeMap<String, String>> = services
                    .iter()
                    .map(|(s, paths)| {
                        let paths = paths.iter().map(|p| (format!("P{p}"), format!("{n}-{value}"))).collect();
                        (format!("s{s}"), paths)
                    })
                    .collect();
                let payload = Bytes::from(serde_json::to_vec(&body).unwrap());
                apply(&mut expected, &payload);
                now += Duration::from_millis(u64::from(*gap_ms));
                while let Some(p) = pace.due(now) {
                    apply(&mut got, &p);
                }
                match pace.offer(now, &payload) {
                    Offer::Now => apply(&mut got, &payload),
                    Offer::Later(pushed_out) => {
                        if let Some(p) = pushed_out {
                            apply(&mut got, &p);
                        }
                    }
                }
            }
            let end = now + Duration::from_secs(60);
            while let Some(p) = pace.due(end) {
                apply(&mut got, &p);
            }
            prop_assert_eq!(got, expected);
        }
    }
}
