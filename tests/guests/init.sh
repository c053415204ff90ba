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
# A guest whose root is a disk (`archctl.root=DEV`, the systemd guest): load the disk's
# driver, mount DEV and hand over to its /sbin/init, like a distribution's initramfs.
# Its checks run there (a unit), with this protocol.
rootdev=$(sed -n 's/.*archctl\.root=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$rootdev" ]; then
  # Only the disk's driver: the root has its own modules (binfmt_misc among them).
  insmod /lib/modules/virtio_blk.ko
  i=0
  while [ ! -b "$rootdev" ] && [ "$i" -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  mkdir -p /newroot
  # (/sbin/init is an absolute link, to /lib/systemd/systemd: test it as a link.)
  if mount -t ext4 -o rw "$rootdev" /newroot && { [ -L /newroot/sbin/init ] || [ -x /newroot/sbin/init ]; }; then
    umount /tmp
    for d in dev proc sys run; do mount --move "/$d" "/newroot/$d"; done
    exec switch_root /newroot /sbin/init
  fi
  echo "ARCHCTL-STEP mount-root" >/dev/console
  echo "ARCHCTL-FAIL mount-root: cannot mount $rootdev (ext4) with a /sbin/init on it: $(tr '\n' ' ' </proc/partitions)" >/dev/console
  poweroff -f
fi
exec </dev/console >/dev/console 2>&1
# Keep the kernel's messages off the console while the checks print.
echo 1 >/proc/sys/kernel/printk
ip link set lo up
for m in /lib/modules/*.ko; do
  [ -e "$m" ] && insmod "$m"
done
mkdir -p /root
echo "ARCHCTL-BOOTED $(cut -d' ' -f1 /proc/uptime)"

# shellcheck source=tests/guests/protocol.sh
. /guest/protocol.sh

run_selected_guest
sync
poweroff -f
