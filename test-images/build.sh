#!/usr/bin/env bash
# Rebuild the archctl test images: one tiny static Linux executable per QEMU
# linux-user target, each printing "archctl-test <target> ok" and exiting 0, and the
# probes in probe/ (probe/x86_64-level: the x86-64 level 1..4 of the CPU or emulator
# running it, as its exit status; archctl embeds it to probe x86-64 emulators).
#
#   ./build.sh          rebuild bin/<target> and probe/<probe> from src/ and gen_elf.py,
#                       rewrite SHA256SUMS
#                       (src/*.s are shared per family; @TARGET@ is filled in here)
#   ./build.sh --check  rebuild into a temp dir, compare with bin/ and SHA256SUMS
#   ./build.sh --run    run every bin/<target> under /usr/bin/qemu-<target>-static, and
#                       each probe (it prints the level it finds)
#
# Needs (Debian 12 "bookworm"; --run also needs qemu-user-static):
#   apt-get install -y binutils-x86-64-linux-gnu binutils-i686-linux-gnu binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf binutils-powerpc-linux-gnu binutils-powerpc64-linux-gnu binutils-powerpc64le-linux-gnu binutils-s390x-linux-gnu binutils-riscv64-linux-gnu binutils-mips-linux-gnu binutils-mipsel-linux-gnu binutils-mips64-linux-gnuabi64 binutils-mips64el-linux-gnuabi64 binutils-mips64-linux-gnuabin32 binutils-mips64el-linux-gnuabin32 binutils-sparc64-linux-gnu binutils-m68k-linux-gnu binutils-sh4-linux-gnu binutils-alpha-linux-gnu binutils-hppa-linux-gnu binutils-or1k-elf binutils-xtensa-lx106 llvm-16 lld-16 python3 sed coreutils qemu-user-static
#
# Output is deterministic: no build-id, no timestamps, no symbols, fixed tool
# versions from Debian 12; running the build twice gives identical bytes.
set -euo pipefail
tmp=

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
export LC_ALL=C

# Build order: required targets first, then the others.
TARGETS=(
  x86_64 i386 aarch64 arm ppc64le s390x riscv64 mips64el mipsel loongarch64
  armeb aarch64_be ppc ppc64 mips mips64 mipsn32 mipsn32el riscv32
  sparc64 sparc sparc32plus m68k sh4 sh4eb alpha hppa i486
  xtensa xtensaeb microblaze microblazeel or1k hexagon cris
)

# The probes: probe/<name> from src/<name>.s, built with the recipe of the target
# before the first '-' (x86_64-level: x86_64's toolchain and flags).
PROBES=(x86_64-level)

# Flags common to every GNU ld / lld link: static, stripped, no build-id,
# non-executable stack.  Most links also get -n (NMAGIC): text is not
# page-aligned in the file, so the whole image is a few hundred bytes.
LD_COMMON=(-static -s --build-id=none -z noexecstack -e _start)

# recipe TARGET: sets KIND (gas|llvm|gen), SRC, AS, ASFLAGS, LD, LDFLAGS, NMAGIC, POST.
# The table below is the one place for per-target settings.  s= names the
# source src/<s>.s; targets whose code is the same share one source, and
# build_one replaces its @TARGET@ placeholder with the target name.
recipe() {
  KIND=gas SRC= AS= ASFLAGS= LD= LDFLAGS= NMAGIC=-n POST=
  local p= s=
  case "$1" in
    # target     source       toolchain prefix          assembler flags / linker flags
    x86_64)      s=x86_64     p=x86_64-linux-gnu        ASFLAGS="--64 -mx86-used-note=no" LDFLAGS="-m elf_x86_64" ;;
    i386)        s=i386       p=i686-linux-gnu          ASFLAGS="--32 -mx86-used-note=no" LDFLAGS="-m elf_i386" ;;
    i486)        s=i386       p=i686-linux-gnu          ASFLAGS="--32 -mx86-used-note=no" LDFLAGS="-m elf_i386" POST=em486 ;;
    aarch64)     s=aarch64    p=aarch64-linux-gnu       ASFLAGS="-EL" LDFLAGS="-m aarch64linux" ;;
    aarch64_be)  s=aarch64    p=aarch64-linux-gnu       ASFLAGS="-EB" LDFLAGS="-m aarch64linuxb" ;;
    arm)         s=arm        p=arm-linux-gnueabihf     ASFLAGS="-EL -march=armv7-a" LDFLAGS="-m armelf_linux_eabi" ;;
    # big-endian ARMv7 in the BE8 format (data big-endian, code little-endian,
    # e_flags EF_ARM_BE8), as current armeb Linux toolchains produce
    armeb)       s=arm        p=arm-linux-gnueabihf     ASFLAGS="-EB -march=armv7-a" LDFLAGS="-m armelfb_linux_eabi --be8" ;;
    ppc)         s=ppc        p=powerpc-linux-gnu       ASFLAGS="-a32 -mbig" LDFLAGS="-m elf32ppclinux" ;;
    # ELFv1: the entry is a function descriptor in .opd, which goes to an RW
    # segment; link without -n (it would make one RWX segment), without relro
    # and the empty .eh_frame (both would pad or grow the file).
    ppc64)       s=ppc64      p=powerpc64-linux-gnu     ASFLAGS="-a64 -mbig --defsym ELFV1=1"
                 LDFLAGS="-m elf64ppc -z norelro --no-ld-generated-unwind-info" NMAGIC= ;;
    ppc64le)     s=ppc64      p=powerpc64le-linux-gnu   ASFLAGS="-a64 -mlittle" LDFLAGS="-m elf64lppc" ;;
    s390x)       s=s390x      p=s390x-linux-gnu         ASFLAGS="-m64" LDFLAGS="-m elf64_s390" ;;
    riscv64)     s=riscv      p=riscv64-linux-gnu       ASFLAGS="-march=rv64gc -mabi=lp64d" LDFLAGS="-m elf64lriscv" ;;
    riscv32)     s=riscv      p=riscv64-linux-gnu       ASFLAGS="-march=rv32i -mabi=ilp32" LDFLAGS="-m elf32lriscv" ;;
    mips)        s=mips       p=mips-linux-gnu          ASFLAGS="-32 -EB -call_nonpic" LDFLAGS="-m elf32btsmip" ;;
    mipsel)      s=mips       p=mipsel-linux-gnu        ASFLAGS="-32 -EL -call_nonpic" LDFLAGS="-m elf32ltsmip" ;;
    mips64)      s=mips64     p=mips64-linux-gnuabi64   ASFLAGS="-64 -EB -call_nonpic" LDFLAGS="-m elf64btsmip" ;;
    mips64el)    s=mips64     p=mips64el-linux-gnuabi64 ASFLAGS="-64 -EL -call_nonpic" LDFLAGS="-m elf64ltsmip" ;;
    mipsn32)     s=mipsn32    p=mips64-linux-gnuabin32  ASFLAGS="-n32 -EB -call_nonpic" LDFLAGS="-m elf32btsmipn32" ;;
    mipsn32el)   s=mipsn32    p=mips64el-linux-gnuabin32 ASFLAGS="-n32 -EL -call_nonpic" LDFLAGS="-m elf32ltsmipn32" ;;
    sparc)       s=sparc      p=sparc64-linux-gnu       ASFLAGS="-32 -Av8" LDFLAGS="-m elf32_sparc" ;;
    sparc32plus) s=sparc      p=sparc64-linux-gnu       ASFLAGS="-32 -Av8plus --defsym V8PLUS=1" LDFLAGS="-m elf32_sparc" ;;
    sparc64)     s=sparc64    p=sparc64-linux-gnu       ASFLAGS="-64 -Av9" LDFLAGS="-m elf64_sparc" ;;
    m68k)        s=m68k       p=m68k-linux-gnu          ASFLAGS="-m68020" LDFLAGS="-m m68kelf" ;;
    sh4)         s=sh4        p=sh4-linux-gnu           ASFLAGS="-little --isa=sh4" LDFLAGS="-m shlelf_linux -EL" ;;
    sh4eb)       s=sh4        p=sh4-linux-gnu           ASFLAGS="-big --isa=sh4" LDFLAGS="-m shlelf_linux -EB" ;;
    alpha)       s=alpha      p=alpha-linux-gnu         ASFLAGS="" LDFLAGS="-m elf64alpha" ;;
    hppa)        s=hppa       p=hppa-linux-gnu          ASFLAGS="" LDFLAGS="-m hppalinux" ;;
    # bare-metal ELF toolchains: place text where the Linux ports of ld would
    # (or1k-linux: 0x2000 + headers; xtensa: the default 0x400000 + headers)
    or1k)        s=or1k       p=or1k-elf                ASFLAGS="" LDFLAGS="-Ttext=0x2074" ;;
    xtensa)      s=xtensa     p=xtensa-lx106-elf        ASFLAGS="" LDFLAGS="" POST=xtstrip ;;
    hexagon)     s=hexagon    KIND=llvm AS=llvm-mc-16   ASFLAGS="-triple=hexagon -mcpu=hexagonv67 -filetype=obj"
                 LD=ld.lld-16 LDFLAGS="-z norelro" ;;
    # no usable assembler in Debian 12: gen_elf.py hand-encodes these
    loongarch64|xtensaeb|microblaze|microblazeel|cris) KIND=gen ;;
    *) echo "build.sh: unknown target $1" >&2; exit 2 ;;
  esac
  if [[ -n $p ]]; then AS=$p-as LD=$p-ld; fi
  if [[ -n $s ]]; then SRC=src/$s.s; fi
}

# Debian package providing each tool (for the error message).
package_of() {
  case "$1" in
    xtensa-lx106-elf-*) echo binutils-xtensa-lx106 ;;
    or1k-elf-*)         echo binutils-or1k-elf ;;
    x86_64-linux-gnu-*) echo binutils-x86-64-linux-gnu ;;
    *-as|*-ld)          echo "binutils-${1%-*}" ;;
    llvm-mc-16)         echo llvm-16 ;;
    ld.lld-16)          echo lld-16 ;;
    python3)            echo python3 ;;
    sed)                echo sed ;;
    qemu-*-static)      echo qemu-user-static ;;
    *)                  echo coreutils ;;
  esac
}

need_tools() {
  local missing=() t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if ((${#missing[@]})); then
    echo "build.sh: missing tools:" >&2
    for t in "${missing[@]}"; do echo "  $t  (Debian package $(package_of "$t"))" >&2; done
    echo "install everything with the apt-get line at the top of $0" >&2
    exit 1
  fi
}

check_build_tools() {
  local tools=(python3 sed sha256sum cmp) t
  for t in "${TARGETS[@]}"; do
    recipe "$t"
    [[ $KIND == gen ]] || tools+=("$AS" "$LD")
  done
  need_tools $(printf '%s\n' "${tools[@]}" | sort -u)
}

# build_probe PROBE OUTDIR WORKDIR
build_probe() {
  local p=$1 out=$2/$1 work=$3
  recipe "${p%%-*}"
  # shellcheck disable=SC2086
  "$AS" $ASFLAGS -o "$work/$p.o" "src/$p.s"
  # shellcheck disable=SC2086
  "$LD" "${LD_COMMON[@]}" $NMAGIC $LDFLAGS -o "$out" "$work/$p.o"
  chmod 755 "$out"
}

# build_one TARGET OUTDIR WORKDIR
build_one() {
  local t=$1 out=$2/$1 work=$3 obj=$3/$1.o
  recipe "$t"
  case "$KIND" in
    gen)
      python3 "$here/gen_elf.py" "$t" "$out" ;;
    gas|llvm)
      # fill in the target name: src/<s>.s -> WORKDIR/<target>.s
      sed "s/@TARGET@/$t/g" "$SRC" >"$work/$t.s"
      # shellcheck disable=SC2086
      "$AS" $ASFLAGS -o "$obj" "$work/$t.s"
      # shellcheck disable=SC2086
      "$LD" "${LD_COMMON[@]}" $NMAGIC $LDFLAGS -o "$out" "$obj" ;;
  esac
  case "$POST" in
    # i486: the i386 image with e_machine = EM_486 (6; now EM_IAMCU in the
    # ELF registry), the value qemu-i386 also accepts. e_machine is the
    # little-endian half-word at file offset 18.
    em486)   printf '\006\000' | dd of="$out" bs=1 seek=18 conv=notrunc status=none ;;
    # the lx106 (call0-ABI, bare-metal) toolchain adds .xtensa.info "ABI=1" and
    # .xt.prop; drop these non-loaded sections so nothing claims an ABI
    xtstrip) xtensa-lx106-elf-objcopy -R .xtensa.info -R .xt.prop "$out" ;;
  esac
  chmod 755 "$out"
}

# build_all DESTDIR  -> DESTDIR/bin/<target>, DESTDIR/probe/<probe>, DESTDIR/SHA256SUMS
build_all() {
  local dest=$1 work t
  work=$(mktemp -d)
  mkdir -p "$dest/bin" "$dest/probe"
  for t in "${TARGETS[@]}"; do
    build_one "$t" "$dest/bin" "$work"
  done
  for t in "${PROBES[@]}"; do
    build_probe "$t" "$dest/probe" "$work"
  done
  rm -rf "$work"
  (cd "$dest" && {
    for t in "${TARGETS[@]}"; do echo "bin/$t"; done
    for t in "${PROBES[@]}"; do echo "probe/$t"; done
  } | sort | xargs sha256sum) > "$dest/SHA256SUMS"
}

do_build() {
  check_build_tools
  local start=$SECONDS
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  build_all "$tmp"
  rm -rf bin probe
  mkdir bin probe
  cp -p "$tmp"/bin/* bin/
  cp -p "$tmp"/probe/* probe/
  cp "$tmp/SHA256SUMS" SHA256SUMS
  echo "built ${#TARGETS[@]} images into bin/ and ${#PROBES[@]} into probe/ in $((SECONDS - start))s; SHA256SUMS updated"
}

do_check() {
  check_build_tools
  local bad=0 t
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  build_all "$tmp"
  if ! sha256sum --quiet -c SHA256SUMS; then
    echo "check: bin/ does not match SHA256SUMS" >&2; bad=1
  fi
  if ! cmp -s SHA256SUMS "$tmp/SHA256SUMS"; then
    echo "check: rebuilt images differ from SHA256SUMS:" >&2
    diff SHA256SUMS "$tmp/SHA256SUMS" >&2 || true
    bad=1
  fi
  for t in "${TARGETS[@]}"; do
    if ! cmp -s "bin/$t" "$tmp/bin/$t"; then
      echo "check: bin/$t differs from the rebuild" >&2; bad=1
    fi
  done
  for t in "${PROBES[@]}"; do
    if ! cmp -s "probe/$t" "$tmp/probe/$t"; then
      echo "check: probe/$t differs from the rebuild" >&2; bad=1
    fi
  done
  local extra
  extra=$(comm -23 <(ls bin | sort) <(printf '%s\n' "${TARGETS[@]}" | sort))
  if [[ -n $extra ]]; then echo "check: unexpected files in bin/: $extra" >&2; bad=1; fi
  extra=$(comm -23 <(ls probe | sort) <(printf '%s\n' "${PROBES[@]}" | sort))
  if [[ -n $extra ]]; then echo "check: unexpected files in probe/: $extra" >&2; bad=1; fi
  if ((bad)); then echo "check: FAILED" >&2; exit 1; fi
  echo "check: all ${#TARGETS[@]} images and ${#PROBES[@]} probes rebuild bit-for-bit and match SHA256SUMS"
}

qemu_of() {
  case "$1" in
    i486) echo /usr/bin/qemu-i386-static ;;
    *)    echo "/usr/bin/qemu-$1-static" ;;
  esac
}

do_run() {
  local pass=0 fail=0 t q rc want
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for t in "${TARGETS[@]}"; do
    q=$(qemu_of "$t")
    want="archctl-test $t ok"
    if [[ ! -x $q ]]; then
      echo "FAIL $t: $q not found (Debian package qemu-user-static)"; fail=$((fail + 1)); continue
    fi
    if [[ ! -f bin/$t ]]; then
      echo "FAIL $t: bin/$t missing (run ./build.sh)"; fail=$((fail + 1)); continue
    fi
    rc=0
    "$q" "bin/$t" </dev/null >"$tmp/out" 2>"$tmp/err" || rc=$?
    # stdout must be exactly the line plus its newline, nothing on stderr
    printf '%s\n' "$want" >"$tmp/want"
    if [[ $rc == 0 ]] && cmp -s "$tmp/out" "$tmp/want" && [[ ! -s $tmp/err ]]; then
      echo "PASS $t: $(cat "$tmp/out")"; pass=$((pass + 1))
    else
      echo "FAIL $t: exit $rc, stdout $(printf %q "$(cat "$tmp/out")"), stderr $(printf %q "$(cat "$tmp/err")")"
      fail=$((fail + 1))
    fi
  done
  # x86_64 also runs natively here
  if [[ $(uname -m) == x86_64 ]]; then
    rc=0
    bin/x86_64 </dev/null >"$tmp/out" 2>"$tmp/err" || rc=$?
    printf 'archctl-test x86_64 ok\n' >"$tmp/want"
    if [[ $rc == 0 ]] && cmp -s "$tmp/out" "$tmp/want" && [[ ! -s $tmp/err ]]; then
      echo "PASS x86_64 (native): archctl-test x86_64 ok"; pass=$((pass + 1))
    else
      echo "FAIL x86_64 (native): exit $rc"; fail=$((fail + 1))
    fi
  fi
  # the probes: any level 1..4 passes (it is what the CPU or emulator provides)
  for t in "${PROBES[@]}"; do
    q=$(qemu_of "${t%%-*}")
    rc=0
    "$q" "probe/$t" </dev/null >"$tmp/out" 2>"$tmp/err" || rc=$?
    printf 'x86-64-v%s\n' "$rc" >"$tmp/want"
    if ((rc >= 1 && rc <= 4)) && cmp -s "$tmp/out" "$tmp/want" && [[ ! -s $tmp/err ]]; then
      echo "PASS probe/$t: $(cat "$tmp/out") under $q"; pass=$((pass + 1))
    else
      echo "FAIL probe/$t: exit $rc, stdout $(printf %q "$(cat "$tmp/out")"), stderr $(printf %q "$(cat "$tmp/err")")"
      fail=$((fail + 1))
    fi
  done
  echo "$pass passed, $fail failed"
  ((fail == 0))
}

case "${1:-}" in
  "")      do_build ;;
  --check) do_check ;;
  --run)   do_run ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *) echo "usage: $0 [--check|--run]" >&2; exit 2 ;;
esac
