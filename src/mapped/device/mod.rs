//! One mapped device as a state machine: each input (a message on one of its
//! topics, with its retain flag, a D-Bus write, or a clock tick) at a time
//! `now` gives the [`Effect`]s to apply. No I/O, no clock.
//!
//! # Liveness
//! The device is *alive* (`/Connected` 1) after a fresh message, or when its
//! availability says online. While its availability says offline, a fresh
//! message brings it back only when it carries a measurement (a status or
//! limit a bridge repeats for a sleeping device is no sign of life). A
//! retained message (the broker's copy from before) is shown but does not
//! make it alive: retained PV power at midnight is not live. It stops being
//! alive when its availability says offline or, with `stale_after`, when
//! nothing fresh arrives for that long; then `/Connected` is 0 and the
//! `on_stale` policy applies to its values, and keeps applying to values
//! arriving until it is alive again (values shown before are not brought
//! back: they are old).
//!
//! # Values
//! Each message updates only the paths it carries; a missing key is no
//! update, never 0. Energy counters are monotonic ([`super::counter`]);
//! sums are recomputed from the paths they add; integrated counters follow
//! their power path. Only changed values are set.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::availability::{AvailabilityTracker, State};
use super::counter::{CounterGuard, Verdict};
use super::declaration::{
    is_energy_counter, is_power_or_current, Declaration, OnStale, Rule, Write,
};
use super::effect::{Effect, Publish};
use super::integrate::{EnergyState, Integrator, DEFAULT_MAX_GAP};
use super::routes::Input;
use super::transform::number_text;
use crate::catalog::{ServiceType, ValueKind};
use crate::dbus::Value;

/// Largest payload read from a device's topic, in bytes. Tasmota's full
/// status and a Shelly's NotifyFullStatus are a few KiB.
pub const MAX_SOURCE_PAYLOAD: usize = 64 * 1024;

/// How often integrated counters are offered for saving: at most this much
/// is lost on a power cut.
pub const ENERGY_SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// What the catalog says about a path this device sets.
#[derive(Debug, Clone, Copy)]
struct PathInfo {
    kind: ValueKind,
    /// A measurement (the stale policy applies), not configuration or status.
    measured: bool,
}

/// One mapped device.
#[derive(Debug, Clone)]
pub struct MappedDevice {
    declaration: Declaration,
    paths: BTreeMap<String, PathInfo>,
    /// The device's values as received (after the policy while it is not alive).
    values: BTreeMap<String, Value>,
    /// What this device last set on D-Bus (to set only changes).
    on_dbus: BTreeMap<String, Value>,
    /// `/Connected` as last set.
    connected_on_dbus: Option<bool>,
    /// Whether the service is on D-Bus (not after `on_stale = "remove"`).
    present: bool,
    alive: bool,
    /// The stale policy is in effect (not alive after having been told
    /// offline or going stale).
    policy_active: bool,
    last_sign_of_life: Option<Instant>,
    availability: AvailabilityTracker,
    counters: BTreeMap<String, CounterGuard>,
    integrators: Vec<Integrator>,
    energy_dirty: bool,
    energy_offered: Option<Instant>,
    /// The warning given per input and path, so a device repeating a
    /// mistake every second is warned once (until it gets it right).
    warned: BTreeMap<String, String>,
}

/// What became of a D-Bus write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The path has no `[[device.write]]`: an ordinary write, not for the device.
    NotForwarded,
    /// Not sent; SetValue should refuse it (the reason, for the log).
    Refused(String),
    /// Sent: accept the SetValue and apply these effects.
    Forwarded(Vec<Effect>),
}

impl MappedDevice {
    /// The device of a declaration; `service` is its catalog type.
    pub fn new(declaration: Declaration, service: &ServiceType) -> MappedDevice {
        let mut paths = BTreeMap::new();
        let mut note = |path: &str| {
            let spec = service.path(path.trim_start_matches('/'));
            paths.insert(
                path.to_string(),
                PathInfo {
                    kind: spec.map_or(ValueKind::Any, |s| s.kind),
                    measured: spec.is_none_or(|s| s.measured),
                },
            );
        };
        for m in declaration.mappings() {
            note(&m.path);
        }
        for w in &declaration.writes {
            note(&w.path);
        }
        let max_gap = declaration.stale_after.unwrap_or(DEFAULT_MAX_GAP);
        let unit = |p: &str| {
            service
                .path(p.trim_start_matches('/'))
                .and_then(|s| s.unit.clone())
        };
        let integrators = declaration
            .mappings()
            .filter_map(|m| match &m.rule {
                Rule::Integrate(input) => Integrator::new(
                    &m.path,
                    input,
                    unit(&m.path).as_deref(),
                    unit(input).as_deref(),
                    max_gap,
                ),
                _ => None,
            })
            .collect();
        MappedDevice {
            availability: AvailabilityTracker::new(
                declaration.availability_mode,
                declaration.availability.len(),
            ),
            present: declaration.on_stale != OnStale::Remove,
            declaration,
            paths,
            values: BTreeMap::new(),
            on_dbus: BTreeMap::new(),
            connected_on_dbus: None,
            alive: false,
            policy_active: false,
            last_sign_of_life: None,
            counters: BTreeMap::new(),
            integrators,
            energy_dirty: false,
            energy_offered: None,
            warned: BTreeMap::new(),
        }
    }

    /// The declaration it serves.
    pub fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    /// `true` while `/Connected` is 1.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// The current value of a path this device sets, if it has one.
    pub fn value(&self, path: &str) -> Option<&Value> {
        self.values
            .get(path)
            .or_else(|| self.declaration.constants.get(path))
    }

    /// Continues the integrated counters from a saved state (call before
    /// [`Self::start`]).
    pub fn restore_energy(&mut self, state: &EnergyState) {
        for i in &mut self.integrators {
            if let Some(total) = state.0.get(&i.target) {
                i.restore(*total);
                self.values.insert(i.target.clone(), Value::F64(i.total()));
            }
        }
    }

    /// The integrated counters now, for saving.
    pub fn energy_state(&self) -> EnergyState {
        EnergyState(
            self.integrators
                .iter()
                .map(|i| (i.target.clone(), i.total()))
                .collect(),
        )
    }

    /// Serves a changed declaration of the same service in place: liveness,
    /// and the values, counter guards and integrated counters of the paths
    /// it still maps, carry over (a renamed device does not blink to
    /// `/Connected` 0). Returns the effects: the service if it must appear,
    /// and what changed on it.
    pub fn redeclare(&mut self, declaration: Declaration, service: &ServiceType) -> Vec<Effect> {
        let mut next = MappedDevice::new(declaration, service);
        let kept = |path: &String| next.paths.contains_key(path);
        next.values = std::mem::take(&mut self.values)
            .into_iter()
            .filter(|(path, _)| kept(path))
            .collect();
        next.counters = std::mem::take(&mut self.counters)
            .into_iter()
            .filter(|(path, _)| kept(path))
            .collect();
        for i in &mut next.integrators {
            if let Some(old) = self
                .integrators
                .iter()
                .find(|o| o.target == i.target && o.input == i.input)
            {
                i.continue_from(old);
            }
        }
        if next.declaration.availability == self.declaration.availability
            && next.declaration.availability_mode == self.declaration.availability_mode
        {
            next.availability = self.availability.clone();
        }
        next.alive = self.alive;
        next.policy_active = self.policy_active;
        next.last_sign_of_life = self.last_sign_of_life;
        next.energy_dirty = self.energy_dirty;
        next.energy_offered = self.energy_offered;
        let was_present = self.present;
        next.present = was_present || next.present;
        if was_present {
            next.on_dbus = std::mem::take(&mut self.on_dbus);
            next.connected_on_dbus = self.connected_on_dbus;
        }
        *self = next;
        let mut effects = Vec::new();
        if self.present && !was_present {
            effects.push(Effect::Register);
        }
        self.finish(effects)
    }

    /// The first effects: the service on D-Bus with its fixed values, not yet
    /// connected (nothing is known to be live). A device that leaves D-Bus
    /// when stale only appears once it is alive.
    pub fn start(&mut self, _now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.present {
            effects.push(Effect::Register);
        }
        self.finish(effects)
    }

    /// A message on one of the device's topics. `retained`: the broker's
    /// stored copy, delivered because of a new subscription.
    pub fn on_message(
        &mut self,
        input: Input,
        topic: &str,
        payload: &[u8],
        retained: bool,
        now: Instant,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        match input {
            Input::Availability(i) => self.on_availability(i, payload, now, &mut effects),
            Input::Source(i) => {
                let read = self.read_source(i, topic, payload, &mut effects);
                if !retained {
                    self.last_sign_of_life = Some(now);
                    // While the availability says offline, only a fresh
                    // measurement brings the device back: OpenDTU repeats
                    // an unreachable inverter's `producing` and limit every
                    // 5 s beside its `reachable 0`.
                    let measured = read.iter().any(|(path, _)| self.is_measured(path));
                    if !self.alive && (measured || self.availability.state() != State::Offline) {
                        self.become_alive(now, &mut effects);
                    }
                }
                for (path, value) in read {
                    self.store(&path, value, now, &mut effects);
                }
                self.recompute(now, &mut effects);
            }
        }
        self.finish(effects)
    }

    /// The clock: staleness, and the integrated counters running on (and
    /// offered for saving once a minute).
    pub fn on_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let (true, Some(after), Some(last)) = (
            self.alive,
            self.declaration.stale_after,
            self.last_sign_of_life,
        ) {
            if now.saturating_duration_since(last) >= after {
                self.go_stale(&mut effects);
            }
        }
        let mut grew = Vec::new();
        for i in &mut self.integrators {
            if i.advance(now) {
                grew.push((i.target.clone(), i.total()));
            }
        }
        for (target, total) in grew {
            self.energy_dirty = true;
            self.set_computed(&target, total, now, &mut effects);
        }
        let due = self
            .energy_offered
            .is_none_or(|t| now.saturating_duration_since(t) >= ENERGY_SAVE_INTERVAL);
        if self.energy_dirty && due {
            self.energy_dirty = false;
            self.energy_offered = Some(now);
            effects.push(Effect::SaveEnergy(self.energy_state()));
        }
        if self.energy_offered.is_none() && !self.integrators.is_empty() {
            self.energy_offered = Some(now);
        }
        self.finish(effects)
    }

    /// When [`Self::on_tick`] should be called next, if at all.
    pub fn next_tick(&self) -> Option<Instant> {
        let stale = match (
            self.alive,
            self.declaration.stale_after,
            self.last_sign_of_life,
        ) {
            (true, Some(after), Some(last)) => Some(last + after),
            _ => None,
        };
        let running = self.energy_dirty || self.integrators.iter().any(Integrator::is_running);
        let energy = match (running, self.energy_offered) {
            (true, Some(t)) => Some(t + ENERGY_SAVE_INTERVAL),
            (true, None) => self.last_sign_of_life,
            _ => None,
        };
        match (stale, energy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A D-Bus write to `path` (already checked against the path's kind and
    /// limits). A path with a `[[device.write]]` is clamped, published to
    /// the device, and shows the written value until the device reports
    /// otherwise.
    pub fn on_write(&mut self, path: &str, value: &Value, _now: Instant) -> WriteOutcome {
        let Some(write) = self
            .declaration
            .writes
            .iter()
            .find(|w| w.path == path)
            .cloned()
        else {
            return WriteOutcome::NotForwarded;
        };
        let value = match clamp(&write, value) {
            Ok(v) => v,
            Err(why) => return WriteOutcome::Refused(why),
        };
        let text = match &value {
            Value::I32(i) => i.to_string(),
            Value::I64(i) => i.to_string(),
            Value::F64(x) => number_text(*x),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => s.clone(),
            Value::Invalid => return WriteOutcome::Refused("an invalid value is not sent".into()),
            Value::List(_) | Value::Dict(_) => {
                return WriteOutcome::Refused("only single values are sent".into())
            }
        };
        let payload = match &write.format {
            Some(f) => f.replace(super::declaration::parse::VALUE_PLACEHOLDER, &text),
            None => text,
        };
        self.values.insert(path.to_string(), value);
        let effects = vec![Effect::Publish(Publish {
            topic: write.topic.as_str().to_string(),
            payload,
            retain: write.retain,
        })];
        WriteOutcome::Forwarded(self.finish(effects))
    }

    fn on_availability(
        &mut self,
        index: usize,
        payload: &[u8],
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        let Some(spec) = self.declaration.availability.get(index).cloned() else {
            return;
        };
        let key = format!("availability {index}");
        let said = self.availability.on_message(index, &spec, payload);
        if said.is_ok() {
            self.warned.remove(&key);
        }
        match said {
            Ok(State::Online) => {
                self.last_sign_of_life = Some(now);
                if !self.alive {
                    self.become_alive(now, effects);
                }
            }
            Ok(State::Offline) => {
                if self.alive || !self.policy_active {
                    self.go_stale(effects);
                }
            }
            Ok(State::Unknown) => {}
            Err(why) => self.warn_once(key, why, effects),
        }
    }

    /// The values a message on source `index` carries, by path, in the
    /// units of the paths (not yet stored); what it cannot give is warned.
    fn read_source(
        &mut self,
        index: usize,
        topic: &str,
        payload: &[u8],
        effects: &mut Vec<Effect>,
    ) -> Vec<(String, Value)> {
        let mut read = Vec::new();
        let Some(source) = self.declaration.sources.get(index).cloned() else {
            return read;
        };
        let key = format!("source {index}");
        let json = match decode(payload) {
            Ok(j) => j,
            Err(why) => {
                self.warn_once(key, format!("{topic}: {why}"), effects);
                return read;
            }
        };
        let keyed = source
            .mappings
            .iter()
            .any(|m| matches!(&m.rule, Rule::Extract(p) if !p.is_whole()));
        if keyed && !matches!(json, Json::Object(_) | Json::Array(_)) {
            let shown: String = String::from_utf8_lossy(payload).chars().take(40).collect();
            self.warn_once(
                key,
                format!("{topic}: '{shown}' is not a JSON object; its values are not applied"),
                effects,
            );
            return read;
        }
        self.warned.remove(&key);
        for m in &source.mappings {
            let Rule::Extract(path) = &m.rule else {
                continue;
            };
            // A missing key is no update (Shelly deltas, Tasmota fragments).
            let Some(found) = path.find(&json) else {
                continue;
            };
            let kind = self.kind(&m.path);
            let warn_key = format!("{index} {}", m.path);
            match m.transform.apply(found, kind) {
                Ok(v) => {
                    self.warned.remove(&warn_key);
                    read.push((m.path.clone(), v));
                }
                Err(why) => self.warn_once(
                    warn_key,
                    format!("{topic} → {}: {why}; not applied", m.path),
                    effects,
                ),
            }
        }
        read
    }

    fn kind(&self, path: &str) -> ValueKind {
        self.paths.get(path).map_or(ValueKind::Any, |p| p.kind)
    }

    /// A measurement (the stale policy applies to it), not configuration
    /// or status.
    fn is_measured(&self, path: &str) -> bool {
        self.paths.get(path).is_none_or(|p| p.measured)
    }

    /// Stores a value read for `path`: through the counter guard for energy
    /// counters, through the stale policy while it is in effect.
    fn store(&mut self, path: &str, value: Value, now: Instant, effects: &mut Vec<Effect>) {
        let value = match (&value, is_energy_counter(path)) {
            (Value::F64(_) | Value::I32(_) | Value::I64(_), true) => {
                let x = value.as_f64().unwrap_or_default();
                match self
                    .counters
                    .entry(path.to_string())
                    .or_default()
                    .check(x, now)
                {
                    Verdict::Apply => value,
                    Verdict::Reset { previous } => {
                        effects.push(Effect::info(format!(
                            "{path}: the counter went from {} to {} and stayed lower for 10 minutes; accepted as a reset",
                            number_text(previous),
                            number_text(x)
                        )));
                        value
                    }
                    Verdict::HoldZero => return,
                    Verdict::HoldBackwards { last } => {
                        self.warn_once(
                            format!("counter {path}"),
                            format!(
                                "{path}: {} is lower than {}; not applied (a counter only goes forward, unless a lower value stays for 10 minutes)",
                                number_text(x),
                                number_text(last)
                            ),
                            effects,
                        );
                        return;
                    }
                }
            }
            _ => value,
        };
        if is_energy_counter(path) {
            self.warned.remove(&format!("counter {path}"));
        }
        let value = if self.policy_active {
            self.policy_value(path, value)
        } else {
            value
        };
        self.values.insert(path.to_string(), value);
    }

    /// Sums and integrated counters after the values changed.
    fn recompute(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let sums: Vec<_> = self
            .declaration
            .mappings()
            .filter_map(|m| match &m.rule {
                Rule::Sum(inputs) => Some((m.path.clone(), inputs.clone(), m.transform.clone())),
                _ => None,
            })
            .collect();
        for (path, inputs, transform) in sums {
            let values: Option<Vec<&Value>> = inputs.iter().map(|p| self.values.get(p)).collect();
            // A path not yet received: no sum yet (never a partial one).
            let Some(values) = values else {
                continue;
            };
            let total: Option<f64> = values.iter().map(|v| v.as_f64()).sum();
            let found = match total.and_then(serde_json::Number::from_f64) {
                Some(n) => Json::Number(n),
                None => Json::Null,
            };
            match transform.apply(&found, self.kind(&path)) {
                Ok(v) => self.store_computed(&path, v, now, effects),
                Err(why) => self.warn_once(
                    format!("sum {path}"),
                    format!("{path}: {why}; not applied"),
                    effects,
                ),
            }
        }
        let mut grew = Vec::new();
        for i in &mut self.integrators {
            let power = if self.alive {
                self.values.get(&i.input).and_then(Value::as_f64)
            } else {
                None
            };
            if i.power(power, now) {
                grew.push((i.target.clone(), i.total()));
            }
        }
        for (target, total) in grew {
            self.energy_dirty = true;
            self.set_computed(&target, total, now, effects);
        }
    }

    fn store_computed(
        &mut self,
        path: &str,
        value: Value,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        if self.values.get(path) != Some(&value) {
            self.store(path, value, now, effects);
        }
    }

    fn set_computed(&mut self, target: &str, total: f64, now: Instant, effects: &mut Vec<Effect>) {
        let transform = self
            .declaration
            .mappings()
            .find(|m| m.path == target)
            .map(|m| m.transform.clone())
            .unwrap_or_default();
        let found = serde_json::Number::from_f64(total).map_or(Json::Null, Json::Number);
        if let Ok(v) = transform.apply(&found, self.kind(target)) {
            self.store_computed(target, v, now, effects);
        }
    }

    fn become_alive(&mut self, _now: Instant, effects: &mut Vec<Effect>) {
        self.alive = true;
        self.policy_active = false;
        if !self.present {
            self.present = true;
            self.on_dbus.clear();
            self.connected_on_dbus = None;
            effects.push(Effect::Register);
        }
    }

    /// Offline or stale: `/Connected` 0 and the `on_stale` policy.
    fn go_stale(&mut self, effects: &mut Vec<Effect>) {
        self.alive = false;
        self.policy_active = true;
        // Nothing is counted for the silence before (the device may have
        // been gone all along).
        for i in &mut self.integrators {
            i.stop();
        }
        if self.declaration.on_stale == OnStale::Remove {
            if self.present {
                self.present = false;
                effects.push(Effect::Remove);
            }
            return;
        }
        let paths: Vec<String> = self.values.keys().cloned().collect();
        for path in paths {
            if let Some(v) = self.values.get(&path).cloned() {
                let v = self.policy_value(&path, v);
                self.values.insert(path, v);
            }
        }
    }

    /// A value as the stale policy shows it.
    fn policy_value(&self, path: &str, value: Value) -> Value {
        if !self.is_measured(path) {
            return value;
        }
        match self.declaration.on_stale {
            OnStale::Keep | OnStale::Remove => value,
            OnStale::Invalidate => Value::Invalid,
            OnStale::Zero if is_energy_counter(path) => value,
            OnStale::Zero if is_power_or_current(path) => match self.kind(path) {
                ValueKind::Int => Value::I32(0),
                _ => Value::F64(0.0),
            },
            OnStale::Zero => Value::Invalid,
        }
    }

    /// Warns about `key` (an input, or an input's path) once, until that
    /// input or path is applied again.
    fn warn_once(&mut self, key: String, message: String, effects: &mut Vec<Effect>) {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.warned.entry(key) {
            effects.push(Effect::warn(message.clone()));
            slot.insert(message);
        }
    }

    /// Turns the state into effects: what changed on D-Bus, then
    /// `/Connected`, then logs and publishes in the order they came.
    fn finish(&mut self, mut others: Vec<Effect>) -> Vec<Effect> {
        let mut effects = Vec::new();
        // Register and Remove first, in the order they happened.
        others.retain(|e| {
            if matches!(e, Effect::Register | Effect::Remove) {
                effects.push(e.clone());
                false
            } else {
                true
            }
        });
        if effects.last() == Some(&Effect::Register) {
            self.on_dbus.clear();
            self.connected_on_dbus = None;
        }
        if self.present {
            let mut changes = Vec::new();
            let desired = self.declaration.constants.iter().chain(self.values.iter());
            for (path, value) in desired {
                if self.on_dbus.get(path) != Some(value) {
                    changes.push((path.clone(), value.clone()));
                }
            }
            for (path, value) in &changes {
                self.on_dbus.insert(path.clone(), value.clone());
            }
            if !changes.is_empty() {
                effects.push(Effect::Set(changes));
            }
            if self.connected_on_dbus != Some(self.alive) {
                self.connected_on_dbus = Some(self.alive);
                effects.push(Effect::Connected(self.alive));
            }
        } else {
            self.on_dbus.clear();
            self.connected_on_dbus = None;
        }
        effects.extend(others);
        effects
    }
}

/// Reads a payload: JSON when it is JSON (a plain number is JSON too),
/// else the text itself; empty is `null` (no value).
pub fn decode(payload: &[u8]) -> Result<Json, String> {
    if payload.len() > MAX_SOURCE_PAYLOAD {
        return Err(format!(
            "the payload is {} bytes, the limit is {MAX_SOURCE_PAYLOAD}",
            payload.len()
        ));
    }
    let text =
        std::str::from_utf8(payload).map_err(|_| "the payload is not UTF-8 text".to_string())?;
    if text.trim().is_empty() {
        return Ok(Json::Null);
    }
    Ok(serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_string())))
}

/// A written value within the write's `min`/`max`.
fn clamp(write: &Write, value: &Value) -> Result<Value, String> {
    let Some(x) = value.as_f64().filter(|_| !matches!(value, Value::Bool(_))) else {
        return Ok(value.clone());
    };
    if !x.is_finite() {
        return Err("not a finite number".into());
    }
    let clamped = x
        .max(write.min.unwrap_or(f64::MIN))
        .min(write.max.unwrap_or(f64::MAX));
    Ok(if clamped == x {
        value.clone()
    } else {
        match value {
            Value::F64(_) => Value::F64(clamped),
            _ => Value::int(clamped.round() as i64),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests;
