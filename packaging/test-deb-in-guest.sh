#!/usr/bin/env bash
# Install archctl's amd64 .deb in a real Debian 12 guest running systemd, then remove
# and purge it, and check what each step leaves: the service enabled and started at
# install (and `archctl boot` registering qemu-aarch64), `archctl service status`
# recognising the package's unit, the entry still registered after remove and purge,
# and nothing of the package left after purge.
#
#   bash packaging/test-deb-in-guest.sh [DEB]   (default: target/debian/archctl_*_amd64.deb)
#
# As root, on Debian 12: debootstrap (a minbase root with systemd-sysv, ~40 s), the
# cloud kernel 6.12 from apt (downloaded, not installed), qemu-system-x86, cpio, and
# qemu-user-static for the emulator the guest registers. The whole root is the guest's
# initramfs (no disk, no virtio modules); only binfmt_misc.ko is added. TCG (see
# /work/shared/guest-vms.md): about 2-3 minutes. Nothing on this machine is changed
# but a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "test-deb-in-guest.sh: $*" >&2; exit 1; }

deb=${1:-}
if [ -z "$deb" ]; then
  deb=$(find target/debian -name 'archctl_*_amd64.deb' 2>/dev/null | sort | tail -n 1)
fi
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
  die "no .deb (bash packaging/build-deb.sh amd64)"
fi
for t in debootstrap qemu-system-x86_64 cpio gzip apt-get dpkg-deb; do
  command -v "$t" >/dev/null || die "$t missing"
done
[ -x /usr/bin/qemu-aarch64-static ] || die "/usr/bin/qemu-aarch64-static missing (apt-get install qemu-user-static)"

work=$(mktemp -d "${TMPDIR:-/tmp}/archctl-deb-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
echo "== debootstrap (minbase + systemd-sysv) from $mirror"
debootstrap --variant=minbase --include=systemd-sysv,kmod bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

echo "== guest kernel"
kpkg=$(apt-cache depends linux-image-6.12-cloud-amd64 | awk '/Depends: linux-image-6/ {print $2; exit}')
[ -n "$kpkg" ] || die "no linux-image-6.12-cloud-amd64 in the apt sources"
(cd "$work" && apt-get download "$kpkg" >/dev/null 2>&1) || die "apt-get download $kpkg failed"
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
kver=$(ls "$work/kernel/lib/modules")
mkdir -p "$root/lib/modules/$kver/kernel/fs"
cp "$work/kernel/lib/modules/$kver/kernel/fs/binfmt_misc.ko.xz" "$root/lib/modules/$kver/kernel/fs/"
cp "$work/kernel/lib/modules/$kver"/modules.order "$work/kernel/lib/modules/$kver"/modules.builtin* "$root/lib/modules/$kver/"
chroot "$root" depmod "$kver"

cp /usr/bin/qemu-aarch64-static "$root/usr/bin/"
cp "$deb" "$root/archctl.deb"
echo pkgtest >"$root/etc/hostname"
# No udev in minbase: the serial getty would wait 90 s for its device.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"

cat >"$root/pkgtest.sh" <<'EOF'
#!/bin/sh
# Runs in the guest after multi-user.target; every check prints `PKGTEST ok NAME` or
# `PKGTEST FAIL NAME: what was seen`.
exec >/dev/ttyS0 2>&1
check() { # NAME CONDITION-RESULT DETAIL
	if [ "$2" = 0 ]; then echo "PKGTEST ok $1"; else echo "PKGTEST FAIL $1: $3"; fi
}
entries() { ls /proc/sys/fs/binfmt_misc | tr '\n' ' '; }
echo "PKGTEST start"
out=$(dpkg -i /archctl.deb 2>&1); rc=$?
echo "$out" | sed 's/^/  dpkg -i | /'
check install "$rc" "dpkg -i exited $rc"
state="$(systemctl is-enabled archctl.service 2>&1) $(systemctl is-active archctl.service 2>&1)"
[ "$state" = "enabled active" ]; check enabled-and-started $? "$state"
journalctl -u archctl.service --no-pager -o cat 2>&1 | sed 's/^/  journal | /'
entries | grep -q qemu-aarch64; check boot-registered $? "$(entries)"
out=$(archctl service status 2>&1)
echo "$out" | sed 's/^/  status | /'
echo "$out" | grep -q "installed, up to date (the package's unit)"; check status-packaged $? "$out"
out=$(archctl test aarch64 2>&1); rc=$?
echo "$out" | sed 's/^/  test | /'
check test-aarch64 "$rc" "$out"
[ -s /usr/share/man/man1/archctl.1.gz ] && [ -s /usr/share/bash-completion/completions/archctl ]
check man-and-completions $? "missing"
out=$(dpkg -r archctl 2>&1); rc=$?
echo "$out" | sed 's/^/  dpkg -r | /'
check remove "$rc" "dpkg -r exited $rc"
entries | grep -q qemu-aarch64; check remove-keeps-entries $? "$(entries)"
state=$(systemctl is-active archctl.service 2>&1)
[ "$state" = inactive ]; check remove-stops $? "$state"
[ -f /etc/archctl/config.toml ]; check remove-keeps-conffile $? "no /etc/archctl/config.toml"
out=$(dpkg -P archctl 2>&1); rc=$?
echo "$out" | sed 's/^/  dpkg -P | /'
check purge "$rc" "dpkg -P exited $rc"
entries | grep -q qemu-aarch64; check purge-keeps-entries $? "$(entries)"
left=""
for p in /etc/archctl /etc/systemd/system/archctl.service \
	/etc/systemd/system/multi-user.target.wants/archctl.service \
	/var/lib/systemd/deb-systemd-helper-enabled/archctl.service.dsh-also \
	/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/archctl.service \
	/var/lib/systemd/deb-systemd-helper-masked/archctl.service /usr/bin/archctl \
	/usr/lib/systemd/system/archctl.service /var/cache/archctl; do
	if [ -e "$p" ] || [ -L "$p" ]; then left="$left $p"; fi
done
[ -z "$left" ]; check purge-leaves-nothing $? "left:$left"
echo "PKGTEST end"
systemctl poweroff
EOF
chmod 755 "$root/pkgtest.sh"
cat >"$root/etc/systemd/system/pkgtest.service" <<'EOF'
[Unit]
Description=archctl package test
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/pkgtest.sh
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/pkgtest.service "$root/etc/systemd/system/multi-user.target.wants/pkgtest.service"

echo "== initramfs"
(cd "$root" && find . -xdev | cpio -o -H newc 2>/dev/null | gzip -1 >"$work/root.cpio.gz")

echo "== boot (TCG)"
start=$(date +%s)
timeout 900 qemu-system-x86_64 -accel tcg -m 2048 -smp 2 \
  -kernel "$work/kernel/boot/vmlinuz-$kver" -initrd "$work/root.cpio.gz" \
  -append 'console=ttyS0 rdinit=/lib/systemd/systemd panic=-1 systemd.show_status=0' \
  -nographic -nic none -no-reboot -serial mon:stdio </dev/null >"$work/console.log" 2>&1 || true
echo "guest ran $(($(date +%s) - start)) s"
tr -d '\r' <"$work/console.log" | grep -a -E 'PKGTEST|^  ' || true

# Unanchored: systemd's console output may share a line with the guest's.
expected=13
ok=$(grep -a -o 'PKGTEST ok [a-z0-9-]*' "$work/console.log" | sort -u | wc -l)
if grep -a -q 'PKGTEST FAIL ' "$work/console.log" || [ "$ok" -ne "$expected" ] ||
  ! grep -a -q 'PKGTEST end' "$work/console.log"; then
  tail -n 40 "$work/console.log" >&2
  die "$ok of $expected checks passed"
fi
echo "all $expected checks passed"
