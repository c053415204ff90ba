#!/usr/bin/env bash
# Benchmark: the boot path against its floors, in one run. Every command registers the
# same 32 entries (those of `archctl enable --all`) in a fresh, private binfmt_misc
# instance (user + mount namespace, Linux 6.7+), so the host's table is never touched:
#
#   floor           benches/floor.c: open `register`, one write(2) per entry (static musl)
#   systemd-binfmt  Debian's, on a .conf holding exactly archctl's register strings
#   enable          archctl -q enable --all --no-verify (native set from the per-boot cache)
#   boot-first      archctl -q boot on a first boot: empty runtime dir (a fresh tmpfs), so
#                   the native probe runs
#   boot-warm       archctl -q boot with the per-boot cache present
#
# Net time = command - (namespace + mounts alone). Reported: per-round ratios of median
# net times (net / floor, net / systemd-binfmt), then the median over rounds; then the
# same with one private instance emptied before every run (no namespace cost to subtract).
# Needs: hyperfine, musl-gcc (musl-tools), systemd (systemd-binfmt), qemu-user-static,
# python3.
#
#   bash benches/boot.sh [RUNS]    (runs per command and round, default 20; ROUNDS=10)
#   ARCHCTL=path/to/archctl bash benches/boot.sh    (measure that binary, no build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
rounds=${ROUNDS:-10}

for tool in hyperfine unshare python3 musl-gcc /usr/lib/systemd/systemd-binfmt; do
  command -v "$tool" >/dev/null || { echo "benches/boot.sh: $tool missing (apt-get install hyperfine musl-tools systemd qemu-user-static python3)" >&2; exit 1; }
done

# shellcheck source=benches/common.sh
. benches/common.sh
archctl_binary
echo "archctl binary: $A ($(stat -c %s "$A") bytes)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/run" "$out/warm"

ns='unshare --user --map-root-user --mount --propagation private sh -c'
mnt="mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && mount -t tmpfs tmpfs $out/run"
first="ARCHCTL_RUNTIME_DIR=$out/run"
warm="ARCHCTL_RUNTIME_DIR=$out/warm"

# archctl's register strings, for the floor and for systemd-binfmt.
$ns "$mnt && $warm $A --json enable --all --dry-run" | python3 -c '
import json, sys
for e in json.load(sys.stdin)["entries"]:
    if e.get("register"):
        print(e["register"])' > "$out/entries.txt"
n=$(wc -l < "$out/entries.txt")
[ "$n" -gt 0 ] || { echo "no register strings from archctl enable --all --dry-run" >&2; exit 1; }
python3 - "$out/entries.txt" > "$out/floor-strings.h" <<'PY'
import sys
lines = [l.rstrip("\n") for l in open(sys.argv[1])]
print("#define FLOOR_ENTRIES " + ", ".join('"' + l.replace("\\", "\\\\").replace('"', '\\"') + '"' for l in lines))
PY
musl-gcc -O2 -static -include "$out/floor-strings.h" benches/floor.c -o "$out/floor"
echo 'int main(void) { return 0; }' > "$out/noop.c"
musl-gcc -O2 -static "$out/noop.c" -o "$out/noop"
cp "$out/entries.txt" "$out/archctl.conf"
confs="$out/archctl.conf"

# Warm the per-boot cache once; check that everyone registers the same entries.
$ns "$mnt && $warm $A -q enable --all --no-verify"
count() { $ns "$mnt && $1 && ls /proc/sys/fs/binfmt_misc | grep -vc '^register$\|^status$'"; }
echo "entries: archctl strings $n, floor $(count "$out/floor"), systemd-binfmt $(count "/usr/lib/systemd/systemd-binfmt $confs"), enable $(count "$warm $A -q enable --all --no-verify"), boot-first $(count "$first $A -q --config /nonexistent/config.toml boot")"

for r in $(seq "$rounds"); do
  hyperfine -N --warmup 3 --runs "$runs" --export-json "$out/r$r.json" \
    -n baseline "$ns '$mnt'" \
    -n floor "$ns '$mnt && $out/floor'" \
    -n systemd-binfmt "$ns '$mnt && /usr/lib/systemd/systemd-binfmt $confs'" \
    -n enable "$ns '$mnt && $warm $A -q enable --all --no-verify'" \
    -n boot-first "$ns '$mnt && $first $A -q --config /nonexistent/config.toml boot'" \
    -n boot-warm "$ns '$mnt && $warm $A -q --config /nonexistent/config.toml boot'" >/dev/null
done

python3 - "$out" "$rounds" <<'PY'
import json, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
per = [{x["command"]: x for x in json.load(open(f"{out}/r{r}.json"))["results"]} for r in range(1, rounds + 1)]
def med(r, k): return st.median(r[k]["times"])
def net(r, k): return med(r, k) - med(r, "baseline")
print(f"fresh private instances: {rounds} rounds x {len(per[0]['baseline']['times'])} runs; medians in ms")
print(f"{'command':16} {'median':>7} {'net':>6} {'net/floor':>10} {'(range)':>12} {'net/systemd-binfmt':>19} {'(range)':>12}")
for k in per[0]:
    m = st.median(med(r, k) for r in per) * 1e3
    n = st.median(net(r, k) for r in per) * 1e3
    if k == "baseline":
        print(f"{k:16} {m:7.2f} {n:6.2f}")
        continue
    f = [net(r, k) / net(r, "floor") for r in per]
    s = [net(r, k) / net(r, "systemd-binfmt") for r in per]
    print(f"{k:16} {m:7.2f} {n:6.2f} {st.median(f):10.2f} {min(f):5.2f}..{max(f):<5.2f} {st.median(s):19.2f} {min(s):5.2f}..{max(s):<5.2f}")
PY

# Less noise: one private instance, emptied before every run (`echo -1 > status`, and
# for boot-first the cache file removed), each run one exec; net = command - a static
# no-op program.
echo
echo "one private instance, emptied before each run ($((runs * rounds)) runs):"
reset="echo -1 > /proc/sys/fs/binfmt_misc/status"
$ns "$mnt && hyperfine -N --warmup 5 --runs $((runs * rounds)) --export-json $out/reset.json \
  --prepare 'sh -c \"$reset; rm -f $out/run/native.json\"' \
  -n noop '$out/noop' \
  -n floor '$out/floor' \
  -n systemd-binfmt '/usr/lib/systemd/systemd-binfmt $confs' \
  -n enable 'env $warm $A -q enable --all --no-verify' \
  -n boot-first 'env $first $A -q --config /nonexistent/config.toml boot' >/dev/null"
python3 - "$out/reset.json" <<'PY'
import json, sys, statistics as st
r = {x["command"]: st.median(x["times"]) for x in json.load(open(sys.argv[1]))["results"]}
net = {k: v - r["noop"] for k, v in r.items()}
for k, v in r.items():
    if k == "noop":
        print(f"{k:16} median {v*1e3:6.3f} ms")
        continue
    print(f"{k:16} median {v*1e3:6.3f} ms  net {net[k]*1e3:6.3f}  net/floor {net[k]/net['floor']:5.2f}  net/systemd-binfmt {net[k]/net['systemd-binfmt']:5.2f}")
PY

# The same with Debian's own entries present (systemd-binfmt loads /usr/lib/binfmt.d
# before every run): archctl keeps them (equivalent: same inode behind Debian's
# symlinks, flags POF) and registers only the targets Debian leaves out.
debian=$(ls /usr/lib/binfmt.d/qemu-*.conf 2>/dev/null | tr '\n' ' ')
if [ -n "$debian" ]; then
  echo
  echo "one private instance holding Debian's entries before each run ($((runs * rounds)) runs):"
  $ns "$mnt && hyperfine -N --warmup 5 --runs $((runs * rounds)) --export-json $out/debian.json \
    --prepare 'sh -c \"$reset; rm -f $out/run/native.json; /usr/lib/systemd/systemd-binfmt $debian\"' \
    -n noop '$out/noop' \
    -n enable-debian 'env $warm $A -q enable --all --no-verify' \
    -n boot-first-debian 'env $first $A -q --config /nonexistent/config.toml boot' >/dev/null"
  python3 - "$out/reset.json" "$out/debian.json" <<'PY'
import json, sys, statistics as st
base = {x["command"]: st.median(x["times"]) for x in json.load(open(sys.argv[1]))["results"]}
r = {x["command"]: st.median(x["times"]) for x in json.load(open(sys.argv[2]))["results"]}
floor, sd = base["floor"] - base["noop"], base["systemd-binfmt"] - base["noop"]
for k, v in r.items():
    if k == "noop":
        continue
    n = v - r["noop"]
    print(f"{k:18} median {v*1e3:6.3f} ms  net {n*1e3:6.3f}  net/floor {n/floor:5.2f}  net/systemd-binfmt {n/sd:5.2f}")
PY
fi

# Page faults (stable, unlike time): one run each in a fresh instance (after a warm-up).
if perf stat -e page-faults true >/dev/null 2>&1; then
  echo
  for c in "$out/floor" "env $warm $A -q enable --all --no-verify" \
    "env $first $A -q --config /nonexistent/config.toml boot" "env $warm $A -q --config /nonexistent/config.toml boot"; do
    $ns "$mnt && $c" >/dev/null 2>&1 || true
    pf=$($ns "$mnt && perf stat -x, -e page-faults $c" 2>&1 >/dev/null | grep page-faults | cut -d, -f1)
    echo "page faults: ${pf:-?}  (${c#env ARCHCTL_RUNTIME_DIR=$out/})"
  done
fi
