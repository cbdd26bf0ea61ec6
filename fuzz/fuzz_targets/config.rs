//! `config.toml`.
#![no_main]
use dbus_mqtt_devices_fuzz::{properties, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = text(data) {
        properties::config_text(t);
    }
});
