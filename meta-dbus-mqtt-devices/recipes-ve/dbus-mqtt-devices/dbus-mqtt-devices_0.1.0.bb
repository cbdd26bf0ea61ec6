SUMMARY = "MQTT devices as Venus OS D-Bus services"
DESCRIPTION = "Lets Wi-Fi devices (ESP32 and the like) register themselves \
               as Venus OS D-Bus services over MQTT. Runs as the daemontools \
               service dbus-mqtt-devices; settings in \
               /data/conf/dbus-mqtt-devices/config.toml."
HOMEPAGE = "https://github.com/dbus-mqtt-devices/dbus-mqtt-devices"
BUGTRACKER = "https://github.com/dbus-mqtt-devices/dbus-mqtt-devices/issues"
SECTION = "net"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=87d4da1ff692d3a293693a66e3653172"

# A fixed commit, so that parsing and building need no network once the
# sources are in DL_DIR. Its Cargo.lock is the one the crate list below was
# made from (scripts/update-crates-inc pins it and checks it).
SRC_URI = "git://github.com/dbus-mqtt-devices/dbus-mqtt-devices.git;protocol=https;nobranch=1"
SRCREV = "1a540632b07a45c35a0b0af2bf12ab4f2abbaf56"
S = "${WORKDIR}/git"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates daemontools

# rust-version of Cargo.toml. A layer set with an older Rust (scarthgap's
# own is 1.75; meta-lts-mixins scarthgap/rust sets RUSTVERSION to a newer
# one) skips this recipe with this reason instead of failing in do_compile;
# the prebuilt recipe of the release layer then provides the package.
DMD_RUST_VERSION = "1.89"
SKIP_RECIPE[dbus-mqtt-devices] = "${@'needs Rust >= ${DMD_RUST_VERSION}, this build has ${RUSTVERSION}' if bb.utils.vercmp_string_op((d.getVar('RUSTVERSION') or '${DMD_RUST_VERSION}').rstrip('%'), '${DMD_RUST_VERSION}', '<') else ''}"

# Device build: TLS to the broker, without the PC simulator.
CARGO_BUILD_FLAGS:append = " --no-default-features --features tls --bin ${BPN}"

# 100 MB data segment (heap and thread stacks), 2 MB main stack; no address
# space limit (softlimit() would scale it for aarch64).
DAEMONTOOLS_RUN = "${@softlimit(d, data=100000000, stack=2000000)} ${bindir}/${BPN}"
DAEMONTOOLS_LOG_DIR = "${DAEMONTOOLS_LOG_DIR_PREFIX}/${PN}"

# Only the daemon; cargo_do_install would also install the crate's rlib.
do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/${BPN} ${D}${bindir}/${BPN}
}
