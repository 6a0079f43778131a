#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a while and says how many inputs each ran.
#
#   scripts/fuzz.sh [SECONDS]     (default 60 per target)
#
# cargo-fuzz needs nightly flags; this machine has one stable toolchain, so they are allowed
# with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz from crates.io if it is missing. Crashes stop
# the run with the failing input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_rust
SECONDS_EACH=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cd fuzz
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  log=$(mktemp)
  if ! cargo fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $target failed" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz $target: $runs inputs in ${SECONDS_EACH}s, no crash"
  rm -f "$log"
done
