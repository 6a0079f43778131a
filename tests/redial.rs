//! An uplink's interface deleted and made anew under the same name, with a new index: pppd's
//! redial does this to `ppp0`, and so does a USB modem or a NIC unplugged and plugged again.
//! wanlb opens the uplink's sockets and the fast path's program on the new interface and uses
//! the uplink again, without a restart. The point-to-point line of the testbed (testbed.sh
//! p2p, redialed by testbed.sh redial) stands for PPP, which the test kernel lacks; isp1's veth
//! (testbed.sh replug) for an Ethernet uplink. The real wanlb binary in network namespaces
//! (root required; CI runs as root).

mod common;

use common::*;

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

/// The addresses the far end saw the flows of a spread come from.
fn seen_from(flows: &[(String, String)]) -> Vec<&str> {
    let mut seen: Vec<&str> = flows.iter().map(|(_, s)| s.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// isp1 on Ethernet and the point-to-point isp3, 198.19.0.0/24 pinned to `pinned`; the
/// kernel fast path `offload`; the health targets.
fn args(pinned: &str, offload: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "--lan",
        "eth0",
        "--uplink",
        "isp1,dev=eth1,gw=198.18.1.254",
        "--uplink",
        "isp3,dev=tun3",
        "--pin",
        &format!("198.19.0.0/24={pinned}"),
        "--offload",
        offload,
    ]
    .map(String::from)
    .to_vec();
    for t in TARGETS {
        a.extend(["--health-target".into(), t.into()]);
    }
    a
}

/// What the fast path carried for `uplink` so far, both ways, as wanlb logs it on SIGUSR1
/// (the `n`-th such log).
fn fast_path_totals(gw: &Process, uplink: &str, n: usize) -> (u64, u64) {
    gw.signal("-USR1");
    let marker = format!("uplink fast path totals uplink={uplink}");
    gw.wait_for_count(&marker, n, "wanlb logging its status");
    let log = gw.output();
    let total = |direction| last_logged(&log, &marker, direction).unwrap_or(0);
    (total("outbound_packets"), total("inbound_packets"))
}

/// A UDP exchange of 200 datagrams to `dst` from the LAN, every one answered, and the address
/// it left from.
fn udp_exchange(tb: &Testbed, dst: &str) -> String {
    let out = tb.ok(
        "lan",
        &[probe(), "udp-check", "--dst", dst, "--count", "200"],
    );
    assert!(out.starts_with("ok 200"), "{out}");
    out
}

#[test]
fn a_redialed_point_to_point_line_is_used_again_with_and_without_the_fast_path() {
    for offload in ["off", "on"] {
        let tb = Testbed::up();
        let wire = tb.add_point_to_point();
        let _inet = tb.start_internet();
        let gw = tb.start_wanlb(&args("isp3", offload));
        gw.wait_for("uplink up uplink=isp3", "wanlb");
        assert_eq!(seen_from(&tb.spread("198.19.0.10", 3, 1)), [UPLINK_3]);
        let before = (offload == "on").then(|| fast_path_totals(&gw, "isp3", 1));

        // pppd redials: the session ends, ppp0 goes, a new ppp0 comes with the address
        drop(wire.stop());
        tb.redial_point_to_point();
        gw.wait_for("interface removed uplink=isp3", "wanlb");
        gw.wait_for("the interface is back as a new one", "wanlb");
        // pinned elsewhere meanwhile (the pin is not strict)
        assert_eq!(seen_from(&tb.spread("198.19.0.20", 3, 1)), [UPLINK_1]);
        let _wire = tb.wire_point_to_point();
        gw.wait_for_count("uplink up uplink=isp3", 2, "wanlb using the new interface");

        // new flows take the line again, both ways, the kernel fast path carrying them too
        assert_eq!(seen_from(&tb.spread("198.19.0.30", 3, 1)), [UPLINK_3]);
        let out = udp_exchange(&tb, "198.19.0.40:7");
        assert!(out.contains(&format!("via {UPLINK_3}:")), "{out}");
        tb.assert_tcp_echo("lan", "198.19.0.9:9000", 2_000_000);
        tb.assert_pings("lan", "198.19.0.1", 5, "0.1");
        if let Some((out_before, in_before)) = before {
            let (out_after, in_after) = fast_path_totals(&gw, "isp3", 2);
            assert!(out_after > out_before + 100, "{}", gw.output());
            assert!(in_after > in_before + 100, "{}", gw.output());
        }
        let (status, log) = gw.stop();
        assert!(status.success(), "{log}");
        assert!(!log.contains("restart"), "{log}");
    }
}

#[test]
fn an_ethernet_uplink_plugged_in_again_is_used_again() {
    let tb = Testbed::up();
    let _wire = tb.add_point_to_point();
    let _inet = tb.start_internet();
    let gw = tb.start_wanlb(&args("isp1", "on"));
    gw.wait_for("uplink up uplink=isp1", "wanlb");
    assert_eq!(seen_from(&tb.spread("198.19.0.10", 3, 1)), [UPLINK_1]);
    let (out_before, in_before) = fast_path_totals(&gw, "isp1", 1);

    // eth1 and the router's end are unplugged and plugged in again: new interfaces, new MACs
    tb.replug_uplink_1();
    gw.wait_for("interface removed uplink=isp1", "wanlb");
    gw.wait_for("the interface is back as a new one", "wanlb");
    // the new router's MAC is asked for, and the uplink is used again
    gw.wait_for_count("gateway resolved uplink=isp1", 2, "wanlb");
    gw.wait_for_count("uplink up uplink=isp1", 2, "wanlb using the new interface");
    assert_eq!(seen_from(&tb.spread("198.19.0.30", 3, 1)), [UPLINK_1]);
    let out = udp_exchange(&tb, "198.19.0.40:7");
    assert!(out.contains(&format!("via {UPLINK_1}:")), "{out}");
    tb.assert_tcp_echo("lan", "198.19.0.9:9000", 2_000_000);
    let (out_after, in_after) = fast_path_totals(&gw, "isp1", 2);
    assert!(out_after > out_before + 100, "{}", gw.output());
    assert!(in_after > in_before + 100, "{}", gw.output());
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
