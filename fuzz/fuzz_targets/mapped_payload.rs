//! Device messages through a device of a built-in preset (the first byte
//! chooses it; then chunks split at 0xff, each a head byte choosing input,
//! retained flag and clock step, and a payload): every number on D-Bus is
//! finite, and an energy counter never goes down unless a reset was logged.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dbus_mqtt_devices::mapped::fuzz::source_payload(data));
