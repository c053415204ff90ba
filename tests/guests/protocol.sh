# shellcheck shell=sh
# The result protocol and the checks' helpers, sourced by every guest's runner: /init
# of the initramfs guests (tests/guests/init.sh) and /guest/disk-checks.sh of the disk
# guests (a systemd unit or an OpenRC service). Lines on the console, read by
# tests/guests/run: see init.sh.

verbose=$(sed -n 's/.*archctl\.verbose=1.*/1/p' /proc/cmdline)
# info TEXT: a line the driver prints with the results (e.g. the unit tests' summary).
info() { echo "ARCHCTL-INFO $*" >/dev/console; }

# --- the protocol -------------------------------------------------------------------
# check NAME FUNCTION [ARGS...]: run one check. FUNCTION returns non-zero on failure,
# after calling `why` with the reason; everything it prints is shown only on failure.
WHY=
why() { WHY="$*"; }
check() {
  name=$1
  shift
  WHY=
  echo "ARCHCTL-STEP $name"
  if "$@" >/tmp/check.out 2>&1; then
    [ -z "$verbose" ] || sed 's/^/  | /' /tmp/check.out
    echo "ARCHCTL-OK $name"
  else
    status=$?
    sed 's/^/  | /' /tmp/check.out | tail -n 40
    # One line: a reason quoting a command's output may span several.
    echo "ARCHCTL-FAIL $name: $(echo "${WHY:-$1 exited with status $status}" | tr '\n' ' ' | sed 's/ *$//')"
  fi
}

# --- helpers for the checks -----------------------------------------------------------
# json_compact FILE: archctl's pretty JSON on one line, no blanks around punctuation
# (`{"action":"registered",...}`), for grep.
json_compact() { tr '\n\t' '  ' <"$1" | sed 's/ *\([][{}:,]\) */\1/g'; }
# json_object FILE KEY VALUE: the flat JSON objects (no nested objects: archctl's entries
# and test results) whose KEY is the string VALUE, or nothing.
json_object() { json_compact "$1" | grep -o "{[^{}]*\"$2\":\"$3\"[^{}]*}"; }
json_entry() { json_object "$1" name "$2"; }
# expect_output WANT CMD...: CMD succeeds and prints exactly WANT.
expect_output() {
  want=$1
  shift
  got=$("$@" 2>&1)
  rc=$?
  echo "$* -> exit $rc, output: $got"
  [ "$rc" = 0 ] && [ "$got" = "$want" ] && return 0
  why "$* printed '$got' (exit $rc), expected '$want'"
  return 1
}
# as_user CMD...: run CMD as the unprivileged user (uid 1000).
as_user() { su -s /bin/sh user -c "$*"; }


# --- running the guest ----------------------------------------------------------------
# run_selected_guest: source /guest/<archctl.guest=NAME>.sh (its checks), framed by the
# protocol's last line.
run_selected_guest() {
  guest=$(sed -n 's/.*archctl\.guest=\([^ ]*\).*/\1/p' /proc/cmdline)
  if [ -n "$guest" ] && [ -f "/guest/$guest.sh" ]; then
    # shellcheck source=/dev/null
    . "/guest/$guest.sh"
  else
    echo "ARCHCTL-STEP select-guest"
    echo "ARCHCTL-FAIL select-guest: no /guest/$guest.sh (kernel command line: $(cat /proc/cmdline))"
  fi
  echo "ARCHCTL-DONE $(cut -d' ' -f1 /proc/uptime)"
}

# --- checks shared by the x86_64 guests -----------------------------------------------
# F: the kernel opened the emulator at registration, so a chroot without it runs arm64.
chroot_no_emulator() {
  if ! mkdir -p /tmp/jail/bin || ! cp /opt/busybox-arm64 /tmp/jail/bin/busybox; then
    why "cannot make /tmp/jail"
    return 1
  fi
  find /tmp/jail
  [ -z "$(find /tmp/jail -name 'qemu-*')" ] || { why "an emulator in the chroot"; return 1; }
  expect_output aarch64 chroot /tmp/jail /bin/busybox uname -m
}

# tested_emulated ARCHCTL ARCH...: `ARCHCTL --json test ARCH...` passes, and each ARCH is
# ok and emulated (archctl's embedded test programs, through the registered entries).
tested_emulated() {
  bin=$1
  shift
  "$bin" --json test "$@" >/tmp/test.json
  rc=$?
  cat /tmp/test.json
  [ "$rc" = 0 ] || { why "archctl test $* exited $rc"; return 1; }
  for a in "$@"; do
    r=$(json_object /tmp/test.json arch "$a")
    case $r in *'"ok":true'*'"mode":"emulated"'*) ;; *) why "$a: not ok and emulated: ${r:-no result}"; return 1 ;; esac
  done
}

# service_status_has WANT...: `archctl --json service status` succeeds and its compact
# JSON holds every WANT (e.g. '"installed":true').
service_status_has() {
  archctl --json service status >/tmp/service.json
  rc=$?
  cat /tmp/service.json
  [ "$rc" = 0 ] || { why "archctl service status exited $rc"; return 1; }
  c=$(json_compact /tmp/service.json)
  for want in "$@"; do
    case $c in *"$want"*) ;; *) why "service status lacks $want: $c"; return 1 ;; esac
  done
}

# boot_unchanged ARCH: `archctl --json boot` again (what the boot service ran) succeeds
# and leaves ARCH unchanged: idempotent, nothing to change. Keeps /tmp/boot.json.
boot_unchanged() {
  archctl --json boot >/tmp/boot.json
  rc=$?
  cat /tmp/boot.json
  [ "$rc" = 0 ] || { why "archctl boot exited $rc"; return 1; }
  r=$(json_object /tmp/boot.json arch "$1")
  case $r in *'"action":"unchanged"'*) ;; *) why "$1: not unchanged: ${r:-no result}"; return 1 ;; esac
}
