#!/bin/sh
# shellcheck shell=sh
# The checks' runner of the guests whose root is a disk (x86_64-systemd, x86_64-openrc),
# started by the guest's init system at every boot: the ExecStart of
# archctl-guest.service (systemd, a oneshot after multi-user.target) or the start of
# /etc/init.d/archctl-guest (OpenRC, default runlevel, after archctl). It counts the
# boots on the disk (/var/lib/archctl-guest/boot: a reboot in place keeps it), runs
# /guest/<guest>.sh with the protocol of tests/guests/protocol.sh on the console, then
# reboots (the script sets NEXT=reboot) or powers off, through the init system.
exec </dev/null >/dev/console 2>&1
# Keep the kernel's messages off the console while the checks print.
echo 1 >/proc/sys/kernel/printk
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mkdir -p /var/lib/archctl-guest
boot=$(($(cat /var/lib/archctl-guest/boot 2>/dev/null || echo 0) + 1))
echo "$boot" >/var/lib/archctl-guest/boot
sync
echo "ARCHCTL-BOOTED $(cut -d' ' -f1 /proc/uptime)"
# shellcheck source=tests/guests/protocol.sh
. /guest/protocol.sh
NEXT=poweroff
run_selected_guest
sync
if [ -d /run/systemd/system ]; then
  systemctl --no-block "$NEXT"
else
  # sysvinit's reboot/poweroff (shutdown, then OpenRC's shutdown runlevel), in the
  # background: the service that runs this script finishes first.
  nohup "$NEXT" >/dev/null 2>&1 &
fi
