# shellcheck shell=sh disable=SC2154,SC2034 # $boot: set by disk-checks.sh; NEXT: read by it
# The Alpine-like guest (x86_64, sourced by /guest/disk-checks.sh after the protocol's
# helpers, at every boot; $boot is the boot's number, kept on the disk). Alpine's docker
# hosts boot with OpenRC; Alpine's packages cannot be had here, so this is Debian 12
# from debootstrap with sysvinit and Debian's openrc (which replaces sysv-rc), on one
# ext4 disk (the whole root). Nothing else registers binfmt_misc entries or mounts
# binfmt_misc: no systemd, no binfmt service, as on Alpine before `rc-update add
# qemu-binfmt`. The emulator is where Alpine's qemu-aarch64 package puts it,
# /usr/bin/qemu-aarch64 (static: the x86_64 host's Debian build). The root holds what a
# user brings: /opt/archctl (the static x86_64 release binary), /opt/install.sh,
# /opt/busybox-arm64.
#
# One QEMU, three boots: boot 1 installs with install.sh (OpenRC path: an init script in
# /etc/init.d, in the default runlevel), then `reboot` (sysvinit, then OpenRC's shutdown;
# QEMU resets in place, the disk keeps its state); boot 2 checks that the service
# registered at boot and that the entry is proven, then `archctl service uninstall`, and
# reboots; boot 3 checks that nothing of the service is left and that nothing registered
# at boot, and powers off.
#
# ARCHCTL_GUEST_BREAK=WORD (archctl.break=WORD on the kernel command line) breaks one
# thing on purpose, to see the checks fail: `no-runlevel` (rc-update del archctl default
# after the install: the script stays, the service does not start at boot),
# `no-emulator` (the emulator is removed before the reboot), `leave-service` (the
# runlevel link is put back after `service uninstall`, as a half-done uninstall would
# leave it).
# What each did when tried (2026-12-03): no-runlevel fails boot1-install-sh-openrc
# (rc-update show default does not list archctl), boot1-service-status ("installed":
# false), boot2-service-registered-at-boot ("status: stopped"),
# boot2-registered-and-proven (no entry) and boot2-chroot-without-emulator (ENOENT);
# no-emulator fails boot2-service-registered-at-boot (no qemu-aarch64 entry),
# boot2-registered-and-proven and boot2-chroot-without-emulator; leave-service fails
# boot2-service-uninstall and boot3-nothing-left-at-boot (/etc/runlevels/default/
# archctl). The product's own bugs, found here: the script's `need localmount` (Debian's
# openrc has no localmount: the service never started, boot2-service-registered-at-boot
# failed), and `service uninstall` leaving /run/openrc/started/archctl
# (boot2-service-uninstall failed; uninstall now zaps the state). The first version of
# the uninstall check matched archctl-guest in `rc-update show -v` (grep -w).

CONFIG=/etc/archctl/config.toml
EMULATOR=/usr/bin/qemu-aarch64
BREAK=$(sed -n 's/.*archctl\.break=\([^ ]*\).*/\1/p' /proc/cmdline)
BINFMT=/proc/sys/fs/binfmt_misc

# archctl_in_openrc: every trace of an archctl service in OpenRC's files (its scripts,
# its runlevels, its state in /run/openrc), one path a line.
archctl_in_openrc() {
  find /etc/init.d /etc/runlevels /etc/conf.d /run/openrc -name 'archctl*' ! -name 'archctl-guest' 2>/dev/null
}
# exec_fails PROGRAM: PROGRAM does not run (ENOEXEC shows as "Exec format error" from
# env; a shell would retry it as a script and print a syntax error).
exec_fails() {
  out=$(env "$1" 2>&1)
  rc=$?
  echo "$1 -> exit $rc: $out"
  [ "$rc" != 0 ] || { why "$1 ran (exit 0, $out): something serves aarch64"; return 1; }
}

# --- boot 1: install.sh on OpenRC ------------------------------------------------------
openrc_guest() {
  command -v openrc openrc-run rc-status rc-update
  [ -x /sbin/openrc-run ] || { why "no /sbin/openrc-run: this is not an OpenRC root"; return 1; }
  rc-status --runlevel
  [ "$(rc-status --runlevel)" = default ] || { why "OpenRC's runlevel is $(rc-status --runlevel), expected default"; return 1; }
  [ ! -d /run/systemd/system ] || { why "systemd is running"; return 1; }
  grep binfmt_misc /proc/mounts && { why "binfmt_misc is mounted before archctl: $(grep binfmt_misc /proc/mounts)"; return 1; }
  [ -z "$(archctl_in_openrc)" ] || { why "an archctl service before the install: $(archctl_in_openrc | tr '\n' ' ')"; return 1; }
  ! command -v archctl || { why "archctl is there before its install"; return 1; }
  ls -l "$EMULATOR"
  [ -x "$EMULATOR" ] || { why "no emulator at $EMULATOR"; return 1; }
  exec_fails /opt/busybox-arm64
}
install_sh() {
  # (the emulator is there, as apk would put it: no Debian package to add)
  sh /opt/install.sh --binary /opt/archctl --no-emulators
  rc=$?
  [ "$rc" = 0 ] || { why "install.sh exited $rc"; return 1; }
  [ "$BREAK" != no-runlevel ] || rc-update del archctl default
  cmp /opt/archctl /usr/local/bin/archctl || { why "/usr/local/bin/archctl is not /opt/archctl"; return 1; }
  [ -f "$CONFIG" ] || { why "install.sh wrote no $CONFIG"; return 1; }
  cat /etc/init.d/archctl
  grep -qx '#!/sbin/openrc-run' /etc/init.d/archctl || { why "/etc/init.d/archctl is not an OpenRC script"; return 1; }
  grep -q '/usr/local/bin/archctl boot' /etc/init.d/archctl || { why "/etc/init.d/archctl does not run /usr/local/bin/archctl boot"; return 1; }
  # OpenRC's own word: the service is in the default runlevel.
  rc-update show default
  rc-update show default | grep -Eq '^ *archctl \| .*default' ||
    { why "rc-update show default does not list archctl: $(rc-update show default | tr '\n' ' ')"; return 1; }
}
service_status() {
  service_status_has '"init":"openrc"' '"installed":true' '"up_to_date":true' '"packaged":false' \
    '"command":"/usr/local/bin/archctl boot"' '"/etc/init.d/archctl"' '"/etc/runlevels/default/archctl"' ||
    return 1
  # install.sh ran `archctl boot` already: the entry serves now.
  tested_emulated archctl aarch64
}
break_before_reboot() {
  [ "$BREAK" = no-emulator ] || return 0
  rm -f "$EMULATOR"
}

# --- boot 2: after the reboot ---------------------------------------------------------
# Only the boot service can have registered: the table is new at every boot.
service_at_boot() {
  rc-status default
  st=$(rc-service archctl status 2>&1)
  echo "rc-service archctl status: $st"
  case $st in *started*) ;; *) why "the archctl service is not started after the reboot: $st"; return 1 ;; esac
  grep binfmt_misc /proc/mounts || { why "binfmt_misc is not mounted after the reboot (archctl boot mounts it)"; return 1; }
  e=$BINFMT/qemu-aarch64
  cat "$e" || { why "no qemu-aarch64 entry after the reboot: $(cd $BINFMT && echo *)"; return 1; }
  grep -qx "interpreter $EMULATOR" "$e" || { why "qemu-aarch64's interpreter is not $EMULATOR: $(grep interpreter "$e")"; return 1; }
  grep -qx 'flags: .*F.*' "$e" || { why "qemu-aarch64 has no F: $(grep flags "$e")"; return 1; }
}
registered_and_proven() {
  archctl --json status >/tmp/status.json || { why "archctl status failed"; return 1; }
  cat /tmp/status.json
  r=$(json_entry /tmp/status.json qemu-aarch64)
  case $r in *'"enabled":true'*'"interpreter_ok":true'*) ;; *) why "qemu-aarch64: not enabled with a good interpreter: ${r:-no entry}"; return 1 ;; esac
  boot_unchanged aarch64 || return 1
  tested_emulated archctl aarch64 || return 1
  expect_output aarch64 /opt/busybox-arm64 uname -m
}
# chroot_no_emulator: protocol.sh.
service_uninstall() {
  archctl --json service uninstall >/tmp/uninstall.json
  rc=$?
  cat /tmp/uninstall.json
  [ "$rc" = 0 ] || { why "archctl service uninstall exited $rc"; return 1; }
  [ "$BREAK" != leave-service ] || ln -s /etc/init.d/archctl /etc/runlevels/default/archctl
  c=$(json_compact /tmp/uninstall.json)
  case $c in *'"installed":false'*) ;; *) why "service uninstall did not report installed false: $c"; return 1 ;; esac
  left=$(archctl_in_openrc)
  [ -z "$left" ] || { why "left in OpenRC after service uninstall: $(echo "$left" | tr '\n' ' ')"; return 1; }
  [ ! -e /var/lib/archctl/service-install.json ] || { why "service uninstall left /var/lib/archctl/service-install.json"; return 1; }
  # (its lines: "  NAME | RUNLEVELS"; archctl-guest is the checks' own service)
  rc-update show -v | grep -E '^ *archctl( |$)' && { why "rc-update still knows archctl"; return 1; }
  archctl --json service status >/tmp/service.json
  c=$(json_compact /tmp/service.json)
  echo "$c"
  case $c in *'"installed":false'*'"paths":[]'* | *'"paths":[]'*'"installed":false'*) ;; *) why "service status after uninstall: $c"; return 1 ;; esac
  # The service goes; what it registered stays until the next boot (nothing is
  # unregistered that the user did not ask to remove).
  [ -f $BINFMT/qemu-aarch64 ] || { why "service uninstall removed the qemu-aarch64 entry"; return 1; }
}

# --- boot 3: after the uninstall ------------------------------------------------------
nothing_at_boot() {
  rc-status default
  left=$(archctl_in_openrc)
  [ -z "$left" ] || { why "an archctl service after the reboot: $(echo "$left" | tr '\n' ' ')"; return 1; }
  if grep -q binfmt_misc /proc/mounts; then
    ls $BINFMT
    [ ! -e $BINFMT/qemu-aarch64 ] || { why "qemu-aarch64 was registered at boot after the uninstall"; return 1; }
  fi
  exec_fails /opt/busybox-arm64 || return 1
  # The binary and its configuration are the user's, and stay.
  { [ -x /usr/local/bin/archctl ] && [ -f "$CONFIG" ]; } || { why "/usr/local/bin/archctl or $CONFIG went with the service"; return 1; }
}

case $boot in
  1)
check boot1-openrc-guest openrc_guest
check boot1-install-sh-openrc install_sh
check boot1-service-status service_status
    break_before_reboot
    NEXT=reboot
    ;;
  2)
check boot2-service-registered-at-boot service_at_boot
check boot2-registered-and-proven registered_and_proven
check boot2-chroot-without-emulator chroot_no_emulator
check boot2-service-uninstall service_uninstall
    NEXT=reboot
    ;;
  3)
check boot3-nothing-left-at-boot nothing_at_boot
    ;;
  *)
    echo "ARCHCTL-STEP select-boot"
    echo "ARCHCTL-FAIL select-boot: boot $boot of this disk, expected 1, 2 or 3"
    ;;
esac
