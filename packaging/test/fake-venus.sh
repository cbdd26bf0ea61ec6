#!/bin/sh
# Runs inside the fake Venus root made by scripts/test-packaging (busybox sh,
# chroot, tmpfs /service, svscan running): install, reboot, upgrade, USB
# install, uninstall, install without rc.local, unsupported machine.
# Prints "ok - ..." / "not ok - ..." per step; exits 1 if any step failed.
# shellcheck disable=SC2329  # functions are called through check()
set -u
NAME=dbus-mqtt-devices
DEST=/data/$NAME
LIVE=/service/$NAME
RC_LINE="[ -x $DEST/start-service.sh ] && $DEST/start-service.sh # $NAME"
failed=0

ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; failed=1; }
check() { # check DESCRIPTION COMMAND...
    d=$1; shift
    if "$@" >/tmp/check.out 2>&1; then ok "$d"; else nok "$d"; sed 's/^/    /' /tmp/check.out; fi
}
# Bounded wait until supervise runs the service (svscan rescans every 5 s).
wait_up() {
    i=0
    while [ "$i" -lt 20 ]; do
        svstat "$1" 2>/dev/null | grep -q ': up ' && return 0
        sleep 1; i=$((i + 1))
    done
    svstat "$1"; return 1
}
svc_pid() { svstat "$1" | sed -n 's/.*(pid \([0-9]*\)).*/\1/p'; }
line_count() { grep -cxF "$RC_LINE" /data/rc.local || true; }
no_supervise_left() {
    for p in /proc/[0-9]*; do
        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -Eq "^(supervise |multilog .*$NAME|$DEST/)" \
            && { echo "left: $(tr '\0' ' ' < "$p/cmdline")"; return 1; }
    done
    return 0
}
start_svscan() { svscan /service >/dev/null 2>&1 & SVSCAN=$!; }
stop_all_services() { # what Venus does at shutdown, then kill svscan
    kill "$SVSCAN"; wait "$SVSCAN" 2>/dev/null
    for s in /service/* /service/.[!.]*; do
        [ -d "$s" ] || continue
        svc -dx "$s" 2>/dev/null; [ -d "$s/log" ] && svc -dx "$s/log" 2>/dev/null
    done
    i=0
    while [ "$i" -lt 10 ] && ! no_supervise_left >/dev/null; do sleep 1; i=$((i + 1)); done
}

start_svscan
echo "localsettings data" > /data/conf/settings.xml

echo "# install"
check "install.sh runs under busybox sh" sh /bundle/$NAME/install.sh
check "binary picked for this machine (x86_64 in the test bundle)" test "$(readlink $DEST/$NAME)" = bin/x86_64/$NAME
check "rc.local created with #!/bin/bash" test "$(head -n 1 /data/rc.local)" = '#!/bin/bash'
check "rc.local is executable" test -x /data/rc.local
check "rc.local has the boot line once" test "$(line_count)" = 1
check "service is up" wait_up $LIVE
check "log service is up" wait_up $LIVE/log
check "multilog writes /var/log/$NAME/current" sh -c "i=0; while [ ! -s /var/log/$NAME/current ] && [ \$i -lt 10 ]; do sleep 1; i=\$((i+1)); done; test -s /var/log/$NAME/current"
check "second install is idempotent" sh /bundle/$NAME/install.sh
check "rc.local still has the line once" test "$(line_count)" = 1

echo "# user config and daemon data"
echo '# user config' > $DEST/config.toml
echo state > $DEST/state-marker

echo "# reboot"
stop_all_services
umount /service && mount -t tmpfs tmpfs /service
start_svscan
check "rc.local runs" /data/rc.local
check "service is back after reboot" wait_up $LIVE
check "log service is back after reboot" wait_up $LIVE/log

echo "# upgrade"
old_pid=$(svc_pid $LIVE)
cp -R /bundle/$NAME /tmp/upgrade
echo v99.0.0 > /tmp/upgrade/version
check "install.sh of a newer bundle" sh /tmp/upgrade/install.sh
check "version upgraded" test "$(cat $DEST/version)" = v99.0.0
check "config.toml kept" grep -qx '# user config' $DEST/config.toml
check "daemon data kept" test -f $DEST/state-marker
check "service restarted (new pid)" sh -c "i=0; while [ \$i -lt 10 ]; do p=\$(svstat $LIVE | sed -n 's/.*(pid \([0-9]*\)).*/\1/p'); [ -n \"\$p\" ] && [ \"\$p\" != '$old_pid' ] && exit 0; sleep 1; i=\$((i+1)); done; exit 1"
check "service is up after upgrade" wait_up $LIVE
check "rc.local has the line once after upgrade" test "$(line_count)" = 1

echo "# USB install (venus-data.tar.gz)"
check "venus-data.tar.gz unpacks into /data" tar -xzf /bundle/venus-data.tar.gz -C /data
check "rc/post-hook.sh installs in place" sh /data/rc/post-hook.sh
check "version back to the bundle's" test "$(cat $DEST/version)" = "$(cat /bundle/$NAME/version)"
check "config.toml kept after USB install" grep -qx '# user config' $DEST/config.toml
check "service is up after USB install" wait_up $LIVE
rm -rf /data/rc /data/$NAME-install.log

echo "# uninstall"
check "uninstall.sh" sh $DEST/uninstall.sh
check "service gone from /service" sh -c "! ls -a /service | grep -q $NAME"
check "no supervise left" no_supervise_left
check "files gone" test ! -e $DEST
check "rc.local line gone" test "$(line_count)" = 0
check "localsettings data kept" grep -qx 'localsettings data' /data/conf/settings.xml
check "uninstall again is harmless" sh /bundle/$NAME/uninstall.sh

echo "# install after rc.local was deleted"
rm -f /data/rc.local
check "install.sh" sh /bundle/$NAME/install.sh
check "rc.local recreated with #!/bin/bash" test "$(head -n 1 /data/rc.local)" = '#!/bin/bash'
check "rc.local executable" test -x /data/rc.local
check "rc.local has the line once" test "$(line_count)" = 1
check "service is up" wait_up $LIVE
check "uninstall --keep-config keeps config.toml" sh -c "echo k > $DEST/config.toml && sh $DEST/uninstall.sh --keep-config && test -f $DEST/config.toml && test ! -e $DEST/bin"
rm -rf $DEST

echo "# other machines (uname stub)"
for m in armv7l:armv7 aarch64:aarch64; do
    check "${m%%:*} picks bin/${m#*:}" sh -c "PATH=/unamebin:\$PATH FAKE_UNAME_M=${m%%:*} sh /bundle/$NAME/install.sh >/dev/null; test \"\$(readlink $DEST/$NAME)\" = bin/${m#*:}/$NAME"
    sh $DEST/uninstall.sh >/dev/null 2>&1
done
check "unsupported machine is refused, nothing installed" sh -c "! PATH=/unamebin:\$PATH FAKE_UNAME_M=mips sh /bundle/$NAME/install.sh && test ! -e $DEST"

echo "# opkg package (maintainer scripts run as opkg runs them)"
ipk=$(ls /bundle/*_armv7ahf-vfp.ipk)
mkdir -p /tmp/ipk && (cd /tmp/ipk && ar x "$ipk" && mkdir ctl && tar -xzf control.tar.gz -C ctl)
ipk_install() {
    sh /tmp/ipk/ctl/preinst "$1" && tar -xzf /tmp/ipk/data.tar.gz -C / && sh /tmp/ipk/ctl/postinst configure
}
check "offline root (\$D set): postinst leaves /service alone" sh -c "D=/tmp/offline sh /tmp/ipk/ctl/postinst configure && test ! -e $LIVE"
check "install: preinst, unpack, postinst" ipk_install install
check "service copied from /opt/victronenergy/service" cmp /opt/victronenergy/service/$NAME/run $LIVE/run
check "service is up" wait_up $LIVE
check "log service is up" wait_up $LIVE/log
old_pid=$(svc_pid $LIVE)
check "upgrade: preinst, unpack, postinst" ipk_install upgrade
check "service restarted after upgrade" sh -c "i=0; while [ \$i -lt 10 ]; do p=\$(svstat $LIVE | sed -n 's/.*(pid \([0-9]*\)).*/\1/p'); [ -n \"\$p\" ] && [ \"\$p\" != '$old_pid' ] && exit 0; sleep 1; i=\$((i+1)); done; exit 1"
check "service is up after upgrade" wait_up $LIVE
check "remove: prerm" sh /tmp/ipk/ctl/prerm remove
tar -tzf /tmp/ipk/data.tar.gz | while read -r f; do [ -f "/$f" ] && rm -f "/$f"; done
check "remove: postrm" sh /tmp/ipk/ctl/postrm remove
check "service gone after remove" sh -c "! ls -a /service | grep -q $NAME"
check "no supervise left after remove" no_supervise_left

stop_all_services
check "nothing left running" no_supervise_left
exit $failed
