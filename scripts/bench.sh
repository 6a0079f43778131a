#!/usr/bin/env bash
# wanlb against the kernel recipe it replaces, side by side on the netns testbed, in one run.
#
#   scripts/bench.sh [all|tcp|udp|latency|flows] [--reps N] [--seconds S] [--workers N]
#
# Writes bench-report/report.md (table with wanlb/kernel ratios), report.json and report.svg.
# The full run takes several minutes; a progress bar shows where it is.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_tools "${BASE_TOOLS[@]}" iperf3:iperf3
ensure_rust

P=wlbench$$
cleanup() { scripts/testbed.sh down "$P"; rm -rf "/tmp/wanlb-bench-$P"; }
trap cleanup EXIT

cargo build --release --locked --features bench-harness --bins 2>&1 | tail -1
scripts/testbed.sh up "$P"
target/release/wanlb-bench --prefix "$P" "$@"
