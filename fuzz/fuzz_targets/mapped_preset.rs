//! A user preset (`presets.d/*.toml`), checked and used by a device.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dbus_mqtt_devices::mapped::fuzz::preset_file(data));
