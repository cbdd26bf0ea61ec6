#!/bin/sh
# Creates /service/dbus-mqtt-devices from /data/dbus-mqtt-devices/service when
# it is missing (/service is a RAM disk refilled at every boot); svscan then
# starts it. Called by install.sh and by the line in /data/rc.local.
set -eu
NAME=dbus-mqtt-devices
live=/service/$NAME
[ -d "$live" ] && exit 0
# Copy under a dot name (svscan ignores those) and rename, so svscan never
# sees a half-copied service.
tmp=/service/.$NAME.new
rm -rf "$tmp"
cp -R /data/$NAME/service "$tmp"
mv "$tmp" "$live"
echo "$NAME: created $live"
