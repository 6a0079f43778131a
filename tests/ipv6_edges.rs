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
/// The IPv6 health target, in the simulated internet.
const TARGET6: &str = "2001:2:ff:ffff::1";
/// A host on a second link of the gateway (eth4), not named --lan.
const LINK2_6: &str = "fd00:6::10";

fn testbed() -> Testbed {
    let tb = Testbed::up();
    let out = std::process::Command::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed.sh"),
    )
    .args(["ipv6lines", &tb.prefix])
    .output()
    .expect("running testbed.sh");
    assert!(
        out.status.success(),
        "testbed ipv6lines failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tb
}

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

/// The `ipv6_forward` count of the drops wanlb logs on SIGUSR1.
fn ipv6_forward_drops(gw: &Process) -> u64 {
    let before = gw.count("ipv6_forward=");
    gw.signal("-USR1");
    gw.wait_for_count("ipv6_forward=", before + 1, "wanlb's drops");
    gw.output()
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("ipv6_forward=")?.parse().ok())
        .last()
        .unwrap()
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
    let tb = testbed();
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
    let counted = ipv6_forward_drops(&gw);
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
        ipv6_forward_drops(&gw) >= counted + 3,
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
