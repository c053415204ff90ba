#!/usr/bin/env bash
# Benchmark: registering the qemu targets in a fresh, private binfmt_misc instance
# (user + mount namespace, Linux 6.7+) with `archctl enable` vs Debian's systemd-binfmt
# on the same targets, in one hyperfine run. Net time = command - (namespace + mount
# alone). Needs: hyperfine, qemu-user-static, systemd (systemd-binfmt), python3.
#
#   bash benches/binfmt.sh [RUNS]        (default 60 runs per command)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-60}

for tool in hyperfine unshare python3 /usr/lib/systemd/systemd-binfmt; do
  command -v "$tool" >/dev/null || { echo "benches/binfmt.sh: $tool missing (apt-get install hyperfine systemd qemu-user-static python3)" >&2; exit 1; }
done
confs=$(ls /usr/lib/binfmt.d/qemu-*.conf | tr '\n' ' ')
targets=$(for c in $confs; do b=${c##*/qemu-}; echo "${b%.conf}"; done | tr '\n' ' ')

# archctl ships as a static musl binary (no dynamic loader at start-up): measure that
# when the target is installed (rustup target add <arch>-unknown-linux-musl).
musl="$(uname -m)-unknown-linux-musl"
if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  cargo build --release --locked -q --target "$musl"
  A=$PWD/target/$musl/release/archctl
else
  echo "note: $musl not installed, measuring the dynamically linked build" >&2
  cargo build --release --locked -q
  A=$PWD/target/release/archctl
fi
echo "archctl binary: $A ($(stat -c %s "$A") bytes)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ns='unshare --user --map-root-user --mount --propagation private sh -c'
mnt='mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc'

# Sanity: both tools really register the same number of entries.
n_sd=$($ns "$mnt && /usr/lib/systemd/systemd-binfmt $confs && ls /proc/sys/fs/binfmt_misc | grep -c '^qemu-'")
n_ac=$($ns "$mnt && $A -q enable --no-verify $targets && ls /proc/sys/fs/binfmt_misc | grep -c '^qemu-'")
echo "entries registered: systemd-binfmt $n_sd, archctl $n_ac (targets: $targets)"
[ "$n_sd" = "$n_ac" ] || { echo "entry counts differ" >&2; exit 1; }

hyperfine -N --warmup 5 --runs "$runs" --export-json "$out/r.json" \
  -n baseline "$ns '$mnt'" \
  -n systemd-binfmt "$ns '$mnt && /usr/lib/systemd/systemd-binfmt $confs'" \
  -n archctl-no-verify "$ns '$mnt && $A -q enable --no-verify $targets'" \
  -n archctl-verify "$ns '$mnt && $A -q enable $targets'" \
  -n archctl-all-no-verify "$ns '$mnt && $A -q enable --all --no-verify'" \
  -n archctl-all-verify "$ns '$mnt && $A -q enable --all'" >&2

python3 - "$out/r.json" <<'PY'
import json, sys, statistics
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r["baseline"]["mean"]
def net(k): return r[k]["mean"] - base
sd = net("systemd-binfmt")
print(f"{'command':24} {'mean ms':>9} {'± ms':>7} {'net ms':>8} {'net / systemd-binfmt':>22}")
for k in r:
    m, s = r[k]["mean"] * 1e3, r[k]["stddev"] * 1e3
    n = net(k) * 1e3
    ratio = "" if k == "baseline" else f"{net(k)/sd:.2f}"
    print(f"{k:24} {m:9.2f} {s:7.2f} {n:8.2f} {ratio:>22}")
print(f"\narchctl enable --no-verify / systemd-binfmt (net, same targets): {net('archctl-no-verify')/sd:.2f} (target <= 0.33)")
PY
