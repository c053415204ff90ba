#!/bin/busybox sh
# shellcheck shell=sh
# /init of the initramfs guests (busybox, no init system). It mounts the basics, runs
# the guest's checks (/guest/<name>.sh, the name from `archctl.guest=` on the kernel
# command line) and reports on the serial console, one line each, read by
# tests/guests/run:
#
#   ARCHCTL-BOOTED <uptime>     init started
#   ARCHCTL-STEP <name>         a check begins
#   ARCHCTL-OK <name>           ... and passed
#   ARCHCTL-FAIL <name>: <why>  ... and failed (its output is printed above, "| "-prefixed)
#   ARCHCTL-INFO <text>        a figure worth reporting
#   ARCHCTL-DONE <uptime>       every check ran; the guest powers off
#
# Every check's output is shown too with `archctl.verbose=1` (ARCHCTL_GUEST_VERBOSE=1).
# A check that hangs or kills the guest leaves a STEP without OK/FAIL: the driver names it.

/bin/busybox mkdir -p /proc /sys /dev /tmp /run /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=755 run /run
exec </dev/console >/dev/console 2>&1
# Keep the kernel's messages off the console while the checks print.
echo 1 >/proc/sys/kernel/printk
ip link set lo up
for m in /lib/modules/*.ko; do
  [ -e "$m" ] && insmod "$m"
done
mkdir -p /root
echo "ARCHCTL-BOOTED $(cut -d' ' -f1 /proc/uptime)"

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

guest=$(sed -n 's/.*archctl\.guest=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$guest" ] && [ -f "/guest/$guest.sh" ]; then
  # shellcheck source=/dev/null
  . "/guest/$guest.sh"
else
  echo "ARCHCTL-STEP select-guest"
  echo "ARCHCTL-FAIL select-guest: no /guest/$guest.sh (kernel command line: $(cat /proc/cmdline))"
fi
echo "ARCHCTL-DONE $(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
