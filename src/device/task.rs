//! The device task: the executor around one device's [`Machine`]. It waits for the next
//! input (the device's queue, the GX side, the machine's deadline, the portal id and the
//! broker when the machine waits for them, overflowed Values), hands it to the machine, and
//! carries the actions out against D-Bus, localsettings, the state file and MQTT, in order.
//!
//! Each device runs in its own task, so a slow settings call or a stuck bus call for one
//! device never stalls another, and a defect met while handling one device's input costs
//! that device only ([`super::failure`]).

use super::budget::ServiceBudget;
use super::error_reply;
use super::failure::{self, DeviceFailure, Origin, Panic};
use super::machine::{Action, Env, Input, Machine, RegisterOutcome, RegisterRequest};
use super::overflow::ValuesOverflow;
use super::venus_service::{DeviceService, RegistrationContext};
use super::{DeviceEvent, Envelope, DEVICE_QUEUE};
use crate::logging::error_chain;
use crate::catalog::Catalog;
use crate::dbus::BusAddress;
use crate::ids::{ClientId, PortalId};
use crate::mqtt::MqttHandle;
use crate::persist::SavedDevice;
use crate::protocol::device_topic;
use crate::settings::SettingsClient;
use crate::state::StateStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

/// What every device task shares.
pub struct DeviceContext {
    pub catalog: Arc<Catalog>,
    pub bus: BusAddress,
    pub settings: SettingsClient,
    pub mqtt: MqttHandle,
    pub portal: watch::Receiver<Option<PortalId>>,
    pub budget: Arc<ServiceBudget>,
    pub default_timeout: Option<Duration>,
    /// Registrations talking to localsettings at once. All of them share one
    /// bus connection, and dbus-daemon refuses calls past a per-connection
    /// limit of pending replies (128 by default): a burst of devices, or a
    /// restart restoring many, must queue here instead of failing there.
    pub registrations: Arc<tokio::sync::Semaphore>,
    /// The state file (persist, then reply).
    pub state: StateStore,
    /// Where a device task that failed reports it.
    pub failures: mpsc::UnboundedSender<DeviceFailure>,
    /// Whether the broker connection is up.
    pub broker: watch::Receiver<bool>,
    /// What the operator tools show of each device (last values, changes).
    pub activity: Arc<crate::operator::activity::Activity>,
}

/// Default for [`DeviceContext::registrations`]: well under dbus-daemon's
/// default `max_replies_per_connection` of 128.
pub const CONCURRENT_REGISTRATIONS: usize = 32;

/// What the registry keeps of a device task.
pub struct DeviceHandle {
    /// The device's queue.
    pub tx: mpsc::Sender<Envelope>,
    pub task: JoinHandle<()>,
    /// Where Values go when the queue is full.
    pub overflow: Arc<ValuesOverflow>,
}

/// Starts the task of one device. It first waits for `previous`, the task of
/// the same client id that is still removing its services, so that a fast
/// reconnect never races a disconnect for the same bus names. `generation`
/// tells this task from other tasks of the same client id in failure reports.
pub fn spawn(
    ctx: Arc<DeviceContext>,
    client: ClientId,
    generation: u64,
    previous: Option<JoinHandle<()>>,
) -> DeviceHandle {
    let (tx, rx) = mpsc::channel(DEVICE_QUEUE);
    let overflow = Arc::new(ValuesOverflow::default());
    let device_overflow = overflow.clone();
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let device = DeviceTask::new(ctx.clone(), client.clone(), generation, device_overflow);
        if let Err(panic) = failure::contain(device.run(rx)).await {
            // A panic outside the handling of one input: the device was
            // dropped while unwinding, which took its services off the bus.
            report_failure(&ctx, generation, &client, None, None, &panic);
        }
    });
    DeviceHandle { tx, task, overflow }
}

/// Logs a device's failure, answers it `internal_error`, forgets it in the
/// state file and tells the registry.
fn report_failure(
    ctx: &DeviceContext,
    generation: u64,
    client: &ClientId,
    origin: Option<&Origin>,
    services: Option<usize>,
    panic: &Panic,
) {
    let key = origin.map(|o| o.key(client));
    let topic = key
        .as_ref()
        .map_or_else(|| device_topic(client.raw(), "Status"), |k| k.topic.clone());
    error!(
        client_id = %client,
        topic,
        reason = %panic.0,
        services,
        "internal error while handling this device; its services are removed, other devices are not affected"
    );
    error_reply::internal_error(
        &ctx.mqtt,
        client.raw(),
        &topic,
        error_reply::Failure::InDevice(&panic.0),
    );
    ctx.state.remove(client.raw());
    let _ = ctx.failures.send(DeviceFailure {
        generation,
        client: client.clone(),
        key,
        reason: panic.0.clone(),
    });
}

/// One device's machine and the D-Bus services it registered.
struct DeviceTask {
    ctx: Arc<DeviceContext>,
    client: ClientId,
    generation: u64,
    machine: Machine,
    /// Registered services, in the order they were registered.
    services: Vec<DeviceService>,
    bus_tx: mpsc::Sender<DeviceEvent>,
    bus_rx: mpsc::Receiver<DeviceEvent>,
    overflow: Arc<ValuesOverflow>,
}

impl DeviceTask {
    fn new(
        ctx: Arc<DeviceContext>,
        client: ClientId,
        generation: u64,
        overflow: Arc<ValuesOverflow>,
    ) -> DeviceTask {
        let (bus_tx, bus_rx) = mpsc::channel(DEVICE_QUEUE);
        let machine = Machine::new(client.clone(), ctx.catalog.clone(), ctx.default_timeout);
        DeviceTask {
            ctx,
            client,
            generation,
            machine,
            services: Vec::new(),
            bus_tx,
            bus_rx,
            overflow,
        }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Envelope>) {
        let mut portal = self.ctx.portal.clone();
        let mut broker = self.ctx.broker.clone();
        while !self.machine.stopped() {
            let deadline = self.machine.deadline();
            let overflow = self.overflow.clone();
            let (input, origin) = tokio::select! {
                // In this order: GX-side events are few and go first;
                // overflowed values are newer than anything queued, so they
                // are applied only once the queue is empty.
                biased;
                Some(event) = self.bus_rx.recv() => (Input::Event(event), None),
                envelope = inbox.recv() => match envelope {
                    Some(Envelope { event, origin }) => (Input::Event(event), origin),
                    // The registry is gone: the daemon is stopping.
                    None => (Input::Shutdown, None),
                },
                _ = sleep_until(deadline), if deadline.is_some() => (Input::Timeout, None),
                Ok(()) = broker.changed(), if self.machine.awaits_broker() => (Input::BrokerChanged, None),
                Ok(()) = portal.changed(), if self.machine.awaits_portal() => (Input::PortalChanged, None),
                _ = overflow.pushed() => match self.overflow.take() {
                    Some(values) => (Input::Event(DeviceEvent::Values(values)), None),
                    None => continue,
                },
            };
            // What an input needs while it is handled lives on the heap for that time only:
            // this loop's future is what every device costs as long as it is connected.
            if let Err(panic) = failure::contain(Box::pin(self.step(input))).await {
                Box::pin(self.fail(origin.as_ref(), &panic)).await;
                return;
            }
            // A replay's journal ticket is dropped here: handled.
            drop(origin);
        }
        Box::pin(self.close_all()).await;
    }

    /// What the machine sees now.
    fn env(&self) -> Env {
        Env {
            now: Instant::now(),
            portal: self.ctx.portal.borrow().clone(),
            broker_connected: *self.ctx.broker.borrow(),
        }
    }

    /// Hands `input` to the machine and carries out its actions; a
    /// registration's outcome goes back to the machine at once.
    async fn step(&mut self, input: Input) {
        self.note_activity(&input);
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let env = self.env();
            for action in self.machine.handle(input, &env) {
                if let Some(outcome) = self.execute(action).await {
                    next = Some(Input::Registered(outcome));
                }
            }
        }
    }

    /// Tells the operator tools that values arrived (Values, or a write through the gateway),
    /// for the device's registered services only: the others' ids are the device's words,
    /// refused later, and each would take memory.
    fn note_activity(&self, input: &Input) {
        let activity = &self.ctx.activity;
        match input {
            Input::Event(DeviceEvent::Values(v)) => {
                for (service, _) in &v.services {
                    if self.services.iter().any(|s| s.id.as_str() == service) {
                        activity.value(self.client.raw(), service);
                    }
                }
            }
            Input::Event(DeviceEvent::RemoteWrite { service, .. }) => {
                activity.value(self.client.raw(), service.as_str());
            }
            _ => {}
        }
    }

    /// Carries out one action; a registration returns its outcome.
    async fn execute(&mut self, action: Action) -> Option<RegisterOutcome> {
        match action {
            // Boxed: rare, and its future is the largest.
            Action::Register(request) => return Some(Box::pin(self.register(request)).await),
            Action::Close(id) => {
                if let Some(index) = self.services.iter().position(|s| s.id == id) {
                    self.services.remove(index).close().await;
                    self.ctx.activity.touch();
                }
            }
            Action::SetValue {
                service,
                path,
                value,
                why,
            } => {
                if let Some(s) = self.services.iter().find(|s| s.id == service) {
                    if let Err(e) = s.service.set_value(&path, value).await {
                        warn!(client_id = %self.client, service_id = %service, path, error = %e, "{why}");
                    }
                }
            }
            Action::SetValues {
                service,
                changes,
                why,
            } => {
                if let Some(s) = self.services.iter().find(|s| s.id == service) {
                    if let Err(e) = s.service.set_values(changes).await {
                        warn!(client_id = %self.client, service_id = %service, error = %e, "{why}");
                    }
                }
            }
            Action::UpdateValue {
                service,
                path,
                value,
            } => {
                if let Some(s) = self.services.iter().find(|s| s.id == service) {
                    if s.service.value(&path).as_ref() != Some(&value) {
                        if let Err(e) = s.service.set_value(&path, value).await {
                            warn!(client_id = %self.client, service_id = %service, path, error = %e, "applying a settings change");
                        }
                    }
                }
            }
            Action::StoreSetting {
                service,
                setting,
                value,
            } => {
                if let Err(e) = self.ctx.settings.set_value(&setting, value).await {
                    warn!(client_id = %self.client, service_id = %service, path = %setting, error = %e, "storing a setting");
                }
            }
            Action::Publish { topic, payload } => self.ctx.mqtt.publish(&topic, payload, false),
            Action::Reject { kind, rejection } => {
                error_reply::reject(&self.ctx.mqtt, self.client.raw(), kind, &rejection)
            }
            Action::Record(status) => {
                self.ctx
                    .state
                    .record(SavedDevice {
                        client_id: self.client.raw().to_owned(),
                        status,
                    })
                    .await
            }
            Action::Forget => self.ctx.state.remove(self.client.raw()),
            Action::Sync => self.ctx.state.sync().await,
            Action::Stop => self.close_all().await,
        }
        None
    }

    /// Takes a slot of the budget, waits for a turn with localsettings, registers.
    async fn register(&mut self, request: Box<RegisterRequest>) -> RegisterOutcome {
        let Some(slot) = self.ctx.budget.reserve() else {
            return RegisterOutcome::NoSlot {
                max: self.ctx.budget.max(),
            };
        };
        // The semaphore is never closed, so acquiring only fails if it were.
        let _permit = self.ctx.registrations.clone().acquire_owned().await.ok();
        let registration = RegistrationContext {
            bus: &self.ctx.bus,
            settings: &self.ctx.settings,
            client: &self.client,
            version: request.version.as_ref(),
            events: self.bus_tx.clone(),
            slot,
        };
        match DeviceService::register(registration, &request.decl, &request.service_type).await {
            Ok((service, registered)) => {
                self.services.push(service);
                self.ctx.activity.touch();
                RegisterOutcome::Registered(registered)
            }
            Err(e) => RegisterOutcome::Failed(error_chain(&e)),
        }
    }

    /// Removes every service still registered, in the device's order.
    async fn close_all(&mut self) {
        let mut order: Vec<_> = self.machine.service_ids().cloned().collect();
        order.extend(self.services.iter().map(|s| s.id.clone()));
        for id in order {
            if let Some(index) = self.services.iter().position(|s| s.id == id) {
                self.services.remove(index).close().await;
            }
        }
        self.ctx.activity.touch();
    }

    /// A panic was caught while handling `origin`: the device's services go,
    /// the device is told, the registry forgets it. Other devices go on.
    async fn fail(&mut self, origin: Option<&Origin>, panic: &Panic) {
        let services = std::mem::take(&mut self.services);
        let count = services.len();
        // Closing releases the names at once; if that panics too, what is
        // left is dropped, which closes the connections all the same.
        let closed = failure::contain(async {
            for s in services {
                s.close().await;
            }
        })
        .await;
        if let Err(again) = closed {
            warn!(client_id = %self.client, reason = %again.0, "closing the services of a failed device failed; they were dropped");
        }
        report_failure(
            &self.ctx,
            self.generation,
            &self.client,
            origin,
            Some(count),
            panic,
        );
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
