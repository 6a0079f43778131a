#!/usr/bin/env bash
# wanlb against the kernel recipe it replaces, side by side on the netns testbed, in one run.
#
#   scripts/bench.sh [all|tcp|udp|latency|first|cost|flows|failover ...] [--reps N] [--seconds S]
#                    [--workers N] [--userspace] [--no-routed] [--wanlb-arg=ARG ...]
#   scripts/bench.sh stress [--seconds S] [--phases 1,2,3,4] [--no-kernel] [--wanlb-arg=ARG ...]
#   scripts/bench.sh soak [--minutes M] [--warmup-minutes W] [--wanlb-arg=ARG ...]
#   scripts/bench.sh ipv6 [--reps N] [--seconds S] [--workers N]
#
# Several measurements may be named at once (`tcp udp first`). Each repetition runs the kernel
# recipe, plain routing without NAT (tcp, udp, first, cost; not with --no-routed), wanlb and,
# with --userspace, wanlb --offload off, one after another, so drift on a shared machine hits
# them alike. Writes bench-report/report.md (per path the median with the lowest and highest
# repetition, and the ratios to the kernel recipe), report.json and report.svg.
# tcp: one stream each way, 8 streams to 8 destinations, 8 streams to one destination.
# first: 500 request/answer pairs, each from a new UDP socket (a new flow): p50 and p99.
# cost: CPU time per GB at 3 Gbit/s of TCP and per million 64-byte datagrams at 100 kpps,
# read from a cgroup holding every process the benchmark starts (and one for wanlb alone).
# The figures in the README come from
#   scripts/bench.sh tcp udp latency first cost flows --reps 5 --userspace
# `failover` (also part of `all`) measures wanlb alone, the kernel recipe having none: isp1's
# line is cut beyond the gateway and at its link, 5 times each by default, and the report
# gives the gap a UDP stream sees, the datagrams it loses and when a TCP connection is reset.
# The full run takes several minutes; a progress bar shows where it is.
# `stress` (not part of `all`) attacks wanlb phase by phase, each for S s (default 60) on a
# fresh wanlb and, where it applies, on the kernel recipe: a LAN host spraying new UDP flows,
# the same from made-up LAN sources, SYNs from the internet at a port forward, and a crowd of
# idle connections plus a pipelining client on the control port; meanwhile a second LAN host
# opens connections and `wanlb status` is asked every second. `soak` (not part of `all`)
# churns 2000 new flows a second through wanlb for M minutes (default 30) and samples its
# memory. `ipv6` (not part of `all`) puts IPv6 on both lines (testbed.sh ipv6lines) and
# measures TCP each way and ping RTT through wanlb (NPTv6 on isp1, NAT66 on isp2) against the
# kernel's own IPv6 recipe (a multipath route 2:1, `snat ip6 prefix to` and masquerade), into
# bench-report/ipv6-report.md. --wanlb-arg passes a flag to every wanlb started (e.g.
# --wanlb-arg=--max-flows=N).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_tools "${BASE_TOOLS[@]}" iperf3:iperf3 prlimit:util-linux
# stress empties conntrack's table between the kernel recipe's phases
if [ "${1:-}" = stress ]; then ensure_tools conntrack:conntrack; fi
ensure_rust

P=wlbench$$
cleanup() { scripts/testbed.sh down "$P"; rm -rf "/tmp/wanlb-bench-$P"; }
trap cleanup EXIT

cargo build --release --locked -p wanlb -p wanlb-tools --bins 2>&1 | tail -1
T=${CARGO_TARGET_DIR:-target}/release
scripts/testbed.sh up "$P"
"$T/wanlb-bench" --prefix "$P" --bin "$T" "$@"
