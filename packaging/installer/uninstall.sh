#!/bin/sh
# Removes dbus-mqtt-devices installed by install.sh: stops and removes the
# service, removes the /data/rc.local line, the files in /data/dbus-mqtt-devices
# and the logs. Device instances and names kept by localsettings are left
# alone, so a reinstall finds them again.
# Usage: sh uninstall.sh [--keep-config]   (--keep-config keeps config.toml)
set -eu

NAME=dbus-mqtt-devices
DEST=/data/$NAME
RC_LOCAL=/data/rc.local
RC_LINE="[ -x $DEST/start-service.sh ] && $DEST/start-service.sh # $NAME"

say() { echo "$NAME uninstall: $*"; }

keep_config=no
case "${1:-}" in
    --keep-config) keep_config=yes ;;
    "") ;;
    *) echo "usage: sh uninstall.sh [--keep-config]" >&2; exit 2 ;;
esac

# The boot line first, so a reboot during uninstall does not bring it back.
if [ -f "$RC_LOCAL" ] && grep -qxF "$RC_LINE" "$RC_LOCAL"; then
    tmp=$RC_LOCAL.$NAME.tmp
    grep -vxF "$RC_LINE" "$RC_LOCAL" > "$tmp" || true
    cat "$tmp" > "$RC_LOCAL"
    rm -f "$tmp"
    say "removed the boot line from $RC_LOCAL"
fi

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

if [ -d "$DEST" ]; then
    if [ "$keep_config" = yes ] && [ -f "$DEST/config.toml" ]; then
        find "$DEST" -mindepth 1 -maxdepth 1 ! -name config.toml -exec rm -rf {} \;
        say "removed $DEST except config.toml"
    else
        rm -rf "$DEST"
        say "removed $DEST"
    fi
fi
rm -rf "/var/log/$NAME"
say "done; localsettings (device instances and names) are kept"
