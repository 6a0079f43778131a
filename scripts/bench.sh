#!/usr/bin/env bash
# wanlb against the kernel recipe it replaces, side by side on the netns testbed, in one run.
#
#   scripts/bench.sh [all|tcp|udp|latency|flows|failover] [--reps N] [--seconds S] [--workers N]
#
# Writes bench-report/report.md (table with wanlb/kernel ratios), report.json and report.svg.
# `failover` (also part of `all`) measures wanlb alone, the kernel recipe having none: isp1's
# line is cut beyond the gateway and at its link, 5 times each by default, and the report
# gives the gap a UDP stream sees, the datagrams it loses and when a TCP connection is reset.
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

cargo build --release --locked -p wanlb -p wanlb-tools --bins 2>&1 | tail -1
T=${CARGO_TARGET_DIR:-target}/release
scripts/testbed.sh up "$P"
"$T/wanlb-bench" --prefix "$P" --bin "$T" "$@"
