#!/usr/bin/env bash
# Peak memory of `archctl status` with 1,000 entries registered, in a private
# binfmt_misc instance (user + mount namespace, Linux 6.7+; the host's table is never
# touched). Target: <= 8 MB. (`inspect` of 1,000 refs: INSPECT_RSS=1000 cargo bench
# --bench inspect.)
#
#   bash benches/rss.sh [ENTRIES]          ARCHCTL=path/to/archctl to skip the build
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
# shellcheck source=benches/common.sh
. benches/common.sh
archctl_binary
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Entries of all three kinds archctl meets: its own qemu entries, magic entries of other
# tools, extension entries.
{
  for i in $(seq "$n"); do
    case $((i % 3)) in
      0) printf ':bench-m%d:M::\\x7fBENCH%d::/bin/true:\n' "$i" "$i" ;;
      1) printf ':bench-e%d:E::ext%d::/bin/true:\n' "$i" "$i" ;;
      2) printf ':bench-o%d:M:2:\\x%02x\\x%02x\\xff:\\xff\\xff\\xff:/bin/true:F\n' "$i" $((i / 256)) $((i % 256)) ;;
    esac
  done
} > "$out/entries"
ns='unshare --user --map-root-user --mount --propagation private sh -c'
mnt='mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc'
$ns "$mnt && ARCHCTL_RUNTIME_DIR=$out $A -q enable --all --no-verify && while read -r l; do printf '%s' \"\$l\" > /proc/sys/fs/binfmt_misc/register; done < $out/entries \
  && echo \"entries: \$(ls /proc/sys/fs/binfmt_misc | wc -l)\" \
  && for f in '' --json; do /usr/bin/time -f \"peak RSS of archctl status \$f: %M KiB (%e s)\" env ARCHCTL_RUNTIME_DIR=$out $A status \$f >/dev/null; done"
