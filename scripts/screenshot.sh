#!/usr/bin/env bash
# docs/status-page.png: the status page in headless Chromium (scripts/browse.sh), in the test
# network with its browser namespace (testbed.sh up, web), after the LAN host has sent traffic
# over both lines for a while and isp1's line has died beyond its modem for the last third.
# Everything it creates is removed at the end.
#
#   scripts/screenshot.sh [SECONDS]     (of traffic before the picture; default 150)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_tools "${BASE_TOOLS[@]}" "${BROWSER_TOOLS[@]}"
ensure_rust

DURATION=${1:-150}
P=wlshot$$
BIN=target/release
TOKEN=screenshot
OUT=$PWD/docs/status-page.png
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/testbed.sh down "$P"
  rm -rf "/tmp/$P" "/tmp/$P.log"
}
trap cleanup EXIT

cargo build --release --locked -p wanlb -p wanlb-tools --bins 2>&1 | tail -1
scripts/testbed.sh up "$P"
scripts/testbed.sh web "$P"
ip netns exec "${P}inet" "$BIN/wanlb-probe" serve --udp 198.19.0.0/24 --udp 198.19.200.91/32 --tcp 0.0.0.0:9000 >/dev/null &
pids+=($!)
ip netns exec "${P}gw" "$BIN/wanlb" run --lan eth0 \
  --uplink isp1,dev=eth1,gw=198.18.1.254,weight=2 --uplink isp2,dev=eth2,gw=198.18.2.254,weight=1 \
  --pin 198.19.200.91/32=isp2 --forward tcp:443=198.18.3.10:443@isp2 \
  --health-target 198.19.255.1 --health-target 198.19.255.2 \
  --listen 198.18.4.1:9911 --listen-token "$TOKEN" --state-dir "/tmp/$P" 2>"/tmp/$P.log" &
pids+=($!)
for _ in $(seq 100); do grep -q ' ready ' "/tmp/$P.log" && break; sleep 0.1; done
grep -q ' ready ' "/tmp/$P.log" || { cat "/tmp/$P.log"; echo "wanlb did not start" >&2; exit 1; }

echo "traffic for $DURATION s (isp1 cut after $((DURATION * 2 / 3)) s)" >&2
start=$SECONDS
cut=false
i=0
while [ $((SECONDS - start)) -lt "$DURATION" ]; do
  if ! $cut && [ $((SECONDS - start)) -ge $((DURATION * 2 / 3)) ]; then
    ip netns exec "${P}r1" nft add table ip cut
    ip netns exec "${P}r1" nft 'add chain ip cut forward { type filter hook forward priority 0; policy drop; }'
    cut=true
  fi
  # an echo of 0.5 to 5 MB to one of 60 destinations, which keep their line; the ones on
  # isp1 when it dies are reset
  ip netns exec "${P}lan" "$BIN/wanlb-probe" tcp-check --dst "198.19.0.$((i % 60 + 1)):9000" \
    --bytes $(((RANDOM % 10 + 1) * 500000)) >/dev/null 2>&1 || true
  i=$((i + 1))
  sleep 0.$((RANDOM % 8 + 2))
done
scripts/browse.sh "${P}web" "http://198.18.4.1:9911/#token=$TOKEN" \
  --virtual-time-budget=5000 --window-size=1200,800 --screenshot="$OUT"
echo "wrote $OUT" >&2
