fn main() {
    println!("dbus-mqtt-devices {}", env!("CARGO_PKG_VERSION"));
}
