//! A value of any D-Bus type in `SetValue`, on our BusItem paths and on the
//! settings of our settings service (the bytes choose the type and value).
#![no_main]
use dbus_mqtt_devices_fuzz::properties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = properties::variant_from_bytes(data);
    properties::dbus_value(&raw);
});
