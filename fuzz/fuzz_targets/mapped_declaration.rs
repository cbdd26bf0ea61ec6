//! A mapped-device declaration file (`devices.toml`, `devices.d/*.toml`):
//! every valid device prints back as the same declaration.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dbus_mqtt_devices::mapped::fuzz::declaration_file(data));
