# The Python dbus-mqtt-devices driver (freakent/dbus-mqtt-devices, up to
# 0.9) as its bin/setup.sh installs it, and how to retire it. Sourced by
# install.sh (busybox sh) and by the SetupHelper setup script (bash).
#
# Its setup.sh, run from wherever the release was unpacked (usually
# /data/drivers/dbus-mqtt-devices-0.9.0, sometimes through a
# dbus-mqtt-devices link; it resolves the real path), does three things:
#   - links /service/dbus-mqtt-devices -> <base>/bin/service (run script:
#     exec <base>/dbus_mqtt_devices.py), the same service name as ours;
#   - appends to /data/rc.local "<base>/bin/setup-dependencies.sh 2>&1" and
#     "ln -s <base>/bin/service /service/dbus-mqtt-devices";
#   - comments out ("# ...") such lines of other versions.
# Its settings are device instances and custom names in localsettings,
# under the same paths this daemon uses; retiring it leaves them alone, and
# its files stay in <base>.
# shellcheck shell=sh

PY_SERVICE=/service/dbus-mqtt-devices
PY_RC_LOCAL=${PY_RC_LOCAL:-/data/rc.local}

# The lines of rc.local that start the Python driver; commented-out lines
# are not matched.
py_rc_lines() {
    [ -f "$PY_RC_LOCAL" ] || return 0
    grep -E '^[[:space:]]*[^#[:space:]].*dbus-mqtt-devices[^[:space:]]*/bin/(service[[:space:]]+/service/dbus-mqtt-devices|setup-dependencies\.sh)' \
        "$PY_RC_LOCAL" || true
}

# True when /service/dbus-mqtt-devices is the Python driver's service.
py_service_running() {
    [ -L "$PY_SERVICE" ] || grep -qs 'dbus_mqtt_devices\.py' "$PY_SERVICE/run"
}

# True when the Python driver is installed (started at boot or now).
py_driver_found() {
    [ -n "$(py_rc_lines)" ] || py_service_running
}

# Where it is installed: from its boot line, else from the service link.
py_driver_dir() {
    base=$(py_rc_lines | sed -n 's|.*ln -s[[:space:]]*\([^[:space:]]*\)/bin/service[[:space:]].*|\1|p' | head -n 1)
    if [ -z "$base" ] && [ -L "$PY_SERVICE" ]; then
        base=$(readlink "$PY_SERVICE" | sed 's|/bin/service/*$||')
    fi
    echo "${base:-unknown}"
}

# Stops the Python driver's service the clean way and removes its boot
# lines from rc.local. Prints what it does; keeps its files and settings.
py_driver_retire() {
    if py_service_running; then
        gone=/service/.dbus-mqtt-devices-python
        rm -f "$gone" 2>/dev/null || rm -rf "$gone"
        # svscan ignores dot names, so it lets go of the service; then stop
        # the driver, then its logger, and wait for both supervisors to exit.
        mv "$PY_SERVICE" "$gone"
        for d in "$gone" "$gone/log"; do
            svc -dx "$d" 2>/dev/null || true
            i=0
            while svok "$d" 2>/dev/null && [ $i -lt 15 ]; do
                sleep 1
                i=$((i + 1))
            done
        done
        # A link into the driver's own directory: remove the link only.
        if [ -L "$gone" ]; then rm -f "$gone"; else rm -rf "$gone"; fi
        echo "stopped the Python driver's service"
    fi
    lines=$(py_rc_lines)
    if [ -n "$lines" ]; then
        tmp=$PY_RC_LOCAL.dbus-mqtt-devices.tmp
        printf '%s\n' "$lines" > "$tmp.remove"
        grep -vxF -f "$tmp.remove" "$PY_RC_LOCAL" > "$tmp" || true
        chmod 755 "$tmp"
        mv -f "$tmp" "$PY_RC_LOCAL"
        rm -f "$tmp.remove"
        echo "removed the Python driver's lines from $PY_RC_LOCAL:"
        printf '    %s\n' "$lines"
    fi
}
