#!/usr/bin/env bash
# The demo: a simulated LAN and two ISPs in network namespaces, wanlb between them with the
# example settings (isp1:isp2 = 2:1, the IRC server pinned to isp2), traffic from the LAN
# host to many destinations, and how it split; then isp1's line dies beyond its modem and
# comes back. Everything it creates is removed at the end.
#
#   scripts/demo.sh [DESTINATIONS]     (default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_tools "${BASE_TOOLS[@]}"
ensure_rust

DESTS=${1:-90}
P=wldemo$$
BIN=target/release
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/testbed.sh down "$P"
  rm -rf "/tmp/$P"
}
trap cleanup EXIT

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

say "building wanlb and its probe (release)"
cargo build --release --locked -p wanlb -p wanlb-tools --bins 2>&1 | tail -1

say "testbed $P: lan host -> gw (wanlb) -> isp1 (r1) / isp2 (r2) -> internet, all in 198.18.0.0/15"
scripts/testbed.sh up "$P"

ip netns exec "${P}inet" "$BIN/wanlb-probe" serve --udp 198.19.0.0/24 --udp 198.19.200.91/32 --tcp 0.0.0.0:9000 >/dev/null &
pids+=($!)

args=(--lan eth0
      --uplink isp1,dev=eth1,gw=198.18.1.254,weight=2
      --uplink isp2,dev=eth2,gw=198.18.2.254,weight=1
      --pin 198.19.200.91/32=isp2
      --health-target 198.19.255.1 --health-target 198.19.255.2
      --state-dir "/tmp/$P")
say "wanlb run ${args[*]}"
ip netns exec "${P}gw" "$BIN/wanlb" run "${args[@]}" 2>"/tmp/$P.log" &
wanlb_pid=$!
pids+=($wanlb_pid)
for _ in $(seq 100); do grep -q ' ready ' "/tmp/$P.log" && break; sleep 0.1; done
grep -q ' ready ' "/tmp/$P.log" || { cat "/tmp/$P.log"; echo "wanlb did not start" >&2; exit 1; }
sed 's/^/  wanlb: /' "/tmp/$P.log"

say "UDP: one new flow to each of $DESTS destinations (the far end reports the address it saw)"
ip netns exec "${P}lan" "$BIN/wanlb-probe" spread --dst 198.19.0.1 --count "$DESTS" > "/tmp/$P.spread"
head -4 "/tmp/$P.spread" | sed 's/^/  /'; echo "  ..."
dests_via() { awk -v a="$1:" '$1 == "via" && $2 == a {print $3}' "/tmp/$P.spread"; }
one=$(dests_via 198.18.1.1); two=$(dests_via 198.18.2.1)
printf '  %-6s %-12s %13s %10s\n' uplink address destinations "by weight"
printf '  %-6s %-12s %13d %10s\n' isp1 198.18.1.1 "$one" "$((DESTS * 2 / 3))"
printf '  %-6s %-12s %13d %10s\n' isp2 198.18.2.1 "$two" "$((DESTS - DESTS * 2 / 3))"

say "ping 198.19.0.1 from the LAN host (it keeps the uplink it got above)"
ip netns exec "${P}lan" ping -c 3 -i 0.2 198.19.0.1 | sed 's/^/  /'

say "TCP: 20 MB to an echo server and back, every byte checked"
ip netns exec "${P}lan" "$BIN/wanlb-probe" tcp-check --dst 198.19.0.9:9000 --bytes 20000000 | sed 's/^/  /'

say "stickiness: 6 new flows to 198.19.0.7, which already has an uplink"
ip netns exec "${P}lan" "$BIN/wanlb-probe" spread --dst 198.19.0.7 --flows 6 | grep '^via' | sed 's/^/  /'

say "pin: 6 new flows to the IRC server 198.19.200.91 (pinned to isp2)"
ip netns exec "${P}lan" "$BIN/wanlb-probe" spread --dst 198.19.200.91 --flows 6 | grep '^via' | sed 's/^/  /'

log_since() { tail -n +"$1" "/tmp/$P.log" | grep -E 'uplink (up|down)|resetting' | sed -E 's/^[^ ]+ +INFO wanlb::io::monitor(::apply)?: /  wanlb: /'; }
wait_log() { for _ in $(seq 100); do tail -n +"$1" "/tmp/$P.log" | grep -q "$2" && return; sleep 0.1; done; }

say "isp1's line dies beyond its modem (r1 stops forwarding but still answers ARP)"
mark=$(($(wc -l < "/tmp/$P.log") + 1))
ip netns exec "${P}r1" nft add table ip cut
ip netns exec "${P}r1" nft 'add chain ip cut forward { type filter hook forward priority 0; policy drop; }'
cut_at=$(date +%s%N)
wait_log "$mark" 'uplink down uplink=isp1'
echo "  noticed after $(( ($(date +%s%N) - cut_at) / 1000000 )) ms"
log_since "$mark"
echo "  new flows to 9 destinations:"
ip netns exec "${P}lan" "$BIN/wanlb-probe" spread --dst 198.19.0.120 --count 9 | grep '^via' | sed 's/^/    /'

say "isp1's line comes back: used again once it has answered for 2 s"
mark=$(($(wc -l < "/tmp/$P.log") + 1))
ip netns exec "${P}r1" nft delete table ip cut
wait_log "$mark" 'uplink up uplink=isp1'
log_since "$mark"
echo "  new flows to 9 more destinations:"
ip netns exec "${P}lan" "$BIN/wanlb-probe" spread --dst 198.19.0.140 --count 9 | grep '^via' | sed 's/^/    /'

say "stopping wanlb (SIGTERM): its own per-uplink totals"
kill -TERM "$wanlb_pid"
wait "$wanlb_pid" || true
pids=("${pids[@]/$wanlb_pid}")
grep -E ' status |uplink totals|fast path|drops|stopped' "/tmp/$P.log" | sed -E 's/^[^ ]+ +INFO wanlb::gateway(::[a-z]+)?: /  /'
rm -f "/tmp/$P.log" "/tmp/$P.spread"
