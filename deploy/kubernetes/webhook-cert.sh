#!/usr/bin/env bash
# The placement webhook's TLS: a CA of its own and a server certificate for the
# Service (archctl-webhook.archctl-system.svc), made with openssl, then
#   45-webhook-tls.yaml       the Secret the Deployment mounts (kubernetes.io/tls)
#   50-mutatingwebhook.yaml   mutatingwebhook.yaml.in with the CA in caBundle
# in OUTDIR (default: this directory), so `kubectl apply -f deploy/kubernetes/` applies
# them with the rest. The CA's key is not kept: run it again to renew (both files
# change together). Usage: webhook-cert.sh [OUTDIR] [DAYS (default 825)]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
days=${2:-825}
ns=archctl-system svc=archctl-webhook
command -v openssl >/dev/null || { echo "webhook-cert.sh: error: openssl missing" >&2; exit 1; }
[ -f "$here/mutatingwebhook.yaml.in" ] || { echo "webhook-cert.sh: error: $here/mutatingwebhook.yaml.in missing" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.crt" \
  -days "$days" -subj "/CN=archctl-webhook-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/tls.key" -out "$work/tls.csr" \
  -subj "/CN=$svc.$ns.svc" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
  "$svc" "$svc" "$ns" "$svc" "$ns" "$svc" "$ns" >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/tls.crt" -days "$days" -extfile "$work/ext" 2>/dev/null
b64() { base64 -w0 <"$1"; }
cat >"$out/45-webhook-tls.yaml" <<YAML
# Written by webhook-cert.sh: the webhook's certificate and key. Keep it private.
apiVersion: v1
kind: Secret
metadata:
  name: archctl-webhook-tls
  namespace: $ns
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$work/tls.crt")
  tls.key: $(b64 "$work/tls.key")
YAML
sed "s|@CA_BUNDLE@|$(b64 "$work/ca.crt")|" "$here/mutatingwebhook.yaml.in" >"$out/50-mutatingwebhook.yaml"
chmod 644 "$out/50-mutatingwebhook.yaml"
echo "wrote $out/45-webhook-tls.yaml and $out/50-mutatingwebhook.yaml (valid $days days)"
