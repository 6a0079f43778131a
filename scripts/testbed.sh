#!/usr/bin/env bash
# The example network in network namespaces, all addresses in 198.18.0.0/15 (RFC 2544).
#
#   PREFIXlan   eth0 198.18.3.10/24  -> default via 198.18.3.100
#   PREFIXgw    eth0 198.18.3.100/24 (LAN)
#               eth1 198.18.1.1/24   (isp1) -> r1 198.18.1.254
#               eth2 198.18.2.1/24   (isp2) -> r2 198.18.2.254
#               default via 198.18.1.254 for the gateway's own traffic
#   PREFIXr1    eth0 198.18.1.254/24, eth1 198.18.101.1/24 -> inet
#   PREFIXr2    eth0 198.18.2.254/24, eth1 198.18.102.1/24 -> inet
#   PREFIXinet  eth1 198.18.101.2/24, eth2 198.18.102.2/24; every address of 198.19.0.0/16 is
#               local ("the internet"); routes back only to the uplink subnets, so LAN
#               addresses are unreachable from it unless translated.
#   PREFIXlan2  (only after `lan2`) eth0 198.18.3.11/24 -> default via 198.18.3.100: a second
#               host on the LAN's segment (a macvlan of PREFIXlan's eth0: same link, own MAC),
#               for what one LAN host does to another's traffic.
#   PREFIXlink2 (only after `link2`) eth0 198.18.6.10/24 -> default via 198.18.6.100 <- gw eth4
#               198.18.6.100/24: a host on a second LAN link, with a network of its own.
#   PREFIXweb   (only after `web`) eth0 198.18.4.2/24 <- gw eth3 198.18.4.1/24: a host for a
#               browser looking at wanlb's status page; no other route, no IPv6, so nothing
#               it tries to reach beyond 198.18.4.0/24 leaves it.
#   IPv6        (only after `ipv6`) a dual-stack LAN and isp1, with IPv6 forwarding on in gw, as
#               on a gateway where the admin turned it on: lan eth0 fd00:3::10/64 -> default via
#               gw eth0 fd00:3::100/64; gw eth1 fd00:1::1/64 -> default via r1 eth0
#               fd00:1::254/64, which routes fd00:3::/64 back via the gateway.
#   IPv6 lines  (only after `ipv6lines`) IPv6 through both lines, in 2001:2::/48 (RFC 5180)
#               and fd00::/8: lan eth0 fd00:3::10/64 -> default via gw eth0 fd00:3::100/64;
#               gw eth1 2001:2:0:1::1/64 (isp1, r1 eth0 2001:2:0:1::fe/64, which routes the
#               prefix it delegates to the gateway, 2001:2:1::/48, to it), gw eth2
#               2001:2:0:2::1/64 (isp2, r2 eth0 2001:2:0:2::fe/64, no prefix: NAT66);
#               r1 eth1 2001:2:0:101::1/64 and r2 eth1 2001:2:0:102::1/64 -> inet eth1
#               2001:2:0:101::2/64, eth2 2001:2:0:102::2/64, where every address of
#               2001:2:ff::/48 is local; routes back only to the lines' subnets and isp1's
#               prefix. IPv6 forwarding stays off in gw (wanlb turns it on).
#   PREFIXr3    (only after `p2p`) the router at the far end of a point-to-point line, as a
#               PPPoE session or a tunnel is: gw tun3 198.18.5.1 peer 198.18.5.254 (isp3) <->
#               r3 tun0 198.18.5.254 peer 198.18.5.1, two TUN devices (no MAC, no ARP) joined
#               by `wanlb-probe tun-wire`; r3 eth1 198.18.103.1/24 -> inet eth3 198.18.103.2/24.
#
# Offloads stay at their defaults. Usage:
#   testbed.sh up [PREFIX]        create (PREFIX defaults to "wl")
#   testbed.sh down [PREFIX]      remove (lan2, link2, web and r3 included)
#   testbed.sh lan2 [PREFIX]      add PREFIXlan2
#   testbed.sh link2 [PREFIX]     add PREFIXlink2, on the gateway's eth4
#   testbed.sh web [PREFIX]       add PREFIXweb
#   testbed.sh p2p [PREFIX [PROBE]]
#                                 add PREFIXr3 and the point-to-point line to it; with the
#                                 path of wanlb-probe, also start the process that joins the
#                                 line's two ends (without, the caller starts it: the line
#                                 has no carrier until then)
#   testbed.sh redial [PREFIX]    delete gw's tun3 and make it anew, with its address, as pppd's
#                                 redial does (a new interface index); stop the process
#                                 joining the line's ends first, and start it again after
#   testbed.sh replug [PREFIX]    delete the link between gw's eth1 and r1 and make it anew,
#                                 with its addresses (new interface indexes and MACs at both
#                                 ends, as a NIC or USB modem unplugged and plugged again)
#   testbed.sh ipv6 [PREFIX]      add the IPv6 addresses and routes above
#   testbed.sh ipv6lines [PREFIX] add IPv6 through both lines, as above
#   testbed.sh kernel [PREFIX]    add the old kernel recipe on gw: multipath default route
#                                 2:1, a table and rule per uplink, the IRC pin, MASQUERADE
#   testbed.sh nokernel [PREFIX]  remove the kernel recipe again
#   testbed.sh routed [PREFIX]    plain routing, no NAT: gw forwards through isp1 and r1 and
#                                 inet route the LAN's subnet back (the floor for any NAT)
#   testbed.sh norouted [PREFIX]  remove plain routing again
set -euo pipefail

cmd=${1:-}
P=${2:-wl}
NS=(lan gw r1 r2 inet)
PIN=198.19.200.91

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "testbed: '$tool' is missing (apt-get install -y iproute2 nftables)" >&2; exit 1; }
  done
}

x() { ip netns exec "$P$1" "${@:2}"; }

link() { # link NS1 IF1 NS2 IF2
  ip -n "$P$1" link add "$2" type veth peer name "$4" netns "$P$3"
}

addr() { # addr NS IF CIDR
  ip -n "$P$1" addr add "$3" dev "$2"
  ip -n "$P$1" link set "$2" up
}

up() {
  need ip
  for n in "${NS[@]}"; do
    if ip netns list | grep -qw "$P$n"; then
      echo "testbed: namespace $P$n already exists (run: $0 down $P)" >&2
      exit 1
    fi
  done
  for n in "${NS[@]}"; do
    ip netns add "$P$n"
    ip -n "$P$n" link set lo up
  done
  link lan eth0 gw eth0
  link gw eth1 r1 eth0
  link gw eth2 r2 eth0
  link r1 eth1 inet eth1
  link r2 eth1 inet eth2

  addr lan eth0 198.18.3.10/24
  ip -n "${P}lan" route add default via 198.18.3.100

  addr gw eth0 198.18.3.100/24
  addr gw eth1 198.18.1.1/24
  addr gw eth2 198.18.2.1/24
  ip -n "${P}gw" route add default via 198.18.1.254
  x gw sysctl -qw net.ipv4.ip_forward=0

  addr r1 eth0 198.18.1.254/24
  addr r1 eth1 198.18.101.1/24
  ip -n "${P}r1" route add default via 198.18.101.2
  x r1 sysctl -qw net.ipv4.ip_forward=1

  addr r2 eth0 198.18.2.254/24
  addr r2 eth1 198.18.102.1/24
  ip -n "${P}r2" route add default via 198.18.102.2
  x r2 sysctl -qw net.ipv4.ip_forward=1

  addr inet eth1 198.18.101.2/24
  addr inet eth2 198.18.102.2/24
  ip -n "${P}inet" route add local 198.19.0.0/16 dev lo
  ip -n "${P}inet" route add 198.18.1.0/24 via 198.18.101.1
  ip -n "${P}inet" route add 198.18.2.0/24 via 198.18.102.1
  # the simulated internet answers from every address of 198.19.0.0/16
  x inet sysctl -qw net.ipv4.ip_nonlocal_bind=1
}

down() {
  # Processes still running inside the namespaces (servers, a benchmark interrupted
  # half-way, a browser) were started for the testbed: stop them, or they outlive it.
  for n in "${NS[@]}" lan2 link2 web r3; do
    pids=$(ip netns pids "$P$n" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
  done
  for n in "${NS[@]}" lan2 link2 web r3; do
    pids=$(ip netns pids "$P$n" 2>/dev/null || true)
    if [ -n "$pids" ]; then sleep 0.5; kill -9 $(ip netns pids "$P$n" 2>/dev/null) 2>/dev/null || true; fi
    ip netns del "$P$n" 2>/dev/null || true
  done
}

lan2() {
  need ip
  ip netns add "${P}lan2"
  ip -n "${P}lan2" link set lo up
  # bridge mode: frames from the gateway reach each host of the segment by its MAC
  ip -n "${P}lan" link add lan2 link eth0 type macvlan mode bridge
  ip -n "${P}lan" link set lan2 netns "${P}lan2"
  ip -n "${P}lan2" link set lan2 name eth0
  addr lan2 eth0 198.18.3.11/24
  ip -n "${P}lan2" route add default via 198.18.3.100
}

link2() {
  need ip
  ip netns add "${P}link2"
  ip -n "${P}link2" link set lo up
  link gw eth4 link2 eth0
  addr gw eth4 198.18.6.100/24
  addr link2 eth0 198.18.6.10/24
  ip -n "${P}link2" route add default via 198.18.6.100
}

web() {
  need ip
  ip netns add "${P}web"
  # before its interfaces exist, so none gets an IPv6 link-local address and route
  x web sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "${P}web" link set lo up
  link gw eth3 web eth0
  addr gw eth3 198.18.4.1/24
  addr web eth0 198.18.4.2/24
}

p2p() {
  need ip
  ip netns add "${P}r3"
  ip -n "${P}r3" link set lo up
  # persistent TUN devices: when the process joining them stops, the line loses its carrier
  # and keeps its addresses, as a PPP link whose modem went quiet
  ip -n "${P}gw" tuntap add dev tun3 mode tun
  ip -n "${P}r3" tuntap add dev tun0 mode tun
  ip -n "${P}gw" addr add 198.18.5.1 peer 198.18.5.254 dev tun3
  ip -n "${P}gw" link set tun3 up
  ip -n "${P}r3" addr add 198.18.5.254 peer 198.18.5.1 dev tun0
  ip -n "${P}r3" link set tun0 up
  link r3 eth1 inet eth3
  addr r3 eth1 198.18.103.1/24
  addr inet eth3 198.18.103.2/24
  ip -n "${P}r3" route add default via 198.18.103.2
  x r3 sysctl -qw net.ipv4.ip_forward=1
  ip -n "${P}inet" route add 198.18.5.0/24 via 198.18.103.1
  if [ -n "${1:-}" ]; then
    x gw "$1" tun-wire --dev tun3 --peer-netns "${P}r3" --peer-dev tun0 >/dev/null &
  fi
}

redial() {
  need ip
  ip -n "${P}gw" link del tun3
  ip -n "${P}gw" tuntap add dev tun3 mode tun
  ip -n "${P}gw" addr add 198.18.5.1 peer 198.18.5.254 dev tun3
  ip -n "${P}gw" link set tun3 up
}

replug() {
  need ip
  # one end of a veth pair takes the other with it
  ip -n "${P}gw" link del eth1
  link gw eth1 r1 eth0
  addr gw eth1 198.18.1.1/24
  addr r1 eth0 198.18.1.254/24
  # the gateway's own default route went with the interface
  ip -n "${P}gw" route replace default via 198.18.1.254
}

ipv6() {
  need ip
  x gw sysctl -qw net.ipv6.conf.all.forwarding=1
  # nodad: usable at once, no duplicate address detection to wait for
  ip -n "${P}lan" -6 addr add fd00:3::10/64 dev eth0 nodad
  ip -n "${P}lan" -6 route add default via fd00:3::100
  ip -n "${P}gw" -6 addr add fd00:3::100/64 dev eth0 nodad
  ip -n "${P}gw" -6 addr add fd00:1::1/64 dev eth1 nodad
  ip -n "${P}gw" -6 route add default via fd00:1::254
  ip -n "${P}r1" -6 addr add fd00:1::254/64 dev eth0 nodad
  ip -n "${P}r1" -6 route add fd00:3::/64 via fd00:1::1
}

ipv6lines() {
  need ip
  ip -n "${P}lan" -6 addr add fd00:3::10/64 dev eth0 nodad
  ip -n "${P}lan" -6 route add default via fd00:3::100
  ip -n "${P}gw" -6 addr add fd00:3::100/64 dev eth0 nodad
  ip -n "${P}gw" -6 addr add 2001:2:0:1::1/64 dev eth1 nodad
  ip -n "${P}gw" -6 addr add 2001:2:0:2::1/64 dev eth2 nodad
  for r in 1 2; do
    x "r$r" sysctl -qw net.ipv6.conf.all.forwarding=1
    ip -n "${P}r$r" -6 addr add "2001:2:0:$r::fe/64" dev eth0 nodad
    ip -n "${P}r$r" -6 addr add "2001:2:0:10$r::1/64" dev eth1 nodad
    ip -n "${P}r$r" -6 route add default via "2001:2:0:10$r::2"
    ip -n "${P}inet" -6 addr add "2001:2:0:10$r::2/64" dev "eth$r" nodad
    ip -n "${P}inet" -6 route add "2001:2:0:$r::/64" via "2001:2:0:10$r::1"
  done
  ip -n "${P}r1" -6 route add 2001:2:1::/48 via 2001:2:0:1::1
  ip -n "${P}inet" -6 route add 2001:2:1::/48 via 2001:2:0:101::1
  ip -n "${P}inet" -6 route add local 2001:2:ff::/48 dev lo
  x inet sysctl -qw net.ipv6.ip_nonlocal_bind=1
}
kernel() {
  need ip nft
  x gw sysctl -qw net.ipv4.ip_forward=1
  ip -n "${P}gw" route add 198.18.1.0/24 dev eth1 src 198.18.1.1 table 101
  ip -n "${P}gw" route add default via 198.18.1.254 table 101
  ip -n "${P}gw" route add 198.18.2.0/24 dev eth2 src 198.18.2.1 table 102
  ip -n "${P}gw" route add default via 198.18.2.254 table 102
  ip -n "${P}gw" rule add from 198.18.1.1 table 101 priority 1001
  ip -n "${P}gw" rule add from 198.18.2.1 table 102 priority 1002
  ip -n "${P}gw" rule add to $PIN table 102 priority 1000
  ip -n "${P}gw" route replace default scope global \
    nexthop via 198.18.1.254 dev eth1 weight 2 \
    nexthop via 198.18.2.254 dev eth2 weight 1
  x gw nft -f - <<'NFT'
table ip kernel_recipe {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "eth1" masquerade
    oifname "eth2" masquerade
  }
}
NFT
}

nokernel() {
  x gw nft delete table ip kernel_recipe 2>/dev/null || true
  ip -n "${P}gw" rule del priority 1000 2>/dev/null || true
  ip -n "${P}gw" rule del priority 1001 2>/dev/null || true
  ip -n "${P}gw" rule del priority 1002 2>/dev/null || true
  ip -n "${P}gw" route flush table 101 2>/dev/null || true
  ip -n "${P}gw" route flush table 102 2>/dev/null || true
  ip -n "${P}gw" route replace default via 198.18.1.254
  x gw sysctl -qw net.ipv4.ip_forward=0
}

routed() {
  need ip
  x gw sysctl -qw net.ipv4.ip_forward=1
  ip -n "${P}r1" route add 198.18.3.0/24 via 198.18.1.1
  ip -n "${P}inet" route add 198.18.3.0/24 via 198.18.101.1
}

norouted() {
  ip -n "${P}inet" route del 198.18.3.0/24 2>/dev/null || true
  ip -n "${P}r1" route del 198.18.3.0/24 2>/dev/null || true
  x gw sysctl -qw net.ipv4.ip_forward=0
}

case "$cmd" in
  up) up ;;
  down) down ;;
  lan2) lan2 ;;
  link2) link2 ;;
  web) web ;;
  p2p) p2p "${3:-}" ;;
  redial) redial ;;
  replug) replug ;;
  ipv6) ipv6 ;;
  ipv6lines) ipv6lines ;;
  kernel) kernel ;;
  nokernel) nokernel ;;
  routed) routed ;;
  norouted) norouted ;;
  *) sed -n '2,64p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
