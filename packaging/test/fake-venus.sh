#!/bin/sh
# Runs inside the fake Venus root made by scripts/test-packaging (busybox sh,
# chroot, tmpfs /service, a private D-Bus with a localsettings-like settings
# service, mosquitto): every install route end to end, the way a device
# lives through them: reboots, firmware updates, package updates,
# uninstalls. Prints "ok - [ID] ..." / "not ok - [ID] ..." per check (the IDs
# are the cells of the table in packaging/README.md); exits 1 if any failed.
# In /bundle: the release bundle, venus-data.tar.gz, the SetupHelper tree and
# its USB archive, the armv7 ipk (all with the host build as bin/x86_64).
# shellcheck disable=SC2329  # functions are called through check()
# shellcheck source=packaging/test/venus.sh
. /test/venus.sh
set -u

BUNDLE=/bundle/$NAME
SH_TREE=/bundle/setuphelper/$NAME
USER_FILES="config.toml catalog.toml devices.toml devices.d/boat.toml presets.d/mine.toml state.json"

# --- the system: D-Bus with settings, the broker, svscan --------------------
mkdir -p /run/dbus-test /data/conf "$STICK"
BUS=unix:path=/run/dbus-test/bus
dbus-daemon --session --nofork --nopidfile --address="$BUS" >/tmp/dbus.log 2>&1 &
wait_for 10 busctl --address="$BUS" list || { echo "no D-Bus"; exit 1; }
# localsettings keeps its settings in /data/conf; so does our stand-in.
"$BUNDLE/bin/x86_64/$NAME" settings-service --dbus-address "$BUS" --data-dir /data/conf >/tmp/settings.log 2>&1 &
settings_up() { busctl --address="$BUS" list --no-legend | grep -q '^com\.victronenergy\.settings '; }
wait_for 15 settings_up || { cat /tmp/settings.log; exit 1; }
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MQTT_PORT" > /tmp/mosquitto.conf
/usr/sbin/mosquitto -c /tmp/mosquitto.conf >/tmp/mosquitto.log 2>&1 &
wait_for 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -t probe -n || { echo "no broker"; cat /tmp/mosquitto.log; exit 1; }
start_svscan

T0=$(date +%s)
section() { echo "# $* ($(( $(date +%s) - T0 )) s)"; }
has_user_files() { # has_user_files DIR
    for f in $USER_FILES; do [ -f "$1/$f" ] || { echo "missing $1/$f; there:"; ls -lR "$1"; return 1; }; done
}

put_user_files() { # put_user_files DIR: what a user and the daemon keep there
    mkdir -p "$1/devices.d" "$1/presets.d"
    for f in catalog.toml devices.toml devices.d/boat.toml presets.d/mine.toml; do echo "# mine: $f" > "$1/$f"; done
    [ -f "$1/config.toml" ] || { write_config && [ "$1" = "$DATA" ] || mv "$DATA/config.toml" "$1/"; }
    [ -f "$1/state.json" ] || echo '{"format": 1, "devices": []}' > "$1/state.json"
}

section "plain installer"
printf '#!/bin/bash\n/data/other-driver/start.sh\nexit 0\n\n' > /data/rc.local
chmod 755 /data/rc.local
check plain.install "install.sh runs under busybox sh" sh "$BUNDLE/install.sh"
check plain.install "program in $DEST, binary for this machine (x86_64 in the test bundle)" test -x "$DEST/bin/x86_64/$NAME"
check plain.install "the daemon keeps your files in $DATA, outside what updates replace" test "$DATA" = "/data/conf/$NAME"
check plain.rc-exit "rc.local ending in 'exit 0': our line before it" \
    sh -c "test \"\$(grep -v '^\$' /data/rc.local | tail -n 2 | head -n 1)\" = '$RC_LINE' && tail -n 2 /data/rc.local | grep -qx 'exit 0'"
check plain.rc-exit "other lines of rc.local kept" grep -qx /data/other-driver/start.sh /data/rc.local
check plain.install "rc.local is executable" test -x /data/rc.local
kick_svscan
check plain.install "service is up" wait_up "$LIVE"
check plain.install "log service is up" wait_up "$LIVE/log"
check plain.install "multilog writes /var/log/$NAME/current" wait_for 10 test -s "/var/log/$NAME/current"
check plain.install "second install is idempotent, one boot line" sh -c "sh $BUNDLE/install.sh && test \$(grep -cxF '$RC_LINE' /data/rc.local) = 1"

section "the files of an older version move to $DATA"
rm -rf "$DATA"
put_user_files "$DEST"
rmdir "$DATA"
old_pid=$(svc_pid "$LIVE")
check plain.data-move "install.sh over a version that kept them in $DEST" sh "$BUNDLE/install.sh"
check plain.data-move "service restarted" wait_restarted "$LIVE" "$old_pid"
check plain.data-move "the daemon moved every user file to $DATA" wait_for 15 has_user_files "$DATA"
check plain.data-move "none left in $DEST" sh -c "for f in $USER_FILES; do test ! -e $DEST/\$f || exit 1; done"
check plain.data-move "package files stayed" test -f "$DEST/version"
check plain.data-move "one log line says so" wait_for 10 grep -q "moved config.toml, catalog.toml, devices.toml, devices.d, presets.d, state.json from $DEST to $DATA" "/var/log/$NAME/current"

section "devices get instances (kept by localsettings)"
inst_a=$(register fe001) || inst_a=""
inst_b=$(register fe002) || inst_b=""
check plain.instances "two devices registered (instances $inst_a, $inst_b)" test -n "$inst_a" -a -n "$inst_b" -a "$inst_a" != "$inst_b"

section "reboot"
boot
kick_svscan
check plain.reboot "service is back after a reboot (rc.local ran our line)" wait_up "$LIVE"
check plain.reboot "user files kept" has_user_files "$DATA"

section "firmware update"
firmware_update
kick_svscan
check plain.firmware "service is back after a firmware update" wait_up "$LIVE"
check plain.firmware "user files kept" has_user_files "$DATA"

section "upgrade"
old_pid=$(svc_pid "$LIVE")
cp -R "$BUNDLE" /tmp/upgrade && echo v99.0.0 > /tmp/upgrade/version
check plain.upgrade "install.sh of a newer bundle" sh /tmp/upgrade/install.sh
check plain.upgrade "version upgraded" test "$(cat "$DEST/version")" = v99.0.0
check plain.upgrade "service restarted" wait_restarted "$LIVE" "$old_pid"
check plain.upgrade "user files kept" has_user_files "$DATA"
check plain.upgrade "one boot line" test "$(line_count)" = 1
rm -rf /tmp/upgrade

section "uninstall --keep-config"
cp "$DATA/catalog.toml" /tmp/catalog.before
echo '# not moved yet' > "$DEST/catalog.toml"   # as if the new version never started
check plain.keep-config "uninstall.sh --keep-config" sh "$DEST/uninstall.sh" --keep-config
check plain.keep-config "every user file kept in $DATA" has_user_files "$DATA"
check plain.keep-config "catalog.toml unchanged" cmp "$DATA/catalog.toml" /tmp/catalog.before
check plain.keep-config "a user file still in $DEST is kept too" grep -qx '# not moved yet' "$DEST/catalog.toml"
check plain.keep-config "program removed" test ! -e "$DEST/bin" -a ! -e "$DEST/version"
check plain.keep-config "service gone, no supervise left" sh -c ". /test/venus.sh; ! ls -a /service | grep -q $NAME && no_supervise_left"
check plain.keep-config "boot line gone" test "$(line_count)" = 0
rm -f "$DEST/catalog.toml"; rmdir "$DEST"

section "uninstall"
check plain.uninstall "install again" sh "$BUNDLE/install.sh"
kick_svscan
check plain.uninstall "service is up" wait_up "$LIVE"
check plain.uninstall "uninstall.sh" sh "$DEST/uninstall.sh"
check plain.uninstall "service gone from /service" sh -c "! ls -a /service | grep -q $NAME"
check plain.uninstall "no supervise left" no_supervise_left
check plain.uninstall "program and user files gone" test ! -e "$DEST" -a ! -e "$DATA"
check plain.uninstall "boot line gone, other lines kept" sh -c "test $(line_count) = 0 && grep -qx /data/other-driver/start.sh /data/rc.local"
check plain.uninstall "localsettings kept" test -s /data/conf/settings.json
check plain.uninstall "uninstall again is harmless" sh "$BUNDLE/uninstall.sh"

section "reinstall: the same device instances"
check plain.instances "install again" sh "$BUNDLE/install.sh"
write_config
kick_svscan
forget_device fe001; forget_device fe002
again_b=$(register fe002) || again_b=""
again_a=$(register fe001) || again_a=""
check plain.instances "same instances after uninstall and reinstall ($again_a, $again_b; registered in the other order)" \
    test "$again_a" = "$inst_a" -a "$again_b" = "$inst_b"
forget_device fe001; forget_device fe002

section "install after rc.local was deleted (recovery image)"
sh "$DEST/uninstall.sh" >/dev/null
rm -f /data/rc.local
check plain.no-rclocal "install.sh" sh "$BUNDLE/install.sh"
check plain.no-rclocal "rc.local recreated with #!/bin/bash, executable, our line once" \
    sh -c "test \"\$(head -n 1 /data/rc.local)\" = '#!/bin/bash' && test -x /data/rc.local && test $(line_count) = 1"
sh "$DEST/uninstall.sh" >/dev/null

section "other machines (uname stub)"
for m in armv7l:armv7 aarch64:aarch64; do
    check plain.machines "${m%%:*}: installs bin/${m#*:}, the run script starts it" sh -c "PATH=/unamebin:\$PATH FAKE_UNAME_M=${m%%:*} sh $BUNDLE/install.sh >/dev/null && test -x $DEST/bin/${m#*:}/$NAME && PATH=/unamebin:\$PATH FAKE_UNAME_M=${m%%:*} sh $DEST/service/run | grep -q ' $DEST/bin/${m#*:}/$NAME\$'"
    sh "$DEST/uninstall.sh" >/dev/null 2>&1
done
check plain.machines "unsupported machine is refused, nothing installed" sh -c "! PATH=/unamebin:\$PATH FAKE_UNAME_M=mips sh $BUNDLE/install.sh && test ! -e $DEST"

section "USB stick: venus-data.tar.gz"
cp /bundle/venus-data.tar.gz "$STICK/"
stop_all_services
umount /service && mount -t tmpfs tmpfs /service
# The boot steps one by one: unpacking runs before svscan.
check usb.install "unpacked and installed at boot while svscan is not running yet, without waiting for it" \
    timeout 10 sh -c ". /test/venus.sh; update_data $STICK/venus-data.tar.gz"
check usb.install "installed" test -x "$DEST/bin/x86_64/$NAME" -a "$(line_count)" = 1
start_svscan; /data/rc.local
check usb.install "service comes up once svscan runs" wait_up "$LIVE"
write_config
echo '# changed since' >> "$DEST/config.toml.example"
boot
kick_svscan
check usb.once "a stick left in: the next boot does not unpack it again" grep -q '# changed since' "$DEST/config.toml.example"
check usb.once "the install log says why" grep -q "is installed and the archive holds" /data/$NAME-install.log
check usb.once "service up" wait_up "$LIVE"
cp -R "$BUNDLE" /tmp/upgrade && echo v99.0.0 > /tmp/upgrade/version && sh /tmp/upgrade/install.sh >/dev/null
boot
check usb.once "a newer version installed since is not downgraded" test "$(cat "$DEST/version")" = v99.0.0
echo v0.0.1 > "$DEST/version"   # as if an older version were installed
boot
kick_svscan
check usb.update "an archive newer than the installed version installs at boot" test "$(cat "$DEST/version")" = "$(cat "$BUNDLE/version")"
check usb.update "service up, user files kept" sh -c ". /test/venus.sh; wait_up $LIVE && test -f $DATA/config.toml"
rm -rf /tmp/upgrade "${STICK:?}"/*
sh "$DEST/uninstall.sh" >/dev/null
check usb.failed "unpacking failed: the post-hook installs nothing" \
    sh -c "t=\$(mktemp -d) && tar -xzf /bundle/venus-data.tar.gz -C \$t rc && sh \$t/rc/post-hook.sh extraction-failed && test ! -e $LIVE -a \$(grep -cxF '$RC_LINE' /data/rc.local) = 0 && grep -q 'unpacking failed' /data/$NAME-install.log"
rm -f /data/$NAME-install.log

section "the Python driver"
install_python_driver
kick_svscan
check python.refuse "the Python driver runs (test setup)" wait_for 15 python_driver_runs
cp /data/rc.local /tmp/rc.before
check python.refuse "install.sh without a terminal refuses" sh -c "! sh $BUNDLE/install.sh </dev/null"
check python.refuse "nothing changed: its service, rc.local, no files of ours" \
    sh -c ". /test/venus.sh; python_driver_runs && test -L $LIVE && cmp /data/rc.local /tmp/rc.before && test ! -e $DEST"
check python.ask "on a terminal it asks; 'y' replaces the Python driver" \
    python3 -c '
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", sys.argv[1]])
out, sent = b"", False
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    out += data
    if not sent and b"[y/N]" in out:
        os.write(fd, b"y\n")
        sent = True
_, status = os.waitpid(pid, 0)
print(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status) if sent else 1)
' "$BUNDLE/install.sh"
check python.migrate "its process stopped, no supervise of it left" sh -c ". /test/venus.sh; ! python_driver_runs && ! python_supervise_left"
kick_svscan
check python.migrate "ours runs in its place" wait_for 20 ours_up
check python.migrate "its two boot lines removed, commented lines kept, ours added" \
    sh -c "! grep -q '^[^#].*dbus-mqtt-devices-0.9.0' /data/rc.local && grep -q '^# ln -s /data/drivers/dbus-mqtt-devices-0.8.0' /data/rc.local && grep -qxF '$RC_LINE' /data/rc.local"
check python.migrate "its files kept" test -f "$PY_BASE/dbus_mqtt_devices.py"
sh "$DEST/uninstall.sh" >/dev/null
install_python_driver
kick_svscan
wait_for 15 python_driver_runs
check python.migrate "install.sh --migrate (no terminal)" sh "$BUNDLE/install.sh" --migrate </dev/null
kick_svscan
check python.migrate "--migrate: Python driver stopped, ours up" sh -c ". /test/venus.sh; ! python_driver_runs && wait_for 20 ours_up"
sh "$DEST/uninstall.sh" >/dev/null
check python.commented "only commented-out lines of an old driver: install.sh goes ahead" sh "$BUNDLE/install.sh" </dev/null
sh "$DEST/uninstall.sh" >/dev/null

section "SetupHelper (PackageManager)"
mkdir -p /data/SetupHelper/HelperResources /etc/venus
cp /test/setuphelper/IncludeHelpers /data/SetupHelper/HelperResources/
put_user_files "$DATA"
sh "$BUNDLE/install.sh" >/dev/null
kick_svscan
wait_up "$LIVE" >/dev/null && stays_up "$LIVE" >/dev/null
check sh.install "PackageManager downloads over an install.sh installation" pm_download "$SH_TREE"
check sh.between "between download and install the service restarts (svc -t) and stays up" sh -c ". /test/venus.sh; p=\$(svc_pid $LIVE); svc -t $LIVE; wait_restarted $LIVE \$p && stays_up $LIVE"
check sh.install "setup install takes over (PackageManager runs it)" "$DEST/setup" install runFromPm
check sh.install "install.sh's boot line removed" test "$(line_count)" = 0
check sh.install "service in /opt/victronenergy/service and /service" test -f /opt/victronenergy/service/$NAME/run -a -f "$LIVE/run"
check sh.install "service is up" wait_up "$LIVE"
check sh.install "user files kept" has_user_files "$DATA"
check sh.install "install.sh refuses to install over the package" sh -c "! sh $BUNDLE/install.sh"
old_pid=$(svc_pid "$LIVE")
cp -R "$SH_TREE" /tmp/sh-new && echo v99.0.0 > /tmp/sh-new/version
check sh.update "PackageManager update: download (directory replaced)" pm_download /tmp/sh-new
check sh.update "user files survive the replaced directory" has_user_files "$DATA"
check sh.update "setup install" "$DEST/setup" install runFromPm
check sh.update "service restarted, up" sh -c ". /test/venus.sh; wait_restarted $LIVE $old_pid && wait_up $LIVE"
check sh.update "user files kept" has_user_files "$DATA"
firmware_update
setuphelper_reinstall >/dev/null
kick_svscan
check sh.firmware "after a firmware update SetupHelper reinstalls it; up" wait_up "$LIVE"
check sh.firmware "user files kept" has_user_files "$DATA"
boot
kick_svscan
check sh.reboot "after a reboot the service comes from /opt/victronenergy/service" wait_up "$LIVE"
cp /bundle/venus-data.tar.gz "$STICK/"
boot
kick_svscan
check usb.conflict "venus-data.tar.gz is not unpacked over a SetupHelper package" \
    sh -c "test -f $DEST/setup -a ! -e $DEST/install.sh && test \$(grep -cxF '$RC_LINE' /data/rc.local) = 0"
check usb.conflict "the package's service still up" wait_up "$LIVE"
rm -f "${STICK:?}"/*
check sh.uninstall "setup uninstall" "$DEST/setup" uninstall runFromPm
check sh.uninstall "service gone, no supervise left" sh -c ". /test/venus.sh; test ! -e $LIVE -a ! -e /opt/victronenergy/service/$NAME && no_supervise_left"
check sh.uninstall "user files kept" has_user_files "$DATA"
install_python_driver
kick_svscan
wait_for 15 python_driver_runs
cp /data/rc.local /tmp/rc.before
rc=0; "$DEST/setup" install runFromPm >/tmp/setup.out 2>&1 || rc=$?
check sh.python "setup with the Python driver installed: package conflict (246)" test "$rc" = 246
check sh.python "the Python driver untouched" sh -c ". /test/venus.sh; python_driver_runs && test -L $LIVE && cmp /data/rc.local /tmp/rc.before"
rm -rf "$DEST" /tmp/sh-new
sh "$BUNDLE/install.sh" --migrate >/dev/null && sh "$DEST/uninstall.sh" >/dev/null

section "SetupHelper package from a USB stick"
put_user_files "$DATA"
cp /bundle/venus-data-$NAME-setuphelper.tar.gz "$STICK/"
boot
check sh.usb "unpacked into /data/$NAME, where PackageManager finds package $NAME" test -f "$DEST/setup" -a -f "$DEST/version"
check sh.usb "setup install" "$DEST/setup" install runFromPm
kick_svscan
check sh.usb "service is up" wait_up "$LIVE"
echo '# changed since' >> "$DEST/config.toml.example"
boot
check sh.usb "the next boot does not unpack it again" grep -q '# changed since' "$DEST/config.toml.example"
check sh.usb "user files kept" has_user_files "$DATA"
"$DEST/setup" uninstall runFromPm >/dev/null
rm -rf "${STICK:?}"/* "$DEST" /data/SetupHelper /data/$NAME-install.log

section "opkg package (maintainer scripts run as opkg runs them)"
put_user_files "$DATA"
ipk=$(ls /bundle/*_armv7ahf-vfp.ipk)
mkdir -p /tmp/ipk && (cd /tmp/ipk && ar x "$ipk" && mkdir ctl && tar -xzf control.tar.gz -C ctl)
ipk_install() {
    sh /tmp/ipk/ctl/preinst "$1" && tar -xzf /tmp/ipk/data.tar.gz -C / && sh /tmp/ipk/ctl/postinst configure
}
check ipk.install "offline root (\$D set): postinst leaves /service alone" sh -c "D=/tmp/offline sh /tmp/ipk/ctl/postinst configure && test ! -e $LIVE"
check ipk.install "install: preinst, unpack, postinst" ipk_install install
check ipk.install "service copied from /opt/victronenergy/service" cmp /opt/victronenergy/service/$NAME/run "$LIVE/run"
kick_svscan
check ipk.install "service is up" wait_up "$LIVE"
check ipk.install "log service is up" wait_up "$LIVE/log"
inst=$(register ipk1)
check ipk.install "it uses $DATA: a device registers (instance $inst)" test -n "$inst"
forget_device ipk1
old_pid=$(svc_pid "$LIVE")
check ipk.update "upgrade: preinst, unpack, postinst" ipk_install upgrade
check ipk.update "service restarted" wait_restarted "$LIVE" "$old_pid"
check ipk.update "user files kept" has_user_files "$DATA"
check ipk.remove "remove: prerm" sh /tmp/ipk/ctl/prerm remove
tar -tzf /tmp/ipk/data.tar.gz | while read -r f; do [ -f "/$f" ] && rm -f "/$f"; done
check ipk.remove "remove: postrm" sh /tmp/ipk/ctl/postrm remove
check ipk.remove "service gone, no supervise left" sh -c ". /test/venus.sh; ! ls -a /service | grep -q $NAME && no_supervise_left"
check ipk.remove "user files kept" has_user_files "$DATA"
ipk_install install >/dev/null
firmware_update
check ipk.firmware "a firmware update removes the package (rootfs)" test ! -e /usr/bin/$NAME -a ! -e "$LIVE"
check ipk.firmware "user files kept" has_user_files "$DATA"

section "end"
stop_all_services
check end "nothing left running" no_supervise_left
exit $failed
