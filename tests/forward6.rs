//! IPv6 port forwards end to end (root; CI runs as root), on the testbed's IPv6 lines
//! (testbed.sh ipv6lines: 2001:2::/48 and fd00::/8 only): isp1 translates the LAN by its
//! prefix 2001:2:1::/48 (NPTv6) and has an address of its own, isp2 by its address (NAT66).
//! A connection from the internet reaches the LAN host's server at the forwarded port of
//! each line's address, and on isp1 at the host's translated address; every answer leaves
//! through the line it came in by; nothing else gets in. A LAN host reaches them through the
//! same addresses (hairpinning).

mod common;

use std::net::Ipv6Addr;

use common::*;

/// The LAN host, and the lines' own addresses.
const HOST: &str = "fd00:3::10";
const ISP1_6: &str = "2001:2:0:1::1";
const ISP2_6: &str = "2001:2:0:2::1";
/// The internet's addresses towards r1 and r2: whom the server must see.
const CLIENT_VIA_R1: &str = "2001:2:0:101::2";
const CLIENT_VIA_R2: &str = "2001:2:0:102::2";

/// Both lines with IPv6, the internet pinned to isp1 (so the LAN host's own flow shows its
/// address by isp1's prefix), and two forwards to the LAN host's port 80: 8080 of isp2, and
/// 80 of isp1 (its address, and the host's address by its prefix).
fn args() -> Vec<String> {
    [
        "--lan",
        "eth0",
        "--uplink",
        "isp1,dev=eth1,gw=198.18.1.254,weight=2,gw6=2001:2:0:1::fe,prefix6=2001:2:1::/48",
        "--uplink",
        "isp2,dev=eth2,gw=198.18.2.254,weight=1,gw6=2001:2:0:2::fe",
        "--health-target",
        TARGETS[0],
        "--health-target",
        "2001:2:ff:ffff::1",
        "--pin",
        "2001:2:ff::/48=isp1",
        "--forward",
        "tcp:8080=[fd00:3::10]:80@isp2",
        "--forward",
        "tcp:80=[fd00:3::10]:80@isp1",
    ]
    .map(String::from)
    .to_vec()
}

/// The LAN host's address as isp1's prefix translates it: what the internet's UDP
/// reflector sees of one flow from it.
fn translated(tb: &Testbed) -> Ipv6Addr {
    let inet = Process::start(tb.spawn("inet", &[probe(), "serve", "--udp", "2001:2:ff::/126"]));
    inet.wait_for("listening", "probe server");
    let out = tb.ok(
        "lan",
        &[
            probe(),
            "spread",
            "--dst",
            "2001:2:ff::1",
            "--count",
            "1",
            "--flows",
            "1",
            "--first-port",
            "20400",
        ],
    );
    let seen = out
        .lines()
        .find(|l| !l.starts_with("via "))
        .and_then(|l| l.split_once(" ["))
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("DST [IP]:PORT")
        .0;
    let addr: Ipv6Addr = seen.parse().expect("an IPv6 address");
    assert_eq!(addr.segments()[..3], [0x2001, 2, 1], "{out}");
    addr
}

#[test]
fn an_ipv6_forward_reaches_the_lan_host_on_both_lines_hairpins_and_nothing_else_gets_in() {
    let tb = Testbed::up_ipv6();
    let server = Process::start(tb.spawn("lan", &[probe(), "serve", "--tcp", "[::]:80"]));
    server.wait_for("listening", "the LAN host's server");
    let gw = tb.start_wanlb(&args());
    gw.wait_for_count("takes_ipv6_flows=true", 2, "both lines' IPv6");
    let outside = translated(&tb).to_string();
    // whom the server sees, and what crosses each modem from the forwarded ports
    tb.watch(
        "lan",
        &[
            &format!("ip6 saddr {CLIENT_VIA_R2} ip6 daddr {HOST} tcp dport 80"),
            &format!("ip6 saddr {CLIENT_VIA_R1} ip6 daddr {HOST} tcp dport 80"),
            &format!("ip6 daddr {HOST} tcp dport != 80"),
        ],
    );
    tb.watch(
        "r2",
        &[
            &format!("iifname eth0 ip6 saddr {ISP2_6} tcp sport 8080"),
            "iifname eth0 tcp sport 80",
        ],
    );
    tb.watch(
        "r1",
        &[
            &format!("iifname eth0 ip6 saddr {outside} tcp sport 80"),
            &format!("iifname eth0 ip6 saddr {ISP1_6} tcp sport 80"),
            "iifname eth0 tcp sport 8080",
        ],
    );

    // NAT66: isp2's address, port 8080; every byte back intact, from that port, through isp2
    tb.assert_tcp_echo("inet", &format!("[{ISP2_6}]:8080"), 2_000_000);
    let via_r2 = format!("ip6 saddr {CLIENT_VIA_R2} ip6 daddr {HOST} tcp dport 80");
    assert!(tb.seen("lan", &via_r2) > 0, "the client's own address");
    assert!(
        tb.seen(
            "r2",
            &format!("iifname eth0 ip6 saddr {ISP2_6} tcp sport 8080")
        ) > 0
    );
    assert_eq!(tb.seen("r1", "iifname eth0 tcp sport 8080"), 0);
    // NPTv6: the host's address by isp1's prefix, its own port; and isp1's own address
    tb.assert_tcp_echo("inet", &format!("[{outside}]:80"), 2_000_000);
    tb.assert_tcp_echo("inet", &format!("[{ISP1_6}]:80"), 2_000_000);
    let via_r1 = format!("ip6 saddr {CLIENT_VIA_R1} ip6 daddr {HOST} tcp dport 80");
    assert!(tb.seen("lan", &via_r1) > 0, "the client's own address");
    let by_prefix = format!("iifname eth0 ip6 saddr {outside} tcp sport 80");
    assert!(tb.seen("r1", &by_prefix) > 0);
    assert!(
        tb.seen(
            "r1",
            &format!("iifname eth0 ip6 saddr {ISP1_6} tcp sport 80")
        ) > 0
    );
    assert_eq!(tb.seen("r2", "iifname eth0 tcp sport 80"), 0);

    // nothing else: another port of each address, the forwarded port on the other line
    for dst in [
        format!("[{ISP2_6}]:8081"),
        format!("[{ISP2_6}]:80"),
        format!("[{outside}]:8080"),
        format!("[{outside}]:22"),
        format!("[{ISP1_6}]:8080"),
    ] {
        let out = tb.run(
            "inet",
            &[probe(), "tcp-check", "--dst", &dst, "--bytes", "1000"],
        );
        assert!(!out.status.success(), "{dst} let a connection in");
    }
    assert_eq!(
        tb.seen("lan", &format!("ip6 daddr {HOST} tcp dport != 80")),
        0
    );

    // a LAN host reaches the forwards through the lines' addresses too (hairpinning), and
    // the server sees it come from the line's address, its answers back through the gateway
    tb.watch(
        "lan",
        &[
            &format!("ip6 saddr {ISP2_6} ip6 daddr {HOST} tcp dport 80"),
            &format!("ip6 saddr {ISP1_6} ip6 daddr {HOST} tcp dport 80"),
        ],
    );
    tb.assert_tcp_echo("lan", &format!("[{ISP2_6}]:8080"), 200_000);
    assert!(
        tb.seen(
            "lan",
            &format!("ip6 saddr {ISP2_6} ip6 daddr {HOST} tcp dport 80")
        ) > 0
    );
    tb.assert_tcp_echo("lan", &format!("[{outside}]:80"), 200_000);
    tb.assert_tcp_echo("lan", &format!("[{ISP1_6}]:80"), 200_000);
    assert!(
        tb.seen(
            "lan",
            &format!("ip6 saddr {ISP1_6} ip6 daddr {HOST} tcp dport 80")
        ) > 0
    );

    // the status counts them, beside the family
    let json = tb.ok("gw", &[WANLB, "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let forwards: Vec<String> = status["forwards"]
        .as_array()
        .expect("forwards")
        .iter()
        .map(|f| {
            format!(
                "{}:{}={}@{} {}",
                f["proto"].as_str().unwrap(),
                f["port"],
                f["to"].as_str().unwrap(),
                f["uplink"].as_str().unwrap(),
                f["connections_total"]
            )
        })
        .collect();
    assert_eq!(
        forwards,
        [
            "tcp:8080=[fd00:3::10]:80@isp2 1",
            "tcp:80=[fd00:3::10]:80@isp1 2"
        ]
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
