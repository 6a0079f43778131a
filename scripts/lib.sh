# Shared by the scripts: install what they need, build once.

# ensure_tools TOOL:PACKAGE ...  installs the Debian packages of missing tools.
ensure_tools() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    ensure_packages "${missing[@]}"
  fi
}

# ensure_packages PACKAGE ...  installs Debian packages (for those that provide no command to
# look for, call it directly).
ensure_packages() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages $*: run as root so they can be installed" >&2
    exit 1
  fi
  echo "installing $*" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
  fi
}

require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$0 needs root: it creates network namespaces" >&2
    exit 1
  fi
}

BASE_TOOLS=(ip:iproute2 nft:nftables ping:iputils-ping sysctl:procps kill:procps)

# coturn, for its RFC 5780 client (turnutils_natdiscovery) and a STUN server run inside a test
# namespace. Its package would start a STUN/TURN server in the host's own namespace: it is
# installed with service starts refused (a policy-rc.d of our own, removed however the install
# ends), then its service is stopped and disabled in case a policy-rc.d of the host's let it
# start.
ensure_coturn() {
  command -v turnutils_natdiscovery >/dev/null 2>&1 && return 0
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    ( ensure_packages coturn )
    rm -f "$policy"
    trap - EXIT
  else
    ensure_packages coturn
  fi
  if [ -d /run/systemd/system ]; then
    systemctl disable --now coturn.service >/dev/null 2>&1 || true
  elif command -v invoke-rc.d >/dev/null 2>&1; then
    invoke-rc.d coturn stop >/dev/null 2>&1 || true
  fi
  return 0
}
# the status page's test and screenshot load it in a real browser (scripts/browse.sh)
BROWSER_TOOLS=(chromium:chromium)
