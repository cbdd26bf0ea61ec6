#!/bin/sh
# Installs or upgrades dbus-mqtt-devices on a Venus OS device (GX device or
# Raspberry Pi), from an unpacked release bundle:
#   dbus-mqtt-devices/{install.sh,uninstall.sh,start-service.sh,rc-local.sh,
#       python-driver.sh,version,bin/<arch>/dbus-mqtt-devices,service/...}
# The program goes to /data/dbus-mqtt-devices, your files live in
# /data/conf/dbus-mqtt-devices (both kept by firmware updates; an upgrade
# replaces only the program). The service is created in /service and
# recreated at every boot by one line in /data/rc.local. Safe to run again.
#
# Usage: sh install.sh [--migrate]
#   --migrate   replace the Python dbus-mqtt-devices driver when it is
#               installed (stop it, remove its lines from /data/rc.local;
#               its files and its device instances in localsettings stay).
#               Without it the installer asks on a terminal, and refuses
#               otherwise (e.g. from a USB stick at boot).
set -eu

NAME=dbus-mqtt-devices
DEST=/data/$NAME
DATA=/data/conf/$NAME

say() { echo "$NAME install: $*"; }
die() { echo "$NAME install: $*" >&2; exit 1; }

src=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=packaging/installer/rc-local.sh
. "$src/rc-local.sh"
# shellcheck source=packaging/installer/python-driver.sh
. "$src/python-driver.sh"

migrate=ask
case "${1:-}" in
    --migrate) migrate=yes ;;
    "") ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: sh install.sh [--migrate])" ;;
esac

machine=$(uname -m)
case $machine in
    armv7*) arch=armv7 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) arch=$machine ;;  # e.g. x86_64 in PC test setups; release bundles have no such binary
esac
[ -f "$src/bin/$arch/$NAME" ] || die "no binary for this machine ($machine) in $src/bin (it has: $(cd "$src/bin" 2>/dev/null && echo *)); GX devices need the armv7 or aarch64 one from the release bundle"

# Everything that can refuse comes before the first change.
if [ -f "$DEST/setup" ] && [ -d "$DEST/services" ]; then
    die "$DEST is a SetupHelper package; update or remove it with PackageManager instead"
fi
replace_python=no
if py_driver_found; then
    if [ "$migrate" = ask ] && [ -t 0 ] && [ -t 1 ]; then
        echo "The Python dbus-mqtt-devices driver is installed in $(py_driver_dir)."
        echo "Replace it? Its service is stopped and its lines in $RC_LOCAL are removed;"
        printf 'its files and your device instances and names (localsettings) stay. [y/N] '
        read -r answer || answer=
        case $answer in y|Y|yes|YES) migrate=yes ;; esac
    fi
    [ "$migrate" = yes ] || die "the Python dbus-mqtt-devices driver is installed in $(py_driver_dir) (same service name); nothing was changed. Run 'sh $src/install.sh --migrate' to replace it (see the README, 'Migrating from the Python driver')"
    replace_python=yes
fi

mkdir -p "$DEST/bin/$arch" "$DEST/service/log" "$DATA"

# Copy one file via a temporary name so a running binary is never overwritten.
put() { # put SRC DEST MODE
    [ "$1" -ef "$2" ] && return 0
    cp "$1" "$2.new"
    chmod "$3" "$2.new"
    mv -f "$2.new" "$2"
}
put "$src/bin/$arch/$NAME" "$DEST/bin/$arch/$NAME" 755
for f in install.sh uninstall.sh start-service.sh; do put "$src/$f" "$DEST/$f" 755; done
for f in rc-local.sh python-driver.sh version config.toml.example LICENSE; do put "$src/$f" "$DEST/$f" 644; done
put "$src/service/run" "$DEST/service/run" 755
put "$src/service/log/run" "$DEST/service/log/run" 755
# Earlier versions started the binary through a link the run script no longer uses.
[ -L "$DEST/$NAME" ] && rm -f "$DEST/$NAME"
say "installed $(cat "$DEST/version") for $arch in $DEST; your files: $DATA"

[ "$replace_python" = no ] || py_driver_retire
rc_local_add_line

# Service: create it, or update the running one and restart it.
live=/service/$NAME
if [ -d "$live" ]; then
    log_changed=no
    cmp -s "$DEST/service/log/run" "$live/log/run" || log_changed=yes
    put "$DEST/service/run" "$live/run" 755
    put "$DEST/service/log/run" "$live/log/run" 755
    [ "$log_changed" = no ] || svc -t "$live/log" 2>/dev/null || true
    svc -t "$live" 2>/dev/null || true
    say "restarted $live"
else
    "$DEST/start-service.sh"
fi

# During a USB install at boot svscan is not running yet: it starts the
# service when it comes up. Otherwise wait (bounded) to report the state.
if ! pidof svscan >/dev/null 2>&1; then
    say "svscan is not running yet; it starts $live when it does"
    exit 0
fi
i=0
while [ $i -lt 20 ]; do
    if svok "$live" 2>/dev/null && svstat "$live" | grep -q ': up '; then
        say "$(svstat "$live")"
        say "logs: tail -F /var/log/$NAME/current | tai64nlocal"
        exit 0
    fi
    sleep 1
    i=$((i + 1))
done
say "$live is not running yet; svscan starts it within seconds (check with: svstat $live)"
