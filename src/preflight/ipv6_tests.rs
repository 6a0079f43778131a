//! IPv6 settings against a made-up system: the LAN's IPv6 prefixes, each line's router,
//! address and delegated prefix as found, and what can never be right.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::config::Flags;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn iface(name: &str, index: u32, addr: [u8; 4]) -> Interface {
    Interface {
        name: name.into(),
        index,
        mac: [2, 0, 0, 0, 0, index as u8],
        hardware_type: 1,
        point_to_point: false,
        mtu: 1500,
        ipv4: vec![(Ipv4Addr::from(addr), 24)],
    }
}

fn addr6(ifindex: u32, addr: &str, prefix_len: u8, stable: bool) -> LinkEvent {
    LinkEvent::Address6 {
        ifindex,
        addr: a(addr),
        prefix_len,
        stable,
        present: true,
    }
}

/// LAN eth0 (2) with fd00:3::100/64 and a link-local address's worth of nothing; isp1 eth1
/// (3) with a temporary and a stable address and a default route from router
/// advertisements; isp2 eth2 (4) with no IPv6 yet; a prefix delegated.
fn facts() -> SystemFacts {
    SystemFacts {
        interfaces: vec![
            iface("eth0", 2, [198, 18, 3, 100]),
            iface("eth1", 3, [198, 18, 1, 1]),
            iface("eth2", 4, [198, 18, 2, 1]),
        ],
        ephemeral_ports: (32768, 60999),
        services: vec![],
        default_routes: vec![],
        ipv6: vec![
            addr6(2, "fd00:3::100", 64, true),
            addr6(3, "2001:2:0:1::aaaa", 64, false),
            addr6(3, "2001:2:0:1::1", 64, true),
            LinkEvent::DefaultRoute6 {
                ifindex: 3,
                gateway: a("fe80::1"),
                metric: 1024,
                present: true,
            },
            LinkEvent::Delegated {
                prefix: a("2001:2:1::"),
                prefix_len: 48,
                present: true,
            },
        ],
    }
}

fn flags(uplinks: &[&str], lan_net: &[&str], forwards: &[&str]) -> Flags {
    Flags {
        lan: vec!["eth0".into()],
        uplinks: uplinks.iter().map(|s| s.to_string()).collect(),
        lan_net: lan_net.iter().map(|s| s.to_string()).collect(),
        forwards: forwards.iter().map(|s| s.to_string()).collect(),
        ..Flags::default()
    }
}

const ISP1_V6: &str = "isp1,dev=eth1,gw=198.18.1.254,gw6=auto,prefix6=auto";
const ISP2_V6: &str = "isp2,dev=eth2,gw=198.18.2.254,gw6=fe80::2";

fn refused(f: &Flags) -> Vec<String> {
    let c = Config::load(f).unwrap();
    let e = check(&c, &facts()).expect_err("should be refused");
    e.errors().iter().map(ToString::to_string).collect()
}

#[test]
fn each_lines_ipv6_is_found_as_the_kernel_shows_it() {
    let c = Config::load(&flags(&[ISP1_V6, ISP2_V6], &["fd00:50::/64"], &[])).unwrap();
    let plan = check(&c, &facts()).unwrap();
    let one = plan.uplinks[0].v6.as_ref().unwrap();
    assert_eq!(one.current(), Some(a("2001:2:0:1::1")));
    assert_eq!(one.router(), Some(a("fe80::1")));
    assert_eq!(one.prefix(), Some((a("2001:2:1::"), 48)));
    // no IPv6 on isp2 yet is no error: its IPv6 waits
    let two = plan.uplinks[1].v6.as_ref().unwrap();
    assert_eq!((two.current(), two.router()), (None, Some(a("fe80::2"))));
    assert_eq!(two.prefix(), None);
    let lan6: Vec<String> = plan.lan_sources6.iter().map(ToString::to_string).collect();
    assert_eq!(lan6, ["fd00:3::/64", "fd00:50::/64"]);
    // a line without gw6 carries no IPv6
    let c = Config::load(&flags(&["isp1,dev=eth1,gw=198.18.1.254"], &[], &[])).unwrap();
    assert_eq!(check(&c, &facts()).unwrap().uplinks[0].v6, None);
}

#[test]
fn what_can_never_be_right_is_refused() {
    let e = refused(&flags(
        &["isp1,dev=eth1,gw=198.18.1.254,gw6=2001:2:0:9::1"],
        &[],
        &[],
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("gw6 2001:2:0:9::1 is not on eth1's IPv6 subnets"),
        "{e:?}"
    );
    let e = refused(&flags(
        &["isp1,dev=eth1,gw=198.18.1.254,gw6=auto,src6=2001:2:0:1::5"],
        &[],
        &[],
    ));
    assert!(
        e[0].contains("src6 2001:2:0:1::5 is not an address of eth1"),
        "{e:?}"
    );
    // a router's global address on the line's subnet is fine
    let c = Config::load(&flags(
        &["isp1,dev=eth1,gw=198.18.1.254,gw6=2001:2:0:1::fe"],
        &[],
        &[],
    ))
    .unwrap();
    assert!(check(&c, &facts()).is_ok());
}

#[test]
fn an_ipv6_forward_needs_a_lan_host_and_a_line_with_ipv6() {
    let c = Config::load(&flags(
        &[ISP1_V6, ISP2_V6],
        &[],
        &["tcp:80=[fd00:3::10]:80@isp1"],
    ))
    .unwrap();
    assert!(check(&c, &facts()).is_ok());
    let e = refused(&flags(
        &[ISP1_V6, "isp2,dev=eth2,gw=198.18.2.254"],
        &[],
        &["tcp:80=[fd00:9::10]:80@isp1", "tcp:81=[fd00:3::10]:80@isp2"],
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("fd00:9::10 is not in the LAN (fd00:3::/64)"),
        "{e:?}"
    );
    assert!(
        e[1].contains("isp2 carries no IPv6 (it has no gw6)"),
        "{e:?}"
    );
    let e = refused(&flags(&[ISP1_V6], &[], &["tcp:80=[fd00:3::100]:80@isp1"]));
    assert!(
        e[0].contains("fd00:3::100 is an address of this gateway"),
        "{e:?}"
    );
}
