//! The method-call dispatcher: reads a connection's `MessageStream`, answers
//! `Introspectable`/`Peer` itself and hands everything else to a [`Handler`], accepting calls
//! with or without an interface header. Never uses zbus' ObjectServer (it refuses calls without
//! an interface header, which velib, dbus-mqtt and old dbusmonitor send).
//! Knows no item tree and no settings: the handlers own those.
// Outside input passes through here: no indexing, slicing, unwrap or
// arithmetic that could panic (the release build aborts on a panic).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects,))]
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::message::{Body, Flags, Type};
use zbus::names::WellKnownName;
use zbus::{Connection, MatchRule, Message, MessageStream, Variant};

use super::error::ErrorReply;
use super::value::VariantMap;

/// The interface of every Venus object (values, nodes, root).
pub const BUSITEM_INTERFACE: &str = "com.victronenergy.BusItem";
/// The standard introspection interface, answered by the dispatcher.
pub const INTROSPECTABLE_INTERFACE: &str = "org.freedesktop.DBus.Introspectable";
/// The standard peer interface (`Ping`, `GetMachineId`), answered by the dispatcher.
pub const PEER_INTERFACE: &str = "org.freedesktop.DBus.Peer";

/// One incoming method call, as a handler sees it.
pub struct Call<'a> {
    /// Object path (`/` when the header has none, which the bus never lets through).
    pub path: &'a str,
    /// Interface header, if the caller sent one.
    pub interface: Option<&'a str>,
    /// Method name.
    pub member: &'a str,
    /// Arguments.
    pub body: &'a Body,
}

impl Call<'_> {
    /// True when the call has no interface header or names `iface` (D-Bus allows omitting it;
    /// Victron's Python callers do).
    pub fn is_for(&self, iface: &str) -> bool {
        self.interface.is_none_or(|i| i == iface)
    }

    /// The `UnknownMethod` reply for this call.
    pub fn unknown_method(&self) -> ErrorReply {
        ErrorReply::UnknownMethod(format!(
            "no method {}.{} on object {}",
            self.interface.unwrap_or("(no interface)"),
            self.member,
            self.path
        ))
    }
}

/// A method reply body; each variant fixes the reply's signature.
pub enum Reply {
    /// `v`: a value, or a node's `a{sv}`/`a{ss}` inside a variant.
    Variant(Variant<'static>),
    /// `s`.
    Str(String),
    /// `i`.
    I32(i32),
    /// `b`.
    Bool(bool),
    /// `a{sa{sv}}` (GetItems).
    Items(HashMap<String, VariantMap>),
    /// `aa{sv}` (AddSettings).
    DictList(Vec<VariantMap>),
    /// `ai` (RemoveSettings).
    I32List(Vec<i32>),
    /// `vvvi` (localsettings `GetAttributes`).
    Attributes(Variant<'static>, Variant<'static>, Variant<'static>, i32),
    /// No arguments.
    Unit,
    /// An error reply.
    Error(ErrorReply),
}

/// A signal to emit on interface `com.victronenergy.BusItem`.
pub struct Emit {
    /// Object path the signal comes from.
    pub path: String,
    /// The body: decides the member name.
    pub body: SignalBody,
}

/// Body of a BusItem signal.
pub enum SignalBody {
    /// `PropertiesChanged(a{sv})` on an item's path.
    Properties(VariantMap),
    /// `ItemsChanged(a{sa{sv}})` on `/`.
    Items(HashMap<String, VariantMap>),
}

/// What a handler answers: the reply, plus signals to emit just before it (as velib emits
/// PropertiesChanged inside SetValue, before returning).
pub struct Response {
    /// The reply.
    pub reply: Reply,
    /// Signals caused by the call.
    pub signals: Vec<Emit>,
}

impl From<Reply> for Response {
    fn from(reply: Reply) -> Self {
        Response {
            reply,
            signals: Vec::new(),
        }
    }
}

/// What an object looks like to `Introspect`.
pub struct Introspection {
    /// XML `<interface>` elements for the object (besides the standard ones), in order.
    pub interfaces: &'static [&'static str],
    /// Names of the direct child nodes.
    pub children: Vec<String>,
}

/// The object model behind one connection.
pub trait Handler: Send + Sync + 'static {
    /// Answers one call (not Introspectable/Peer). Must not block: it runs on the dispatcher.
    fn handle(&self, call: &Call<'_>) -> Response;
    /// Describes the object at `path`, or `None` when there is none (→ UnknownObject).
    fn introspect(&self, path: &str) -> Option<Introspection>;
}

/// Builds a BusItem signal message.
pub fn signal_message(emit: &Emit) -> zbus::Result<Message> {
    let member = match emit.body {
        SignalBody::Properties(_) => "PropertiesChanged",
        SignalBody::Items(_) => "ItemsChanged",
    };
    let b = Message::signal(emit.path.as_str(), BUSITEM_INTERFACE, member);
    match &emit.body {
        SignalBody::Properties(m) => b.build(&(m,)),
        SignalBody::Items(m) => b.build(&(m,)),
    }
}

/// Why a connection could not start answering calls.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct StartError {
    /// The step that failed.
    pub what: &'static str,
    /// The cause.
    #[source]
    pub source: zbus::Error,
}

/// Starts answering the method calls that reach `conn` through `handler` ([`serve`] on a
/// task). The call stream is subscribed before this returns, so a name requested afterwards
/// ([`request_name`]) misses no call; at most `queue` calls wait for the dispatcher.
pub async fn start(
    conn: &Connection,
    queue: NonZeroUsize,
    handler: Arc<dyn Handler>,
) -> Result<JoinHandle<()>, StartError> {
    let rule = MatchRule::builder()
        .msg_type(Type::MethodCall)
        .build()
        .map_err(|source| StartError {
            what: "building the method-call match rule",
            source,
        })?;
    let stream = MessageStream::for_match_rule(rule, conn, Some(queue))
        .await
        .map_err(|source| StartError {
            what: "subscribing to method calls",
            source,
        })?;
    Ok(tokio::spawn(serve(conn.clone(), stream, handler)))
}

/// Requests `name` with DO_NOT_QUEUE, once the objects are in place and [`start`] answers
/// for them, so that `GetItems` answers the moment `NameOwnerChanged` fires (the Venus
/// registration order). `Ok(false)` when another connection owns the name.
pub async fn request_name(conn: &Connection, name: WellKnownName<'_>) -> zbus::Result<bool> {
    match conn
        .request_name_with_flags(name, RequestNameFlags::DO_NOT_QUEUE)
        .await
    {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => Ok(true),
        Ok(_) | Err(zbus::Error::NameTaken) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads method calls from `stream` until it ends (connection closed) and answers each one.
/// Calls are answered in arrival order, one at a time, so a reply never overtakes an earlier one.
pub async fn serve(conn: Connection, mut stream: MessageStream, handler: Arc<dyn Handler>) {
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable message skipped");
                continue;
            }
        };
        if msg.message_type() != Type::MethodCall {
            continue;
        }
        let msgs = match answer(&msg, handler.as_ref()) {
            Ok(m) => m,
            Err(e) => {
                // The caller still gets an answer: without one it would wait for its
                // timeout, and dbus-flashmq ignores a service whose GetItems goes unanswered.
                tracing::warn!(error = %e, "building a reply failed; answering with an error");
                match failure_reply(&msg, &e) {
                    Some(reply) => vec![reply],
                    None => continue,
                }
            }
        };
        if let Err(e) = conn.send_all(&msgs).await {
            tracing::debug!(error = %e, "sending a reply failed");
            if conn.is_closed() {
                break;
            }
        }
    }
}

/// The messages (signals, then the reply) that answer one call.
fn answer(msg: &Message, handler: &dyn Handler) -> zbus::Result<Vec<Message>> {
    let hdr = msg.header();
    let path = hdr.path().map(|p| p.as_str()).unwrap_or("/");
    let member = hdr.member().map(|m| m.as_str()).unwrap_or("");
    let body = msg.body();
    let call = Call {
        path,
        interface: hdr.interface().map(|i| i.as_str()),
        member,
        body: &body,
    };
    let response = standard(&call, handler).unwrap_or_else(|| handler.handle(&call));
    let mut out = Vec::with_capacity(response.signals.len().saturating_add(1));
    for s in &response.signals {
        out.push(signal_message(s)?);
    }
    if hdr.primary().flags().contains(Flags::NO_REPLY_EXPECTED) {
        return Ok(out);
    }
    let ret = Message::method_return(&hdr);
    let reply = match response.reply {
        Reply::Variant(v) => ret.build(&(v,)),
        Reply::Str(s) => ret.build(&(s,)),
        Reply::I32(i) => ret.build(&(i,)),
        Reply::Bool(b) => ret.build(&(b,)),
        Reply::Items(m) => ret.build(&(m,)),
        Reply::DictList(l) => ret.build(&(l,)),
        Reply::I32List(l) => ret.build(&(l,)),
        Reply::Attributes(a, b, c, d) => ret.build(&(a, b, c, d)),
        Reply::Unit => ret.build(&()),
        Reply::Error(e) => Message::error(&hdr, e.name()).build(&(e.message(),)),
    }?;
    out.push(reply);
    Ok(out)
}

/// `org.freedesktop.DBus.Error.Failed` for a call whose reply could not be built (`None`
/// when the caller expects no reply).
fn failure_reply(msg: &Message, e: &zbus::Error) -> Option<Message> {
    let hdr = msg.header();
    if hdr.primary().flags().contains(Flags::NO_REPLY_EXPECTED) {
        return None;
    }
    let failed = ErrorReply::Failed(format!("the reply could not be built: {e}"));
    Message::error(&hdr, failed.name())
        .build(&(failed.message(),))
        .ok()
}

/// Answers `Introspect`, `Ping` and `GetMachineId`; `None` for everything else.
fn standard(call: &Call<'_>, handler: &dyn Handler) -> Option<Response> {
    let reply = match call.member {
        "Introspect" if call.is_for(INTROSPECTABLE_INTERFACE) => {
            match handler.introspect(call.path) {
                Some(i) => Reply::Str(introspection_xml(call.path, &i)),
                None => Reply::Error(ErrorReply::UnknownObject(format!(
                    "no object at {}",
                    call.path
                ))),
            }
        }
        // Ping is answered on any path, as libdbus does.
        "Ping" if call.is_for(PEER_INTERFACE) => Reply::Unit,
        "GetMachineId" if call.is_for(PEER_INTERFACE) => match machine_id() {
            Some(id) => Reply::Str(id.to_string()),
            None => Reply::Error(ErrorReply::Failed("no machine id on this system".into())),
        },
        _ => return None,
    };
    Some(reply.into())
}

fn machine_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

const STANDARD_INTERFACES_XML: &str = r#"  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg name="xml_data" type="s" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg name="machine_uuid" type="s" direction="out"/></method>
  </interface>
"#;

fn introspection_xml(path: &str, i: &Introspection) -> String {
    let mut xml = String::from(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n\
         \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n",
    );
    xml.push_str(&format!("<node name=\"{path}\">\n"));
    xml.push_str(STANDARD_INTERFACES_XML);
    for interface in i.interfaces {
        xml.push_str(interface);
    }
    for c in &i.children {
        xml.push_str(&format!("  <node name=\"{c}\"/>\n"));
    }
    xml.push_str("</node>\n");
    xml
}
