//! IPv6 through the lines, end to end in network namespaces (root; CI runs as root), on the
//! testbed's IPv6 lines (testbed.sh ipv6lines: 2001:2::/48 and fd00::/8 only): isp1 delegates
//! 2001:2:1::/48 (NPTv6), isp2 does not (NAT66). The split by weight, stickiness and pins over
//! IPv6 destinations; NPTv6's checksum neutrality on what arrives; the modem's own ICMPv6
//! errors (Packet Too Big, time exceeded) reaching the LAN host; a line whose IPv6 dies while
//! its IPv4 works; nothing unsolicited getting in; everything undone at a stop, and the LAN's
//! IPv6 refused, not leaked, after a crash.

mod common;

use std::net::Ipv6Addr;

use common::*;

/// The LAN host's IPv6 address.
const LAN6: &str = "fd00:3::10";
/// isp1's address and delegated prefix, isp2's address.
const ISP1_PREFIX: &str = "2001:2:1::/48";
const ISP2_6: &str = "2001:2:0:2::1";
/// IPv6 destinations in the simulated internet: 2001:2:ff::1 and up.
const INTERNET6: &str = "2001:2:ff::1";

/// Both lines with IPv6 (isp1 by prefix, isp2 by its address), IPv4 and IPv6 health targets,
/// the fast path on, and `more`.
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
        "--offload",
        "on",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Starts wanlb with `args` and waits until both lines' IPv6 carries flows.
fn start(tb: &Testbed, args: &[String]) -> Process {
    let gw = tb.start_wanlb(args);
    gw.wait_for_count("takes_ipv6_flows=true", 2, "both lines' IPv6");
    gw
}

/// The UDP reflector on 2001:2:ff::/122 and TCP echo on port 9006, in the internet.
fn start_internet6(tb: &Testbed) -> Process {
    let p = Process::start(tb.spawn(
        "inet",
        &[
            probe(),
            "serve",
            "--udp",
            "2001:2:ff::/122",
            "--tcp",
            "[::]:9006",
        ],
    ));
    p.wait_for("listening", "probe server");
    p
}

/// `wanlb-probe spread` over IPv6 from the LAN host, from source port `first` on: (destination,
/// address seen there) per flow.
fn spread6(tb: &Testbed, dst: &str, count: u32, flows: u32, first: u32) -> Vec<(String, Ipv6Addr)> {
    let out = tb.ok(
        "lan",
        &[
            probe(),
            "spread",
            "--dst",
            dst,
            "--count",
            &count.to_string(),
            "--flows",
            &flows.to_string(),
            "--first-port",
            &first.to_string(),
        ],
    );
    out.lines()
        .filter(|l| !l.starts_with("via "))
        .map(|l| {
            let (d, seen) = l.split_once(' ').expect("DST SEEN");
            let ip = seen
                .trim_start_matches('[')
                .split_once(']')
                .expect("[IP]:PORT")
                .0;
            (d.to_string(), ip.parse().expect("an IPv6 address"))
        })
        .collect()
}

fn in_prefix(a: Ipv6Addr, prefix: &str) -> bool {
    let (p, len) = prefix.split_once('/').unwrap();
    let (p, len): (Ipv6Addr, u32) = (p.parse().unwrap(), len.parse().unwrap());
    let mask = u128::MAX << (128 - len);
    u128::from(a) & mask == u128::from(p) & mask
}

/// How many flows left through isp1 (its prefix) and isp2 (its address).
fn via6(flows: &[(String, Ipv6Addr)]) -> (usize, usize) {
    let one = flows
        .iter()
        .filter(|(_, a)| in_prefix(*a, ISP1_PREFIX))
        .count();
    let two = flows
        .iter()
        .filter(|(_, a)| *a == ISP2_6.parse::<Ipv6Addr>().unwrap())
        .count();
    assert_eq!(
        one + two,
        flows.len(),
        "every flow leaves through a line: {flows:?}"
    );
    (one, two)
}

/// What wanlb serves at /metrics once it holds `line` (a wait for its next snapshot, not a
/// timing assertion).
fn metrics_showing(tb: &Testbed, line: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = tb.metrics();
        if metrics.contains(line) || std::time::Instant::now() > deadline {
            return metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The one's-complement sum of an address's sixteen-bit words: NPTv6 keeps it.
fn word_sum(a: Ipv6Addr) -> u16 {
    let mut sum: u32 = a.segments().iter().map(|&w| u32::from(w)).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
fn ipv6_flows_split_by_weight_stick_and_follow_pins_over_nptv6_and_nat66() {
    let tb = Testbed::up_ipv6();
    let _inet = start_internet6(&tb);
    let gw = start(&tb, &args(&["--pin", "2001:2:ff::3f/128=isp2"]));

    // 60 destinations, weights 2:1
    let flows = spread6(&tb, INTERNET6, 60, 1, 20000);
    let (one, two) = via6(&flows);
    assert!(
        one.abs_diff(40) <= 1 && two.abs_diff(20) <= 1,
        "isp1 {one}, isp2 {two}: not within one of 2:1 ({flows:?})"
    );
    // NPTv6: the LAN host's address in isp1's prefix, checksum-neutral (the receiver's
    // kernel took the datagrams, whose checksums were never rewritten)
    let lan: Ipv6Addr = LAN6.parse().unwrap();
    let translated: Vec<Ipv6Addr> = flows
        .iter()
        .map(|(_, a)| *a)
        .filter(|a| in_prefix(*a, ISP1_PREFIX))
        .collect();
    assert!(
        translated.iter().all(|a| *a == translated[0]),
        "1:1: {translated:?}"
    );
    assert_eq!(
        word_sum(translated[0]),
        word_sum(lan),
        "{} is not checksum-neutral",
        translated[0]
    );
    assert!(
        in_prefix(translated[0], "2001:2:1::/64"),
        "the LAN's /64 maps to the prefix's first: {}",
        translated[0]
    );

    // stickiness: new flows to each destination take the line it is bound to
    let again = spread6(&tb, INTERNET6, 60, 1, 20100);
    for ((d, first), (d2, second)) in flows.iter().zip(&again) {
        assert_eq!(d, d2);
        assert_eq!(
            in_prefix(*first, ISP1_PREFIX),
            in_prefix(*second, ISP1_PREFIX),
            "{d} changed lines"
        );
    }
    // the pin: eight flows to 2001:2:ff::3f, all through isp2
    assert_eq!(via6(&spread6(&tb, "2001:2:ff::3f", 1, 8, 20200)), (0, 8));

    // TCP, byte for byte, with the fast path on (which carries the steady part)
    for dst in ["[2001:2:ff::5]:9006", "[2001:2:ff::6]:9006"] {
        tb.assert_tcp_echo("lan", dst, 5_000_000);
    }
    tb.assert_pings("lan", "2001:2:ff::9", 3, "0.2");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

/// The figures the stop logs under `marker`, for `key`, of line `uplink`.
fn logged(log: &str, marker: &str, uplink: &str, key: &str) -> Vec<u64> {
    let (prefix, line) = (format!("{key}="), format!("uplink={uplink}"));
    log.lines()
        .filter(|l| l.contains(marker) && l.split_whitespace().any(|w| w == line))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix)?.parse().ok())
        })
        .collect()
}

#[test]
fn steady_ipv6_flows_are_carried_by_the_kernel_over_nptv6_and_nat66() {
    let tb = Testbed::up_ipv6();
    let _inet = start_internet6(&tb);
    let pins = [
        "--pin",
        "2001:2:ff::5/128=isp1",
        "--pin",
        "2001:2:ff::6/128=isp2",
    ];
    let gw = start(&tb, &args(&pins));
    // 5 MB each way over each line, every byte back as sent
    tb.assert_tcp_echo("lan", "[2001:2:ff::5]:9006", 5_000_000);
    tb.assert_tcp_echo("lan", "[2001:2:ff::6]:9006", 5_000_000);
    tb.assert_pings("lan", "2001:2:ff::6", 8, "0.2");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let handed_over: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("kernel fast path"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("handed_over=")?.parse().ok())
        })
        .collect();
    assert!(
        handed_over.last().is_some_and(|n| *n >= 3),
        "both connections and the ping were handed over: {log}"
    );
    // most of each line's bytes went through the kernel, both ways
    for line in ["isp1", "isp2"] {
        let fast = |key| logged(&log, "uplink fast path totals", line, key);
        let slow = logged(&log, "uplink totals", line, "outbound_bytes");
        let (out, back) = (fast("outbound_bytes"), fast("inbound_bytes"));
        assert!(
            out.last().is_some_and(|b| *b > 4_000_000)
                && back.last().is_some_and(|b| *b > 4_000_000)
                && slow.last().is_some_and(|b| *b < 1_000_000),
            "{line}: fast path {out:?} out, {back:?} in; userspace {slow:?} out: {log}"
        );
    }
}

#[test]
fn the_modems_own_icmpv6_errors_reach_the_lan_host() {
    let tb = Testbed::up_ipv6();
    let gw = start(&tb, &args(&["--pin", "2001:2:ff::/48=isp1"]));
    tb.assert_pings("lan", "2001:2:ff::1", 1, "0.2");
    // traceroute's second hop: r1 answers "time exceeded" from its own address
    let out = tb.run(
        "lan",
        &[
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            "-t",
            "2",
            "2001:2:ff::1",
        ],
    );
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        seen.contains("From 2001:2:0:1::fe") && seen.contains("Time exceeded"),
        "{seen}"
    );
    // a modem with a smaller MTU beyond it: r1 says Packet Too Big, from its own address,
    // and the LAN host learns the path MTU from it (routers never fragment IPv6)
    tb.ok("r1", &["ip", "link", "set", "eth1", "mtu", "1400"]);
    let big = [
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        "1420",
        "2001:2:ff::1",
    ];
    let first = String::from_utf8_lossy(&tb.run("lan", &big).stdout).into_owned();
    assert!(
        first.contains("From 2001:2:0:1::fe") && first.contains("mtu=1400"),
        "{first}"
    );
    let route = tb.ok("lan", &["ip", "-6", "route", "get", "2001:2:ff::1"]);
    assert!(
        route.contains("mtu 1400"),
        "the host learnt the path MTU: {route}"
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn a_line_whose_ipv6_dies_while_its_ipv4_works_takes_no_new_ipv6_flows() {
    let tb = Testbed::up_ipv6();
    let _inet = start_internet6(&tb);
    let _inet4 = tb.start_internet();
    let gw = start(&tb, &args(&[]));
    let before = spread6(&tb, INTERNET6, 30, 1, 21000);
    assert!(via6(&before).0 > 0, "{before:?}");

    // r1 stops forwarding IPv6 only
    tb.ok("r1", &["nft", "add", "table", "ip6", "cut"]);
    tb.ok(
        "r1",
        &[
            "nft",
            "add chain ip6 cut forward { type filter hook forward priority 0; policy drop; }",
        ],
    );
    gw.wait_for("uplink IPv6 down uplink=isp1", "isp1's IPv6 going down");
    // the status is a snapshot, taken every second
    let metrics = metrics_showing(&tb, r#"wanlb_uplink_ipv6_up{uplink="isp1"} 0.0"#);
    assert!(
        metrics.contains(r#"wanlb_uplink_up{uplink="isp1"} 1.0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wanlb_uplink_ipv6_up{uplink="isp1"} 0.0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wanlb_uplink_ipv6_up{uplink="isp2"} 1.0"#),
        "{metrics}"
    );
    let status = tb.ok("gw", &[WANLB, "status"]);
    assert!(
        status.contains("IPv6 down, NPTv6 2001:2:1::/48"),
        "{status}"
    );
    // every IPv6 destination, those bound to isp1 too, now through isp2
    let after = spread6(&tb, INTERNET6, 30, 1, 21100);
    assert_eq!(via6(&after), (0, 30), "{after:?}");
    // and IPv4 still through both lines
    let v4 = tb.spread("198.19.0.1", 30, 1);
    let (one, two) = via_counts(&v4);
    assert!(one > 0 && two > 0, "isp1 {one}, isp2 {two}");

    tb.ok("r1", &["nft", "delete", "table", "ip6", "cut"]);
    gw.wait_for("uplink IPv6 up uplink=isp1", "isp1's IPv6 coming back");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn nothing_unsolicited_reaches_the_lan_over_ipv6() {
    let tb = Testbed::up_ipv6();
    // the internet and the modem know a way to the LAN's own prefix too
    tb.ok(
        "inet",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:3::/64",
            "via",
            "2001:2:0:101::1",
        ],
    );
    tb.ok(
        "r1",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:3::/64",
            "via",
            "2001:2:0:1::1",
        ],
    );
    let gw = start(&tb, &args(&["--pin", "2001:2:ff::/48=isp1"]));
    // the LAN host's own flow opens nothing for others: its address by NPTv6 is known
    tb.assert_pings("lan", "2001:2:ff::1", 1, "0.2");
    let probe = spread_one(&tb);
    tb.watch("lan", &["icmpv6 type echo-request"]);
    for dst in [
        probe.to_string().as_str(),
        LAN6,
        "2001:2:1::1",
        "2001:2:0:1::1",
    ] {
        let _ = tb.run(
            "inet",
            &["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", dst],
        );
    }
    assert_eq!(tb.seen("lan", "icmpv6 type echo-request"), 0);
    // the gateway's own address still answers (its own IPv6 is left alone)
    tb.assert_pings("r1", "2001:2:0:1::1", 1, "0.2");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

/// The LAN host's address as isp1's prefix translates it (one UDP flow to the internet).
fn spread_one(tb: &Testbed) -> Ipv6Addr {
    let _inet = start_internet6(tb);
    let flows = spread6(tb, INTERNET6, 1, 1, 20300);
    assert!(in_prefix(flows[0].1, ISP1_PREFIX), "{flows:?}");
    flows[0].1
}

#[test]
fn a_stop_undoes_the_ipv6_settings_and_a_crash_refuses_the_lans_ipv6() {
    let tb = Testbed::up_ipv6();
    let state = |tb: &Testbed| {
        let mut s = String::new();
        for cmd in [
            &["ip", "-6", "rule"][..],
            &[
                "sysctl",
                "net.ipv6.conf.all.forwarding",
                "net.ipv6.conf.eth1.accept_ra",
                "net.ipv6.conf.eth2.accept_ra",
            ],
        ] {
            s += &tb.ok("gw", cmd);
        }
        // wanlb's table, which does not exist before it starts
        let table = tb.run("gw", &["ip", "-6", "route", "show", "table", "7100"]);
        s += &String::from_utf8_lossy(&table.stdout);
        s
    };
    let before = state(&tb);
    assert!(
        before.contains("net.ipv6.conf.eth1.accept_ra = 1"),
        "{before}"
    );
    let gw = start(&tb, &args(&[]));
    let running = state(&tb);
    assert!(
        running.contains("net.ipv6.conf.all.forwarding = 1"),
        "{running}"
    );
    assert!(
        running.contains("net.ipv6.conf.eth1.accept_ra = 2"),
        "{running}"
    );
    assert!(running.contains("unreachable default"), "{running}");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert_eq!(state(&tb), before);

    // killed: the LAN's IPv6 hears "unreachable" from the gateway, nothing leaves untranslated
    let gw = start(&tb, &args(&[]));
    gw.signal("-KILL");
    let _ = gw.wait();
    tb.watch("r1", &["ip6 saddr fd00:3::/64"]);
    let out = tb.run("lan", &["ping", "-6", "-c", "1", "-W", "1", "2001:2:ff::1"]);
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(seen.contains("Destination unreachable"), "{seen}");
    assert_eq!(tb.seen("r1", "ip6 saddr fd00:3::/64"), 0);
    let state_dir = format!("/tmp/wanlb-test-{}", tb.prefix);
    tb.ok("gw", &[WANLB, "cleanup", "--state-dir", &state_dir]);
    assert_eq!(state(&tb), before);
}

/// An Ethernet frame holding an IPv6 packet to `dst` whose next header is `next` and whose
/// payload starts with `l4`.
fn frame6(dst: &str, next: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, 64]);
    f.extend_from_slice(&"2001:2:ff::1".parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(l4);
    f
}

#[test]
fn the_data_sockets_filter_keeps_the_lines_ipv6_and_leaves_the_kernel_its_own() {
    use wanlb::io::filters::{Filter, SocketFilters};
    use wanlb::uplink::LinkKind;
    require_root_and_tools();
    let mut filters = SocketFilters::load(
        [198, 18, 1, 1].into(),
        LinkKind::Ethernet,
        (1024, 32767),
        &[],
        40000,
    )
    .expect("filters load");
    let keeps =
        |f: &SocketFilters, frame: &[u8]| f.keeps(Filter::Replies, frame).expect("test run");
    let ports = |dport: u16| {
        let mut l4 = vec![0u8; 8];
        l4[..2].copy_from_slice(&443u16.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4
    };
    let icmp6 = |kind: u8, id: u16| {
        let mut l4 = vec![kind, 0, 0, 0];
        l4.extend_from_slice(&id.to_be_bytes());
        l4.extend_from_slice(&[0, 1]);
        l4
    };
    const ADDR: &str = "2001:2:0:2::1";
    // nothing before the line's IPv6 is known
    assert!(!keeps(&filters, &frame6(ADDR, 17, &ports(2000))));
    filters
        .set_ipv6(
            Some(ADDR.parse().unwrap()),
            Some(("2001:2:1::".parse().unwrap(), 48)),
        )
        .unwrap();
    // NAT66: TCP and UDP to the pool, not the gateway's own ports
    assert!(keeps(&filters, &frame6(ADDR, 17, &ports(2000))));
    assert!(keeps(&filters, &frame6(ADDR, 6, &ports(32767))));
    assert!(!keeps(&filters, &frame6(ADDR, 6, &ports(22))));
    assert!(!keeps(&filters, &frame6(ADDR, 17, &ports(40000))));
    // ICMPv6: errors and echo replies in the pool are wanlb's; the health probes' replies,
    // echo requests and neighbour discovery the kernel's (or the probe socket's)
    assert!(keeps(&filters, &frame6(ADDR, 58, &icmp6(2, 0))));
    assert!(keeps(&filters, &frame6(ADDR, 58, &icmp6(1, 0))));
    assert!(keeps(&filters, &frame6(ADDR, 58, &icmp6(129, 5000))));
    assert!(!keeps(&filters, &frame6(ADDR, 58, &icmp6(129, 40000))));
    assert!(!keeps(&filters, &frame6(ADDR, 58, &icmp6(128, 5000))));
    for nd in [133, 134, 135, 136, 137] {
        assert!(
            !keeps(&filters, &frame6(ADDR, 58, &icmp6(nd, 0))),
            "type {nd}"
        );
    }
    // NPTv6: everything to the delegated prefix (the engine filters it), nothing beside it
    assert!(keeps(
        &filters,
        &frame6("2001:2:1:0:dcff::10", 17, &ports(22))
    ));
    assert!(keeps(
        &filters,
        &frame6("2001:2:1:ffff::1", 58, &icmp6(128, 0))
    ));
    assert!(!keeps(&filters, &frame6("2001:2:2::1", 17, &ports(2000))));
    assert!(!keeps(&filters, &frame6("2001:2:0:2::2", 17, &ports(2000))));
    // a frame too short for its addresses
    assert!(!keeps(&filters, &frame6(ADDR, 17, &ports(2000))[..40]));
    // IPv4 as before
    let mut v4 = vec![0u8; 12];
    v4.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    v4.extend_from_slice(&[198, 19, 0, 1, 198, 18, 1, 1]);
    v4.extend_from_slice(&ports(2000));
    assert!(keeps(&filters, &v4));
    // the address gone, the prefix withdrawn: nothing
    filters.set_ipv6(None, None).unwrap();
    assert!(!keeps(&filters, &frame6(ADDR, 17, &ports(2000))));
    assert!(!keeps(&filters, &frame6("2001:2:1::1", 17, &ports(2000))));
}

#[test]
fn prefix6_auto_follows_a_delegated_prefix_and_its_renumbering_without_a_restart() {
    let tb = Testbed::up_ipv6();
    let _inet = start_internet6(&tb);
    // what systemd-networkd and dhcpcd put in for a delegated prefix
    let delegate = |verb: &str, prefix: &str| {
        tb.ok(
            "gw",
            &[
                "ip",
                "-6",
                "route",
                verb,
                "unreachable",
                prefix,
                "proto",
                "dhcp",
            ],
        );
    };
    delegate("add", "2001:2:1::/56");
    let mut auto = args(&["--pin", "2001:2:ff::/48=isp1"]);
    auto[3] = "isp1,dev=eth1,gw=198.18.1.254,weight=2,gw6=2001:2:0:1::fe,prefix6=auto".into();
    let gw = start(&tb, &auto);
    let seen = spread6(&tb, INTERNET6, 4, 1, 22000);
    assert!(
        seen.iter().all(|(_, a)| in_prefix(*a, "2001:2:1::/64")),
        "the LAN's /64 maps to the delegated /56's first: {seen:?}"
    );
    // the client renews with another prefix and withdraws the old one
    delegate("add", "2001:2:1:100::/56");
    delegate("del", "2001:2:1::/56");
    gw.wait_for(
        "delegated IPv6 prefix uplink=isp1 prefix=2001:2:1:100::/56",
        "the new prefix",
    );
    // new flows (new destinations) leave from the new prefix
    let seen = spread6(&tb, "2001:2:ff::20", 4, 1, 22100);
    assert!(
        seen.iter().all(|(_, a)| in_prefix(*a, "2001:2:1:100::/64")),
        "{seen:?}"
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn the_lans_ipv6_to_wanlb_stays_out_of_conntrack() {
    let tb = Testbed::up_ipv6();
    let _inet = start_internet6(&tb);
    let gw = start(&tb, &args(&[]));
    // UDP and ping over both lines, and a TCP connection
    let flows = spread6(&tb, INTERNET6, 2, 8, 20500);
    let lines = via6(&flows);
    assert!(lines.0 > 0 && lines.1 > 0, "{flows:?}");
    tb.assert_pings("lan", INTERNET6, 2, "0.2");
    tb.assert_tcp_echo("lan", "[2001:2:ff::1]:9006", 100_000);
    // the kernel routed all of it to the TUN device and wanlb tracked it: conntrack did not
    let tracked = tb.ok("gw", &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]);
    assert_eq!(tracked.trim(), "0", "the LAN's IPv6 went through conntrack");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

/// A `tcp6-watch` line: source, source port, destination, destination port, flags,
/// sequence and acknowledgement numbers, checksum verdict.
#[derive(Debug)]
struct Seg6 {
    src: String,
    sport: u16,
    dst: String,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    csum: String,
}

/// The segments `watch` (a `tcp6-watch`) printed so far.
fn segments6(watch: &Process) -> Vec<Seg6> {
    watch
        .output()
        .lines()
        .filter(|l| l.starts_with("tcp6 "))
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            let field = |name: &str| {
                w.iter()
                    .find_map(|x| x.strip_prefix(name))
                    .unwrap_or_else(|| panic!("{name} in {line}"))
            };
            Seg6 {
                src: w[1].to_string(),
                sport: w[2].parse().unwrap(),
                dst: w[3].to_string(),
                dport: w[4].parse().unwrap(),
                flags: u8::from_str_radix(field("flags="), 16).unwrap(),
                seq: field("seq=").parse().unwrap(),
                ack: field("ack=").parse().unwrap(),
                csum: field("csum=").to_string(),
            }
        })
        .collect()
}

#[test]
fn an_ipv6_tcp_connection_on_a_line_that_dies_is_reset_at_the_lan_host_with_its_own_number() {
    const SERVER: &str = "2001:2:ff::7";
    let tb = Testbed::up_ipv6();
    let _inet = start_internet6(&tb);
    let gw = start(&tb, &args(&["--pin", "2001:2:ff::/48=isp2"]));
    // what reaches the LAN host, and what it sends (seen arriving at the gateway)
    let to_host = Process::start(tb.spawn("lan", &[probe(), "tcp6-watch", "--dev", "eth0"]));
    to_host.wait_for("listening", "tcp6-watch");
    let from_host = Process::start(tb.spawn("gw", &[probe(), "tcp6-watch", "--dev", "eth0"]));
    from_host.wait_for("listening", "tcp6-watch");
    // a connection gone quiet after a few exchanges (a download waiting for data): after
    // the cut the host sends nothing, so wanlb must ask it for its sequence number
    let hold = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "tcp-hold",
            "--dst",
            &format!("[{SERVER}]:9006"),
            "--idle-after",
            "3",
        ],
    ));
    hold.wait_for("connected", "tcp-hold");
    // r2 stops forwarding IPv6: isp2's IPv6 dies, its IPv4 lives on
    tb.ok("r2", &["nft", "add", "table", "ip6", "cut"]);
    tb.ok(
        "r2",
        &[
            "nft",
            "add chain ip6 cut forward { type filter hook forward priority 0; policy drop; }",
        ],
    );
    gw.wait_for("uplink IPv6 down uplink=isp2", "isp2's IPv6 going down");
    hold.wait_for("reset ", "the connection reset at the LAN host");
    to_host.wait_for(" flags=14 ", "the reset on the wire");
    let arrived = segments6(&to_host);
    let at = arrived
        .iter()
        .position(|s| s.flags & 0x04 != 0)
        .expect("a reset");
    let reset = &arrived[at];
    assert_eq!(
        (reset.src.as_str(), reset.sport, reset.dst.as_str()),
        (SERVER, 9006, LAN6),
        "{reset:?}"
    );
    assert_eq!(reset.flags, 0x14, "RST and ACK");
    assert_eq!(reset.csum, "ok", "the reset's checksum, from scratch");
    // before it, wanlb's probe, from the server's address, its checksum right too
    let probe_in = arrived[..at]
        .iter()
        .rev()
        .find(|s| s.src == SERVER)
        .expect("wanlb's probe");
    assert_eq!(probe_in.csum, "ok", "the probe's checksum");
    // the reset's sequence number is what the host expects next: the acknowledgement of
    // its last segment on the connection (its answer to the probe)
    let host_last = segments6(&from_host)
        .into_iter()
        .rev()
        .find(|s| s.src == LAN6 && s.sport == reset.dport && s.dst == SERVER)
        .expect("the host's answer to the probe");
    assert_eq!(reset.seq, host_last.ack, "{host_last:?}");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
