# shellcheck shell=sh
# Checks shared by the arm64 guests (sourced by arm64-a64fx.sh and arm64-cortex-a57.sh,
# after init.sh's helpers). The image holds: /usr/local/bin/archctl (the static
# aarch64 build), Debian's qemu-arm-static and qemu-x86_64-static built for arm64 in
# /usr/bin (where `enable` looks), the armhf and amd64 busybox as /opt/busybox-armhf and
# /opt/busybox-amd64, and a stand-in `docker` (/opt/fake-engine/docker) whose local
# store holds one image, linux/arm/v7, for `pick`.

# status_native: the `native` array of `archctl --json status`, e.g. ["aarch64"].
status_native() {
  archctl --json status >/tmp/status.json || { why "archctl --json status failed"; return 1; }
  cat /tmp/status.json
  json_compact /tmp/status.json | grep -o '"native":\[[^]]*\]' | sed 's/"native"://'
}

# check_entry FILE NAME ACTION [VERIFIED]: FILE (`enable --json`) reports NAME with
# ACTION (and "verified":VERIFIED when given).
check_entry() {
  e=$(json_entry "$1" "$2")
  echo "$2: ${e:-absent}"
  [ -n "$e" ] || { why "no entry $2 in the report"; return 1; }
  case $e in *"\"action\":\"$3\""*) ;; *) why "$2: action is not $3: $e"; return 1 ;; esac
  [ -z "${4:-}" ] && return 0
  case $e in *"\"verified\":$4"*) ;; *) why "$2: not \"verified\":$4: $e"; return 1 ;; esac
}

# pick_arm_v7 MODE: `pick` on an arm/v7-only image chooses MODE. The registry cannot be
# reached (connection refused on loopback), so pick asks the engine's local store.
pick_arm_v7() {
  PATH=/opt/fake-engine:$PATH archctl --json pick 127.0.0.1:9/arm-only:v7 --engine docker >/tmp/pick.json
  rc=$?
  cat /tmp/pick.json
  p=$(json_compact /tmp/pick.json)
  [ "$rc" = 0 ] || { why "pick exited $rc"; return 1; }
  case $p in *'"platform":"linux/arm/v7"'*) ;; *) why "pick did not choose linux/arm/v7"; return 1 ;; esac
  case $p in *"\"mode\":\"$1\""*) ;; *) why "pick did not choose mode $1"; return 1 ;; esac
}

# no_entry NAME: the guest's own binfmt_misc table has no entry NAME.
no_entry() {
  ls /proc/sys/fs/binfmt_misc 2>&1
  [ ! -e "/proc/sys/fs/binfmt_misc/$1" ] || { why "/proc/sys/fs/binfmt_misc/$1 exists"; return 1; }
}

amd64_busybox() { expect_output x86_64 /opt/busybox-amd64 uname -m; }
