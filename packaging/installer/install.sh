#!/bin/sh
# Installs or upgrades dbus-mqtt-devices on a Venus OS device (GX device or
# Raspberry Pi), from an unpacked release bundle:
#   dbus-mqtt-devices/{install.sh,uninstall.sh,start-service.sh,version,
#                      bin/<arch>/dbus-mqtt-devices,service/run,service/log/run}
# Everything goes to /data/dbus-mqtt-devices (kept by firmware updates). The
# service is created in /service and recreated at every boot by one line in
# /data/rc.local. Safe to run again; an upgrade keeps config.toml and the
# daemon's data. Usage: sh install.sh
set -eu

NAME=dbus-mqtt-devices
DEST=/data/$NAME
RC_LOCAL=/data/rc.local
RC_LINE="[ -x $DEST/start-service.sh ] && $DEST/start-service.sh # $NAME"

say() { echo "$NAME install: $*"; }
die() { echo "$NAME install: $*" >&2; exit 1; }

src=$(cd "$(dirname "$0")" && pwd)

machine=$(uname -m)
case $machine in
    armv7*) arch=armv7 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) arch=$machine ;;  # e.g. x86_64 in PC test setups; release bundles have no such binary
esac
[ -f "$src/bin/$arch/$NAME" ] || die "no binary for this machine ($machine) in $src/bin (it has: $(cd "$src/bin" 2>/dev/null && echo *)); GX devices need the armv7 or aarch64 one from the release bundle"

# The Python driver (freakent/dbus-mqtt-devices) uses the same service name.
if [ -L /service/$NAME ] || grep -qs '/data/drivers/dbus-mqtt-devices' "$RC_LOCAL"; then
    die "the Python dbus-mqtt-devices driver is installed; remove its /service/$NAME link and its line in $RC_LOCAL first (see the README, 'Migrating from the Python driver'), then run this again"
fi

if [ -f "$DEST/setup" ] && [ -d "$DEST/services" ]; then
    die "$DEST is a SetupHelper package; update or remove it with PackageManager instead"
fi

mkdir -p "$DEST/bin/$arch" "$DEST/service/log"

# Copy one file via a temporary name so a running binary is never overwritten.
put() { # put SRC DEST MODE
    [ "$1" -ef "$2" ] && return 0
    cp "$1" "$2.new"
    chmod "$3" "$2.new"
    mv -f "$2.new" "$2"
}
put "$src/bin/$arch/$NAME" "$DEST/bin/$arch/$NAME" 755
for f in install.sh uninstall.sh start-service.sh; do put "$src/$f" "$DEST/$f" 755; done
put "$src/version" "$DEST/version" 644
[ -f "$src/config.toml.example" ] && put "$src/config.toml.example" "$DEST/config.toml.example" 644
put "$src/service/run" "$DEST/service/run" 755
put "$src/service/log/run" "$DEST/service/log/run" 755
ln -sfn "bin/$arch/$NAME" "$DEST/$NAME"
say "installed $(cat "$DEST/version") for $arch in $DEST"

# Boot hook: /data/rc.local runs at every boot (recovery images delete it).
if [ ! -f "$RC_LOCAL" ]; then
    printf '#!/bin/bash\n' > "$RC_LOCAL"
fi
chmod 755 "$RC_LOCAL"
if ! grep -qxF "$RC_LINE" "$RC_LOCAL"; then
    [ -z "$(tail -c 1 "$RC_LOCAL")" ] || echo >> "$RC_LOCAL"
    echo "$RC_LINE" >> "$RC_LOCAL"
    say "added the boot line to $RC_LOCAL"
fi

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

# Wait (bounded) for svscan to pick it up; during a USB install at boot
# svscan is not running yet and starts it later.
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
say "$live is not running yet; svscan starts it within seconds once it runs (check with: svstat $live)"
