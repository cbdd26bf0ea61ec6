//! `state.json` in the data directory, then every saved Status replayed.
#![no_main]
use dbus_mqtt_devices_fuzz::{properties, scratch_dir};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| properties::state_file(scratch_dir(), data));
