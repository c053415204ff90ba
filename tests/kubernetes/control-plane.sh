#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for the tests of issue #14 (node-agent,
# webhook): kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 built from
# Debian's `kubernetes` source package (the full upstream tree with vendor/, offline,
# with Debian's Go 1.19), with Debian's etcd. Facts and pitfalls:
# ../shared/kubernetes-control-plane.md.
#
#   control-plane.sh build [DIR]   fetch + build once into DIR/bin (default
#                                  target/kubernetes); does nothing when DIR/bin is up
#                                  to date (a stamp names the source and the fix)
#   control-plane.sh start STATE   certificates, etcd, the three components on 127.0.0.1
#                                  with free ports; waits for /readyz; writes
#                                  STATE/kubeconfig, STATE/token, STATE/ca.crt,
#                                  STATE/ca.key, STATE/env; logs STATE/*.log
#   control-plane.sh stop STATE    stops what start started (pid files), waits for it
#
# The binaries come from ARCHCTL_K8S_BIN (default target/kubernetes/bin). Every process
# that `start` runs watches the pid in ARCHCTL_K8S_OWNER (when set, e.g. the test
# process): when that pid is gone they are stopped, so a test binary that exits (or is
# killed) never leaves a control plane behind. Loopback only: nothing listens elsewhere,
# and the service range (10.0.0.0/24) is configuration, never traffic.
# Needs: golang-1.19, rsync, etcd-server, golang-github-modern-go-reflect2-dev,
# openssl, curl, python3 (free ports).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
die() {
  echo "control-plane.sh: error: $1" >&2
  [ -z "${2:-}" ] || echo "hint: $2" >&2
  exit 1
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "[control-plane $(date -u +%T)] $*" >&2; }

components=(kube-apiserver kube-controller-manager kube-scheduler)
# The fix the tree needs (see the notes): vendored reflect2 1.0.1 crashes under Go >= 1.18.
fix_version=reflect2-from-debian-1

# --- build -------------------------------------------------------------------------
have_bins() {
  local c
  for c in "${components[@]}"; do [ -x "$1/$c" ] || return 1; done
}

build() {
  local dir=${1:-$repo/target/kubernetes} apt src tree t0 t1 version mirror c
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local bin=$dir/bin stamp=$dir/bin/.stamp
  apt=$dir/apt
  src=$dir/src
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$src" "$bin"
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /^http/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  local security=${mirror%/debian}/debian-security
  # A private apt state with deb-src lines: the machine's sources are never edited.
  {
    echo "deb-src $mirror bookworm main"
    echo "deb-src $mirror bookworm-updates main"
    echo "deb-src $security bookworm-security main"
  } >"$apt/sources.list"
  local -a aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1)
  t0=$(now)
  apt-get "${aptopts[@]}" -q update >"$dir/apt-update.log" 2>&1 ||
    { tail -n 20 "$dir/apt-update.log" >&2; die "apt-get update (deb-src of $mirror) failed" "check the mirror"; }
  version=$(apt-cache "${aptopts[@]}" showsrc kubernetes 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -V | tail -n 1)
  [ -n "$version" ] || die "no source package kubernetes in $mirror bookworm"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "kubernetes $version $fix_version" ] && have_bins "$bin"; then
    say "up to date: $bin (kubernetes $version, $fix_version)"
    return 0
  fi
  if ! ls "$src"/kubernetes_*.orig.tar.* >/dev/null 2>&1; then
    (cd "$src" && apt-get "${aptopts[@]}" -q source --download-only "kubernetes=$version") >"$dir/apt-source.log" 2>&1 ||
      { tail -n 20 "$dir/apt-source.log" >&2; die "apt-get source kubernetes=$version failed"; }
  fi
  t1=$(now)
  say "fetched kubernetes $version source in $(secs "$t0" "$t1") s ($(du -sh "$src" | cut -f1))"
  tree=$dir/tree
  rm -rf "$tree"
  mkdir -p "$tree"
  tar -xf "$(find "$src" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | head -n 1)" -C "$tree" --strip-components=1
  if [ ! -f "$tree/Makefile" ] || [ ! -d "$tree/vendor" ]; then
    die "the orig tarball has no Makefile or vendor/ at its top"
  fi
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -d "$r2" ] || die "$r2 missing" "apt-get install golang-github-modern-go-reflect2-dev"
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  mkdir -p "$tree/vendor/github.com/modern-go/reflect2"
  find "$r2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
    -exec cp {} "$tree/vendor/github.com/modern-go/reflect2/" \;
  [ -x /usr/lib/go-1.19/bin/go ] || die "/usr/lib/go-1.19/bin/go missing" "apt-get install golang-1.19"
  t0=$(now)
  say "building ${components[*]} (nice; a cold build takes ~14 min on 2 cores)"
  local goarch
  goarch=$(/usr/lib/go-1.19/bin/go env GOARCH)
  (
    cd "$tree"
    export PATH=/usr/lib/go-1.19/bin:$PATH GOPATH=$dir/gopath GOCACHE=$dir/gocache \
      GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local KUBE_BUILD_PLATFORMS=linux/$goarch
    nice -n 10 make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"
  ) >"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; die "make failed ($dir/build.log)"; }
  t1=$(now)
  for c in "${components[@]}"; do
    install -m 0755 "$tree/_output/bin/$c" "$bin/$c"
  done
  echo "kubernetes $version $fix_version" >"$stamp"
  say "built in $(secs "$t0" "$t1") s: $(for c in "${components[@]}"; do printf '%s %s  ' "$c" "$(du -h "$bin/$c" | cut -f1)"; done)"
  say "disk: tree with its build output $(du -sh "$tree" | cut -f1), Go cache $(du -sh "$dir/gocache" 2>/dev/null | cut -f1)"
  # The tree and the Go cache are not needed to run: only bin/ is.
  rm -rf "$tree" "$dir/gopath"
}

# --- start / stop ------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# launch NAME LOG CMD...: start CMD in the background (its own process group), pid in
# STATE/NAME.pid; with ARCHCTL_K8S_OWNER, a watcher stops it when the owner is gone.
launch() {
  local name=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$state/$name.pid"
  if [ -n "${ARCHCTL_K8S_OWNER:-}" ]; then
    # shellcheck disable=SC2016 # $1 and $2 are the watcher's own arguments
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
      kill -TERM "$2" 2>/dev/null; sleep 5; kill -KILL "$2" 2>/dev/null' \
      watcher "$ARCHCTL_K8S_OWNER" "$pid" >/dev/null 2>&1 </dev/null &
  fi
}

fail_start() {
  local name=$1
  echo "---- $name log tail ($state/$name.log) ----" >&2
  tail -n 30 "$state/$name.log" >&2 || true
  stop_all
  die "$name did not start: $2"
}

# wait_http URL SECS NAME [CURL-ARGS...]: until URL answers 200.
wait_http() {
  local url=$1 limit=$2 name=$3 t0
  shift 3
  t0=$(date +%s)
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    kill -0 "$(cat "$state/$name.pid")" 2>/dev/null || fail_start "$name" "it exited"
    [ $(($(date +%s) - t0)) -lt "$limit" ] || fail_start "$name" "no 200 from $url within $limit s"
    sleep 0.3
  done
}

start() {
  state=$1
  mkdir -p "$state"
  state=$(cd "$state" && pwd)
  local bin=${ARCHCTL_K8S_BIN:-$repo/target/kubernetes/bin} c t0
  for c in "${components[@]}"; do
    [ -x "$bin/$c" ] || die "$bin/$c missing" "bash tests/kubernetes/control-plane.sh build"
  done
  command -v etcd >/dev/null || die "etcd missing" "apt-get install etcd-server"
  t0=$(now)
  # Certificates: a CA, the API server's (127.0.0.1 and localhost), the service-account
  # key pair, a random admin token.
  (
    cd "$state"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
      -subj /CN=archctl-test-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj /CN=kube-apiserver 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 2 -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    token=$(openssl rand -hex 24)
    echo "$token" >token
    echo "$token,admin,admin,system:masters" >tokens.csv
    chmod 600 ca.key apiserver.key sa.key token tokens.csv
  ) || die "openssl failed making the certificates in $state"
  local token etcd_port peer_port port attempt
  token=$(cat "$state/token")
  for attempt in 1 2 3; do
    etcd_port=$(free_port)
    peer_port=$(free_port)
    launch etcd "$state/etcd.log" etcd --name archctl-test --data-dir "$state/etcd" \
      --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
      --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-cluster "archctl-test=http://127.0.0.1:$peer_port" \
      --quota-backend-bytes 1073741824
    if wait_etcd "http://127.0.0.1:$etcd_port/health"; then break; fi
    if ! grep -q "address already in use" "$state/etcd.log" || [ "$attempt" -ge 3 ]; then
      fail_start etcd "no health within 30 s"
    fi
    rm -rf "$state/etcd"
  done
  for attempt in 1 2 3; do
    port=$(free_port)
    launch kube-apiserver "$state/kube-apiserver.log" "$bin/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$etcd_port" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
      --secure-port="$port" --insecure-port=0 \
      --tls-cert-file="$state/apiserver.crt" --tls-private-key-file="$state/apiserver.key" \
      --client-ca-file="$state/ca.crt" \
      --service-account-issuer=https://kubernetes.default.svc \
      --service-account-key-file="$state/sa.pub" --service-account-signing-key-file="$state/sa.key" \
      --token-auth-file="$state/tokens.csv" --authorization-mode=Node,RBAC \
      --service-cluster-ip-range=10.0.0.0/24 --enable-priority-and-fairness=false --allow-privileged=true \
      --cert-dir="$state/apiserver-certs"
    if wait_apiserver "https://127.0.0.1:$port/readyz" "$token"; then break; fi
    if ! grep -q "address already in use" "$state/kube-apiserver.log" || [ "$attempt" -ge 3 ]; then
      fail_start kube-apiserver "no /readyz 200 within 90 s"
    fi
  done
  local server="https://127.0.0.1:$port" ca_data
  ca_data=$(base64 -w0 <"$state/ca.crt")
  cat >"$state/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: archctl-test
  cluster:
    server: $server
    certificate-authority-data: $ca_data
users:
- name: admin
  user:
    token: $token
contexts:
- name: archctl-test
  context:
    cluster: archctl-test
    user: admin
current-context: archctl-test
EOF
  chmod 600 "$state/kubeconfig"
  launch kube-controller-manager "$state/kube-controller-manager.log" "$bin/kube-controller-manager" \
    --kubeconfig="$state/kubeconfig" --leader-elect=false --controllers='*,-nodelifecycle' \
    --service-account-private-key-file="$state/sa.key" --root-ca-file="$state/ca.crt" \
    --bind-address=127.0.0.1 --secure-port=0 --port=0 --use-service-account-credentials=false
  launch kube-scheduler "$state/kube-scheduler.log" "$bin/kube-scheduler" \
    --kubeconfig="$state/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --port=0 --secure-port=0
  sleep 0.5
  for c in kube-controller-manager kube-scheduler; do
    kill -0 "$(cat "$state/$c.pid")" 2>/dev/null || fail_start "$c" "it exited"
  done
  cat >"$state/env" <<EOF
KUBECONFIG=$state/kubeconfig
ARCHCTL_K8S_SERVER=$server
ARCHCTL_K8S_TOKEN=$token
EOF
  say "ready in $(secs "$t0" "$(now)") s: $server (etcd 127.0.0.1:$etcd_port), state $state"
}

wait_etcd() {
  local t0
  t0=$(date +%s)
  until curl -fsS --max-time 2 "$1" 2>/dev/null | grep -q '"health":"true"'; do
    kill -0 "$(cat "$state/etcd.pid")" 2>/dev/null || return 1
    [ $(($(date +%s) - t0)) -lt 30 ] || return 1
    sleep 0.2
  done
}

wait_apiserver() {
  local t0
  t0=$(date +%s)
  until curl -fsS -o /dev/null --max-time 3 --cacert "$state/ca.crt" -H "Authorization: Bearer $2" "$1" 2>/dev/null; do
    kill -0 "$(cat "$state/kube-apiserver.pid")" 2>/dev/null || return 1
    [ $(($(date +%s) - t0)) -lt 90 ] || return 1
    sleep 0.5
  done
}

stop_all() {
  local f pid
  for f in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    [ -f "$state/$f.pid" ] || continue
    pid=$(cat "$state/$f.pid")
    kill -TERM "$pid" 2>/dev/null || true
  done
  for f in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    [ -f "$state/$f.pid" ] || continue
    pid=$(cat "$state/$f.pid")
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$state/$f.pid"
  done
}

stop() {
  state=$1
  [ -d "$state" ] || die "$state does not exist"
  state=$(cd "$state" && pwd)
  stop_all
}

case ${1:-} in
  build) build "${2:-}" ;;
  start) [ $# -eq 2 ] || die "usage: $0 start STATEDIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop STATEDIR"; stop "$2" ;;
  *) die "usage: $0 build [DIR] | start STATEDIR | stop STATEDIR" ;;
esac
