#!/usr/bin/env bash
# The whole test suite of the workspace: engine unit and property tests (no root needed), then
# the netns integration tests driving the real binary and the probe (root). Installs what it
# needs. Arguments go to `cargo test` (e.g. `--release`, `--test netns`, `-- NAME`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_tools "${BASE_TOOLS[@]}" "${BROWSER_TOOLS[@]}"
# tests/router6.rs runs radvd inside the testbed's namespaces, as an ISP router advertising
# itself (only 2001:2::/48 on the test link)
ensure_tools radvd:radvd
# tests/udp_affinity.rs runs coturn's RFC 5780 client against its STUN server, in namespaces
ensure_coturn
# tests/service.rs starts wanlb as the systemd unit would (setpriv); tests/package.rs runs
# scripts/package.sh (which installs what it needs itself), checks the unit (systemd-analyze;
# systemd need not be running) and installs the package in a container with systemd
ensure_tools setpriv:util-linux systemd-analyze:systemd dpkg-deb:dpkg \
  systemd-nspawn:systemd-container debootstrap:debootstrap
ensure_rust
# the integration tests run wanlb-probe (package wanlb-tools), which cargo builds only for
# that package's own tests: build it first, in the profile the tests use
profile=()
for arg in "$@"; do
  [ "$arg" = -- ] && break
  [ "$arg" = --release ] && profile=(--release)
done
cargo build --workspace --bins --locked "${profile[@]}"
cargo test --workspace --all-targets --locked "$@"
