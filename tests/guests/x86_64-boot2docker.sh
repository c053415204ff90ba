# shellcheck shell=sh
# The boot2docker-like guest (x86_64, sourced by init.sh after its helpers). Like
# boot2docker: a busybox userland running from the initramfs (everything tmpfs), no init
# system, /etc/os-release with ID=boot2docker, and one persistent ext4 disk (label
# boot2docker-data) that boot2docker's automount mounts at /mnt/<dev>, with
# /var/lib/boot2docker a link into it; the last step of its boot runs
# /var/lib/boot2docker/bootlocal.sh (in the background, output to /var/log/bootlocal.log).
# The image holds what a user brings: /opt/archctl (the static x86_64 release binary),
# /opt/install.sh (guest-installer/install.sh), /opt/qemu-aarch64-static (the x86_64
# host's Debian qemu-user-static build) and /opt/busybox-arm64.
#
# The driver boots it twice on the same disk image (archctl.boot=1, then 2): boot 1
# installs with install.sh; boot 2 is the reboot, where only bootlocal.sh may register.

boot=$(sed -n 's/.*archctl\.boot=\([0-9]*\).*/\1/p' /proc/cmdline)
B2D=/var/lib/boot2docker
ARCHCTL=$B2D/archctl/archctl
CONFIG=$B2D/archctl/config.toml
EMULATORS=$B2D/archctl/emulators
BOOT_LINE="$ARCHCTL --config $CONFIG boot || true  # written by archctl service install"
DISK=

# boot2docker's /etc/rc.d/automount, reduced to what this guest has: the partition
# labelled boot2docker-data at /mnt/<dev>, /var/lib/boot2docker a link into it.
# (boot2docker asks blkid; Debian's busybox has findfs.)
automount() {
  dev=$(findfs LABEL=boot2docker-data)
  [ -n "$dev" ] || { why "no partition labelled boot2docker-data: $(tr '\n' ' ' </proc/partitions)"; return 1; }
  part=${dev##*/}
  mkdir -p "/mnt/$part"
  mount -t ext4 "$dev" "/mnt/$part" || { why "cannot mount $dev on /mnt/$part"; return 1; }
  rm -rf "$B2D"
  mkdir -p "/mnt/$part$B2D" /var/lib
  ln -s "/mnt/$part$B2D" "$B2D"
  DISK=/mnt/$part
  ls -la "$DISK$B2D"
}

# The end of boot2docker's bootscript.sh, as it is: "Allow local HD customisation".
BOOTLOCAL_PID=
bootlocal() {
  if [ -e /var/lib/boot2docker/bootlocal.sh ]; then
    /var/lib/boot2docker/bootlocal.sh >/var/log/bootlocal.log 2>&1 &
    BOOTLOCAL_PID=$!
    echo "------------------- ran /var/lib/boot2docker/bootlocal.sh"
  fi
}

# --- boot 1: install -------------------------------------------------------------------
no_bootlocal_yet() {
  [ -z "$BOOTLOCAL_PID" ] || { why "a bootlocal.sh ran on the first boot"; return 1; }
  [ ! -e "$B2D/bootlocal.sh" ] || { why "$B2D/bootlocal.sh exists before the install"; return 1; }
}
install_sh() {
  sh /opt/install.sh --binary /opt/archctl
  rc=$?
  [ "$rc" = 0 ] || { why "install.sh exited $rc"; return 1; }
}
chose_bootlocal() {
  f=$B2D/bootlocal.sh
  cat "$f" || { why "no $f after the install"; return 1; }
  [ -x "$f" ] || { why "$f is not executable (boot2docker runs it as a program)"; return 1; }
  [ "$(head -n 1 "$f")" = '#!/bin/sh' ] || { why "$f does not start with #!/bin/sh"; return 1; }
  grep -qxF "$BOOT_LINE" "$f" || { why "$f lacks the line '$BOOT_LINE'"; return 1; }
  [ ! -e /etc/rc.local ] || { why "/etc/rc.local was written (tmpfs on boot2docker)"; return 1; }
  # --binary as install.sh gives it: archctl's own path is the link-free
  # /mnt/<dev>/var/lib/boot2docker/..., not the path the boot line names.
  out=$("$ARCHCTL" --config "$CONFIG" service status --binary "$ARCHCTL")
  echo "$out"
  case $out in
    "sysv boot service installed, up to date"*"$f"*) ;;
    *) why "service status: $(echo "$out" | tr '\n' ' ')"; return 1 ;;
  esac
}
on_persistent_disk() {
  grep " $DISK ext4 " /proc/mounts || { why "$DISK is not an ext4 mount"; return 1; }
  for f in archctl/archctl archctl/config.toml bootlocal.sh; do
    [ -f "$DISK$B2D/$f" ] || { why "no $f on the disk ($DISK$B2D/$f)"; return 1; }
  done
  cmp /opt/archctl "$DISK$B2D/archctl/archctl" || { why "the installed archctl differs from /opt/archctl"; return 1; }
  grep -qx "emulator_dir = \"$EMULATORS\"" "$CONFIG" || { why "$CONFIG does not set emulator_dir = \"$EMULATORS\""; return 1; }
  [ -d "$EMULATORS" ] || { why "no $EMULATORS"; return 1; }
  for f in /usr/local/bin/archctl /etc/archctl; do
    [ ! -e "$f" ] || { why "$f was written (tmpfs on boot2docker)"; return 1; }
  done
}
# The user's step install.sh names: the static emulator into the config's emulator_dir.
emulator_on_disk() {
  if ! cp /opt/qemu-aarch64-static "$EMULATORS/" || ! chmod 755 "$EMULATORS/qemu-aarch64-static"; then
    why "cannot copy the emulator to $EMULATORS"
    return 1
  fi
  out=$("$ARCHCTL" emulators list --emulator-dir "$EMULATORS")
  echo "$out"
  echo "$out" | grep -q "^aarch64 *$EMULATORS/qemu-aarch64-static *static" ||
    { why "emulators list does not show a static aarch64 emulator in $EMULATORS"; return 1; }
}
unmount_disk() {
  sync
  umount "$DISK" || { why "cannot unmount $DISK"; return 1; }
}

# --- boot 2: the reboot -------------------------------------------------------------
# bootlocal.sh ran in the background; wait for it (at most 120 s), then read its log.
bootlocal_ran() {
  [ -n "$BOOTLOCAL_PID" ] || { why "boot2docker's boot found no $B2D/bootlocal.sh to run"; return 1; }
  i=0
  while kill -0 "$BOOTLOCAL_PID" 2>/dev/null && [ "$i" -lt 600 ]; do
    sleep 0.2
    i=$((i + 1))
  done
  kill -0 "$BOOTLOCAL_PID" 2>/dev/null && { why "bootlocal.sh still runs after 120 s"; return 1; }
  cat /var/log/bootlocal.log
  grep -q "^archctl boot: .*($CONFIG)" /var/log/bootlocal.log ||
    { why "bootlocal.sh did not run archctl boot with $CONFIG: $(tr '\n' ' ' </var/log/bootlocal.log)"; return 1; }
  info "boot2: $(grep '^archctl boot: ' /var/log/bootlocal.log)"
}
registered() {
  grep binfmt_misc /proc/mounts || { why "binfmt_misc is not mounted"; return 1; }
  ls /proc/sys/fs/binfmt_misc
  e=/proc/sys/fs/binfmt_misc/qemu-aarch64
  cat "$e" || { why "no entry qemu-aarch64"; return 1; }
  grep -qx enabled "$e" || { why "qemu-aarch64 is not enabled"; return 1; }
  grep -qx "interpreter $EMULATORS/qemu-aarch64-static" "$e" || { why "qemu-aarch64's interpreter is not $EMULATORS/qemu-aarch64-static"; return 1; }
  grep -qx "flags: F" "$e" || { why "qemu-aarch64's flags are not F: $(grep flags "$e")"; return 1; }
  [ ! -e /proc/sys/fs/binfmt_misc/qemu-x86_64 ] || { why "the native x86_64 got an entry"; return 1; }
}
arm64_busybox() { expect_output aarch64 /opt/busybox-arm64 uname -m; }
# chroot_no_emulator: protocol.sh.
archctl_test() { tested_emulated "$ARCHCTL" aarch64; }

case $boot in
  1)
check boot1-automount automount
    bootlocal
check boot1-no-bootlocal-before-install no_bootlocal_yet
check boot1-install-sh install_sh
check boot1-service-chose-bootlocal chose_bootlocal
check boot1-on-persistent-disk on_persistent_disk
check boot1-emulator-on-disk emulator_on_disk
check boot1-unmount unmount_disk
    ;;
  2)
check boot2-automount automount
    bootlocal
check boot2-bootlocal-ran-archctl-boot bootlocal_ran
check boot2-qemu-aarch64-registered registered
check boot2-arm64-busybox-aarch64 arm64_busybox
check boot2-chroot-without-emulator chroot_no_emulator
check boot2-archctl-test-aarch64 archctl_test
    ;;
  *)
    echo "ARCHCTL-STEP select-boot"
    echo "ARCHCTL-FAIL select-boot: archctl.boot=$boot on the kernel command line, expected 1 or 2"
    ;;
esac
