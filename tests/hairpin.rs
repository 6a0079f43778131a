//! Hairpinning end to end (root; CI runs as root): two LAN hosts learn the address and port
//! the internet sees each at, as peer-to-peer applications do (a STUN-like server in the
//! simulated internet), and reach each other there, through an uplink's address, each seen
//! from the other's external address and port (RFC 4787 REQ-9, RFC 5382 REQ-8), once each
//! has sent to the other's (hole punching): UDP, with the ICMP error a closed socket answers
//! with, TCP (a simultaneous open) and ping (RFC 5508 REQ-7), in userspace and with the fast
//! path on.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The LAN host that punches first, and the one that answers: a second address of the LAN
/// namespace, added by [`second_host`].
const A: &str = "198.18.3.10";
const B: &str = "198.18.3.11";
/// The reflector that tells a socket where it is seen (UDP: `serve --udp`; TCP: the
/// `--tcp-seen` server started by [`start_tcp_seen`]).
const STUN: &str = "198.19.0.1:7";
const TCP_STUN: &str = "198.19.0.1:9001";

fn second_host(tb: &Testbed) {
    tb.ok(
        "lan",
        &["ip", "addr", "add", &format!("{B}/24"), "dev", "eth0"],
    );
}

fn start_tcp_seen(tb: &Testbed) -> Process {
    let p = Process::start(tb.spawn("inet", &[probe(), "serve", "--tcp-seen", "0.0.0.0:9001"]));
    p.wait_for("listening", "TCP seen server");
    p
}

/// What `wanlb-probe` `command` (udp-seen or tcp-seen) reports for `bind`: "IP:PORT".
fn seen(tb: &Testbed, command: &str, bind: &str, server: &str) -> String {
    let out = tb.ok("lan", &[probe(), command, "--bind", bind, "--dst", server]);
    out.trim()
        .strip_prefix("SEEN ")
        .unwrap_or_else(|| panic!("{command}: {out}"))
        .to_string()
}

/// A counter of the running wanlb's /metrics, 0 if it has not counted anything yet.
fn metric(tb: &Testbed, name: &str) -> u64 {
    tb.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the gateway has filtered `n` hairpinned packets (a wait, not an assertion on
/// time: the packets must be filtered, however long it takes).
fn wait_filtered(tb: &Testbed, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let filtered = || metric(tb, r#"wanlb_drops_total{reason="hairpin_no_flow"}"#);
    while filtered() < n {
        assert!(
            Instant::now() < deadline,
            "no hairpinned packet was filtered:\n{}",
            tb.metrics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn args(offload: &str) -> Vec<String> {
    let mut args = example_args();
    args.extend(["--offload".into(), offload.into()]);
    args
}

fn hosts_reach_each_others_mappings(offload: &str) {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let _tcp_seen = start_tcp_seen(&tb);
    second_host(&tb);
    let gw = tb.start_wanlb(&args(offload));
    if offload != "off" {
        gw.wait_for("kernel fast path attached", "wanlb with the fast path");
    }

    // UDP: each learns its external endpoint; both are on the line the reflector is bound to
    let a = format!("{A}:40001");
    let b = format!("{B}:40002");
    let (ext_a, ext_b) = (
        seen(&tb, "udp-seen", &a, STUN),
        seen(&tb, "udp-seen", &b, STUN),
    );
    let uplink = ext_a.split_once(':').unwrap().0.to_string();
    assert!([UPLINK_1, UPLINK_2].contains(&uplink.as_str()), "{ext_a}");
    assert!(ext_b.starts_with(&format!("{uplink}:")), "{ext_a} {ext_b}");
    // A punches: its first datagrams are filtered at B's mapping (B never sent to A's)...
    let meet_a = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "udp-meet",
            "--bind",
            &a,
            "--peer",
            &ext_b,
            "--count",
            "200",
        ],
    ));
    meet_a.wait_for("punching", "A");
    wait_filtered(&tb, 1);
    // ...then B's come through, and A's after them: each from the other's external endpoint,
    // every datagram, and nothing from anywhere else
    let meet_b = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "udp-meet",
            "--bind",
            &b,
            "--peer",
            &ext_a,
            "--count",
            "200",
        ],
    ));
    let (status_a, out_a) = meet_a.wait();
    let (status_b, out_b) = meet_b.wait();
    assert!(status_a.success() && status_b.success(), "{out_a}\n{out_b}");
    for (out, peer) in [(&out_a, &ext_b), (&out_b, &ext_a)] {
        assert!(out.contains(&format!("met {peer}")), "{out}");
        assert!(out.contains("got 200 of 200"), "{out}");
        assert!(out.contains("stray 0"), "{out}");
    }
    // B's socket is closed now: B's stack answers A's next datagram with a port unreachable,
    // which reaches A translated for A's socket (RFC 5508 REQ-7, outer destination included)
    let refused = tb.ok(
        "lan",
        &[probe(), "udp-refused", "--bind", &a, "--dst", &ext_b],
    );
    assert_eq!(refused.trim(), "refused");

    // TCP: A's SYNs punch (filtered), B's meet them: a simultaneous open, then a megabyte each
    // way, every byte checked
    let filtered = metric(&tb, r#"wanlb_drops_total{reason="hairpin_no_flow"}"#);
    let a = format!("{A}:41001");
    let b = format!("{B}:41002");
    let ext_a = seen(&tb, "tcp-seen", &a, TCP_STUN);
    let ext_b = seen(&tb, "tcp-seen", &b, TCP_STUN);
    assert!(ext_b.starts_with(&format!("{uplink}:")), "{ext_a} {ext_b}");
    let meet_a = Process::start(tb.spawn(
        "lan",
        &[probe(), "tcp-meet", "--bind", &a, "--peer", &ext_b],
    ));
    meet_a.wait_for("punching", "A");
    wait_filtered(&tb, filtered + 1);
    let meet_b = Process::start(tb.spawn(
        "lan",
        &[probe(), "tcp-meet", "--bind", &b, "--peer", &ext_a],
    ));
    let (status_a, out_a) = meet_a.wait();
    let (status_b, out_b) = meet_b.wait();
    assert!(status_a.success() && status_b.success(), "{out_a}\n{out_b}");
    for (out, peer, from) in [(&out_a, &ext_b, &b), (&out_b, &ext_a, &a)] {
        assert!(out.contains(&format!("from {from}")), "{out}");
        assert!(
            out.contains(&format!("ok 1000000 bytes from {peer} intact")),
            "{out}"
        );
    }

    // ping: A's identifier 4660 as the internet sees it...
    let icmp_seen = Process::start(tb.spawn("inet", &[probe(), "icmp-seen"]));
    icmp_seen.wait_for("listening", "icmp-seen");
    tb.ok(
        "lan",
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-e",
            "4660",
            "-I",
            A,
            "198.19.0.1",
        ],
    );
    let (_, out) = icmp_seen.wait();
    let (via, id) = out
        .lines()
        .find_map(|l| l.strip_prefix("SEEN ")?.split_once(' '))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(via, uplink, "the reflector's line");
    // ...A pings that uplink's address from the same identifier (the gateway answers; A's
    // mapping now takes echoes from that address)...
    tb.ok(
        "lan",
        &["ping", "-c", "1", "-W", "2", "-e", "4660", "-I", A, &uplink],
    );
    // ...and B's pings of A's external identifier are answered by A, not by the gateway
    count(
        &tb,
        "lan",
        "input",
        "requests_at_a",
        &format!("ip saddr {uplink} ip daddr {A} icmp type echo-request"),
    );
    count(
        &tb,
        "gw",
        "input",
        "requests_from_b",
        &format!("ip saddr {B} icmp type echo-request"),
    );
    tb.ok(
        "lan",
        &[
            "ping", "-c", "3", "-i", "0.2", "-W", "2", "-e", id, "-I", B, &uplink,
        ],
    );
    assert_eq!(counted(&tb, "lan", "requests_at_a"), 3);
    assert_eq!(counted(&tb, "gw", "requests_from_b"), 0);

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn lan_hosts_reach_each_others_mappings_in_userspace() {
    hosts_reach_each_others_mappings("off");
}

#[test]
fn lan_hosts_reach_each_others_mappings_with_the_fast_path_on() {
    hosts_reach_each_others_mappings("on");
}
