#!/usr/bin/env bash
# Build archctl as static musl binaries for x86_64 and aarch64 (the release binaries a
# guest installs), on Debian 12. Output: target/static/archctl-<arch> and SHA256SUMS.
#
#   bash guest-installer/build-static.sh [x86_64|aarch64 ...]     (default: both)
#   bash guest-installer/build-static.sh --deps                    install the toolchain
#
# x86_64 needs Debian's musl-tools (ring compiles C); aarch64 needs the arm64 musl
# headers, clang and llvm-ar, and links with rust-lld.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--deps" ]; then
  shift
  export DEBIAN_FRONTEND=noninteractive
  dpkg --add-architecture arm64
  apt-get update -q
  apt-get install -y -q --no-install-recommends musl-tools musl-dev:arm64 clang lld llvm
  rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
fi

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
out=target/static
mkdir -p "$out"
for a in "${arches[@]}"; do
  t="$a-unknown-linux-musl"
  case "$a" in
    x86_64)
      command -v musl-gcc >/dev/null || { echo "build-static.sh: musl-gcc missing (apt-get install musl-tools, or --deps)" >&2; exit 1; }
      cargo build --locked --release --target "$t"
      ;;
    aarch64)
      [ -d /usr/include/aarch64-linux-musl ] || { echo "build-static.sh: arm64 musl headers missing (--deps)" >&2; exit 1; }
      command -v clang >/dev/null || { echo "build-static.sh: clang missing (--deps)" >&2; exit 1; }
      ar=$(command -v llvm-ar || ls /usr/bin/llvm-ar-* 2>/dev/null | head -n 1 || true)
      [ -n "$ar" ] || { echo "build-static.sh: llvm-ar missing (--deps)" >&2; exit 1; }
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
      CC_aarch64_unknown_linux_musl=clang \
      AR_aarch64_unknown_linux_musl="$ar" \
      CFLAGS_aarch64_unknown_linux_musl="--target=aarch64-linux-musl -isystem /usr/include/aarch64-linux-musl" \
        cargo build --locked --release --target "$t"
      ;;
    *) echo "build-static.sh: unknown architecture $a (x86_64 or aarch64)" >&2; exit 1 ;;
  esac
  cp "target/$t/release/archctl" "$out/archctl-$a.tmp"
  mv "$out/archctl-$a.tmp" "$out/archctl-$a"
  file "$out/archctl-$a" 2>/dev/null || true
done
(cd "$out" && sha256sum archctl-* | grep -v '\.tmp' > SHA256SUMS && cat SHA256SUMS)
