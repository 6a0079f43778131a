//! `gw6=auto` with real router advertisements (root; CI runs as root), on the testbed's IPv6
//! lines (testbed.sh ipv6lines: 2001:2::/48 and fd00::/8 only): isp2's modem, r2, advertises
//! itself with radvd, inside its namespace only, once wanlb has turned IPv6 forwarding on,
//! which makes the kernel ignore advertisements unless the line's `accept_ra` is 2.
//! wanlb follows the router the advertisement installs, and a change of router.

mod common;

use std::net::Ipv6Addr;

use common::*;

const ISP2_6: &str = "2001:2:0:2::1";

/// radvd on r2's eth0: the router for a minute, its line's own subnet on the link (no
/// address made from it), every 3 to 4 seconds. Runs until dropped (it then advertises a
/// lifetime of 0: the router is gone).
fn advertise(tb: &Testbed, dir: &Scratch, run: &str) -> Process {
    let conf = format!("{}/radvd-{run}.conf", dir.0);
    std::fs::write(
        &conf,
        "interface eth0 {\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 4;\n  \
         AdvDefaultLifetime 60;\n  prefix 2001:2:0:2::/64 { AdvOnLink on; AdvAutonomous off; };\n};\n",
    )
    .expect("writing radvd.conf");
    let pid = format!("{}/radvd-{run}.pid", dir.0);
    Process::start(tb.spawn(
        "r2",
        &[
            "radvd",
            "--nodaemon",
            "--logmethod",
            "stderr",
            "--config",
            &conf,
            "--pidfile",
            &pid,
        ],
    ))
}

/// r2's link-local address on the gateway's side.
fn r2_link_local(tb: &Testbed) -> Ipv6Addr {
    let out = tb.ok(
        "r2",
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ],
    );
    let word = out.split_whitespace().nth(3).expect("an address");
    word.split_once('/').expect("ADDR/LEN").0.parse().unwrap()
}

/// The address one UDP flow from the LAN host to the internet (pinned to isp2) is seen from.
fn seen_through_isp2(tb: &Testbed, first_port: u16) -> String {
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
            &first_port.to_string(),
        ],
    );
    let line = out
        .lines()
        .find(|l| !l.starts_with("via "))
        .expect("a flow");
    let seen = line.split_once(" [").expect("DST [IP]:PORT").1;
    seen.split_once(']').expect("[IP]:PORT").0.to_string()
}

#[test]
fn gw6_auto_learns_the_router_from_its_advertisement_with_forwarding_on_and_follows_a_new_one() {
    let tb = Testbed::up_ipv6();
    let dir = Scratch::new();
    let inet = Process::start(tb.spawn("inet", &[probe(), "serve", "--udp", "2001:2:ff::/126"]));
    inet.wait_for("listening", "probe server");
    let gw = tb.start_wanlb(
        &[
            "--lan",
            "eth0",
            "--uplink",
            "isp1,dev=eth1,gw=198.18.1.254,gw6=2001:2:0:1::fe,prefix6=2001:2:1::/48",
            "--uplink",
            "isp2,dev=eth2,gw=198.18.2.254,gw6=auto",
            "--health-target",
            TARGETS[0],
            "--pin",
            "2001:2:ff::/48=isp2",
        ]
        .map(String::from),
    );
    gw.wait_for("takes_ipv6_flows=true", "isp1's IPv6");
    // what makes the kernel take the advertisement: forwarding on, and accept_ra=2 on the line
    let sysctl = |key: &str| tb.ok("gw", &["sysctl", "-n", key]).trim().to_string();
    assert_eq!(sysctl("net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(sysctl("net.ipv6.conf.eth2.accept_ra"), "2");
    assert_eq!(
        gw.count("uplink=isp2 router="),
        0,
        "no router before it advertises"
    );

    // r2 advertises: the kernel installs the route, wanlb takes its router
    let first = r2_link_local(&tb);
    let radvd = advertise(&tb, &dir, "first");
    gw.wait_for(&format!("uplink=isp2 router={first}"), "isp2's router");
    gw.wait_for("uplink=isp2 takes_ipv6_flows=true", "isp2's IPv6");
    assert_eq!(seen_through_isp2(&tb, 20600), ISP2_6);

    // r2 stops advertising (its last advertisement says so) and comes back under another
    // link-local address: wanlb follows
    let _ = radvd.stop();
    tb.ok(
        "r2",
        &["ip", "-6", "addr", "flush", "dev", "eth0", "scope", "link"],
    );
    tb.ok(
        "r2",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fe80::2/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    let _radvd = advertise(&tb, &dir, "second");
    gw.wait_for("uplink=isp2 router=fe80::2", "isp2's new router");
    let up = "uplink=isp2 takes_ipv6_flows=true";
    gw.wait_for_count(up, 2, "isp2's IPv6 through its new router");
    assert_eq!(seen_through_isp2(&tb, 20700), ISP2_6);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
