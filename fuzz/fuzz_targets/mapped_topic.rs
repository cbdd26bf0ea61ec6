//! A retained JSON declaration on `dbus-mqtt-devices/mapped/<id>`: every
//! valid device prints back as the same declaration.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dbus_mqtt_devices::mapped::fuzz::declaration_topic(data));
