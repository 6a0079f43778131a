//! A point-to-point uplink, as PPPoE, a raw-IP LTE modem or a tunnel are: no MAC, no ARP,
//! packets without a link-layer header. The testbed's isp3 is one (testbed.sh p2p: two TUN
//! devices joined by `wanlb-probe tun-wire`, the class PPP belongs to, since PPP itself needs a
//! kernel built with it), beside the Ethernet isp1; the real wanlb binary between them and a
//! LAN host in network namespaces (root required; CI runs as root). Bounds on gaps are
//! generous: speed is measured by `scripts/bench.sh failover`, not asserted here.

mod common;

use std::time::Duration;

use common::*;

/// isp1 on Ethernet and isp3 on the point-to-point line, without a gateway, 198.19.0.0/24
/// and 198.19.1.0/24 pinned to isp3; the kernel fast path `offload`; the health targets of
/// the failover tests, or none.
fn args(offload: &str, targets: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "--lan",
        "eth0",
        "--uplink",
        "isp1,dev=eth1,gw=198.18.1.254",
        "--uplink",
        "isp3,dev=tun3",
        "--pin",
        "198.19.0.0/24=isp3",
        "--pin",
        "198.19.1.0/24=isp3",
        "--offload",
        offload,
    ]
    .map(String::from)
    .to_vec();
    if targets {
        for t in TARGETS {
            a.extend(["--health-target".into(), t.into()]);
        }
    }
    a
}

/// The number after `key=` on the last log line containing `marker`.
fn last_logged(log: &str, marker: &str, key: &str) -> Option<u64> {
    let prefix = format!("{key}=");
    log.lines()
        .rev()
        .filter(|l| l.contains(marker))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix)?.parse().ok())
        })
}

/// The addresses the far end saw the flows of `spread` come from.
fn seen_from(flows: &[(String, String)]) -> Vec<&str> {
    let mut seen: Vec<&str> = flows.iter().map(|(_, s)| s.as_str()).collect();
    seen.dedup();
    seen
}

#[test]
fn traffic_crosses_a_point_to_point_uplink_with_and_without_the_fast_path() {
    let tb = Testbed::up();
    let _wire = tb.add_point_to_point();
    let _inet = tb.start_internet();
    for offload in ["off", "on"] {
        let gw = tb.start_wanlb(&args(offload, true));
        assert!(
            gw.output()
                .contains("point-to-point link: packets leave without a link-layer header"),
            "{}",
            gw.output()
        );
        // checksums as they arrive at the far ends: past the line and r3, and in the LAN
        let watchers: Vec<_> = [("inet", "eth3"), ("lan", "eth0")]
            .into_iter()
            .map(|(ns, dev)| (ns, tb.watch_checksums(ns, dev)))
            .collect();

        // UDP flows to several destinations, and one long enough for the fast path
        let flows = tb.spread("198.19.0.10", 4, 2);
        assert_eq!(seen_from(&flows), [UPLINK_3], "{flows:?}");
        let udp = tb.ok(
            "lan",
            &[
                probe(),
                "udp-check",
                "--dst",
                "198.19.0.20:7",
                "--count",
                "200",
            ],
        );
        assert!(
            udp.starts_with("ok 200") && udp.contains(&format!("via {UPLINK_3}:")),
            "{udp}"
        );
        // TCP, every byte checked on its way back; and ping
        tb.assert_tcp_echo("lan", "198.19.0.9:9000", 20_000_000);
        tb.assert_pings("lan", "198.19.0.1", 10, "0.1");

        // the status says what kind of line it is
        let status = tb.ok(
            "gw",
            &[
                probe(),
                "http-get",
                "--addr",
                "127.0.0.1:9911",
                "--path",
                "/status",
            ],
        );
        assert!(status.contains(r#""link": "point-to-point""#), "{status}");

        let (_, log) = gw.stop();
        let carried = |direction: &str| {
            last_logged(&log, "uplink fast path totals uplink=isp3", direction).unwrap_or(0)
        };
        if offload == "on" {
            // the kernel carried the steady flows both ways over the line
            assert!(carried("outbound_packets") > 1000, "{log}");
            assert!(carried("inbound_packets") > 1000, "{log}");
        } else {
            assert!(!log.contains("kernel fast path"), "{log}");
            let sent = last_logged(&log, "uplink totals uplink=isp3", "outbound_packets");
            assert!(sent.unwrap_or(0) > 1000, "{log}");
        }
        assert_eq!(
            last_logged(&log, " drops ", "unsendable"),
            Some(0),
            "every packet for the line could be sent complete: {log}"
        );
        for (ns, w) in watchers {
            let (checked, _, _, bad, out) = checksum_summary(w);
            assert_eq!(bad, 0, "--offload {offload}, {ns}: {out}");
            assert!(
                checked > 1000,
                "--offload {offload}, {ns} saw little: {out}"
            );
        }
    }
}

/// What `wanlb-probe udp-record` printed: (sequence number, source address, arrival ns).
fn records(out: &str) -> Vec<(u64, String, u64)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let seq = w.next()?.parse().ok()?;
            let (ip, _port) = w.next()?.split_once(':')?;
            let at = w.next()?.parse().ok()?;
            Some((seq, ip.to_string(), at))
        })
        .collect()
}

#[test]
fn a_point_to_point_line_dead_beyond_its_far_end_is_left_and_used_again_when_it_returns() {
    let tb = Testbed::up();
    let _wire = tb.add_point_to_point();
    let _inet = tb.start_internet();
    let record = Process::start(tb.spawn(
        "inet",
        &[probe(), "udp-record", "--bind", "198.19.1.1:7000"],
    ));
    record.wait_for("listening", "udp-record");
    let gw = tb.start_wanlb(&args("auto", true));
    let stream = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "udp-stream",
            "--dst",
            "198.19.1.1:7000",
            "--interval",
            "10ms",
            "--seconds",
            "60",
        ],
    ));
    let hold = Process::start(tb.spawn("lan", &[probe(), "tcp-hold", "--dst", "198.19.1.2:9000"]));
    hold.wait_for("connected", "tcp-hold");
    std::thread::sleep(Duration::from_millis(500));

    // the line's far end stops forwarding, as a DSL line dies beyond the PPPoE server
    tb.cut_beyond("r3");
    gw.wait_for("uplink down uplink=isp3", "wanlb");
    hold.wait_for("reset ", "tcp-hold");
    assert!(
        gw.output().contains("3 probe rounds in a row unanswered"),
        "{}",
        gw.output()
    );
    assert_eq!(gw.count("uplink down uplink=isp1"), 0, "{}", gw.output());
    // the pinned destinations go through isp1 meanwhile
    assert_eq!(seen_from(&tb.spread("198.19.0.50", 3, 1)), [UPLINK_1]);

    // the line returns: new flows to its destinations take it again...
    tb.restore_beyond("r3");
    gw.wait_for_count("uplink up uplink=isp3", 2, "wanlb");
    assert_eq!(seen_from(&tb.spread("198.19.0.60", 3, 1)), [UPLINK_3]);
    // ...while the stream that moved stays on isp1
    std::thread::sleep(Duration::from_millis(500));
    let (_, sent) = stream.stop();
    let (_, got) = record.stop();
    let got = records(&got);
    let moved = got
        .iter()
        .position(|(_, ip, _)| ip == UPLINK_1)
        .unwrap_or_else(|| panic!("the stream never came through isp1; sent: {sent}"));
    assert!(moved > 0, "the stream started on the line");
    assert!(got[..moved].iter().all(|(_, ip, _)| ip == UPLINK_3));
    assert!(got[moved..].iter().all(|(_, ip, _)| ip == UPLINK_1));
    let gap_ms = (got[moved].2 - got[moved - 1].2) / 1_000_000;
    assert!(gap_ms < 3_000, "the stream stopped for {gap_ms} ms");
    let log = gw.stop().1;
    assert!(last_logged(&log, "status", "moved").unwrap() >= 1, "{log}");
}

#[test]
fn without_targets_a_point_to_point_line_follows_its_carrier() {
    let tb = Testbed::up();
    let wire = tb.add_point_to_point();
    let _inet = tb.start_internet();
    let gw = tb.start_wanlb(&args("auto", false));
    gw.wait_for("uplink up uplink=isp3 reason=carrier present", "wanlb");
    assert!(
        gw.output()
            .contains("no health target on a point-to-point link: only its carrier is watched"),
        "{}",
        gw.output()
    );
    assert_eq!(seen_from(&tb.spread("198.19.0.10", 3, 1)), [UPLINK_3]);

    // the line goes quiet (the process joining its ends stops): its carrier is gone
    drop(wire.stop());
    gw.wait_for(
        "uplink down uplink=isp3 reason=carrier lost",
        "wanlb after the line lost carrier",
    );
    assert_eq!(seen_from(&tb.spread("198.19.0.20", 3, 1)), [UPLINK_1]);

    // and comes back after ten rounds with carrier, as another line after ten answered ones
    let _wire = tb.wire_point_to_point();
    gw.wait_for(
        "uplink up uplink=isp3 reason=carrier present 10 rounds in a row",
        "wanlb after the carrier returned",
    );
    assert_eq!(seen_from(&tb.spread("198.19.0.30", 3, 1)), [UPLINK_3]);
}
