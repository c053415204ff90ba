# shellcheck shell=sh disable=SC2154,SC2034 # $boot: set by disk-checks.sh; NEXT: read by it
# The Colima/Lima-like guest (x86_64, sourced by /guest/disk-checks.sh after the
# protocol's helpers, at every boot; $boot is the boot's number, kept on the disk).
# Debian 12 from debootstrap on one ext4 disk (the whole root, /dev/vda), booted with
# systemd, with Debian's qemu-user-static installed when the root was made: its
# /usr/lib/binfmt.d/qemu-*.conf files are loaded by systemd-binfmt at every boot, as on
# a Debian (or Lima/Colima Ubuntu) VM where someone ran `apt install qemu-user-static`.
# The root holds what a user brings: /opt/archctl.deb (packaging/build-deb.sh),
# /opt/archctl (the static x86_64 release binary), /opt/install.sh, /opt/busybox-arm64.
#
# One QEMU, three boots: boot 1 installs the .deb and configures archctl, then
# `systemctl reboot` (QEMU resets in place, the disk keeps its state); boot 2 checks what
# the boot did (systemd-binfmt, then archctl.service), then removes and purges the
# package and installs with install.sh instead, and reboots; boot 3 checks install.sh's unit at boot,
# and powers off.
#
# ARCHCTL_GUEST_BREAK=WORD (archctl.break=WORD on the kernel command line) breaks one
# thing on purpose, to see the checks fail: `disable-service` (systemctl disable
# archctl.service after the install), `no-F-debian` (Debian's qemu-aarch64.conf loses
# its F flag before the reboot), `config-force-no-F` (the configuration says flags = ""
# and force = true: archctl replaces Debian's entries with its own, without F),
# `no-man` (the man page is removed after dpkg -i), `remove-unregisters` (qemu-aarch64
# is unregistered after dpkg -r, as a package that unregistered would), and
# `purge-leaves-cache` (/var/cache/archctl is made after dpkg -P). Tried 2026-12-03:
# no-man fails boot1-dpkg-install (no man page), remove-unregisters fails
# boot2-dpkg-remove and boot2-dpkg-purge (qemu-aarch64 gone), purge-leaves-cache fails
# boot2-dpkg-purge ("left after the purge: /var/cache/archctl"); every other check
# passed in those runs.
# What each did when tried (2026-12-03): disable-service fails boot1-dpkg-install
# ("disabled active"), boot1-service-status ("installed":false) and
# boot2-binfmt-then-archctl-service (archctl.service inactive); Debian's entries still
# serve, so the entry, test and chroot checks pass. no-F-debian fails
# boot2-binfmt-then-archctl-service (archctl.service exit 1: qemu-aarch64 conflicts,
# flags "PO" without F), boot2-registered-and-served (archctl boot exits 1),
# boot2-chroot-without-emulator (ENOENT: no interpreter inside the chroot) and
# boot2-install-sh (its archctl boot exits 1), and in boot 3 (tried again with it) both
# checks (install.sh's archctl.service exits 1; ENOENT in the chroot). config-force-no-F fails
# boot2-registered-and-served (archctl's /usr/bin/qemu-aarch64-static replaced
# Debian's entry), boot2-chroot-without-emulator and boot2-install-sh. Without autofs4 in
# the root (the first version), proc-sys-fs-binfmt_misc.automount failed, systemd-binfmt
# was skipped (ConditionPathIsMountPoint) and boot1-debian-binfmt-at-boot and
# boot2-binfmt-then-archctl-service failed ("ActiveState=inactive").

CONFIG=/etc/archctl/config.toml
DEBIAN_AARCH64=/usr/lib/binfmt.d/qemu-aarch64.conf
BREAK=$(sed -n 's/.*archctl\.break=\([^ ]*\).*/\1/p' /proc/cmdline)

# unit_ok UNIT: the unit ran and succeeded (a oneshot with RemainAfterExit).
unit_ok() {
  st=$(systemctl show -p ActiveState -p Result -p ExecMainStatus "$1" | LC_ALL=C sort | tr '\n' ' ')
  echo "$1: $st"
  [ "$st" = "ActiveState=active ExecMainStatus=0 Result=success " ] ||
    { why "$1 did not succeed: $st"; return 1; }
}

# --- boot 1: Debian's entries, then the .deb ----------------------------------------
debian_binfmt() {
  unit_ok systemd-binfmt.service || return 1
  ls /usr/lib/binfmt.d/ /proc/sys/fs/binfmt_misc/
  [ -f "$DEBIAN_AARCH64" ] || { why "no $DEBIAN_AARCH64 (qemu-user-static not installed?)"; return 1; }
  n=0
  for f in /usr/lib/binfmt.d/qemu-*.conf; do
    # (not $name: check's, in the protocol)
    entry=$(cut -d: -f2 "$f")
    [ -f "/proc/sys/fs/binfmt_misc/$entry" ] || { why "$f is not loaded: no entry $entry"; return 1; }
    n=$((n + 1))
  done
  e=/proc/sys/fs/binfmt_misc/qemu-aarch64
  cat "$e"
  grep -qx 'interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P' "$e" ||
    { why "qemu-aarch64 is not Debian's: $(grep interpreter "$e")"; return 1; }
  grep -qx 'flags: .*F.*' "$e" || { why "Debian's qemu-aarch64 has no F: $(grep flags "$e")"; return 1; }
  [ -f /proc/sys/fs/binfmt_misc/qemu-arm ] || { why "no qemu-arm entry"; return 1; }
  if command -v archctl || [ -e /usr/lib/systemd/system/archctl.service ]; then
    why "archctl is there before its install"
    return 1
  fi
  info "boot1: systemd-binfmt loaded $n Debian qemu-*.conf entries"
}
dpkg_install() {
  dpkg -i /opt/archctl.deb
  rc=$?
  [ "$rc" = 0 ] || { why "dpkg -i exited $rc"; return 1; }
  [ "$BREAK" != disable-service ] || systemctl disable archctl.service
  st="$(systemctl is-enabled archctl.service) $(systemctl is-active archctl.service)"
  [ "$st" = "enabled active" ] || { why "archctl.service after dpkg -i: $st, expected enabled active"; return 1; }
  journalctl --no-pager -o cat -u archctl.service
  journalctl --no-pager -o cat -u archctl.service | grep -q '^archctl boot: ' ||
    { why "the postinst's start of archctl.service logged no 'archctl boot:' line"; return 1; }
  [ "$BREAK" != no-man ] || rm -f /usr/share/man/man1/archctl.1.gz
  for f in /usr/share/man/man1/archctl.1.gz /usr/share/bash-completion/completions/archctl; do
    [ -s "$f" ] || { why "the package installed no $f"; return 1; }
  done
}
write_config() {
  flags=F force=false
  [ "$BREAK" != config-force-no-F ] || { flags='' force=true; }
  cat >"$CONFIG" <<EOF
# The guest's archctl configuration (tests/guests/x86_64-systemd.sh)
[binfmt]
architectures = ["aarch64", "arm"]
flags = "$flags"
verify = true
force = $force
EOF
  archctl config show
  out=$(archctl --json config show) || { why "archctl config show failed"; return 1; }
  c=$(echo "$out" | tr -d ' \n')
  case $c in *'"aarch64","arm"'*) ;; *) why "config show does not list aarch64, arm: $c"; return 1 ;; esac
  case $c in *'"verify":true'*) ;; *) why "config show: verify is not true: $c"; return 1 ;; esac
}
service_status() {
  service_status_has '"init":"systemd"' '"installed":true' '"up_to_date":true' '"packaged":true' \
    '"command":"/usr/bin/archctl boot"' || return 1
  # The JSON has no enablement field: systemd's own word (the package's wants link).
  st=$(systemctl is-enabled archctl.service)
  [ "$st" = enabled ] || { why "systemctl is-enabled archctl.service: $st"; return 1; }
}
break_before_reboot() {
  [ "$BREAK" = no-F-debian ] || return 0
  sed -i 's/:OPF$/:OP/' "$DEBIAN_AARCH64"
  cat "$DEBIAN_AARCH64"
}

# --- boot 2: after the reboot ---------------------------------------------------------
disk_kept() {
  dpkg-query -W -f '${db:Status-Abbrev} ${Version}\n' archctl || { why "archctl is not installed any more"; return 1; }
  grep -qx 'architectures = \["aarch64", "arm"\]' "$CONFIG" || { why "$CONFIG lost the configuration of boot 1"; return 1; }
}
# units_in_order: systemd-binfmt (Debian's entries) ran, then archctl.service (archctl
# boot) with $CONFIG, both fine, this boot; sets $binfmt_end, $archctl_start and $line.
units_in_order() {
  unit_ok systemd-binfmt.service || return 1
  unit_ok archctl.service || return 1
  binfmt_end=$(systemctl show -p ExecMainExitTimestampMonotonic --value systemd-binfmt.service)
  archctl_start=$(systemctl show -p ExecMainStartTimestampMonotonic --value archctl.service)
  echo "systemd-binfmt exited at $binfmt_end us, archctl.service started at $archctl_start us"
  if [ "$binfmt_end" -le 0 ] || [ "$archctl_start" -lt "$binfmt_end" ]; then
    why "archctl.service started ($archctl_start us) before systemd-binfmt finished ($binfmt_end us)"
    return 1
  fi
  line=$(journalctl -b --no-pager -o cat -u archctl.service | grep '^archctl boot: ')
  echo "$line"
  case $line in *"($CONFIG)"*) ;; *) why "archctl.service logged no 'archctl boot: ... ($CONFIG)' line this boot"; return 1 ;; esac
}
boot_units() {
  units_in_order || return 1
  info "boot2: systemd-binfmt done at $((binfmt_end / 1000)) ms, archctl.service started at $((archctl_start / 1000)) ms: $line"
}
# The configured architectures are served, and by which entry.
registered() {
  archctl --json status >/tmp/status.json || { why "archctl status failed"; return 1; }
  cat /tmp/status.json
  for a in aarch64 arm; do
    r=$(json_entry /tmp/status.json "qemu-$a")
    case $r in *'"enabled":true'*'"interpreter_ok":true'*) ;; *) why "qemu-$a: not enabled with a good interpreter: ${r:-no entry}"; return 1 ;; esac
  done
  # Run boot again (idempotent): which entry serves each architecture, and why.
  boot_unchanged aarch64 || return 1
  interp=$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)
  # (from the JSON as printed: json_compact drops the blanks inside the note too)
  eq=$(tr -d '\n' </tmp/boot.json | grep -o '"arch": *"aarch64"[^}]*' | sed -n 's/.*"equivalent": *"\([^"]*\)".*/\1/p')
  info "boot2: aarch64 is served by qemu-aarch64, interpreter $interp (archctl boot: unchanged, ${eq:-no equivalent note})"
  # Coexistence: systemd-binfmt loaded Debian's entry first; archctl keeps it as an
  # equivalent rather than replacing it (force = false).
  [ "$interp" = /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] ||
    { why "qemu-aarch64 is not Debian's entry (systemd-binfmt's) after the boot: interpreter $interp"; return 1; }
  [ -n "$eq" ] || { why "archctl boot reports Debian's qemu-aarch64 without an equivalent note: $r"; return 1; }
}
archctl_test() { tested_emulated archctl aarch64 arm; }
# chroot_no_emulator: protocol.sh.
# The other way in: remove, then purge the package (the entries stay: the package
# unregisters nothing the user did not ask to remove), then install.sh.
dpkg_remove() {
  dpkg -r archctl
  rc=$?
  [ "$rc" = 0 ] || { why "dpkg -r exited $rc"; return 1; }
  [ "$BREAK" != remove-unregisters ] || echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64
  st=$(systemctl is-active archctl.service)
  [ "$st" = inactive ] || { why "archctl.service after dpkg -r: $st, expected inactive"; return 1; }
  [ -f "$CONFIG" ] || { why "dpkg -r removed the conffile $CONFIG"; return 1; }
  [ ! -e /usr/bin/archctl ] || { why "/usr/bin/archctl is left after dpkg -r"; return 1; }
  [ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { why "dpkg -r removed qemu-aarch64"; return 1; }
}
dpkg_purge() {
  dpkg -P archctl
  rc=$?
  [ "$rc" = 0 ] || { why "dpkg -P exited $rc"; return 1; }
  [ "$BREAK" != purge-leaves-cache ] || mkdir -p /var/cache/archctl
  left=
  for p in /etc/archctl /usr/bin/archctl /usr/lib/systemd/system/archctl.service \
    /etc/systemd/system/archctl.service /etc/systemd/system/multi-user.target.wants/archctl.service \
    /var/lib/systemd/deb-systemd-helper-enabled/archctl.service.dsh-also \
    /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/archctl.service \
    /var/lib/systemd/deb-systemd-helper-masked/archctl.service /var/cache/archctl \
    /usr/share/man/man1/archctl.1.gz /usr/share/bash-completion/completions/archctl \
    /usr/share/doc/archctl; do
    if [ -e "$p" ] || [ -L "$p" ]; then left="$left $p"; fi
  done
  [ -z "$left" ] || { why "left after the purge:$left"; return 1; }
  [ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { why "the purge removed qemu-aarch64"; return 1; }
}
install_sh() {
  # (The shell remembered /usr/bin/archctl, gone with the package.)
  hash -r
  sh /opt/install.sh --binary /opt/archctl
  rc=$?
  [ "$rc" = 0 ] || { why "install.sh exited $rc"; return 1; }
  cmp /opt/archctl /usr/local/bin/archctl || { why "/usr/local/bin/archctl is not /opt/archctl"; return 1; }
  [ -f "$CONFIG" ] || { why "install.sh wrote no $CONFIG"; return 1; }
  st="$(systemctl is-enabled archctl.service) $(systemctl is-active archctl.service)"
  echo "archctl.service: $st"
  [ "${st%% *}" = enabled ] || { why "archctl.service after install.sh: $st, expected enabled"; return 1; }
  service_status_has '"installed":true' '"up_to_date":true' '"packaged":false' \
    '"command":"/usr/local/bin/archctl boot"' || return 1
  grep -qx 'ExecStart=/usr/local/bin/archctl boot' /etc/systemd/system/archctl.service ||
    { why "/etc/systemd/system/archctl.service does not run /usr/local/bin/archctl boot"; return 1; }
  archctl test aarch64 || { why "archctl test aarch64 failed after install.sh"; return 1; }
}

# --- boot 3: after install.sh ---------------------------------------------------------
# install.sh's unit (/etc/systemd/system, /usr/local/bin/archctl) ran at boot, after
# systemd-binfmt, with install.sh's default configuration (architectures = "all").
install_sh_unit() {
  [ ! -e /usr/bin/archctl ] || { why "/usr/bin/archctl is back"; return 1; }
  systemctl cat archctl.service
  systemctl show -p FragmentPath --value archctl.service | grep -qx /etc/systemd/system/archctl.service ||
    { why "archctl.service is not install.sh's /etc/systemd/system/archctl.service"; return 1; }
  units_in_order || return 1
  info "boot3: install.sh's archctl.service: $line"
}
archctl_test_after_install_sh() {
  tested_emulated /usr/local/bin/archctl aarch64 || return 1
  # (/tmp is emptied at boot: a new jail)
  chroot_no_emulator
}

case $boot in
  1)
check boot1-debian-binfmt-at-boot debian_binfmt
check boot1-dpkg-install dpkg_install
check boot1-config write_config
check boot1-service-status service_status
    break_before_reboot
    NEXT=reboot
    ;;
  2)
check boot2-disk-kept disk_kept
check boot2-binfmt-then-archctl-service boot_units
check boot2-registered-and-served registered
check boot2-archctl-test-aarch64-arm archctl_test
check boot2-chroot-without-emulator chroot_no_emulator
check boot2-dpkg-remove dpkg_remove
check boot2-dpkg-purge dpkg_purge
check boot2-install-sh install_sh
    NEXT=reboot
    ;;
  3)
check boot3-install-sh-unit-at-boot install_sh_unit
check boot3-archctl-test-and-chroot archctl_test_after_install_sh
    ;;
  *)
    echo "ARCHCTL-STEP select-boot"
    echo "ARCHCTL-FAIL select-boot: boot $boot of this disk, expected 1, 2 or 3"
    ;;
esac
