#!/usr/bin/env bash
# Benchmark: registering the qemu targets in a fresh, private binfmt_misc instance
# (user + mount namespace, Linux 6.7+) with `archctl enable` vs Debian's systemd-binfmt
# on the same targets, in one hyperfine run. Net time = command - (namespace + mount
# alone). Needs: hyperfine, qemu-user-static, systemd (systemd-binfmt), python3.
#
#   bash benches/binfmt.sh [RUNS]   (runs per command and round, default 15; ROUNDS=15)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}

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
# Warm archctl's per-boot native-set cache once (as `archctl boot` does at boot).
$ns "$mnt && $A -q enable --all --no-verify" >/dev/null

# Sanity: both tools really register the same number of entries.
n_sd=$($ns "$mnt && /usr/lib/systemd/systemd-binfmt $confs && ls /proc/sys/fs/binfmt_misc | grep -c '^qemu-'")
n_ac=$($ns "$mnt && $A -q enable --no-verify $targets && ls /proc/sys/fs/binfmt_misc | grep -c '^qemu-'")
echo "entries registered: systemd-binfmt $n_sd, archctl $n_ac (targets: $targets)"
[ "$n_sd" = "$n_ac" ] || { echo "entry counts differ" >&2; exit 1; }

# Machines here are shared and noisy, and hyperfine runs one command's runs back to
# back: so measure in rounds, each timing every command, and report per-round ratios of
# median net times, then the median over rounds.
rounds=${ROUNDS:-15}
for r in $(seq "$rounds"); do
  hyperfine -N --warmup 3 --runs "$runs" --export-json "$out/r$r.json" \
    -n baseline "$ns '$mnt'" \
    -n systemd-binfmt "$ns '$mnt && /usr/lib/systemd/systemd-binfmt $confs'" \
    -n archctl-no-verify "$ns '$mnt && $A -q enable --no-verify $targets'" \
    -n archctl-all-no-verify "$ns '$mnt && $A -q enable --all --no-verify'" \
    -n archctl-boot "$ns '$mnt && $A -q --config /nonexistent/config.toml boot'" \
    -n archctl-verify "$ns '$mnt && $A -q enable $targets'" \
    -n archctl-all-verify "$ns '$mnt && $A -q enable --all'" >/dev/null
done

python3 - "$out" "$rounds" <<'PY'
import json, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
per = [{x["command"]: x for x in json.load(open(f"{out}/r{r}.json"))["results"]} for r in range(1, rounds + 1)]
names = list(per[0])
def med(r, k): return st.median(r[k]["times"])
def net(r, k): return med(r, k) - med(r, "baseline")
print(f"{rounds} rounds x {len(per[0]['baseline']['times'])} runs; times are medians in ms")
print(f"{'command':24} {'median':>8} {'net':>8} {'net/systemd-binfmt':>19} {'(min..max over rounds)':>24}")
for k in names:
    m = st.median(med(r, k) for r in per) * 1e3
    n = st.median(net(r, k) for r in per) * 1e3
    if k == "baseline":
        print(f"{k:24} {m:8.2f} {n:8.2f}")
        continue
    ratios = [net(r, k) / net(r, "systemd-binfmt") for r in per]
    print(f"{k:24} {m:8.2f} {n:8.2f} {st.median(ratios):19.2f} {min(ratios):11.2f}..{max(ratios):.2f}")
ratios = [net(r, "archctl-no-verify") / net(r, "systemd-binfmt") for r in per]
print(f"\narchctl enable --no-verify / systemd-binfmt, net, same targets: {st.median(ratios):.2f} (target <= 0.33)")
ratios = [net(r, "archctl-all-no-verify") / net(r, "systemd-binfmt") for r in per]
print(f"archctl enable --all --no-verify / systemd-binfmt, net: {st.median(ratios):.2f} (3 more targets; native set from the per-boot cache)")
PY

# Cross-check with less noise: one private instance, emptied before every run
# (`echo -1 > status` removes every entry), so no namespace cost is subtracted.
echo
echo "one private instance, emptied before each run ($((runs * rounds)) runs):"
$ns "$mnt && hyperfine -N --warmup 5 --runs $((runs * rounds)) --export-json $out/reset.json \
  --prepare 'sh -c \"echo -1 > /proc/sys/fs/binfmt_misc/status\"' \
  -n systemd-binfmt '/usr/lib/systemd/systemd-binfmt $confs' \
  -n archctl-no-verify '$A -q enable --no-verify $targets' \
  -n archctl-all-no-verify '$A -q enable --all --no-verify' >/dev/null"
python3 - "$out/reset.json" <<'PY'
import json, sys, statistics as st
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
sd = st.median(r["systemd-binfmt"]["times"])
for k, x in r.items():
    m = st.median(x["times"])
    print(f"{k:24} median {m*1e3:6.2f} ms  ratio {m/sd:.2f}")
PY

# Size of the release binaries and peak memory of `archctl status`.
echo
for b in target/static/archctl-*; do
  [ -f "$b" ] && echo "binary $(basename "$b"): $(stat -c %s "$b") bytes"
done
if [ -x /usr/bin/time ]; then
  rss=$(/usr/bin/time -f %M "$A" status 2>&1 >/dev/null | tail -n 1)
  echo "peak RSS of archctl status: ${rss} KiB"
else
  echo "peak RSS: /usr/bin/time missing (apt-get install time)"
fi
