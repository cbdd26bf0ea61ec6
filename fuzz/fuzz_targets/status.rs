//! A `device/<id>/Status` payload.
#![no_main]
use dbus_mqtt_devices_fuzz::properties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| properties::status_payload(data));
