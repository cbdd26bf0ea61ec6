//! One JSON value, as a device sends it: converted for a path of each kind,
//! written back as a reply (Python's json.dumps), and as an `lwt_value`.
#![no_main]
use dbus_mqtt_devices_fuzz::properties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    properties::json_value(&value);
    properties::pyjson_value(&value);
    properties::lwt_value(&value);
});
