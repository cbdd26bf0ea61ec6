#!/bin/sh
# rc/post-hook.sh of venus-data.tar.gz: Venus OS runs it at boot after
# unpacking the archive from a USB stick or SD card into /data, with
# "success" or "extraction-failed" (Venus before 3.10: no argument).
# rc/pre-hook.sh has already decided that this version is to be installed.
NAME=dbus-mqtt-devices
LOG=/data/$NAME-install.log
case ${1:-success} in
    success) sh /data/$NAME/install.sh >> "$LOG" 2>&1 ;;
    *) echo "$(date '+%Y-%m-%d %H:%M:%S') $NAME USB install: unpacking failed ($1); not installing" >> "$LOG" ;;
esac
