#!/bin/sh
# rc/pre-hook.sh of our venus-data archives (USB stick or SD card). At every
# boot Venus OS runs it from a temporary copy of the archive's rc/ before
# unpacking the archive into /data; when it fails, Venus neither unpacks nor
# runs the post-hook. So an archive left in the device installs once, and
# never replaces a newer version or the other kind of installation.
# Beside it: dbus-mqtt-devices.version (v1.2.3) and dbus-mqtt-devices.kind
# (installer: venus-data.tar.gz; setuphelper: the SetupHelper package).
here=$(cd "$(dirname "$0")" && pwd)
NAME=dbus-mqtt-devices
DEST=/data/$NAME
LOG=/data/$NAME-install.log

say() { echo "$(date '+%Y-%m-%d %H:%M:%S') $NAME USB install: $*" >> "$LOG"; }
skip() { say "$*; not unpacking this archive"; exit 1; }

# Numeric compare of dotted versions (v1.10.0 > v1.9.3); prints -1, 0 or 1.
version_cmp() {
    echo "$1 $2" | awk '{
        n = split($1, a, /[^0-9]+/); m = split($2, b, /[^0-9]+/)
        for (i = 1; i <= (n > m ? n : m); i++) {
            x = (a[i] == "" ? 0 : a[i]) + 0; y = (b[i] == "" ? 0 : b[i]) + 0
            if (x != y) { print (x < y ? -1 : 1); exit }
        }
        print 0 }'
}

new=$(cat "$here/$NAME.version" 2>/dev/null)
kind=$(cat "$here/$NAME.kind" 2>/dev/null)
[ -n "$new" ] && [ -n "$kind" ] || skip "the archive's rc/ lacks $NAME.version or $NAME.kind"

# The version installed the same way, if any.
old=""
case $kind in
    installer)
        [ ! -f "$DEST/setup" ] || skip "$DEST is a SetupHelper package (managed by PackageManager)"
        old=$(cat "$DEST/version" 2>/dev/null)
        ;;
    setuphelper)
        [ -d /data/SetupHelper ] || skip "SetupHelper is not installed (install it first, or use venus-data.tar.gz)"
        [ ! -f "$DEST/setup" ] || old=$(cat "$DEST/version" 2>/dev/null)
        ;;
    *) skip "unknown kind '$kind'" ;;
esac
if [ -n "$old" ] && [ "$(version_cmp "$new" "$old")" -le 0 ]; then
    skip "$old is installed and the archive holds $new (remove the stick)"
fi
say "installing $new (installed: ${old:-none})"
exit 0
