# Sourced by the bench scripts. archctl_binary: the binary to measure, in $A: $ARCHCTL if
# set, else a fresh release build for this machine's musl target (as shipped).
archctl_binary() {
  if [ -n "${ARCHCTL:-}" ]; then
    A=$(realpath "$ARCHCTL")
  else
    local musl
    musl="$(uname -m)-unknown-linux-musl"
    cargo build --release --locked -q --target "$musl"
    A=$PWD/target/$musl/release/archctl
  fi
}
