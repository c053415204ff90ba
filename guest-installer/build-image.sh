#!/usr/bin/env bash
# Build archctl's container image — like tonistiigi/binfmt and qus — from the static
# archctl binary and Debian's static emulators, with no base image to download:
#
#   bash guest-installer/build-image.sh ARCHCTL_BINARY OUTPUT.tar [ARCH...]
#
# writes a docker-archive (`docker load -i OUTPUT.tar`, `podman load -i OUTPUT.tar`)
# tagged archctl:latest, holding /archctl and /usr/bin/qemu-<arch>-static (default: every
# installed one). Then, on any host:
#
#   docker run --rm --privileged archctl:latest enable x86_64
#
# registers the handler on the host with F: the kernel keeps the emulator open after the
# container is gone.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 ARCHCTL_BINARY OUTPUT.tar [ARCH...]" >&2; exit 2; }
bin=$1 out=$2
shift 2
[ -x "$bin" ] || { echo "build-image.sh: $bin is not an executable" >&2; exit 1; }
if file "$bin" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "build-image.sh: $bin is dynamically linked; build it with guest-installer/build-static.sh" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/bin"
install -m 0755 "$bin" "$root/archctl"
if [ $# -gt 0 ]; then
  for a in "$@"; do
    src=/usr/bin/qemu-$a-static
    [ -f "$src" ] || { echo "build-image.sh: $src missing (apt-get install qemu-user-static)" >&2; exit 1; }
    install -m 0755 "$src" "$root/usr/bin/"
  done
else
  for src in /usr/bin/qemu-*-static; do install -m 0755 "$src" "$root/usr/bin/"; done
fi
case "$(uname -m)" in
  x86_64) goarch=amd64 ;;
  aarch64) goarch=arm64 ;;
  *) goarch=$(uname -m) ;;
esac
# A deterministic layer: sorted, owned by root, mtime 0.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir -p "$work/img/$diff_id"
mv "$work/layer.tar" "$work/img/$diff_id/layer.tar"
printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/archctl"],"Cmd":["status"],"Labels":{"org.opencontainers.image.title":"archctl"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"guest-installer/build-image.sh"}]}' \
  "$goarch" "$diff_id" > "$work/config.json"
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/img/$config.json"
printf '[{"Config":"%s.json","RepoTags":["archctl:latest"],"Layers":["%s/layer.tar"]}]' "$config" "$diff_id" > "$work/img/manifest.json"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/img" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out: archctl:latest ($goarch), $(ls "$root/usr/bin" | wc -l) emulators, config sha256:$config"
