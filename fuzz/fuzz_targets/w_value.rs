//! A `W/` payload through the gateway of `sim`, then SetValue on our items.
#![no_main]
use dbus_mqtt_devices_fuzz::properties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| properties::w_payload(data));
