#!/bin/sh
# Removes dbus-mqtt-devices installed by install.sh: stops and removes the
# service, removes its line from /data/rc.local, the program in
# /data/dbus-mqtt-devices, the logs and (unless --keep-config) your files in
# /data/conf/dbus-mqtt-devices. Device instances and names are kept by
# localsettings, so a reinstall finds them again.
# Usage: sh uninstall.sh [--keep-config]
#   --keep-config   keep every file of yours: config.toml, catalog.toml,
#                   devices.toml, devices.d/, presets.d/ and the state file
set -eu

NAME=dbus-mqtt-devices
DEST=/data/$NAME
DATA=/data/conf/$NAME
# The user's files, by name; the daemon moves them from $DEST to $DATA at its
# first start (data_dir.rs), so after an upgrade they may still be in $DEST.
USER_FILES="config.toml catalog.toml devices.toml devices.d presets.d state.json mapped-energy.json"

say() { echo "$NAME uninstall: $*"; }

keep_config=no
case "${1:-}" in
    --keep-config) keep_config=yes ;;
    "") ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "usage: sh uninstall.sh [--keep-config]" >&2; exit 2 ;;
esac

if [ -f "$DEST/setup" ] && [ -d "$DEST/services" ]; then
    echo "$NAME uninstall: $DEST is a SetupHelper package; remove it with PackageManager" >&2
    exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=packaging/installer/rc-local.sh
. "$here/rc-local.sh"

# The boot line first, so a reboot during uninstall does not bring it back.
rc_local_remove_line

# Wait (bounded) until supervise in DIR has exited.
wait_gone() {
    i=0
    while svok "$1" 2>/dev/null && [ $i -lt 15 ]; do
        sleep 1
        i=$((i + 1))
    done
}

# Stop cleanly: svscan ignores dot-dirs, so after the rename it will not
# restart supervise; stop the daemon first, then its logger, so its last
# lines are logged and no supervise is left behind.
for live in /service/$NAME /service/.$NAME.removing; do
    [ -d "$live" ] || continue
    gone=/service/.$NAME.removing
    [ "$live" = "$gone" ] || { rm -rf "$gone"; mv "$live" "$gone"; }
    svc -dx "$gone" 2>/dev/null || true
    wait_gone "$gone"
    svc -dx "$gone/log" 2>/dev/null || true
    wait_gone "$gone/log"
    rm -rf "$gone"
    say "stopped and removed /service/$NAME"
done
rm -rf /service/.$NAME.new

if [ "$keep_config" = yes ]; then
    if [ -d "$DEST" ]; then
        # Everything but the user's files (not moved yet when the new
        # version never started).
        for f in "$DEST"/* "$DEST"/.[!.]*; do
            [ -e "$f" ] || [ -L "$f" ] || continue
            case " $USER_FILES " in *" ${f##*/} "*) continue ;; esac
            rm -rf "$f"
        done
        rmdir "$DEST" 2>/dev/null || say "kept your files in $DEST (they move to $DATA when the daemon next starts)"
    fi
    say "removed the program; kept your files in $DATA"
else
    rm -rf "$DEST" "$DATA"
    say "removed $DEST and $DATA"
fi
rm -rf "/var/log/$NAME"
say "done; localsettings (device instances and names) are kept"
