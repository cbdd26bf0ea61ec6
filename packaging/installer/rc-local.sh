# Our one line in /data/rc.local, the boot hook Venus OS runs late in every
# boot (#!/bin/bash, run when executable; recovery images delete it, other
# drivers add their own lines). Sourced by install.sh, uninstall.sh and the
# SetupHelper setup script; busybox sh and bash.
# shellcheck shell=sh

RC_LOCAL=${RC_LOCAL:-/data/rc.local}
RC_LINE="[ -x /data/dbus-mqtt-devices/start-service.sh ] && /data/dbus-mqtt-devices/start-service.sh # dbus-mqtt-devices"

# Replaces rc.local by FILE in one step (a power cut leaves the old or the
# new one, never half of it), executable as Venus requires.
rc_local_replace() { # rc_local_replace FILE
    chmod 755 "$1"
    mv -f "$1" "$RC_LOCAL"
}

# True when our line is in rc.local (as a line of its own, not commented).
rc_local_has_line() {
    grep -qxF "$RC_LINE" "$RC_LOCAL" 2>/dev/null
}

# Adds our line once. A script that ends with `exit` (e.g. `exit 0`) gets
# the line before that exit, where it runs; otherwise it goes at the end.
# Creates rc.local when missing; moves a line of ours found after the exit.
# Prints whether it changed anything.
rc_local_add_line() {
    [ -f "$RC_LOCAL" ] || printf '#!/bin/bash\n' > "$RC_LOCAL"
    tmp=$RC_LOCAL.dbus-mqtt-devices.tmp
    awk -v line="$RC_LINE" '
        $0 == line { next }
        { text[++n] = $0 }
        !/^[[:space:]]*(#|$)/ { last = n; ends_with_exit = ($0 ~ /^[[:space:]]*exit([[:space:];]|$)/) }
        END {
            for (i = 1; i <= n; i++) {
                if (ends_with_exit && i == last) print line
                print text[i]
            }
            if (!ends_with_exit) print line
        }' "$RC_LOCAL" > "$tmp"
    if cmp -s "$tmp" "$RC_LOCAL"; then
        rm -f "$tmp"
        chmod 755 "$RC_LOCAL"
    else
        rc_local_replace "$tmp"
        echo "added the boot line to $RC_LOCAL"
    fi
}

# Removes our line. Prints whether it did.
rc_local_remove_line() {
    rc_local_has_line || return 0
    tmp=$RC_LOCAL.dbus-mqtt-devices.tmp
    grep -vxF "$RC_LINE" "$RC_LOCAL" > "$tmp" || true
    rc_local_replace "$tmp"
    echo "removed the boot line from $RC_LOCAL"
}
