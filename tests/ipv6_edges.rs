//! The edges of the gateway's IPv6, end to end in network namespaces (root; CI runs as root),
//! on the testbed's IPv6 lines (testbed.sh ipv6lines: 2001:2::/48 and fd00::/8 only): what
//! the kernel forwards once wanlb turns IPv6 forwarding on, and what it puts back at a stop;
//! replies that would leave the gateway's hop with no hop left.

mod common;

use common::*;

/// isp1's router and isp2's, on their lines' segments.
const R1_6: &str = "2001:2:0:1::fe";
const R2_6: &str = "2001:2:0:2::fe";
/// The gateway's addresses on isp1's and isp2's segments.
const GW_ISP1_6: &str = "2001:2:0:1::1";
/// A host on a second link of the gateway (eth4), not named --lan.
const LINK2_6: &str = "fd00:6::10";

/// Both lines with IPv6 (isp1 by prefix, isp2 by its address), IPv4 and IPv6 health targets,
/// and `more`.
fn args(more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--lan",
        "eth0",
        "--uplink",
        "isp1,dev=eth1,gw=198.18.1.254,weight=2,gw6=2001:2:0:1::fe,prefix6=2001:2:1::/48",
        "--uplink",
        "isp2,dev=eth2,gw=198.18.2.254,weight=1,gw6=2001:2:0:2::fe",
        "--health-target",
        TARGETS[0],
        "--health-target",
        TARGET6,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Whether one echo to `dst` from `ns` is answered within a second.
fn pings6(tb: &Testbed, ns: &str, dst: &str) -> bool {
    tb.run(ns, &["ping", "-6", "-c", "1", "-W", "1", dst])
        .status
        .success()
}

fn forwarding(tb: &Testbed, name: &str) -> String {
    tb.ok(
        "gw",
        &["cat", &format!("/proc/sys/net/ipv6/conf/{name}/forwarding")],
    )
    .trim()
    .to_string()
}

#[test]
fn ipv6_from_a_line_goes_nowhere_and_the_lans_only_to_wanlb_and_an_interfaces_forwarding_is_kept() {
    let tb = Testbed::up_ipv6();
    // a host on a link of the gateway that is not the LAN
    tb.add_second_link();
    tb.ok(
        "gw",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fd00:6::100/64",
            "dev",
            "eth4",
            "nodad",
        ],
    );
    tb.ok(
        "link2",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fd00:6::10/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    tb.ok(
        "link2",
        &["ip", "-6", "route", "add", "default", "via", "fd00:6::100"],
    );
    // isp1's router sends isp2's router, and the second link, through the gateway (anyone
    // on isp1's segment can); isp2's router answers the same way
    for dst in [&format!("{R2_6}/128"), "fd00:6::/64"] {
        tb.ok("r1", &["ip", "-6", "route", "add", dst, "via", GW_ISP1_6]);
    }
    tb.ok(
        "r2",
        &[
            "ip",
            "-6",
            "route",
            "add",
            &format!("{R1_6}/128"),
            "via",
            "2001:2:0:2::1",
        ],
    );
    // the admin forwards IPv6 on the second link while it is off for the rest
    assert_eq!(forwarding(&tb, "all"), "0", "the test bed leaves it off");
    tb.ok("gw", &["sysctl", "-qw", "net.ipv6.conf.eth4.forwarding=1"]);

    let gw = tb.start_wanlb(&args(&[]));
    gw.wait_for_count("takes_ipv6_flows=true", 2, "both lines' IPv6");
    assert_eq!(forwarding(&tb, "all"), "1");
    let (from_r1, from_lan) = (format!("ip6 saddr {R1_6}"), "ip6 saddr fd00:3::/64");
    tb.watch("r2", &[&from_r1]);
    tb.watch("link2", &[&from_r1, from_lan]);
    let counted = logged_drops(&gw, "ipv6_forward");
    assert!(!pings6(&tb, "r1", R2_6), "isp1's segment reached isp2's");
    assert!(
        !pings6(&tb, "r1", LINK2_6),
        "isp1's segment reached the second link"
    );
    assert!(
        !pings6(&tb, "lan", LINK2_6),
        "the LAN reached the second link"
    );
    assert_eq!(tb.seen("r2", &from_r1), 0);
    assert_eq!(tb.seen("link2", &from_r1), 0);
    assert_eq!(tb.seen("link2", from_lan), 0);
    assert!(
        logged_drops(&gw, "ipv6_forward") >= counted + 3,
        "counted: {}",
        gw.output()
    );
    // the gateway's own IPv6 on its segments works
    assert!(pings6(&tb, "gw", R2_6) && pings6(&tb, "gw", LINK2_6));

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert_eq!(forwarding(&tb, "all"), "0", "{log}");
    assert_eq!(forwarding(&tb, "eth4"), "1", "the admin's own value: {log}");
    assert_eq!(forwarding(&tb, "eth1"), "0", "{log}");
}

/// The server for [`replies_with_no_hop_left_or_too_big_for_the_lan_never_make_the_gateway_quote_the_lan`]:
/// UDP on [2001:2:ff::1]:7000 and 198.19.0.1:7000, answering `HOPS SIZE` with SIZE bytes
/// sent with hop limit (TTL) HOPS, never fragmented.
const SERVER: &str = r#"
import select, socket
def udp(family, addr, freebind):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP if family == socket.AF_INET else socket.IPPROTO_IPV6, freebind, 1)
    s.bind(addr)
    return s
u6 = udp(socket.AF_INET6, ('2001:2:ff::1', 7000), 78)
u4 = udp(socket.AF_INET, ('198.19.0.1', 7000), 15)
u4.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER: IP_PMTUDISC_DO, DF set
u6.setsockopt(socket.IPPROTO_IPV6, 62, 1)  # IPV6_DONTFRAG
print('listening', flush=True)
while True:
    for s in select.select([u6, u4], [], [])[0]:
        data, peer = s.recvfrom(2000)
        hops, size = map(int, data.split())
        if s is u6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
        try:
            s.sendto(b'a' * size, peer[:2])
        except OSError as e:
            print('send', e, flush=True)
"#;

/// From the LAN host: asks `dst` (the server) for SIZE bytes at HOPS from source port
/// `port`; prints how many bytes came back (0 for none within a second).
const CLIENT: &str = r#"
import socket, sys
dst, port, hops, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
family = socket.AF_INET6 if ':' in dst else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind(('', port))
s.settimeout(1)
s.sendto(f'{hops} {size}'.encode(), (dst, 7000))
try:
    print(len(s.recv(4000)))
except socket.timeout:
    print(0)
"#;

/// The count `name=N` of the drops wanlb logs on SIGUSR1 (0 when it has none).
fn logged_drops(gw: &Process, name: &str) -> u64 {
    let before = gw.count("ipv6_forward=");
    gw.signal("-USR1");
    gw.wait_for_count("ipv6_forward=", before + 1, "wanlb's drops");
    let out = gw.output();
    let last = out.lines().rfind(|l| l.contains("ipv6_forward=")).unwrap();
    // `engine=a=1 b=2 ... name=N ...`
    let key = format!("{name}=");
    let Some(at) = last.find(&key) else {
        return 0;
    };
    let digits: String = last[at + key.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn replies_with_no_hop_left_or_too_big_for_the_lan_never_make_the_gateway_quote_the_lan() {
    let tb = Testbed::up_ipv6();
    // the gateway's own IPv6 default route, as router advertisements install it: the
    // kernel's own errors leave by it (IPv4's is isp1's)
    tb.ok(
        "gw",
        &[
            "ip", "-6", "route", "add", "default", "via", R2_6, "dev", "eth2",
        ],
    );
    let gw = tb.start_wanlb(&args(&[]));
    gw.wait_for_count("takes_ipv6_flows=true", 2, "both lines' IPv6");
    let server = Process::start(tb.spawn("inet", &["python3", "-c", SERVER]));
    server.wait_for("listening", "the server");
    let errors = [
        "icmpv6 type time-exceeded",
        "icmpv6 type packet-too-big",
        "icmpv6 type destination-unreachable",
        "icmp type time-exceeded",
        "icmp type destination-unreachable",
    ];
    tb.watch("inet", &errors);
    let ask = |dst: &str, port: u16, hops: u8, size: usize| -> u64 {
        let out = tb.ok(
            "lan",
            &[
                "python3",
                "-c",
                CLIENT,
                dst,
                &port.to_string(),
                &hops.to_string(),
                &size.to_string(),
            ],
        );
        out.trim().parse().unwrap()
    };
    let (v6, v4) = ("2001:2:ff::1", "198.19.0.1");
    let mut port = 5550;
    let mut next = || {
        port += 1;
        port
    };
    // two hops left on arrival: the gateway's, and the LAN host's
    assert_eq!(ask(v6, next(), 3, 100), 100, "{}", server.output());
    assert_eq!(ask(v4, next(), 3, 100), 100, "{}", server.output());
    // one left: the gateway's hop ends it, without a word to the internet
    assert_eq!(ask(v6, next(), 2, 100), 0);
    assert_eq!(ask(v4, next(), 2, 100), 0);
    assert!(logged_drops(&gw, "ttl_exceeded") >= 2, "{}", gw.output());
    // too big for the LAN's link: the kernel's Packet Too Big (fragmentation needed) would
    // quote the LAN host
    tb.ok("gw", &["ip", "link", "set", "eth0", "mtu", "1280"]);
    assert_eq!(ask(v6, next(), 64, 1400), 0);
    assert_eq!(ask(v4, next(), 64, 1400), 0);
    for e in errors {
        assert_eq!(tb.seen("inet", e), 0, "{e} reached the internet");
    }
    assert!(
        logged_drops(&gw, "icmp_errors_quoting_lan") >= 2,
        "{}",
        gw.output()
    );
}
