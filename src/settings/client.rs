//! A client of `com.victronenergy.settings` (localsettings or our twin): waits for it, adds
//! settings in one `AddSettings` call, reads and writes them, and follows their changes made by
//! anyone. Knows no MQTT and no devices.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zbus::message::Type;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedVariant, Variant};

use super::{
    Error, SettingChange, SettingResult, SettingSpec, SETTINGS_INTERFACE, SETTINGS_SERVICE,
};
use crate::dbus::{BusAddress, Value, BUSITEM_INTERFACE};

/// Capacity of each [`SettingsClient::subscribe`] channel. A subscriber that lets it fill up
/// loses further changes (with a warning) rather than stalling the other subscribers.
pub const SUBSCRIPTION_QUEUE: usize = 64;

/// How often [`SettingsClient::wait_for_service`] says it is still waiting.
pub const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(5);

struct Subscriber {
    prefix: String,
    tx: mpsc::Sender<SettingChange>,
}

struct Inner {
    conn: Connection,
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    signals: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.signals.abort();
    }
}

/// A connection to the settings service, shared by its clones.
#[derive(Clone)]
pub struct SettingsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SettingsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsClient").finish_non_exhaustive()
    }
}

fn under(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    path == p
        || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'))
        || p.is_empty()
}

fn deliver(subscribers: &Mutex<Vec<Subscriber>>, path: &str, value: Value) {
    let mut subs = subscribers.lock().unwrap_or_else(|e| e.into_inner());
    subs.retain(|s| !s.tx.is_closed());
    for s in subs.iter().filter(|s| under(path, &s.prefix)) {
        let change = SettingChange {
            path: path.to_string(),
            value: value.clone(),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(change) {
            tracing::warn!(path, prefix = %s.prefix, "settings subscriber is not reading; change dropped");
        }
    }
}

fn value_of(entry: &HashMap<String, OwnedVariant>) -> Option<Value> {
    entry.get("Value").and_then(|v| Value::from_variant(v).ok())
}

fn on_signal(subscribers: &Mutex<Vec<Subscriber>>, msg: &Message) {
    let hdr = msg.header();
    let Some(path) = hdr.path().map(|p| p.as_str().to_string()) else {
        return;
    };
    match hdr.member().map(|m| m.as_str()) {
        Some("PropertiesChanged") => {
            if let Ok(body) = msg.body().deserialize::<HashMap<String, OwnedVariant>>() {
                if let Some(v) = value_of(&body) {
                    deliver(subscribers, &path, v);
                }
            }
        }
        Some("ItemsChanged") => {
            if let Ok(body) = msg
                .body()
                .deserialize::<HashMap<String, HashMap<String, OwnedVariant>>>()
            {
                for (p, entry) in body {
                    if let Some(v) = value_of(&entry) {
                        deliver(subscribers, &p, v);
                    }
                }
            }
        }
        _ => {}
    }
}

/// True when a call failed because localsettings has no owner on the bus or went away
/// before answering (not because it refused something).
fn is_unavailable(e: &Error) -> bool {
    const GONE: [&str; 3] = [
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.NoReply",
    ];
    let Error::Call { source, .. } = e else {
        return false;
    };
    match source {
        zbus::Error::MethodError(name, _, _) => GONE.contains(&name.as_str()),
        zbus::Error::FDO(e) => matches!(
            **e,
            zbus::fdo::Error::ServiceUnknown(_)
                | zbus::fdo::Error::NameHasNoOwner(_)
                | zbus::fdo::Error::NoReply(_)
        ),
        _ => false,
    }
}

impl SettingsClient {
    /// Opens a connection and starts following the settings service's change signals.
    pub async fn connect(bus: &BusAddress) -> Result<SettingsClient, Error> {
        let conn = bus.connect().await.map_err(|source| Error::Connect {
            bus: bus.to_string(),
            source,
        })?;
        let call_err = |source| Error::Call {
            method: "AddMatch",
            path: "/".into(),
            source,
        };
        // The bus resolves the well-known sender, so only the settings service's signals come.
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender(SETTINGS_SERVICE)
            .interface(BUSITEM_INTERFACE)
            .build()
            .map_err(call_err)?;
        let mut stream = MessageStream::for_match_rule(rule, &conn, None)
            .await
            .map_err(call_err)?;
        let subscribers: Arc<Mutex<Vec<Subscriber>>> = Arc::default();
        let subs = subscribers.clone();
        let signals = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                if let Ok(msg) = msg {
                    on_signal(&subs, &msg);
                }
            }
        });
        Ok(SettingsClient {
            inner: Arc::new(Inner {
                conn,
                subscribers,
                signals,
            }),
        })
    }

    /// Waits until `com.victronenergy.settings` has an owner (it may start after us at boot),
    /// logging every [`WAIT_LOG_INTERVAL`]. `None` waits forever.
    pub async fn wait_for_service(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let conn = &self.inner.conn;
        let call_err = |method| {
            move |source| Error::Call {
                method,
                path: "/org/freedesktop/DBus".into(),
                source,
            }
        };
        // Subscribed before asking, so an owner arriving in between is not missed.
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .arg(0, SETTINGS_SERVICE)
            .build()
            .map_err(call_err("AddMatch"))?;
        let mut owners = MessageStream::for_match_rule(rule, conn, None)
            .await
            .map_err(call_err("AddMatch"))?;
        let has_owner: bool = conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "NameHasOwner",
                &(SETTINGS_SERVICE,),
            )
            .await
            .and_then(|m| m.body().deserialize())
            .map_err(call_err("NameHasOwner"))?;
        if has_owner {
            return Ok(());
        }
        tracing::info!("waiting for com.victronenergy.settings");
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + WAIT_LOG_INTERVAL,
            WAIT_LOG_INTERVAL,
        );
        loop {
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = owners.next() => {
                    let Some(Ok(msg)) = msg else {
                        return Err(Error::Call {
                            method: "NameOwnerChanged",
                            path: "/org/freedesktop/DBus".into(),
                            source: zbus::Error::InputOutput(Arc::new(std::io::Error::other(
                                "connection closed while waiting",
                            ))),
                        });
                    };
                    if let Ok((_, _, new)) = msg.body().deserialize::<(String, String, String)>() {
                        if !new.is_empty() {
                            return Ok(());
                        }
                    }
                }
                _ = ticker.tick() => tracing::info!("waiting for com.victronenergy.settings"),
                _ = expired => return Err(Error::Timeout(timeout.unwrap_or_default())),
            }
        }
    }

    async fn call<B>(
        &self,
        path: &str,
        iface: &str,
        method: &'static str,
        body: &B,
    ) -> Result<Message, Error>
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        self.inner
            .conn
            .call_method(Some(SETTINGS_SERVICE), path, Some(iface), method, body)
            .await
            .map_err(|source| Error::Call {
                method,
                path: path.to_string(),
                source,
            })
    }

    /// Adds (or re-adds) settings in one `AddSettings` call on `/`. Returns one result per spec,
    /// in order; use [`SettingResult::into_result`] to turn a non-zero code into an error.
    pub async fn add_settings(&self, specs: &[SettingSpec]) -> Result<Vec<SettingResult>, Error> {
        let entries: Vec<HashMap<&str, Variant<'static>>> = specs
            .iter()
            .map(|s| {
                let mut e = HashMap::from([
                    ("path", Variant::Str(s.path.clone().into())),
                    ("default", s.default.to_variant()),
                ]);
                if let Some(m) = &s.min {
                    e.insert("min", m.to_variant());
                }
                if let Some(m) = &s.max {
                    e.insert("max", m.to_variant());
                }
                if s.silent {
                    e.insert("silent", Variant::I32(1));
                }
                e
            })
            .collect();
        let reply = self
            .call("/", SETTINGS_INTERFACE, "AddSettings", &(entries,))
            .await?;
        let results: Vec<HashMap<String, OwnedVariant>> =
            reply.body().deserialize().map_err(|source| Error::Call {
                method: "AddSettings",
                path: "/".into(),
                source,
            })?;
        Ok(results
            .iter()
            .zip(specs)
            .map(|(r, spec)| {
                let get = |k: &str| r.get(k).and_then(|v| Value::from_variant(v).ok());
                SettingResult {
                    path: get("path")
                        .and_then(|p| p.as_str().map(str::to_string))
                        .unwrap_or_else(|| spec.path.clone()),
                    error: get("error").and_then(|e| e.as_i64()).unwrap_or(-1) as i32,
                    value: get("value").unwrap_or(Value::Invalid),
                }
            })
            .collect())
    }

    /// [`SettingsClient::add_settings`], waiting for localsettings whenever it is not there
    /// (restarting, or not yet started) instead of failing: an instance is only ever what
    /// localsettings answered. Other errors are returned.
    pub async fn add_settings_when_available(
        &self,
        specs: &[SettingSpec],
    ) -> Result<Vec<SettingResult>, Error> {
        loop {
            match self.add_settings(specs).await {
                Err(e) if is_unavailable(&e) => {
                    tracing::info!(
                        path = specs.first().map(|s| s.path.as_str()),
                        "com.victronenergy.settings is not there; the registration waits for it"
                    );
                    self.wait_for_service(None).await?;
                }
                other => return other,
            }
        }
    }

    /// `SetValue` on the setting's own object; a refusal (-1) is [`Error::Rejected`].
    pub async fn set_value(&self, path: &str, value: Value) -> Result<(), Error> {
        let reply = self
            .call(path, BUSITEM_INTERFACE, "SetValue", &(value.to_variant(),))
            .await?;
        let code: i32 = reply.body().deserialize().map_err(|source| Error::Call {
            method: "SetValue",
            path: path.to_string(),
            source,
        })?;
        if code == 0 {
            Ok(())
        } else {
            Err(Error::Rejected {
                path: path.to_string(),
                code,
            })
        }
    }

    /// `GetValue` of a setting (or a group: a `Dict` with relative keys).
    pub async fn get_value(&self, path: &str) -> Result<Value, Error> {
        let reply = self.call(path, BUSITEM_INTERFACE, "GetValue", &()).await?;
        let v: OwnedVariant = reply.body().deserialize().map_err(|source| Error::Call {
            method: "GetValue",
            path: path.to_string(),
            source,
        })?;
        Value::from_variant(&v).map_err(|source| Error::Value {
            path: path.to_string(),
            source,
        })
    }

    /// `GetDefault` of a setting.
    pub async fn get_default(&self, path: &str) -> Result<Value, Error> {
        let reply = self
            .call(path, BUSITEM_INTERFACE, "GetDefault", &())
            .await?;
        let v: OwnedVariant = reply.body().deserialize().map_err(|source| Error::Call {
            method: "GetDefault",
            path: path.to_string(),
            source,
        })?;
        Value::from_variant(&v).map_err(|source| Error::Value {
            path: path.to_string(),
            source,
        })
    }

    /// `RemoveSettings` on `/` with absolute paths: 0 removed, -1 not there, per path.
    pub async fn remove_settings(&self, paths: &[String]) -> Result<Vec<i32>, Error> {
        let reply = self
            .call("/", SETTINGS_INTERFACE, "RemoveSettings", &(paths,))
            .await?;
        reply.body().deserialize().map_err(|source| Error::Call {
            method: "RemoveSettings",
            path: "/".into(),
            source,
        })
    }

    /// Changes of settings at or below `path_prefix` (e.g. `/Settings/Devices/x`), made by
    /// anyone, from now on. The subscription ends when the receiver is dropped.
    pub fn subscribe(&self, path_prefix: &str) -> mpsc::Receiver<SettingChange> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
        let mut subscribers = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Ended subscriptions go here too, not only when a signal comes: a device that
        // registers and leaves again and again would otherwise pile up closed channels.
        subscribers.retain(|s| !s.tx.is_closed());
        subscribers.push(Subscriber {
            prefix: path_prefix.to_string(),
            tx,
        });
        rx
    }

    /// Subscriptions held, including ended ones not yet pruned (for health figures: it
    /// must stay bounded by the live ones plus those ended since the last subscribe).
    pub fn subscription_count(&self) -> usize {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}
