# shellcheck shell=sh
# The control: `-cpu cortex-a57` has AArch32, so 32-bit arm runs natively and archctl
# must leave it alone.
# shellcheck source=tests/guests/arm64-common.sh
. /guest/arm64-common.sh

native_has_arm() {
  n=$(status_native) || return 1
  n=$(echo "$n" | tail -n 1)
  case $n in *'"aarch64"'*) ;; *) why "native $n lacks aarch64"; return 1 ;; esac
  case $n in *'"arm"'*) ;; *) why "native $n lacks arm (the CPU has AArch32)"; return 1 ;; esac
  case $n in *'"x86_64"'*) why "native $n has x86_64"; return 1 ;; esac
}
# The armhf busybox runs with no qemu-arm entry, so the kernel ran it as a 32-bit task:
# uname then says aarch64 (armv8l only under the linux32 personality); qemu-arm would
# say armv7l, and on a64fx it does not run at all.
armhf_native() { no_entry qemu-arm && expect_output aarch64 /opt/busybox-armhf uname -m; }
enable_all() {
  archctl --json enable --all >/tmp/enable.json
  rc=$?
  cat /tmp/enable.json
  [ "$rc" = 0 ] || { why "enable --all exited $rc"; return 1; }
  check_entry /tmp/enable.json qemu-arm skipped-native && check_entry /tmp/enable.json qemu-x86_64 registered true
}

check native-aarch64-and-arm native_has_arm
check armhf-busybox-native armhf_native
check pick-arm-v7-native pick_arm_v7 native
check enable-all-arm-skipped-native enable_all
check armhf-still-native armhf_native
check amd64-busybox-x86_64 amd64_busybox
