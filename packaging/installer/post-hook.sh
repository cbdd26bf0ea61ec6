#!/bin/sh
# rc/post-hook.sh of venus-data.tar.gz: Venus OS unpacks that archive from a
# USB stick or SD card into /data at boot, then runs this script.
sh /data/dbus-mqtt-devices/install.sh > /data/dbus-mqtt-devices-install.log 2>&1
