//! Addresses that change while wanlb runs (root; CI runs as root): a DHCP renewal giving eth1
//! a new address, and a lease lost and regained. New flows leave from the new address, nothing
//! leaves from the old one, and wanlb's nftables table, socket filters and the host's default
//! route follow.

mod common;

use common::*;

fn sources_seen(flows: &[(String, String)]) -> Vec<String> {
    let mut seen: Vec<String> = flows.iter().map(|(_, s)| s.clone()).collect();
    seen.sort();
    seen.dedup();
    seen
}

#[test]
fn a_new_address_on_an_uplink_is_followed_and_the_old_one_falls_silent() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let mut args = health_args();
    args.extend(["--host-traffic".into(), "follow".into()]);
    let gw = tb.start_wanlb(&args);
    let before = sources_seen(&tb.spread("198.19.0.1", 9, 1));
    assert_eq!(before, [UPLINK_1, UPLINK_2]);

    // a renewal: the new address comes, the old one goes (the new one is promoted)
    tb.ok(
        "gw",
        &["sysctl", "-qw", "net.ipv4.conf.eth1.promote_secondaries=1"],
    );
    tb.ok("gw", &["ip", "addr", "add", "198.18.1.2/24", "dev", "eth1"]);
    tb.ok("gw", &["ip", "addr", "del", "198.18.1.1/24", "dev", "eth1"]);
    gw.wait_for("uplink address changed", "wanlb following the renewal");
    let out = gw.output();
    assert!(
        out.lines().any(|l| l.contains("uplink address changed")
            && l.contains("from=198.18.1.1")
            && l.contains("to=198.18.1.2")),
        "{out}"
    );
    let (old, new) = (format!("ip saddr {UPLINK_1}"), "ip saddr 198.18.1.2");
    tb.watch("r1", &[&old, new]);
    // new flows, ping and a TCP transfer use the new address, both ways (the socket filters
    // let its replies through)
    let after = sources_seen(&tb.spread("198.19.0.100", 9, 1));
    assert_eq!(after, ["198.18.1.2", UPLINK_2]);
    tb.assert_pings("lan", "198.19.0.100", 3, "0.2");
    tb.assert_tcp_echo("lan", "198.19.0.101:9000", 2_000_000);
    assert!(tb.seen("r1", new) > 0);
    assert_eq!(
        tb.seen("r1", &old),
        0,
        "nothing leaves from the old address"
    );
    // the gateway's own default route leaves from the new address too
    gw.wait_for(
        "reason=isp1's address or gateway changed",
        "the host route following",
    );
    let route = tb.ok("gw", &["ip", "route", "show", "default", "proto", "113"]);
    assert!(route.contains("src 198.18.1.2"), "{route}");
    // wanlb's nftables table names the new address and not the old one
    let table = tb.ok("gw", &["nft", "list", "table", "inet", "wanlb_wanlb0"]);
    assert!(table.contains("198.18.1.2"), "{table}");
    assert!(!table.contains("198.18.1.1 "), "{table}");

    // the lease lost: the line is down until an address comes back
    tb.ok("gw", &["ip", "addr", "del", "198.18.1.2/24", "dev", "eth1"]);
    gw.wait_for("the interface has no address", "wanlb taking isp1 down");
    assert_eq!(sources_seen(&tb.spread("198.19.0.120", 4, 1)), [UPLINK_2]);
    tb.ok("gw", &["ip", "addr", "add", "198.18.1.3/24", "dev", "eth1"]);
    gw.wait_for("to=198.18.1.3", "wanlb taking the new lease");
    gw.wait_for_count("uplink up", 3, "isp1 back up on its new address");
    let back = sources_seen(&tb.spread("198.19.0.140", 9, 1));
    assert_eq!(back, ["198.18.1.3", UPLINK_2]);

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn gw_auto_takes_the_gateway_from_the_default_route_and_follows_it() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // the test bed's gateway has the route a DHCP client would install: default via r1
    let mut args: Vec<String> = [
        "--lan",
        "eth0",
        "--uplink",
        "isp1,dev=eth1,gw=auto,weight=2",
        "--uplink",
        "isp2,dev=eth2,gw=198.18.2.254",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for t in TARGETS {
        args.extend(["--health-target".into(), t.into()]);
    }
    let gw = tb.start_wanlb(&args);
    let status = tb.ok("gw", &[WANLB, "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["uplinks"][0]["gateway"], "198.18.1.254", "{status}");
    assert_eq!(
        sources_seen(&tb.spread("198.19.0.1", 9, 1)),
        [UPLINK_1, UPLINK_2]
    );

    // the lease now names another router on the same link (r1 answers there too)
    tb.ok(
        "r1",
        &["ip", "addr", "add", "198.18.1.253/24", "dev", "eth0"],
    );
    tb.ok(
        "gw",
        &[
            "ip",
            "route",
            "replace",
            "default",
            "via",
            "198.18.1.253",
            "dev",
            "eth1",
        ],
    );
    gw.wait_for("gateway=198.18.1.253", "wanlb following the default route");
    // asked for anew (isp1 and isp2 were resolved once at start)
    gw.wait_for_count("gateway resolved", 3, "wanlb asking the new gateway's MAC");
    let status = tb.ok("gw", &[WANLB, "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["uplinks"][0]["gateway"], "198.18.1.253", "{status}");
    assert_eq!(status["uplinks"][0]["state"], "up", "{status}");
    assert_eq!(
        sources_seen(&tb.spread("198.19.0.100", 9, 1)),
        [UPLINK_1, UPLINK_2]
    );
    tb.assert_tcp_echo("lan", "198.19.0.101:9000", 1_000_000);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
