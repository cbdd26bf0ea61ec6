#!/bin/sh
# rc/post-hook.sh of venus-data-dbus-mqtt-devices-setuphelper.tar.gz: Venus OS
# runs it at boot after unpacking the SetupHelper package from a USB stick or
# SD card into /data/dbus-mqtt-devices, with "success" or "extraction-failed".
# PackageManager finds the package there and lists it (and installs it when
# its automatic install is on), as it does with its own USB transfers.
NAME=dbus-mqtt-devices
LOG=/data/$NAME-install.log
case ${1:-success} in
    success) msg="unpacked the SetupHelper package into /data/$NAME; install it in PackageManager" ;;
    *) msg="unpacking failed ($1)" ;;
esac
echo "$(date '+%Y-%m-%d %H:%M:%S') $NAME USB install: $msg" >> "$LOG"
