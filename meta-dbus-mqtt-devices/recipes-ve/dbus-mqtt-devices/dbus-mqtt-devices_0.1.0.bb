SUMMARY = "MQTT devices as Venus OS D-Bus services"
DESCRIPTION = "Lets Wi-Fi devices (ESP32 and the like) register themselves \
               as Venus OS D-Bus services over MQTT. Runs as the daemontools \
               service dbus-mqtt-devices; settings in \
               /data/dbus-mqtt-devices/config.toml."
HOMEPAGE = "https://github.com/dbus-mqtt-devices/dbus-mqtt-devices"
BUGTRACKER = "https://github.com/dbus-mqtt-devices/dbus-mqtt-devices/issues"
SECTION = "net"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - MIT, the common license text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# Needs rustc >= 1.89 (rust-version in Cargo.toml): scarthgap's own 1.75 is
# too old; Venus builds add a newer Rust (meta-lts-mixin-rust).
# The release assets pin SRCREV to the tagged commit; see README.md.
SRC_URI = "git://github.com/dbus-mqtt-devices/dbus-mqtt-devices.git;protocol=https;branch=main"
# nooelint: oelint.vars.autorev - pinned in the release asset of the layer
SRCREV = "${AUTOREV}"
S = "${WORKDIR}/git"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates daemontools

# Device build: TLS to the broker, without the PC simulator.
CARGO_BUILD_FLAGS:append = " --no-default-features --features tls --bin ${BPN}"

DAEMONTOOLS_RUN = "softlimit -d 100000000 -s 2000000 ${bindir}/${BPN}"
DAEMONTOOLS_LOG_DIR = "${DAEMONTOOLS_LOG_DIR_PREFIX}/${PN}"

# Only the daemon; cargo_do_install would also install the crate's rlib.
do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/${BPN} ${D}${bindir}/${BPN}
}
