#!/usr/bin/env bash
# The whole test suite: engine unit and property tests (no root needed), then the netns
# integration tests driving the real binary (root). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_tools "${BASE_TOOLS[@]}"
ensure_rust
cargo test --all-targets --locked "$@"
