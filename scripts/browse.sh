#!/usr/bin/env bash
# Debian's headless Chromium inside network namespace NS, for the status page's test and its
# screenshot (testbed.sh web makes such a namespace):
#
#   scripts/browse.sh NS URL --dump-dom          the DOM once the page's script has run
#   scripts/browse.sh NS URL --screenshot=FILE
#
# URL's host must be an address (no names are resolved). A browser makes requests of its own
# (updates, safe browsing, sync, DNS). Here none can leave the test network: it refuses a
# namespace with an IPv6 route or an IPv4 route beyond 198.18.0.0/15 and loopback, switches
# that background traffic off, and makes every host but URL's unresolvable. Its profile lives
# in a temporary directory, removed afterwards.
set -euo pipefail
usage="usage: browse.sh NS URL CHROMIUM-ARGS..."
ns=${1:?$usage}
url=${2:?$usage}
shift 2
command -v chromium >/dev/null || {
  echo "browse: chromium is missing (apt-get install chromium; scripts/test.sh installs it)" >&2
  exit 1
}

refuse() { echo "browse: $ns $1: no browser runs there" >&2; exit 1; }

# within_test_net DEST: DEST (A.B.C.D or A.B.C.D/LEN) lies in 198.18.0.0/15 or 127.0.0.0/8
within_test_net() {
  local len=32 a b
  [[ ${1%/*} =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
  [[ $1 == */* ]] && len=${1#*/}
  IFS=. read -r a b _ <<< "${1%/*}"
  [[ $a == 127 && $len -ge 8 ]] || [[ $a == 198 && ($b == 18 || $b == 19) && $len -ge 15 ]]
}

routes=$(ip -n "$ns" -4 route show table all) || refuse "cannot be inspected"
while read -r first second _; do
  # a route's destination comes first, after its type if that is not unicast (local...)
  dest=$first
  [[ $first =~ ^[0-9] || $first == default ]] || dest=$second
  within_test_net "$dest" || refuse "has a route to $dest"
done <<< "$routes"
[ -z "$(ip -n "$ns" -6 route show table all)" ] || refuse "has IPv6 routes"
host=${url#*://}
host=${host%%[:/]*}
within_test_net "$host" || { echo "browse: $url is not in the test network" >&2; exit 1; }

dir=$(mktemp -d /tmp/wanlb-browser.XXXXXX)
trap 'rm -rf "$dir"' EXIT
# root needs --no-sandbox; HOME and XDG_* keep what Chromium writes in the temporary directory
if ! ip netns exec "$ns" env HOME="$dir" XDG_CONFIG_HOME="$dir/config" XDG_CACHE_HOME="$dir/cache" \
  timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$dir/profile" \
  --no-first-run --no-default-browser-check --disable-default-apps --disable-extensions \
  --disable-background-networking --disable-component-update --disable-sync \
  --disable-domain-reliability --disable-client-side-phishing-detection --disable-breakpad \
  --metrics-recording-only --dns-prefetch-disable --host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE $host" \
  --hide-scrollbars "$@" "$url" 2> "$dir/log"; then
  # its log is mostly complaints about the missing desktop bus: shown only when it fails
  cat "$dir/log" >&2
  exit 1
fi
