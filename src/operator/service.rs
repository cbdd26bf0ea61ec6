//! The operator tools inside the running daemon: answers `list`, `remove` and `doctor`
//! requests on MQTT, keeps a retained state per device on `dbus-mqtt-devices/devices/<id>`,
//! learns the devices' refusals from their `device/<id>/Error` topics, and writes the
//! last-seen times to the state file now and then. One task, off the device paths: a slow
//! listing never delays a device.

use super::activity::{unix_now, Activity};
use super::doctor;
use super::inventory::{self, Sources};
use super::remove::{self, Outcome, Selection};
use super::report::{Listing, REPORT_FORMAT};
use super::request::{self, Refusal, Request, Verb};
use crate::dbus::BusAddress;
use crate::mqtt::{Message, MqttHandle};
use crate::protocol::device_topic;
use crate::state::StateStore;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Where the retained state of each device is published.
pub const DEVICES_PREFIX: &str = "dbus-mqtt-devices/devices/";

/// Subscribed to learn what is retained there from an earlier run (cleared if stale).
pub const DEVICES_SUBSCRIPTION: &str = "dbus-mqtt-devices/devices/+";

/// The devices' error answers, which the daemon publishes itself: read back to know each
/// device's last refusal without a hook in every place that refuses.
pub const ERROR_SUBSCRIPTION: &str = "device/+/Error";

/// The topics the operator tools need.
pub const SUBSCRIPTIONS: [&str; 3] = [
    request::REQUEST_SUBSCRIPTION,
    DEVICES_SUBSCRIPTION,
    ERROR_SUBSCRIPTION,
];

/// Shortest time between two refreshes of the retained device states after a change.
pub const REFRESH_SPACING: Duration = Duration::from_secs(2);

/// The retained states are refreshed at least this often (last values, `/Connected`): a
/// refresh reads every service of ours (about 30 ms for 120 services on a PC), so not often.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How long a stopping daemon lets a request under way finish.
pub const STOP_GRACE: Duration = Duration::from_millis(300);

/// Last-seen times go to the state file this often (and at a clean stop).
pub const SEEN_FLUSH: Duration = Duration::from_secs(600);

/// The daemon's part of a removal: take a device off D-Bus. Answered with a receiver
/// that completes once its services are gone, or `None` if the daemon does not serve it.
#[derive(Debug)]
pub struct Takedown {
    pub client: String,
    pub done: oneshot::Sender<Option<oneshot::Receiver<()>>>,
}

/// What the operator task is given.
pub struct OperatorContext {
    pub bus: BusAddress,
    pub mqtt: MqttHandle,
    pub state: StateStore,
    pub activity: Arc<Activity>,
    pub data_dir: PathBuf,
    pub max_services: usize,
    pub takedown: mpsc::Sender<Takedown>,
    /// The mapped-device runtime's part of a removal.
    pub retire: mpsc::Sender<crate::mapped::runtime::Retire>,
    /// The portal id the daemon uses (none while it waits for one).
    pub portal: tokio::sync::watch::Receiver<Option<crate::ids::PortalId>>,
}

/// The app's handle on the operator task.
pub struct Operator {
    inbound: mpsc::Sender<Message>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    activity: Arc<Activity>,
    state: StateStore,
}

impl Operator {
    /// Starts the task.
    pub fn start(ctx: OperatorContext) -> Operator {
        let (inbound, rx) = mpsc::channel(64);
        let (stop_tx, stop_rx) = oneshot::channel();
        let activity = ctx.activity.clone();
        let state = ctx.state.clone();
        let task = tokio::spawn(run(ctx, rx, stop_rx));
        Operator {
            inbound,
            stop: Some(stop_tx),
            task,
            activity,
            state,
        }
    }

    /// Takes a message that is for the operator tools (true), or leaves it (false). Notes
    /// device messages as signs of life, and the daemon's own Error answers as refusals.
    /// Cheap: this runs for every message the daemon receives.
    pub fn offer(&self, message: &Message) -> bool {
        let topic = message.topic.as_str();
        if let Some(client) = topic
            .strip_prefix("device/")
            .and_then(|t| t.strip_suffix("/Error"))
        {
            note_refusal(&self.activity, client, &message.payload);
            return true;
        }
        if topic.starts_with(DEVICES_PREFIX) {
            // Only what was retained before this connection matters (to clear it if stale);
            // the echoes of our own publishes do not.
            if message.retained {
                self.forward(message);
            }
            return true;
        }
        if topic.starts_with(request::REQUEST_PREFIX) {
            self.forward(message);
            return true;
        }
        if !message.retained && !message.payload.is_empty() {
            if let Some(t) = crate::protocol::DeviceTopic::parse(topic) {
                self.activity.seen(t.client_id);
            }
        }
        false
    }

    fn forward(&self, message: &Message) {
        if let Err(e) = self.inbound.try_send(message.clone()) {
            warn!(topic = %message.topic, error = %e, "operator request dropped: too many at once");
        }
    }

    /// Stops the task (a request under way is answered if it takes less than
    /// [`STOP_GRACE`]) and hands the last-seen times to the state file (before its last sync).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(STOP_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        self.state.seen(self.activity.last_seen());
    }
}

/// How many of `services` (unique ids) are on D-Bus now.
async fn on_bus(conn: &zbus::Connection, services: &[String]) -> usize {
    super::bus::names(conn)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|n| {
            inventory::split_bus_name(n).is_some_and(|(_, u)| services.iter().any(|s| s == u))
        })
        .count()
}

/// Records a `device/<id>/Error` answer as the device's (or its service's) last refusal.
fn note_refusal(activity: &Activity, client: &str, payload: &[u8]) {
    let Ok(e) = serde_json::from_slice::<Json>(payload) else {
        return;
    };
    let text = |k: &str| e.get(k).and_then(Json::as_str).unwrap_or_default();
    let message = format!("{}: {}", text("error"), text("message"));
    let service = e.get("service").and_then(Json::as_str);
    activity.error(client, service, message);
}

struct Task {
    ctx: OperatorContext,
    conn: Option<zbus::Connection>,
    /// What is retained on `devices/<id>` now, by raw client id.
    published: BTreeMap<String, String>,
}

async fn run(
    ctx: OperatorContext,
    mut inbound: mpsc::Receiver<Message>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut task = Task {
        ctx,
        conn: None,
        published: BTreeMap::new(),
    };
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush = tokio::time::interval(SEEN_FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    flush.tick().await;
    let activity = task.ctx.activity.clone();
    // A change arms one refresh this long after it, so a burst of changes makes one.
    let settle = tokio::time::sleep(REFRESH_SPACING);
    tokio::pin!(settle);
    let mut settling = false;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            m = inbound.recv() => match m {
                Some(m) => task.on_message(m).await,
                None => break,
            },
            _ = activity.changed(), if !settling => {
                settle.as_mut().reset(tokio::time::Instant::now() + REFRESH_SPACING);
                settling = true;
            }
            _ = &mut settle, if settling => {
                settling = false;
                task.refresh_retained().await;
            }
            _ = refresh.tick() => task.refresh_retained().await,
            _ = flush.tick() => task.ctx.state.seen(task.ctx.activity.last_seen()),
        }
    }
}

impl Task {
    async fn conn(&mut self) -> Result<zbus::Connection, String> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let c = self
            .ctx
            .bus
            .connect()
            .await
            .map_err(|e| format!("connecting to D-Bus: {e}"))?;
        self.conn = Some(c.clone());
        Ok(c)
    }

    async fn on_message(&mut self, m: Message) {
        if let Some(client) = m.topic.strip_prefix(DEVICES_PREFIX) {
            // Ours, from now or from an earlier run: remembered, so a stale one is cleared.
            if m.payload.is_empty() {
                self.published.remove(client);
            } else {
                self.published.insert(
                    client.to_owned(),
                    String::from_utf8_lossy(&m.payload).into(),
                );
            }
            return;
        }
        let Some(verb_text) = m.topic.strip_prefix(request::REQUEST_PREFIX) else {
            return;
        };
        if m.retained {
            info!(topic = %m.topic, "ignoring a retained request (clear it with an empty retained message)");
            return;
        }
        let parsed = match Verb::of_topic(&m.topic) {
            Some(verb) => request::parse(verb, &m.payload),
            None => Err(request::unknown_verb(verb_text, &m.payload)),
        };
        match parsed {
            Ok(r) => self.answer(r).await,
            Err(Refusal {
                response_topic,
                request_id,
                reason,
            }) => {
                warn!(topic = %m.topic, reason, "operator request refused");
                if let Some(topic) = response_topic {
                    let body = json!({"ok": false, "requestId": request_id, "error": reason});
                    self.ctx.mqtt.publish(&topic, body.to_string(), false);
                }
            }
        }
    }

    async fn answer(&mut self, r: Request) {
        info!(verb = r.verb.as_str(), target = ?r.target.as_ref().map(ToString::to_string), "operator request");
        let result = match r.verb {
            Verb::List => self.listing().await.map(|l| json!(l)),
            Verb::Remove => {
                let selection = Selection {
                    target: r.target.clone(),
                    not_seen_for: r.not_seen_for,
                };
                if r.dry_run {
                    self.plan(&selection)
                        .await
                        .map(|plan| json!({"plan": plan}))
                } else {
                    self.remove(&selection)
                        .await
                        .map(|removed| json!({"removed": removed, "note": remove::STILL_POWERED}))
                }
            }
            Verb::Doctor => self.doctor(r.target.as_ref()).await.map(|d| json!(d)),
        };
        let mut body = match result {
            Ok(Json::Object(map)) => map,
            Ok(other) => serde_json::Map::from_iter([("result".to_string(), other)]),
            Err(e) => serde_json::Map::from_iter([
                ("ok".to_string(), json!(false)),
                ("error".to_string(), json!(e)),
            ]),
        };
        body.entry("ok").or_insert(json!(true));
        if let Some(id) = r.request_id {
            body.insert("requestId".into(), id);
        }
        self.ctx
            .mqtt
            .publish(&r.response_topic, Json::Object(body).to_string(), false);
    }

    /// Everything the daemon knows, as `list --json` shows it.
    pub async fn listing(&mut self) -> Result<Listing, String> {
        let conn = self.conn().await?;
        let sources = Sources {
            services: super::bus::our_services(&conn).await?,
            settings: super::bus::our_settings(&conn).await.unwrap_or_default(),
            saved: self.ctx.state.devices().await,
            last_seen: self.ctx.state.last_seen().await,
            known: self.ctx.state.known().await,
            activity: Some(self.ctx.activity.snapshot()),
            mapped: self.ctx.activity.mapped.snapshot(),
        };
        Ok(Listing {
            format: REPORT_FORMAT,
            generated_at: unix_now(),
            from_daemon: true,
            devices: inventory::build(&sources),
            declaration_errors: self.ctx.activity.mapped.unattributed(),
        })
    }

    async fn doctor(
        &mut self,
        target: Option<&request::Target>,
    ) -> Result<doctor::DoctorReport, String> {
        let conn = self.conn().await?;
        let listing = self.listing().await?;
        let mut checks = doctor::host_checks(&doctor::HostContext {
            conn: Some(&conn),
            bus: &self.ctx.bus,
            data_dir: &self.ctx.data_dir,
            max_services: self.ctx.max_services,
            root: std::path::Path::new("/"),
        })
        .await;
        let portal = self.ctx.portal.borrow().clone();
        checks.push(match portal {
            Some(p) => doctor::Check::pass(
                "portal-id",
                format!("portal id {} (in use by the daemon)", p.as_str()),
            ),
            None => doctor::Check::fail(
                "portal-id",
                "the daemon has no portal id yet: devices get no reply",
                "give --portal-id (the GX's VRM id), or check /data/venus/unique-id",
            ),
        });
        checks.extend(doctor::device_checks(&conn, &listing, target).await);
        Ok(doctor::DoctorReport::new(checks, true))
    }

    async fn plan(&mut self, selection: &Selection) -> Result<Vec<remove::Removal>, String> {
        let conn = self.conn().await?;
        let listing = self.listing().await?;
        let settings = super::bus::our_settings(&conn).await?;
        remove::plan(&listing.devices, &settings, selection, unix_now())
    }

    async fn remove(&mut self, selection: &Selection) -> Result<Vec<Outcome>, String> {
        let conn = self.conn().await?;
        let plan = self.plan(selection).await?;
        let mut outcomes = Vec::new();
        for r in plan {
            let mut o = Outcome {
                client_id: r.client_id.clone(),
                services: r.services.clone(),
                ..Outcome::default()
            };
            o.mapped = r.mapped;
            if r.mapped {
                // Its declaration first, so that nothing brings it back.
                let before = on_bus(&conn, &r.services).await;
                match self.retire(&r.client_id).await {
                    Ok(done) => {
                        o.declaration_cleared = done.declaration_cleared;
                        o.energy_forgotten = done.energy_forgotten;
                    }
                    Err(e) => {
                        o.problems.push(e);
                        outcomes.push(o);
                        continue;
                    }
                }
                o.taken_off_dbus = before.saturating_sub(on_bus(&conn, &r.services).await);
            } else if r.whole_device {
                // First, so that nothing brings it back: the retained Status.
                if r.client_id_known {
                    self.ctx
                        .mqtt
                        .publish(&device_topic(&r.client_id, "Status"), "", true);
                    o.retained_status_cleared = true;
                } else {
                    o.problems.push(remove::status_topic_unknown(&r.client_id));
                }
                if r.connected {
                    o.taken_off_dbus = self.take_off_dbus(&r.client_id, &conn, &r.services).await;
                }
                self.ctx.state.purge(&r.client_id);
                self.ctx.state.sync().await;
                o.state_file_updated = true;
                self.ctx.activity.forget(&r.client_id);
            }
            match super::bus::remove_settings(&conn, &r.settings).await {
                Ok(codes) => o.settings_removed = codes.iter().filter(|c| **c == 0).count(),
                Err(e) => o.problems.push(format!("removing settings: {e}")),
            }
            if r.whole_device {
                self.ctx
                    .mqtt
                    .publish(&format!("{DEVICES_PREFIX}{}", r.client_id), "", true);
                self.published.remove(&r.client_id);
                // A device still powered may have sent a Status in between: then it is on
                // D-Bus again, and the settings just removed were its new ones.
                if r.mapped && on_bus(&conn, &r.services).await > 0 {
                    o.problems.push(
                        "it is on D-Bus again: something declared it again while it was removed"
                            .into(),
                    );
                } else if on_bus(&conn, &r.services).await > 0 {
                    o.problems.push(
                        "the device registered again while it was removed (it is still powered): \
                         remove it again once it is off"
                            .into(),
                    );
                }
            }
            info!(client_id = %r.client_id, services = ?r.services, settings_removed = o.settings_removed, "removed by the operator");
            outcomes.push(o);
        }
        Ok(outcomes)
    }

    /// Asks the mapped-device runtime to retire device `id` (see
    /// [`crate::mapped::runtime::Retire`]).
    async fn retire(&self, id: &str) -> Result<crate::mapped::runtime::Retired, String> {
        let (done, answer) = oneshot::channel();
        let retire = crate::mapped::runtime::Retire {
            id: id.to_owned(),
            done,
        };
        let gone = || "the daemon is stopping; nothing removed".to_string();
        self.ctx.retire.send(retire).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Asks the registry to disconnect the device and waits until its services are gone;
    /// returns how many of `services` (unique ids) left D-Bus.
    async fn take_off_dbus(
        &mut self,
        client: &str,
        conn: &zbus::Connection,
        services: &[String],
    ) -> usize {
        let before = on_bus(conn, services).await;
        let (tx, rx) = oneshot::channel();
        let asked = self
            .ctx
            .takedown
            .send(Takedown {
                client: client.to_owned(),
                done: tx,
            })
            .await;
        if asked.is_ok() {
            if let Ok(Some(closed)) = rx.await {
                let _ = closed.await;
            }
        }
        before.saturating_sub(on_bus(conn, services).await)
    }

    /// Publishes the retained state of each device that changed; clears those gone.
    async fn refresh_retained(&mut self) {
        let listing = match self.listing().await {
            Ok(l) => l,
            Err(e) => {
                debug!(error = %e, "retained device states not refreshed");
                return;
            }
        };
        // A device never heard from (known by its settings or from before last-seen times
        // were kept) counts from now for `--not-seen-for`, instead of from the beginning of time.
        let unknown: crate::persist::LastSeen = listing
            .devices
            .iter()
            .filter(|d| d.last_seen.is_none())
            .map(|d| (d.client_id.clone(), listing.generated_at))
            .collect();
        self.ctx.state.listed(unknown);
        let mut gone: Vec<String> = self.published.keys().cloned().collect();
        for device in &listing.devices {
            gone.retain(|g| g != &device.client_id);
            let body = json!(device).to_string();
            if self.published.get(&device.client_id) != Some(&body) {
                self.ctx.mqtt.publish(
                    &format!("{DEVICES_PREFIX}{}", device.client_id),
                    body.clone(),
                    true,
                );
                self.published.insert(device.client_id.clone(), body);
            }
        }
        for client in gone {
            self.ctx
                .mqtt
                .publish(&format!("{DEVICES_PREFIX}{client}"), "", true);
            self.published.remove(&client);
        }
    }
}
