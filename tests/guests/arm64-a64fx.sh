# shellcheck shell=sh
# The Apple-Silicon-like guest: `-cpu a64fx` has no 32-bit EL0 (AArch32), so 32-bit arm
# needs qemu-arm, which QEMU's own setup never registers on arm64.
# shellcheck source=tests/guests/arm64-common.sh
. /guest/arm64-common.sh

native_only_aarch64() {
  n=$(status_native) || return 1
  [ "$(echo "$n" | tail -n 1)" = '["aarch64"]' ] || { why "native is $(echo "$n" | tail -n 1), expected [\"aarch64\"]"; return 1; }
}
# Without a handler the kernel refuses the armhf busybox (ash then retries it as a
# script): it must not print armv7l/armv8l.
armhf_refused() {
  out=$(/opt/busybox-armhf uname -m 2>&1)
  rc=$?
  echo "exit $rc: $out"
  [ "$rc" != 0 ] || { why "the armhf busybox ran without an emulator (printed '$out')"; return 1; }
}
# archctl exec as uid 1000: a private binfmt_misc instance, nothing in the guest's table.
# The guest's table is mounted while exec runs (on 6.12 unmounting an instance drops its
# entries, so a leak would vanish with exec's mount otherwise) and unmounted after, so
# that enable --all mounts it itself.
exec_rootless() {
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || { why "cannot mount binfmt_misc"; return 1; }
  exec_as_user
  rc=$?
  umount /proc/sys/fs/binfmt_misc
  return $rc
}
exec_as_user() {
  expect_output 1000 as_user id -u || return 1
  expect_output armv7l as_user archctl exec --arch arm -- /opt/busybox-armhf uname -m || return 1
  expect_output 1000 as_user archctl exec --arch arm -- /opt/busybox-armhf id -u || return 1
  expect_output x86_64 as_user archctl exec --arch x86_64 -- /opt/busybox-amd64 uname -m || return 1
  no_entry qemu-arm && no_entry qemu-x86_64
}
enable_all() {
  archctl --json enable --all >/tmp/enable.json
  rc=$?
  cat /tmp/enable.json
  [ "$rc" = 0 ] || { why "enable --all exited $rc"; return 1; }
  check_entry /tmp/enable.json qemu-arm registered true && check_entry /tmp/enable.json qemu-x86_64 registered true
}
armhf_busybox() { expect_output armv7l /opt/busybox-armhf uname -m; }
# archctl's own proof: its embedded test programs run, emulated, through the new entries.
test_entries() { tested_emulated archctl arm x86_64; }
disable_all() {
  archctl --json disable --all >/tmp/disable.json
  rc=$?
  cat /tmp/disable.json
  [ "$rc" = 0 ] || { why "disable --all exited $rc"; return 1; }
  no_entry qemu-arm && no_entry qemu-x86_64
}
# The library's unit tests (cargo test --lib, aarch64-unknown-linux-musl) on this kernel.
unit_tests() {
  [ -x /opt/unit-tests ] || { why "no /opt/unit-tests in the image"; return 1; }
  /opt/unit-tests -q --test-threads 2 >/tmp/unit.out 2>&1
  rc=$?
  cat /tmp/unit.out
  res=$(grep '^test result:' /tmp/unit.out)
  info "unit-tests: ${res:-no result line}"
  [ "$rc" = 0 ] || { why "unit tests exited $rc: ${res:-no result line}"; return 1; }
}

check native-aarch64-only native_only_aarch64
check armhf-refused-without-handler armhf_refused
check pick-arm-v7-emulated pick_arm_v7 emulated
check exec-rootless exec_rootless
check enable-all-arm-x86_64-verified enable_all
check armhf-busybox-armv7l armhf_busybox
check amd64-busybox-x86_64 amd64_busybox
check test-arm-x86_64 test_entries
check disable-all disable_all
check unit-tests unit_tests
