//! The `dbus-mqtt-devices` binary (see the library's `binary` module).

fn main() -> std::process::ExitCode {
    dbus_mqtt_devices::main()
}
