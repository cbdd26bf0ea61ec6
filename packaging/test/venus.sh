# What a Venus OS device does, for the fake Venus root of
# scripts/test-packaging (sourced by fake-venus.sh; busybox sh): boots with
# a RAM-disk /service filled from /opt/victronenergy/service, USB archives
# unpacked by update-data, svscan, then /data/rc.local; firmware updates that
# replace everything but /data; SetupHelper's PackageManager downloading a
# package; and the Python driver as its setup.sh installs it.
# shellcheck shell=sh
# shellcheck disable=SC2034  # names for the scripts that source this

NAME=dbus-mqtt-devices
DEST=/data/$NAME
# The daemon's data directory, as the binary under test says (its --help
# default), so that the checks keep the user's files where it keeps them.
DATA=$(/bundle/$NAME/bin/x86_64/$NAME --help 2>/dev/null | sed -n 's/.*--data-dir .*\[default: \([^]]*\)\].*/\1/p')
[ -n "$DATA" ] || { echo "venus.sh: cannot tell the daemon's data directory from --help" >&2; exit 1; }
LIVE=/service/$NAME
STICK=/media/sda1
RC_LINE="[ -x $DEST/start-service.sh ] && $DEST/start-service.sh # $NAME"
failed=0

ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; failed=1; }
# check ID DESCRIPTION COMMAND...: one line per check; ID names it in the
# table of packaging/README.md.
check() {
    d="[$1] $2"; shift 2
    if "$@" >/tmp/check.out 2>&1; then ok "$d"; else nok "$d"; sed 's/^/    /' /tmp/check.out; fi
}

# Bounded waits (0.2 s steps).
wait_for() { # wait_for SECONDS COMMAND...
    n=$(($1 * 5)); shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ $n -gt 0 ] || return 1
        sleep 0.2
    done
}
is_up() { svstat "$1" 2>/dev/null | grep -q ': up '; }
wait_up() { wait_for 20 is_up "$1" || { svstat "$1"; return 1; }; }
# Our daemon runs as /service/dbus-mqtt-devices (not the Python driver).
ours_up() { grep -q "bin/\$arch/$NAME" "$LIVE/run" && is_up "$LIVE"; }
svc_pid() { svstat "$1" 2>/dev/null | sed -n 's/.*(pid \([0-9]*\)).*/\1/p'; }
pid_changed() { p=$(svc_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }
wait_restarted() { wait_for 15 pid_changed "$1" "$2"; }
# Up, with the same process for 2 s (a run script that cannot start its
# program is restarted every second).
stays_up() {
    p=$(svc_pid "$1")
    [ -n "$p" ] && sleep 2 && [ "$(svc_pid "$1")" = "$p" ] && return 0
    svstat "$1"; tail -n 10 "/var/log/$NAME/current" | tai64nlocal
    return 1
}
line_count() { grep -cxF "$RC_LINE" /data/rc.local 2>/dev/null || true; }
no_supervise_left() {
    for p in /proc/[0-9]*; do
        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -Eq "^(supervise |multilog .*$NAME|$DEST/|/bin/sh /data/drivers/)" \
            && { echo "left: $(tr '\0' ' ' < "$p/cmdline")"; return 1; }
    done
    return 0
}

# svscan looks for new services every 5 s; Venus' own svscan also rescans
# on SIGALRM. Here a restart makes it scan at once, which keeps the checks
# quick; nothing depends on it but the waiting time.
start_svscan() { svscan /service >/dev/null 2>&1 & SVSCAN=$!; }
kick_svscan() { kill "$SVSCAN"; wait "$SVSCAN" 2>/dev/null; start_svscan; }
stop_all_services() { # what Venus does at shutdown, then svscan is gone
    kill "$SVSCAN" 2>/dev/null; wait "$SVSCAN" 2>/dev/null
    for s in /service/* /service/.[!.]*; do
        [ -d "$s" ] || continue
        svc -dx "$s" 2>/dev/null; [ -d "$s/log" ] && svc -dx "$s/log" 2>/dev/null
    done
    wait_for 10 no_supervise_left
}

# A boot: /service refilled from /opt/victronenergy/service (rcS S03),
# archives on the stick unpacked (rc5 S30), svscan (S95), rc.local (S99).
# The stick's archives go in $STICK.
boot() {
    stop_all_services
    umount /service && mount -t tmpfs tmpfs /service
    cp -a /opt/victronenergy/service/. /service/ 2>/dev/null
    for a in "$STICK"/venus-data-*.tar.gz "$STICK"/venus-data.tar.gz; do
        [ -f "$a" ] && update_data "$a"
    done
    start_svscan
    [ -x /data/rc.local ] && /data/rc.local
    return 0
}

# Venus' update-data for one archive: rc/ into a temporary directory, its
# pre-hook (failure: stop here), the rest into /data, then the post-hook
# with "success" or "extraction-failed".
update_data() { # update_data ARCHIVE
    t=$(mktemp -d)
    # GNU tar, as Venus' (busybox tar here has no --exclude).
    /usr/bin/tar -xzf "$1" -C "$t" rc 2>/dev/null
    if [ -f "$t/rc/pre-hook.sh" ] && ! sh "$t/rc/pre-hook.sh"; then rm -rf "$t"; return 0; fi
    if /usr/bin/tar -xzf "$1" -C /data --exclude rc; then r=success; else r=extraction-failed; fi
    [ -f "$t/rc/post-hook.sh" ] && sh "$t/rc/post-hook.sh" "$r"
    rm -rf "$t"
}

# A firmware update: the root filesystem is new (no /opt/victronenergy/
# service entries of ours, no SetupHelper version markers, no opkg files),
# /data stays; then the device boots.
firmware_update() {
    stop_all_services
    rm -rf /opt/victronenergy/service/* /etc/venus/installedVersion-* /etc/venus/installedModifications
    rm -f /usr/bin/$NAME
    rm -rf /usr/share/doc/$NAME
    boot
}

# After a firmware update SetupHelper's boot hook has PackageManager
# reinstall every package whose installed-version marker is gone.
setuphelper_reinstall() {
    for p in /data/*/; do
        p=${p%/}
        [ -f "$p/setup" ] && [ -f "$p/version" ] && [ ! -f "/etc/venus/installedVersion-${p##*/}" ] \
            && "$p/setup" install runFromPm
    done
    return 0
}

# PackageManager's download of a new version: the tree unpacked into a
# temporary directory, /data/<package> renamed away, the new tree moved in,
# the old one deleted (PackageManager.py GitHubDownload). Installing is a
# separate step (`setup install runFromPm`), later or never.
pm_download() { # pm_download TREE
    rm -rf /data/PmDownloadTemp && mkdir -p /data/PmDownloadTemp
    cp -R "$1" "/data/PmDownloadTemp/$NAME-latest"
    rm -rf "$DEST-temp"
    [ ! -e "$DEST" ] || mv "$DEST" "$DEST-temp"
    mv "/data/PmDownloadTemp/$NAME-latest" "$DEST"
    rm -rf "$DEST-temp" /data/PmDownloadTemp
}

# The Python driver 0.9 as its bin/setup.sh leaves it: files in a versioned
# directory (optionally reached through a link), its service linked into
# /service, two lines in rc.local, older versions' lines commented out.
PY_BASE=/data/drivers/dbus-mqtt-devices-0.9.0
install_python_driver() {
    mkdir -p "$PY_BASE/bin/service/log"
    printf '#!/bin/sh\nwhile :; do sleep 1; done\n' > "$PY_BASE/dbus_mqtt_devices.py"
    # shellcheck disable=SC2016  # for the run script to expand
    printf '#!/bin/sh\necho "*** starting dbus-mqtt-devices ***"\nBASE=%s\nexec 2>&1\nHOME=$BASE exec $BASE/dbus_mqtt_devices.py\n' \
        "$PY_BASE" > "$PY_BASE/bin/service/run"
    printf '#!/bin/sh\nexec 2>&1\nexec multilog t s25000 n4 /var/log/dbus-mqtt-devices\n' > "$PY_BASE/bin/service/log/run"
    printf '#!/bin/sh\nexit 0\n' > "$PY_BASE/bin/setup-dependencies.sh"
    chmod -R a+rwx "$PY_BASE"
    ln -sfn dbus-mqtt-devices-0.9.0 /data/drivers/dbus-mqtt-devices
    [ -f /data/rc.local ] || printf '#!/bin/bash\n' > /data/rc.local
    {
        echo "# /data/drivers/dbus-mqtt-devices-0.8.0/bin/setup-dependencies.sh 2>&1"
        echo "# ln -s /data/drivers/dbus-mqtt-devices-0.8.0/bin/service /service/dbus-mqtt-devices"
        echo "$PY_BASE/bin/setup-dependencies.sh 2>&1"
        echo "ln -s $PY_BASE/bin/service /service/dbus-mqtt-devices"
    } >> /data/rc.local
    chmod 755 /data/rc.local
    ln -s "$PY_BASE/bin/service" /service/dbus-mqtt-devices
}
# A supervise whose directory is in the Python driver's tree.
python_supervise_left() {
    for p in /proc/[0-9]*; do
        case $(readlink "$p/cwd" 2>/dev/null) in "$PY_BASE"/*) return 0 ;; esac
    done
    return 1
}
python_driver_runs() {
    for p in /proc/[0-9]*; do
        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q "^/bin/sh $PY_BASE/dbus_mqtt_devices.py" && return 0
    done
    return 1
}

# The daemon's settings for this root: the test bus and broker.
write_config() {
    mkdir -p "$DATA"
    printf 'dbus-address = "%s"\nmqtt-port = %s\nportal-id = "c0ffee000001"\n' "$BUS" "$MQTT_PORT" > "$DATA/config.toml"
}

# Registers a device as a real one does and prints the device instance the
# daemon answers. The Status is retained, so a daemon that is still starting
# gets it when it subscribes; forget_device clears it.
register() { # register CLIENT_ID
    rm -f /tmp/reply
    stdbuf -oL mosquitto_sub -h 127.0.0.1 -d -p "$MQTT_PORT" -t "device/$1/DBus" -C 1 -W 30 > /tmp/reply 2>&1 &
    sub=$!
    wait_for 10 grep -q SUBACK /tmp/reply || { cat /tmp/reply >&2; return 1; }
    mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -t "device/$1/Status" \
        -m "{\"clientId\":\"$1\",\"connected\":1,\"version\":\"v1\",\"services\":{\"t1\":\"temperature\"}}"
    wait "$sub" || {
        { echo "no reply for $1:"; cat /tmp/reply; tail -n 15 "/var/log/$NAME/current" | tai64nlocal; } >&2
        return 1
    }
    sed -n 's/.*"deviceInstance": *{"t1": *\([0-9][0-9]*\)}.*/\1/p' /tmp/reply
}
forget_device() { mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -t "device/$1/Status" -n; }
