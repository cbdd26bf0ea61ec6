//! MQTT topics and the client, service and portal ids made from them; two
//! ids on two lines must not share a legal id when both are mapped.
#![no_main]
use dbus_mqtt_devices_fuzz::{properties, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(t) = text(data) else { return };
    properties::topic(t);
    if let Some((a, b)) = t.split_once('\n') {
        properties::two_client_ids(a, b);
    }
});
