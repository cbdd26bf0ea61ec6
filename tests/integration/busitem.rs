//! BusItem services: every method with and without an interface header, byte-exact
//! signatures, SetValue codes and coercions, signals, and registration order.

use std::collections::HashMap;
use std::sync::Arc;

use dbus_mqtt_devices::dbus::{
    BusAddress, Item, RemoteWrite, Service, TextFormat, Value, ValueType, WriteHook,
    BUSITEM_INTERFACE,
};
use futures_util::StreamExt;
use zbus::message::Type;
use zbus::{Array, Connection, MatchRule, Message, MessageStream, Signature, Variant};

use crate::support::{timed, TestBus};

const NAME: &str = "com.victronenergy.temperature.test_1";

fn items() -> Vec<Item> {
    vec![
        Item::new("/Mgmt/ProcessName", Value::Str("test".into())),
        Item::new("/Mgmt/Connection", Value::Str("MQTT".into())),
        Item::new("/DeviceInstance", Value::I32(20)),
        Item::new("/ProductId", Value::I32(0xA162)),
        Item::new("/Connected", Value::I32(1)),
        Item::new("/Temperature", Value::F64(21.5))
            .writeable()
            .with_type(ValueType::Float)
            .with_text(TextFormat::Fixed {
                decimals: Some(1),
                unit: Some("C".into()),
            })
            .with_limits(Some(-50.0), Some(100.0))
            .with_description("temperature in C"),
        Item::new("/Humidity", Value::Invalid),
        Item::new("/CustomName", Value::Str(String::new()))
            .writeable()
            .with_type(ValueType::Str),
        Item::new("/TemperatureType", Value::I32(2))
            .writeable()
            .with_type(ValueType::Int),
        Item::new("/Any", Value::I32(0)).writeable(),
        Item::new("/Ac/L1/Power", Value::F64(1.0)),
    ]
}

async fn call<B>(
    conn: &Connection,
    path: &str,
    iface: Option<&str>,
    member: &str,
    body: &B,
) -> zbus::Result<Message>
where
    B: serde::Serialize + zbus::DynamicType,
{
    conn.call_method(Some(NAME), path, iface, member, body)
        .await
}

fn sig(m: &Message) -> String {
    m.body().signature().to_string_no_parens()
}

fn value_of(m: &Message) -> Value {
    let v: zbus::OwnedVariant = m.body().deserialize().expect("a variant body");
    Value::from_variant(&v).expect("a venus value")
}

fn error_name(r: zbus::Result<Message>) -> String {
    match r {
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        Err(zbus::Error::FDO(e)) => zbus::DBusError::name(e.as_ref()).to_string(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

async fn start(
    bus: &TestBus,
    hook: Option<WriteHook>,
) -> (Service, tokio::sync::mpsc::Receiver<RemoteWrite>) {
    Service::register(&bus.bus(), NAME, items(), hook)
        .await
        .expect("registering the test service")
}

#[tokio::test]
async fn every_method_answers_with_and_without_interface_header() {
    timed(async {
        let bus = TestBus::start().await;
        let (_svc, _rx) = start(&bus, None).await;
        let c = bus.client().await;
        let mut current = 21.5;
        for iface in [None, Some(BUSITEM_INTERFACE)] {
            let r = call(&c, "/Temperature", iface, "GetValue", &())
                .await
                .unwrap();
            assert_eq!(sig(&r), "v", "iface {iface:?}");
            assert_eq!(value_of(&r), Value::F64(current));

            let r = call(&c, "/Temperature", iface, "GetText", &())
                .await
                .unwrap();
            assert_eq!(sig(&r), "s");
            assert_eq!(
                r.body().deserialize::<String>().unwrap(),
                format!("{current:.1} C")
            );

            let r = call(&c, "/ProductId", iface, "GetText", &()).await.unwrap();
            assert_eq!(r.body().deserialize::<String>().unwrap(), "0xA162");

            let r = call(&c, "/Temperature", iface, "GetDescription", &("en", 0i32))
                .await
                .unwrap();
            assert_eq!(
                r.body().deserialize::<String>().unwrap(),
                "temperature in C"
            );

            let r = call(&c, "/Temperature", iface, "GetMin", &())
                .await
                .unwrap();
            assert_eq!(value_of(&r), Value::F64(-50.0));
            let r = call(&c, "/Temperature", iface, "GetMax", &())
                .await
                .unwrap();
            assert_eq!(value_of(&r), Value::F64(100.0));

            let v = if iface.is_none() { 22.0 } else { 23.0 };
            let r = call(&c, "/Temperature", iface, "SetValue", &(Variant::F64(v),))
                .await
                .unwrap();
            assert_eq!(sig(&r), "i");
            assert_eq!(r.body().deserialize::<i32>().unwrap(), 0);

            // Nodes: a variant holding a{sv} / a{ss}, keys relative to the node.
            let r = call(&c, "/Mgmt", iface, "GetValue", &()).await.unwrap();
            assert_eq!(sig(&r), "v");
            let inner: zbus::OwnedVariant = r.body().deserialize().unwrap();
            assert_eq!(inner.value_signature().to_string(), "a{sv}");
            assert_eq!(
                Value::from_variant(&inner).unwrap(),
                Value::Dict(
                    [
                        ("Connection".to_string(), Value::Str("MQTT".into())),
                        ("ProcessName".to_string(), Value::Str("test".into())),
                    ]
                    .into()
                )
            );
            let r = call(&c, "/", iface, "GetValue", &()).await.unwrap();
            let Value::Dict(root) = value_of(&r) else {
                panic!("root GetValue not a dict")
            };
            assert_eq!(root.get("Ac/L1/Power"), Some(&Value::F64(1.0)));
            assert_eq!(root.len(), items().len());

            let r = call(&c, "/Ac", iface, "GetText", &()).await.unwrap();
            assert_eq!(sig(&r), "v");
            let inner: zbus::OwnedVariant = r.body().deserialize().unwrap();
            assert_eq!(inner.value_signature().to_string(), "a{ss}");
            let texts: HashMap<String, String> = inner.try_into().unwrap();
            assert_eq!(
                texts,
                HashMap::from([("L1/Power".to_string(), "1.0".to_string())])
            );

            // Root GetItems: exactly a{sa{sv}}, absolute keys, {Value, Text}.
            let r = call(&c, "/", iface, "GetItems", &()).await.unwrap();
            assert_eq!(sig(&r), "a{sa{sv}}");
            let all: HashMap<String, HashMap<String, zbus::OwnedVariant>> =
                r.body().deserialize().unwrap();
            assert_eq!(all.len(), items().len());
            let t = &all["/Temperature"];
            assert_eq!(
                t.keys()
                    .map(String::as_str)
                    .collect::<std::collections::BTreeSet<_>>(),
                ["Text", "Value"].into()
            );
            assert_eq!(
                Value::from_variant(&t["Value"]).unwrap(),
                Value::F64(v),
                "iface {iface:?}"
            );
            let text: String = t["Text"].try_clone().unwrap().try_into().unwrap();
            assert_eq!(text, format!("{v:.1} C"));
            current = v;
        }
        for iface in [None, Some("org.freedesktop.DBus.Introspectable")] {
            let r = call(&c, "/", iface, "Introspect", &()).await.unwrap();
            let xml: String = r.body().deserialize().unwrap();
            assert!(
                xml.contains("GetItems") && xml.contains("<node name=\"Mgmt\"/>"),
                "{xml}"
            );
            let r = call(&c, "/Temperature", iface, "Introspect", &())
                .await
                .unwrap();
            let xml: String = r.body().deserialize().unwrap();
            assert!(xml.contains("SetValue"), "{xml}");
        }
        for iface in [None, Some("org.freedesktop.DBus.Peer")] {
            let r = call(&c, "/", iface, "Ping", &()).await.unwrap();
            assert_eq!(sig(&r), "");
            // A machine id when the system has one, else a D-Bus error: never silence.
            match call(&c, "/", iface, "GetMachineId", &()).await {
                Ok(r) => assert_eq!(sig(&r), "s"),
                Err(e) => assert!(e.to_string().contains("machine id"), "{e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn unknown_paths_methods_and_interfaces_get_the_velib_errors() {
    timed(async {
        let bus = TestBus::start().await;
        let (_svc, _rx) = start(&bus, None).await;
        let c = bus.client().await;
        let unknown_object = "org.freedesktop.DBus.Error.UnknownObject";
        let unknown_method = "org.freedesktop.DBus.Error.UnknownMethod";
        for iface in [None, Some(BUSITEM_INTERFACE)] {
            assert_eq!(
                error_name(call(&c, "/Nope", iface, "GetValue", &()).await),
                unknown_object
            );
            assert_eq!(
                error_name(call(&c, "/Temp", iface, "GetValue", &()).await),
                unknown_object
            );
            assert_eq!(
                error_name(call(&c, "/Temperature", iface, "GetItems", &()).await),
                unknown_method
            );
            assert_eq!(
                error_name(call(&c, "/Mgmt", iface, "GetItems", &()).await),
                unknown_method
            );
            assert_eq!(
                error_name(call(&c, "/Mgmt", iface, "SetValue", &(Variant::I32(1),)).await),
                unknown_method
            );
            assert_eq!(
                error_name(call(&c, "/DeviceInstance", iface, "GetMin", &()).await),
                unknown_method
            );
            assert_eq!(
                error_name(call(&c, "/", iface, "Frobnicate", &()).await),
                unknown_method
            );
        }
        assert_eq!(
            error_name(
                call(
                    &c,
                    "/Temperature",
                    Some("com.victronenergy.Settings"),
                    "GetValue",
                    &()
                )
                .await
            ),
            unknown_method
        );
        assert_eq!(
            error_name(
                call(
                    &c,
                    "/",
                    Some("org.freedesktop.DBus.Properties"),
                    "GetAll",
                    &("x",)
                )
                .await
            ),
            unknown_method
        );
    })
    .await
}

#[tokio::test]
async fn invalid_is_an_empty_int32_array_with_text_dashes() {
    timed(async {
        let bus = TestBus::start().await;
        let (_svc, _rx) = start(&bus, None).await;
        let c = bus.client().await;
        let r = call(&c, "/Humidity", None, "GetValue", &()).await.unwrap();
        let v: zbus::OwnedVariant = r.body().deserialize().unwrap();
        assert_eq!(v.value_signature().to_string(), "ai");
        let Variant::Array(a) = &*v else {
            panic!("got {v:?}")
        };
        assert!(a.is_empty());
        let r = call(&c, "/Humidity", None, "GetText", &()).await.unwrap();
        assert_eq!(r.body().deserialize::<String>().unwrap(), "---");
    })
    .await
}

#[tokio::test]
async fn set_value_return_codes_and_coercions() {
    timed(async {
        let bus = TestBus::start().await;
        let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
        let seen2 = seen.clone();
        let hook: WriteHook = Arc::new(move |path: &str, v: &Value| {
            seen2.lock().unwrap().push((path.to_string(), v.clone()));
            v != &Value::F64(99.0)
        });
        let (svc, mut rx) = start(&bus, Some(hook)).await;
        let c = bus.client().await;
        let set = |path: &'static str, v: Variant<'static>| {
            let c = c.clone();
            async move {
                let r = call(&c, path, None, "SetValue", &(v,)).await.unwrap();
                r.body().deserialize::<i32>().unwrap()
            }
        };
        // read-only → 1
        assert_eq!(set("/DeviceInstance", Variant::I32(5)).await, 1);
        // string on a float path → 1
        assert_eq!(set("/Temperature", Variant::Str("abc".into())).await, 1);
        // int32 on a float path → 0, stored as double
        assert_eq!(set("/Temperature", Variant::I32(25)).await, 0);
        assert_eq!(svc.value("/Temperature"), Some(Value::F64(25.0)));
        let r = call(&c, "/Temperature", None, "GetValue", &())
            .await
            .unwrap();
        let v: zbus::OwnedVariant = r.body().deserialize().unwrap();
        assert_eq!(*v, Variant::F64(25.0));
        assert_eq!(
            rx.recv().await,
            Some(RemoteWrite {
                path: "/Temperature".into(),
                value: Value::F64(25.0)
            })
        );
        // the same value again → 0, and the hook does not see it
        let hooked = seen.lock().unwrap().len();
        assert_eq!(set("/Temperature", Variant::F64(25.0)).await, 0);
        assert_eq!(seen.lock().unwrap().len(), hooked);
        // outside min/max → 2
        assert_eq!(set("/Temperature", Variant::F64(101.0)).await, 2);
        // the hook refuses → 2, value unchanged
        assert_eq!(set("/Temperature", Variant::F64(99.0)).await, 2);
        assert_eq!(svc.value("/Temperature"), Some(Value::F64(25.0)));
        // any empty array → invalid
        assert_eq!(
            set("/Temperature", Variant::Array(Array::new(&Signature::U32))).await,
            0
        );
        assert_eq!(svc.value("/Temperature"), Some(Value::Invalid));
        assert_eq!(rx.recv().await.map(|w| w.value), Some(Value::Invalid));
        // int path: integral double accepted as int32, fractional refused
        assert_eq!(set("/TemperatureType", Variant::F64(3.0)).await, 0);
        assert_eq!(svc.value("/TemperatureType"), Some(Value::I32(3)));
        assert_eq!(set("/TemperatureType", Variant::F64(3.5)).await, 1);
        // string path: only strings
        assert_eq!(set("/CustomName", Variant::I32(3)).await, 1);
        assert_eq!(set("/CustomName", Variant::Str("Fridge".into())).await, 0);
        // untyped path stores what it gets
        assert_eq!(set("/Any", Variant::Str("x".into())).await, 0);
        assert_eq!(svc.value("/Any"), Some(Value::Str("x".into())));
        assert_eq!(
            seen.lock().unwrap().clone(),
            vec![
                ("/Temperature".to_string(), Value::F64(25.0)),
                ("/Temperature".to_string(), Value::F64(99.0)),
                ("/Temperature".to_string(), Value::Invalid),
                ("/TemperatureType".to_string(), Value::I32(3)),
                ("/CustomName".to_string(), Value::Str("Fridge".into())),
                ("/Any".to_string(), Value::Str("x".into())),
            ]
        );
    })
    .await
}

async fn busitem_signals(c: &Connection) -> MessageStream {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface(BUSITEM_INTERFACE)
        .build()
        .unwrap();
    MessageStream::for_match_rule(rule, c, None).await.unwrap()
}

async fn next_signal(
    s: &mut MessageStream,
) -> (String, String, HashMap<String, zbus::OwnedVariant>) {
    let m = s.next().await.expect("signal stream ended").unwrap();
    let h = m.header();
    let path = h.path().unwrap().to_string();
    let member = h.member().unwrap().to_string();
    assert_eq!(
        h.interface().map(|i| i.to_string()).as_deref(),
        Some(BUSITEM_INTERFACE)
    );
    let body = if member == "PropertiesChanged" {
        assert_eq!(sig(&m), "a{sv}");
        m.body().deserialize().unwrap()
    } else {
        assert_eq!(sig(&m), "a{sa{sv}}");
        let items: HashMap<String, HashMap<String, zbus::OwnedVariant>> =
            m.body().deserialize().unwrap();
        items
            .into_iter()
            .map(|(k, mut v)| (k, v.remove("Value").expect("a Value key")))
            .collect()
    };
    (path, member, body)
}

#[tokio::test]
async fn changes_emit_properties_changed_and_items_changed() {
    timed(async {
        let bus = TestBus::start().await;
        let (svc, _rx) = start(&bus, None).await;
        let c = bus.client().await;
        let mut s = busitem_signals(&c).await;

        // remote write → PropertiesChanged {Value, Text} on the item's path
        call(&c, "/Temperature", None, "SetValue", &(Variant::F64(30.0),))
            .await
            .unwrap();
        let (path, member, body) = next_signal(&mut s).await;
        assert_eq!(
            (path.as_str(), member.as_str()),
            ("/Temperature", "PropertiesChanged")
        );
        assert_eq!(
            Value::from_variant(&body["Value"]).unwrap(),
            Value::F64(30.0)
        );
        let text: String = body["Text"].try_clone().unwrap().try_into().unwrap();
        assert_eq!(text, "30.0 C");
        assert_eq!(body.len(), 2);

        // a local integer on a float path is stored as a double
        assert!(svc.set_value("/Temperature", Value::I32(30)).await.is_ok());
        assert_eq!(svc.value("/Temperature"), Some(Value::F64(30.0)));

        // local write → PropertiesChanged; unchanged → nothing
        assert!(svc
            .set_value("/TemperatureType", Value::I32(4))
            .await
            .unwrap());
        assert!(!svc
            .set_value("/TemperatureType", Value::I32(4))
            .await
            .unwrap());
        let (path, member, body) = next_signal(&mut s).await;
        assert_eq!(
            (path.as_str(), member.as_str()),
            ("/TemperatureType", "PropertiesChanged")
        );
        assert_eq!(Value::from_variant(&body["Value"]).unwrap(), Value::I32(4));

        // batch → one ItemsChanged on / with only the changed paths
        let n = svc
            .set_values(vec![
                ("/Temperature".into(), Value::F64(31.0)),
                ("/Connected".into(), Value::I32(1)),
                ("/Humidity".into(), Value::F64(40.0)),
            ])
            .await
            .unwrap();
        assert_eq!(n, 2);
        let (path, member, body) = next_signal(&mut s).await;
        assert_eq!((path.as_str(), member.as_str()), ("/", "ItemsChanged"));
        let mut keys: Vec<_> = body.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, vec!["/Humidity", "/Temperature"]);

        // added paths are announced, and answer
        svc.add_items(vec![Item::new("/Pressure", Value::F64(1013.0))])
            .await
            .unwrap();
        let (path, member, body) = next_signal(&mut s).await;
        assert_eq!((path.as_str(), member.as_str()), ("/", "ItemsChanged"));
        assert_eq!(
            Value::from_variant(&body["/Pressure"]).unwrap(),
            Value::F64(1013.0)
        );
        let r = call(&c, "/Pressure", None, "GetValue", &()).await.unwrap();
        assert_eq!(value_of(&r), Value::F64(1013.0));

        // removed paths are announced invalid, and are gone
        svc.remove_items(&["/Pressure".to_string()]).await.unwrap();
        let (path, member, body) = next_signal(&mut s).await;
        assert_eq!((path.as_str(), member.as_str()), ("/", "ItemsChanged"));
        assert_eq!(
            Value::from_variant(&body["/Pressure"]).unwrap(),
            Value::Invalid
        );
        assert_eq!(
            error_name(call(&c, "/Pressure", None, "GetValue", &()).await),
            "org.freedesktop.DBus.Error.UnknownObject"
        );

        // errors name the path, and nothing is changed
        assert!(svc.set_value("/Nope", Value::I32(1)).await.is_err());
        assert!(svc
            .add_items(vec![
                Item::new("/New", Value::I32(1)),
                Item::new("/Mgmt", Value::I32(1))
            ])
            .await
            .is_err());
        assert_eq!(svc.value("/New"), None);
    })
    .await
}

#[tokio::test]
async fn get_items_answers_fully_when_name_owner_changed_fires() {
    timed(async {
        let bus = TestBus::start().await;
        let watcher = bus.client().await;
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .build()
            .unwrap();
        let mut noc = MessageStream::for_match_rule(rule, &watcher, None)
            .await
            .unwrap();
        let n_items = 30;
        let address = bus.bus();
        let registrar = tokio::spawn(async move {
            let mut services = Vec::new();
            for i in 0..20 {
                let items = (0..n_items)
                    .map(|k| Item::new(format!("/Group{}/Path{k}", k % 3), Value::I32(k)))
                    .collect();
                let name = format!("com.victronenergy.temperature.watch_{i}");
                let (svc, _rx) = Service::register(&address, &name, items, None)
                    .await
                    .unwrap();
                services.push(svc);
            }
            services
        });
        let mut seen = 0;
        while seen < 20 {
            let m = noc.next().await.unwrap().unwrap();
            let (name, _old, new): (String, String, String) = m.body().deserialize().unwrap();
            if !name.starts_with("com.victronenergy.temperature.watch_") || new.is_empty() {
                continue;
            }
            let r = watcher
                .call_method(Some(name.as_str()), "/", None::<&str>, "GetItems", &())
                .await
                .unwrap_or_else(|e| panic!("GetItems on {name} right after NameOwnerChanged: {e}"));
            let all: HashMap<String, HashMap<String, zbus::OwnedVariant>> =
                r.body().deserialize().unwrap();
            assert_eq!(all.len(), n_items as usize, "partial tree from {name}");
            seen += 1;
        }
        let services = registrar.await.unwrap();
        for s in services {
            s.close().await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn two_services_use_two_connections_and_names_are_exclusive() {
    timed(async {
        let bus = TestBus::start().await;
        let (a, _ra) = start(&bus, None).await;
        let (b, _rb) =
            Service::register(&bus.bus(), "com.victronenergy.tank.test_2", items(), None)
                .await
                .unwrap();
        let (ua, ub) = (a.unique_name().unwrap(), b.unique_name().unwrap());
        assert_ne!(ua, ub);
        let c = bus.client().await;
        let owner = |name: &'static str| {
            let c = c.clone();
            async move {
                let r = c
                    .call_method(
                        Some("org.freedesktop.DBus"),
                        "/org/freedesktop/DBus",
                        Some("org.freedesktop.DBus"),
                        "GetNameOwner",
                        &(name,),
                    )
                    .await
                    .unwrap();
                r.body().deserialize::<String>().unwrap()
            }
        };
        assert_eq!(owner(NAME).await, ua);
        assert_eq!(owner("com.victronenergy.tank.test_2").await, ub);

        // the name is taken while a owns it
        let err = Service::register(&bus.bus(), NAME, items(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(NAME), "{err}");

        // after close it can be registered again
        a.close().await.unwrap();
        let (a2, _r) = Service::register(&bus.bus(), NAME, items(), None)
            .await
            .unwrap();
        assert_eq!(owner(NAME).await, a2.unique_name().unwrap());
        drop(b);
        a2.close().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn bus_address_follows_velib_rule() {
    // Only the rule, not the environment of the test runner, is checked.
    let had = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
    let want = if had {
        BusAddress::Session
    } else {
        BusAddress::System
    };
    assert_eq!(BusAddress::from_env(), want);
}

/// Victron's Python side: dbus-python proxies without `dbus_interface` (VeDbusItemImport),
/// `call_blocking` with interface None (old dbusmonitor), SettingsDevice's AddSettings.
#[tokio::test]
async fn dbus_python_proxies_without_interface_work() {
    let has_dbus = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import dbus"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_dbus {
        eprintln!(
            "SKIP dbus_python_proxies_without_interface_work: /usr/bin/python3 cannot import dbus; \
             install package python3-dbus (scripts/install-test-deps does)"
        );
        return;
    }
    timed(async {
        let bus = TestBus::start().await;
        let _settings = crate::support::TestSettings::start(&bus).await;
        let (_svc, _rx) = start(&bus, None).await;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python/test_vedbus_compat.py");
        let out = tokio::process::Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&bus.address)
            .arg(NAME)
            .kill_on_drop(true)
            .output()
            .await
            .expect("running /usr/bin/python3");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.trim() == "OK",
            "python test failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    })
    .await
}

async fn name_owner_changes(c: &Connection, name: &str) -> MessageStream {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender("org.freedesktop.DBus")
        .interface("org.freedesktop.DBus")
        .member("NameOwnerChanged")
        .arg(0, name)
        .build()
        .unwrap();
    MessageStream::for_match_rule(rule, c, None).await.unwrap()
}

#[tokio::test]
async fn dropping_a_service_without_close_frees_its_name() {
    timed(async {
        let bus = TestBus::start().await;
        let c = bus.client().await;
        let mut changes = name_owner_changes(&c, NAME).await;
        let (svc, _rx) = start(&bus, None).await;
        let m = changes.next().await.unwrap().unwrap();
        let (_, _, new): (String, String, String) = m.body().deserialize().unwrap();
        assert_eq!(Some(new), svc.unique_name());
        drop(svc);
        // The dispatcher is stopped and the connection closes: the bus drops the name.
        let m = changes.next().await.unwrap().unwrap();
        let (_, _, new): (String, String, String) = m.body().deserialize().unwrap();
        assert_eq!(new, "");
    })
    .await
}

#[tokio::test]
async fn an_owner_that_does_not_read_writes_never_blocks_the_dispatcher() {
    timed(async {
        let bus = TestBus::start().await;
        let (svc, _rx_never_read) = start(&bus, None).await;
        let c = bus.client().await;
        let n = dbus_mqtt_devices::dbus::REMOTE_WRITE_QUEUE + 50;
        for i in 0..n {
            let r = call(
                &c,
                "/Temperature",
                None,
                "SetValue",
                &(Variant::F64(i as f64 / 10.0),),
            )
            .await
            .unwrap();
            assert_eq!(r.body().deserialize::<i32>().unwrap(), 0, "write {i}");
        }
        assert_eq!(
            svc.value("/Temperature"),
            Some(Value::F64((n - 1) as f64 / 10.0))
        );
    })
    .await
}
