//! Our settings service (localsettings twin) and the settings client, on a private bus.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use dbus_mqtt_devices::dbus::{Value, BUSITEM_INTERFACE};
use dbus_mqtt_devices::settings::{
    self, parse_class_and_instance, SettingSpec, SettingsClient, SettingsService,
    SETTINGS_INTERFACE, SETTINGS_SERVICE,
};
use zbus::{Connection, Message, OwnedVariant, Variant};

use crate::support::{timed, TestBus, TestSettings};

async fn call<B>(
    c: &Connection,
    path: &str,
    iface: Option<&str>,
    member: &str,
    body: &B,
) -> zbus::Result<Message>
where
    B: serde::Serialize + zbus::DynamicType,
{
    c.call_method(Some(SETTINGS_SERVICE), path, iface, member, body)
        .await
}

fn entry(path: &str, default: Variant<'static>) -> HashMap<&'static str, Variant<'static>> {
    HashMap::from([
        ("path", Variant::Str(path.to_string().into())),
        ("default", default),
    ])
}

/// Raw AddSettings on `object`; returns (path, error, value) per entry.
async fn add_raw(
    c: &Connection,
    object: &str,
    entries: Vec<HashMap<&'static str, Variant<'static>>>,
) -> Vec<(String, i32, Value)> {
    let r = call(
        c,
        object,
        Some(SETTINGS_INTERFACE),
        "AddSettings",
        &(entries,),
    )
    .await
    .unwrap();
    assert_eq!(r.body().signature().to_string_no_parens(), "aa{sv}");
    let results: Vec<HashMap<String, OwnedVariant>> = r.body().deserialize().unwrap();
    results
        .iter()
        .map(|e| {
            let path: String = e["path"].try_clone().unwrap().try_into().unwrap();
            let error: i32 = e["error"].try_clone().unwrap().try_into().unwrap();
            (path, error, Value::from_variant(&e["value"]).unwrap())
        })
        .collect()
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

#[tokio::test]
async fn class_and_vrm_instance_takes_first_free_and_readd_keeps() {
    timed(async {
        let bus = TestBus::start().await;
        let _settings = TestSettings::start(&bus).await;
        let client = SettingsClient::connect(&bus.bus()).await.unwrap();
        let spec = |id: &str, default: &str| {
            SettingSpec::new(
                format!("/Settings/Devices/{id}/ClassAndVrmInstance"),
                s(default),
            )
        };
        let r = client
            .add_settings(&[
                spec("mqtt_a", "temperature:20"),
                spec("mqtt_b", "temperature:20"),
            ])
            .await
            .unwrap();
        assert_eq!(r[0].value, s("temperature:20"));
        assert_eq!(r[1].value, s("temperature:21"));
        assert_eq!((r[0].error, r[1].error), (0, 0));
        // re-add with another preferred instance: the stored value wins
        let r = client
            .add_settings(&[spec("mqtt_b", "temperature:5")])
            .await
            .unwrap();
        assert_eq!(r[0].clone().into_result().unwrap(), s("temperature:21"));
        let (class, n) = parse_class_and_instance(r[0].value.as_str().unwrap()).unwrap();
        assert_eq!((class.as_str(), n), ("temperature", 21));
        // relative paths on a group object, as in the localsettings lab capture
        let c = bus.client().await;
        let r = add_raw(
            &c,
            "/Settings/Devices",
            vec![entry(
                "mqtt_c/ClassAndVrmInstance",
                Variant::Str("temperature:20".into()),
            )],
        )
        .await;
        assert_eq!(
            r,
            vec![("mqtt_c/ClassAndVrmInstance".into(), 0, s("temperature:22"))]
        );
        // SetValue applies the rule too: asking for a taken number gives the next free one
        client
            .set_value(
                "/Settings/Devices/mqtt_c/ClassAndVrmInstance",
                s("temperature:20"),
            )
            .await
            .unwrap();
        assert_eq!(
            client
                .get_value("/Settings/Devices/mqtt_c/ClassAndVrmInstance")
                .await
                .unwrap(),
            s("temperature:22")
        );
        client
            .set_value(
                "/Settings/Devices/mqtt_c/ClassAndVrmInstance",
                s("temperature:30"),
            )
            .await
            .unwrap();
        assert_eq!(
            client
                .get_value("/Settings/Devices/mqtt_c/ClassAndVrmInstance")
                .await
                .unwrap(),
            s("temperature:30")
        );
    })
    .await
}

#[tokio::test]
async fn add_settings_error_codes_match_localsettings() {
    timed(async {
        let bus = TestBus::start().await;
        let _settings = TestSettings::start(&bus).await;
        let c = bus.client().await;
        let mut out_of_range = entry("/Settings/Lab/Range", Variant::I32(50));
        out_of_range.insert("min", Variant::I32(0));
        out_of_range.insert("max", Variant::I32(10));
        let r = add_raw(
            &c,
            "/",
            vec![
                entry("/Settings/Lab/Int", Variant::I32(1)),
                entry("/_bad", Variant::I32(1)),
                entry("/Settings/Lab/U", Variant::U32(1)),
                entry("/Settings/Lab/Bad-Name", Variant::I32(1)),
                entry("/Settings/Lab/Int", Variant::Str("x".into())),
                entry(
                    "/Settings/Devices/d/ClassAndVrmInstance",
                    Variant::Str("nocolon".into()),
                ),
                out_of_range,
                entry("/Settings/Lab", Variant::I32(1)),
                entry("/Lab/NoPrefix", Variant::I32(1)),
                entry("/Settings/Lab/Big", Variant::I64(1 << 40)),
                entry("/Settings/Lab/Float", Variant::F64(0.5)),
            ],
        )
        .await;
        let codes: Vec<i32> = r.iter().map(|(_, e, _)| *e).collect();
        assert_eq!(codes, vec![0, -2, -3, -4, -5, -6, -7, -8, -9, 0, 0]);
        assert_eq!(r[0].2, Value::I32(1));
        assert_eq!(r[9].2, Value::I64(1 << 40));
        assert_eq!(r[1].0, "/_bad");

        // AddSetting(ssvsvv) on a group, and its unknown-type code
        let body = (
            "MyUnique1",
            "ClassAndVrmInstance",
            Variant::Str("battery:1".into()),
            "s",
            Variant::Str("".into()),
            Variant::Str("".into()),
        );
        let r = call(
            &c,
            "/Settings/Devices",
            Some(SETTINGS_INTERFACE),
            "AddSetting",
            &body,
        )
        .await
        .unwrap();
        assert_eq!(r.body().deserialize::<i32>().unwrap(), 0);
        let body = (
            "Lab",
            "T",
            Variant::I32(1),
            "u",
            Variant::I32(0),
            Variant::I32(0),
        );
        let r = call(&c, "/Settings", None, "AddSetting", &body)
            .await
            .unwrap();
        assert_eq!(r.body().deserialize::<i32>().unwrap(), -3);
        let client = SettingsClient::connect(&bus.bus()).await.unwrap();
        assert_eq!(
            client
                .get_value("/Settings/Devices/MyUnique1/ClassAndVrmInstance")
                .await
                .unwrap(),
            s("battery:1")
        );
        // the client turns a non-zero code into an error naming the path and code
        let r = client
            .add_settings(&[SettingSpec::new("/Settings/_x", Value::I32(1))])
            .await
            .unwrap();
        let err = r[0].clone().into_result().unwrap_err();
        assert!(
            matches!(&err, settings::Error::Rejected { path, code: -2 } if path == "/Settings/_x"),
            "{err}"
        );

        // the Settings methods without an interface header too
        let r = call(
            &c,
            "/",
            None,
            "AddSettings",
            &(vec![entry("/Settings/Lab/NoIface", Variant::I32(7))],),
        )
        .await
        .unwrap();
        assert_eq!(r.body().signature().to_string_no_parens(), "aa{sv}");
        for iface in [None, Some(SETTINGS_INTERFACE)] {
            let r = call(&c, "/Settings/Lab/NoIface", iface, "GetSilent", &())
                .await
                .unwrap();
            assert!(!r.body().deserialize::<bool>().unwrap());
            let r = call(&c, "/Settings/Lab/NoIface", iface, "GetAttributes", &())
                .await
                .unwrap();
            assert_eq!(r.body().signature().to_string_no_parens(), "vvvi");
        }
        let err = call(
            &c,
            "/",
            Some(BUSITEM_INTERFACE),
            "AddSettings",
            &(Vec::<HashMap<&str, Variant<'static>>>::new(),),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("UnknownMethod"), "{err}");

        // RemoveSettings: 0 removed, -1 not there
        let removed = client
            .remove_settings(&["/Settings/Lab/Int".into(), "/Settings/Lab/Nope".into()])
            .await
            .unwrap();
        assert_eq!(removed, vec![0, -1]);
    })
    .await
}

/// Introspection as localsettings describes its objects: `/` is a BusItem root, a group a
/// BusItem node with the Settings methods, a setting a BusItem value with its default.
#[tokio::test]
async fn introspection_describes_root_groups_and_settings() {
    timed(async {
        let bus = TestBus::start().await;
        let _settings = TestSettings::start(&bus).await;
        let client = SettingsClient::connect(&bus.bus()).await.unwrap();
        let path = "/Settings/Lab/Offset";
        client
            .add_settings(&[SettingSpec::new(path, Value::F64(0.0))])
            .await
            .unwrap();
        let c = bus.client().await;
        let xml = |object: &'static str| {
            let c = c.clone();
            async move {
                let r = call(&c, object, None, "Introspect", &()).await.unwrap();
                r.body().deserialize::<String>().unwrap()
            }
        };
        let root = xml("/").await;
        assert!(
            root.contains("GetItems")
                && root.contains("ItemsChanged")
                && root.contains("<node name=\"Settings\"/>"),
            "{root}"
        );
        let group = xml("/Settings/Lab").await;
        assert!(
            group.contains(BUSITEM_INTERFACE)
                && group.contains(SETTINGS_INTERFACE)
                && group.contains("AddSettings")
                && group.contains("<node name=\"Offset\"/>")
                && !group.contains("GetItems"),
            "{group}"
        );
        let setting = xml(path).await;
        assert!(
            setting.contains("SetValue") && setting.contains("GetDefault"),
            "{setting}"
        );
        let err = call(&c, "/Settings/Nope", None, "Introspect", &())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UnknownObject"), "{err}");
    })
    .await
}

#[tokio::test]
async fn set_value_converts_checks_min_max_and_answers_busitem_calls() {
    timed(async {
        let bus = TestBus::start().await;
        let _settings = TestSettings::start(&bus).await;
        let client = SettingsClient::connect(&bus.bus()).await.unwrap();
        let path = "/Settings/Lab/Offset";
        let r = client
            .add_settings(&[SettingSpec::new(path, Value::F64(0.0))
                .with_limits(Value::F64(-10.0), Value::F64(10.0))])
            .await
            .unwrap();
        assert_eq!(r[0].error, 0);
        let c = bus.client().await;
        for iface in [None, Some(BUSITEM_INTERFACE)] {
            let set = |v: Variant<'static>| {
                let c = c.clone();
                async move {
                    let r = call(&c, path, iface, "SetValue", &(v,)).await.unwrap();
                    r.body().deserialize::<i32>().unwrap()
                }
            };
            assert_eq!(set(Variant::I32(2)).await, 0);
            let r = call(&c, path, iface, "GetValue", &()).await.unwrap();
            let v: OwnedVariant = r.body().deserialize().unwrap();
            assert_eq!(*v, Variant::F64(2.0));
            assert_eq!(set(Variant::F64(11.0)).await, -1);
            assert_eq!(set(Variant::Str("abc".into())).await, -1);
            assert_eq!(set(Variant::Str("3.5".into())).await, 0);
            let r = call(&c, path, iface, "GetText", &()).await.unwrap();
            assert_eq!(r.body().deserialize::<String>().unwrap(), "3.5");
            for (m, want) in [("GetMin", -10.0), ("GetMax", 10.0), ("GetDefault", 0.0)] {
                let r = call(&c, path, iface, m, &()).await.unwrap();
                let v: OwnedVariant = r.body().deserialize().unwrap();
                assert_eq!(*v, Variant::F64(want), "{m}");
            }
            assert_eq!(set(Variant::F64(1.0)).await, 0);
        }
        let err = client.set_value(path, Value::F64(99.0)).await.unwrap_err();
        assert!(
            matches!(&err, settings::Error::Rejected { code: -1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(path), "{err}");

        // groups: GetValue is a{sv} in a variant with relative keys; GetItems on / is exact
        let r = call(&c, "/Settings/Lab", None, "GetValue", &())
            .await
            .unwrap();
        let v: OwnedVariant = r.body().deserialize().unwrap();
        assert_eq!(v.value_signature().to_string(), "a{sv}");
        assert_eq!(
            Value::from_variant(&v).unwrap(),
            Value::Dict([("Offset".to_string(), Value::F64(1.0))].into())
        );
        let r = call(&c, "/", None, "GetItems", &()).await.unwrap();
        assert_eq!(r.body().signature().to_string_no_parens(), "a{sa{sv}}");
        let items: HashMap<String, HashMap<String, OwnedVariant>> = r.body().deserialize().unwrap();
        let keys: BTreeSet<&str> = items[path].keys().map(String::as_str).collect();
        assert_eq!(keys, ["Default", "Max", "Min", "Text", "Value"].into());

        // wrong interface → UnknownMethod, unknown object → UnknownObject
        let err = call(&c, path, Some(SETTINGS_INTERFACE), "GetValue", &())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UnknownMethod"), "{err}");
        let err = call(&c, "/Settings/Nope", None, "GetValue", &())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UnknownObject"), "{err}");
    })
    .await
}

#[tokio::test]
async fn settings_persist_across_a_restart() {
    timed(async {
        let bus = TestBus::start().await;
        let mut settings = TestSettings::start(&bus).await;
        let client = SettingsClient::connect(&bus.bus()).await.unwrap();
        let name = "/Settings/Devices/mqtt_a/CustomName";
        let inst = "/Settings/Devices/mqtt_a/ClassAndVrmInstance";
        client
            .add_settings(&[
                SettingSpec::new(name, s("")),
                SettingSpec::new(inst, s("temperature:20")),
            ])
            .await
            .unwrap();
        client.set_value(name, s("Fridge")).await.unwrap();
        settings.restart(&bus).await;
        client
            .wait_for_service(Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(settings.dir.path().join("settings.json").exists());
        assert_eq!(client.get_value(name).await.unwrap(), s("Fridge"));
        // re-adding after the restart keeps the stored values
        let r = client
            .add_settings(&[
                SettingSpec::new(name, s("")),
                SettingSpec::new(
                    "/Settings/Devices/mqtt_b/ClassAndVrmInstance",
                    s("temperature:20"),
                ),
            ])
            .await
            .unwrap();
        assert_eq!(r[0].value, s("Fridge"));
        assert_eq!(r[1].value, s("temperature:21"));
        assert_eq!(client.get_value(inst).await.unwrap(), s("temperature:20"));
    })
    .await
}

#[tokio::test]
async fn subscribe_sees_changes_made_by_another_connection() {
    timed(async {
        let bus = TestBus::start().await;
        let _settings = TestSettings::start(&bus).await;
        let client = SettingsClient::connect(&bus.bus()).await.unwrap();
        let mine = "/Settings/Devices/mqtt_a/CustomName";
        let other = "/Settings/Devices/mqtt_ab/CustomName";
        client
            .add_settings(&[
                SettingSpec::new(mine, s("")),
                SettingSpec::new(other, s("")),
            ])
            .await
            .unwrap();
        let mut changes = client.subscribe("/Settings/Devices/mqtt_a");
        let c = bus.client().await;
        // a change outside the prefix (a sibling with a longer name) first, then ours
        let r = call(&c, other, None, "SetValue", &(Variant::Str("x".into()),))
            .await
            .unwrap();
        assert_eq!(r.body().deserialize::<i32>().unwrap(), 0);
        let r = call(
            &c,
            mine,
            None,
            "SetValue",
            &(Variant::Str("Fridge".into()),),
        )
        .await
        .unwrap();
        assert_eq!(r.body().deserialize::<i32>().unwrap(), 0);
        let change = changes.recv().await.unwrap();
        assert_eq!((change.path.as_str(), change.value), (mine, s("Fridge")));
    })
    .await
}

#[tokio::test]
async fn wait_for_service_returns_when_settings_appear_and_times_out_otherwise() {
    timed(async {
        let bus = TestBus::start().await;
        let client = SettingsClient::connect(&bus.bus()).await.unwrap();
        let err = client
            .wait_for_service(Some(Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert!(matches!(err, settings::Error::Timeout(_)), "{err}");
        let waiter = {
            let client = client.clone();
            tokio::spawn(
                async move { client.wait_for_service(Some(Duration::from_secs(10))).await },
            )
        };
        let settings = TestSettings::start(&bus).await;
        waiter.await.unwrap().unwrap();
        // only one settings service per bus
        let dir = tempfile::tempdir().unwrap();
        let err = SettingsService::start(&bus.bus(), dir.path())
            .await
            .unwrap_err();
        assert!(matches!(err, settings::Error::NameTaken), "{err}");
        drop(settings);
    })
    .await
}
