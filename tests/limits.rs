//! wanlb under floods, end to end (root; CI runs as root): a LAN host claiming every free
//! address of its network cannot keep other hosts from opening flows, one host's spray of new flows stops
//! at its share and is counted, and a SYN flood from made-up sources on a port forward keeps
//! its embryonic connections bounded while a real client connects. Every flood is bounded in
//! time and stays in the testbed's namespaces, its addresses in 198.18.0.0/15.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// The value of the metric line `series` (name and labels, as /metrics writes them) in
/// `metrics`, 0 if it is not there.
fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse::<f64>().expect("a number") as u64)
}

fn drops(metrics: &str, reason: &str) -> u64 {
    metric(
        metrics,
        &format!("wanlb_drops_total{{reason=\"{reason}\"}}"),
    )
}

fn evictions(metrics: &str, reason: &str) -> u64 {
    metric(
        metrics,
        &format!("wanlb_evictions_total{{reason=\"{reason}\"}}"),
    )
}

/// Waits until wanlb's metrics satisfy `ready` (a wait with a generous bound, not a timing
/// assertion); returns them.
fn wait_for_metrics(tb: &Testbed, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = tb.metrics();
        if ready(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} never happened:\n{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens 20 new UDP flows from namespace `ns`, each a socket of its own with its exchange
/// answered, and returns how many got through.
fn twenty_new_flows(tb: &Testbed, ns: &str) -> usize {
    let out = tb.run(
        ns,
        &[probe(), "spread", "--dst", "198.19.0.1", "--count", "20"],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("198.19.0."))
        .count()
}

#[test]
fn a_host_claiming_every_address_of_its_network_cannot_keep_other_hosts_from_new_flows() {
    let tb = Testbed::up();
    tb.add_second_link();
    let _inet = tb.start_internet();
    let mut args = example_args();
    args.extend(["--lan".into(), "eth4".into()]);
    let gw = tb.start_wanlb(&args);
    // the LAN host's real address completes a TCP handshake: a host of its own from then on
    tb.assert_tcp_echo("lan", "198.19.0.9:9000", 1_000);
    // it sprays new UDP flows from the 252 addresses of its /24 that no host has, for at
    // most 20 s
    let mut flood = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "spray",
            "--src",
            "198.18.3.0/24",
            "--exclude",
            "198.18.3.10",
            "--exclude",
            "198.18.3.100",
            "--dst",
            "198.19.1.0/24",
            "--pps",
            "50000",
            "--seconds",
            "20",
        ],
    ));
    // until the made-up addresses have used up what they may hold together (on a gateway
    // without that limit: until the pools run out)
    let during = wait_for_metrics(&tb, "the flood reaching a limit", |m| {
        drops(m, "unverified_port_limit") + drops(m, "ports_exhausted") > 1000
    });
    // while it goes on, a new host on the other LAN link, and the verified host itself, each
    // open 20 new flows: all get through
    let got = [twenty_new_flows(&tb, "link2"), twenty_new_flows(&tb, "lan")];
    assert_eq!(got, [20, 20], "new flows that got through, of 20 each");
    assert_eq!(
        drops(&during, "ports_exhausted"),
        0,
        "a pool ran out:\n{during}"
    );
    assert!(
        flood.is_running(),
        "the flood ended before the hosts' flows"
    );
    drop(flood);
    let after = tb.metrics();
    // the made-up addresses held at most one host's share of each pool: a quarter of it
    // (1024-32767 here), with the verified host's own flows beside them
    for uplink in ["isp1", "isp2"] {
        let held = metric(
            &after,
            &format!("wanlb_nat_ports_in_use{{uplink=\"{uplink}\",proto=\"udp\"}}"),
        );
        assert!(held <= 7936 + 50, "{uplink}: {held} ports\n{after}");
    }
    assert!(
        metric(&after, r#"wanlb_lan_hosts{state="unverified"}"#) <= 253,
        "{after}"
    );
    // what the kernel's queues in front of wanlb dropped, if it fell behind, is counted too
    for reason in ["tun_queue_full", "ring_full"] {
        let series = format!("wanlb_drops_total{{reason=\"{reason}\"}} ");
        assert!(after.contains(&series), "{reason} missing:\n{after}");
    }
    eprintln!(
        "flood refused: unverified_port_limit={} unverified_flow_limit={}; udp ports held \
         isp1={} isp2={}; udp flows {}; kernel queues dropped tun={} rings={}",
        drops(&after, "unverified_port_limit"),
        drops(&after, "unverified_flow_limit"),
        metric(
            &after,
            r#"wanlb_nat_ports_in_use{uplink="isp1",proto="udp"}"#
        ),
        metric(
            &after,
            r#"wanlb_nat_ports_in_use{uplink="isp2",proto="udp"}"#
        ),
        metric(&after, r#"wanlb_flows_active{proto="udp"}"#),
        drops(&after, "tun_queue_full"),
        drops(&after, "ring_full"),
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn a_hosts_spray_of_new_flows_stops_at_its_share_and_is_counted() {
    let tb = Testbed::up();
    tb.add_second_link();
    let _inet = tb.start_internet();
    let mut args = example_args();
    args.extend([
        "--lan".into(),
        "eth4".into(),
        "--max-flows-per-host".into(),
        "1000".into(),
    ]);
    let gw = tb.start_wanlb(&args);
    tb.assert_tcp_echo("lan", "198.19.0.9:9000", 1_000);
    // 5,000 new flows from one socket, to 256 destinations and 20 ports each
    let out = tb.ok(
        "lan",
        &[
            probe(),
            "udp-new-flows",
            "--dst",
            "198.19.1.0",
            "--addrs",
            "256",
            "--count",
            "5000",
        ],
    );
    assert!(out.starts_with("sent 5000"), "{out}");
    let m = wait_for_metrics(&tb, "the spray counted", |m| {
        drops(m, "host_flow_limit") > 0
    });
    let udp = metric(&m, r#"wanlb_flows_active{proto="udp"}"#);
    assert!((900..=1000).contains(&udp), "{udp} UDP flows\n{m}");
    assert!(drops(&m, "host_flow_limit") >= 3000, "{m}");
    // another host is not held back
    assert_eq!(twenty_new_flows(&tb, "link2"), 20);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("host_flow_limit="),
        "the SIGUSR1/exit log counts it: {log}"
    );
}

#[test]
fn a_syn_flood_on_a_forward_stays_bounded_and_a_real_client_connects() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let server = Process::start(tb.spawn("lan", &[probe(), "serve", "--tcp", "198.18.3.10:80"]));
    server.wait_for("listening", "the LAN's web server");
    // the client connects from an internet address
    tb.ok(
        "inet",
        &[
            "ip",
            "route",
            "replace",
            "198.18.2.0/24",
            "via",
            "198.18.102.1",
            "src",
            "198.19.0.5",
        ],
    );
    let mut args = example_args();
    // the default embryonic limit: 4,096 per forward, 64 per part of the table
    args.extend(["--forward".into(), "tcp:8080=198.18.3.10:80@isp2".into()]);
    let gw = tb.start_wanlb(&args);
    // SYNs from 4,096 made-up sources that never answer, for at most 20 s
    let mut flood = Process::start(tb.spawn(
        "inet",
        &[
            probe(),
            "spray",
            "--kind",
            "syn",
            "--src",
            "198.18.200.0/20",
            "--dst",
            "198.18.2.1",
            "--dst-ports",
            "8080",
            "--pps",
            "20000",
            "--seconds",
            "20",
        ],
    ));
    let during = wait_for_metrics(&tb, "the forward's embryonic limit reached", |m| {
        evictions(m, "forward_embryonic") > 10_000
    });
    let live = metric(
        &during,
        r#"wanlb_forward_connections_active{uplink="isp2",proto="tcp",port="8080"}"#,
    );
    assert!(live <= 4096 + 64, "{live} connections\n{during}");
    // a real client connects through it all and its bytes come back
    tb.assert_tcp_echo("inet", "198.18.2.1:8080", 100_000);
    assert!(
        flood.is_running(),
        "the flood ended before the client connected"
    );
    drop(flood);
    let after = tb.metrics();
    let live = metric(
        &after,
        r#"wanlb_forward_connections_active{uplink="isp2",proto="tcp",port="8080"}"#,
    );
    assert!(live <= 4096 + 64, "{live} connections\n{after}");
    eprintln!(
        "SYN flood: {live} connections kept, forward_embryonic evictions {}",
        evictions(&after, "forward_embryonic")
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn two_lan_links_without_strict_reverse_path_filtering_are_named_in_a_warning() {
    let tb = Testbed::up();
    tb.add_second_link();
    let _inet = tb.start_internet();
    // as systemd's sysctl.d sets it on Debian: loose (2) for every interface
    tb.ok("gw", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
    tb.ok("gw", &["sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=1"]);
    tb.ok("gw", &["sysctl", "-qw", "net.ipv4.conf.eth4.rp_filter=2"]);
    let mut args = example_args();
    args.extend(["--lan".into(), "eth4".into()]);
    let gw = tb.start_wanlb(&args);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reverse-path filtering is not strict"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("rp_filter=eth4=2")
            && warned[0].contains("set net.ipv4.conf.eth4.rp_filter=1 and")
            && !warned[0].contains("eth0"),
        "{}",
        warned[0]
    );
}

/// Opens up to `flows` new UDP flows from namespace `ns` to `dst`, each a socket of its own,
/// and returns how many were answered (it stops at the first that is not).
fn new_flows_to(tb: &Testbed, ns: &str, dst: &str, flows: u32) -> usize {
    let n = flows.to_string();
    let out = tb.run(
        ns,
        &[
            probe(),
            "spread",
            "--dst",
            dst,
            "--count",
            "1",
            "--flows",
            &n,
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(dst) && !l.starts_with("via"))
        .count()
}

#[test]
fn a_host_answering_for_many_addresses_holds_one_share_and_another_host_gets_through() {
    const PER_HOST: u32 = 40;
    const ADDRS: u32 = 8;
    let tb = Testbed::up();
    tb.add_lan2();
    let _inet = tb.start_internet();
    let mut args = example_args();
    args.extend(["--max-flows-per-host".into(), PER_HOST.to_string()]);
    let gw = tb.start_wanlb(&args);
    // the LAN host gives itself 8 more addresses (it answers ARP for them, from its one MAC)
    // and talks to its own destination from each: a route with that source
    let via = |i: u32| {
        (
            format!("198.18.3.{}", 20 + i),
            format!("198.19.0.{}", 100 + i),
        )
    };
    for i in 0..ADDRS {
        let (src, dst) = via(i);
        tb.ok(
            "lan",
            &["ip", "addr", "add", &format!("{src}/24"), "dev", "eth0"],
        );
        tb.ok(
            "lan",
            &[
                "ip",
                "route",
                "add",
                &dst,
                "via",
                "198.18.3.100",
                "src",
                &src,
            ],
        );
    }
    // each address completes a TCP handshake: verified, each
    for i in 0..ADDRS {
        tb.assert_tcp_echo("lan", &format!("{}:9000", via(i).1), 1_000);
    }
    // the gateway's kernel asked ARP for each to deliver the answers: one MAC for all
    wait_for_metrics(&tb, "the neighbour table's identities", |m| {
        metric(m, "wanlb_lan_host_identities") >= u64::from(ADDRS)
    });
    // 10 new flows from each address: together they hold one host's share (40 flows, their
    // 8 TCP connections included), not 40 each
    let opened: usize = (0..ADDRS)
        .map(|i| new_flows_to(&tb, "lan", &via(i).1, 10))
        .sum();
    let m = tb.metrics();
    assert!(
        (1..=(PER_HOST - ADDRS) as usize).contains(&opened),
        "{opened} flows opened from one MAC's addresses\n{m}"
    );
    assert!(drops(&m, "host_flow_limit") > 0, "{m}");
    // the second host on the segment, its own MAC, has its own share whole
    tb.assert_tcp_echo("lan2", "198.19.0.9:9000", 1_000);
    assert_eq!(twenty_new_flows(&tb, "lan2"), 20);
    eprintln!(
        "one MAC's {ADDRS} addresses opened {opened} UDP flows; host_flow_limit={}",
        drops(&m, "host_flow_limit")
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn a_flood_to_a_forward_does_not_crowd_out_the_replies_to_the_lans_flows() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let server = Process::start(tb.spawn("lan", &[probe(), "serve", "--tcp", "198.18.3.10:80"]));
    server.wait_for("listening", "the LAN's web server");
    let mut args = example_args();
    args.extend(["--forward".into(), "tcp:8080=198.18.3.10:80@isp2".into()]);
    let gw = tb.start_wanlb(&args);
    // two senders of SYNs from made-up sources at isp2's forward, as fast as they can (more
    // than the userspace path takes), for at most 30 s
    let spray = || {
        Process::start(tb.spawn(
            "inet",
            &[
                probe(),
                "spray",
                "--kind",
                "syn",
                "--src",
                "198.18.200.0/20",
                "--dst",
                UPLINK_2,
                "--dst-ports",
                "8080",
                "--seconds",
                "30",
            ],
        ))
    };
    let mut floods = [spray(), spray()];
    // until the rings overflow: the flood is more than wanlb takes
    wait_for_metrics(&tb, "the rings overflowing", |m| {
        drops(m, "forward_ring_full") + drops(m, "ring_full") > 1000
    });
    // meanwhile the LAN host talks through isp2 (its destination is pinned there): each of
    // its exchanges gets its answer to the first request, and nothing of the replies to the
    // LAN's flows is dropped for want of room in a ring
    let out = tb.ok(
        "lan",
        &[
            probe(),
            "udp-check",
            "--dst",
            &format!("{PINNED}:7"),
            "--count",
            "1000",
            "--tries",
            "1",
        ],
    );
    assert!(
        out.starts_with("ok 1000 exchanges answered intact"),
        "{out}"
    );
    tb.assert_tcp_echo("lan", &format!("{PINNED}:9000"), 1_000_000);
    let during = tb.metrics();
    assert!(
        floods.iter_mut().all(|f| f.is_running()),
        "the flood ended before the LAN host's exchanges"
    );
    drop(floods);
    assert_eq!(
        drops(&during, "ring_full"),
        0,
        "replies dropped in the ring:\n{during}"
    );
    assert!(drops(&during, "forward_ring_full") > 1000, "{during}");
    eprintln!(
        "SYN flood on a forward: forward_ring_full={} ring_full={}",
        drops(&during, "forward_ring_full"),
        drops(&during, "ring_full")
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
