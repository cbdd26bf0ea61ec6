//! Counts of what the running daemon holds: tasks, devices, services, subscriptions, the
//! journal. Logged at debug level every [`LOG_INTERVAL`] (target
//! `dbus_mqtt_devices::health`, e.g. `--log-level info,dbus_mqtt_devices::health=debug`), so
//! that a leak shows as a count that only grows; also handed to tests on request.

use crate::registry::RegistryCounts;
use std::time::Duration;
use tracing::debug;

/// How often the counts are logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A snapshot of the daemon's live objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// Tasks alive on the daemon's runtime.
    pub tasks: usize,
    pub registry: RegistryCounts,
    /// D-Bus services registered (the budget in use).
    pub services: usize,
    /// Subscriptions held by the localsettings client.
    pub settings_subscriptions: usize,
    /// MQTT topics subscribed.
    pub mqtt_subscriptions: usize,
    /// Replays in the quarantine journal.
    pub replays_in_flight: usize,
}

impl Health {
    /// Logs the snapshot (debug level).
    pub fn log(&self) {
        debug!(
            tasks = self.tasks,
            devices = self.registry.devices,
            closing = self.registry.closing,
            services = self.services,
            lwt_routes = self.registry.lwt_routes,
            settings_subscriptions = self.settings_subscriptions,
            mqtt_subscriptions = self.mqtt_subscriptions,
            replays_in_flight = self.replays_in_flight,
            "health"
        );
    }
}

/// Tasks alive on the current runtime (0 outside one).
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks())
        .unwrap_or(0)
}
