//! An uplink's IPv6 followed through the kernel's events.

use std::net::Ipv6Addr;

use super::*;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn addr6(ifindex: u32, addr: &str, stable: bool, present: bool) -> LinkEvent {
    LinkEvent::Address6 {
        ifindex,
        addr: a(addr),
        prefix_len: 64,
        stable,
        present,
    }
}

fn route6(ifindex: u32, gateway: &str, present: bool) -> LinkEvent {
    LinkEvent::DefaultRoute6 {
        ifindex,
        gateway: a(gateway),
        present,
    }
}

fn addressing(router: Router6, delegation: Delegation) -> Addressing {
    let v4 = vec![("198.18.1.1".parse().unwrap(), 24)];
    Addressing::new("eth1", 3, None, v4).with_ipv6(Addressing6::new(None, router, delegation))
}

#[test]
fn the_address_is_a_stable_global_one_never_a_temporary_one() {
    let mut ad = addressing(Router6::Fixed(a("fe80::1")), Delegation::None);
    // a temporary (privacy) address first: not used
    assert_eq!(ad.apply(&addr6(3, "2001:2:0:1::aaaa", false, true)), None);
    // a unique-local one, then a global one: the global one is preferred
    assert_eq!(
        ad.apply(&addr6(3, "fd00:1::1", true, true)),
        Some(LinkChange::Address6(Some(a("fd00:1::1"))))
    );
    assert_eq!(
        ad.apply(&addr6(3, "2001:2:0:1::1", true, true)),
        Some(LinkChange::Address6(Some(a("2001:2:0:1::1"))))
    );
    // another interface's address is not its own
    assert_eq!(ad.apply(&addr6(4, "2001:2:0:9::1", true, true)), None);
    // the global one deprecated (a renumbering): the unique-local one until a new one comes
    assert_eq!(
        ad.apply(&addr6(3, "2001:2:0:1::1", false, true)),
        Some(LinkChange::Address6(Some(a("fd00:1::1"))))
    );
    assert_eq!(
        ad.apply(&addr6(3, "fd00:1::1", true, false)),
        Some(LinkChange::Address6(None))
    );
    assert_eq!(ad.v6().unwrap().current(), None);
    // the IPv4 address is untouched by all this
    assert_eq!(ad.current(), Some("198.18.1.1".parse().unwrap()));
}

#[test]
fn src6_is_used_only_while_the_interface_has_it() {
    let v6 = Addressing6::new(
        Some(a("2001:2:0:1::5")),
        Router6::Auto(Vec::new()),
        Delegation::None,
    );
    let mut ad = Addressing::new("eth1", 3, None, vec![]).with_ipv6(v6);
    assert_eq!(ad.apply(&addr6(3, "2001:2:0:1::1", true, true)), None);
    assert_eq!(
        ad.apply(&addr6(3, "2001:2:0:1::5", false, true)),
        Some(LinkChange::Address6(Some(a("2001:2:0:1::5"))))
    );
}

#[test]
fn gw6_auto_follows_the_newest_default_route_and_loses_it_with_the_route() {
    let mut ad = addressing(Router6::Auto(Vec::new()), Delegation::None);
    assert_eq!(
        ad.apply(&route6(3, "fe80::1", true)),
        Some(LinkChange::Router6(Some(a("fe80::1"))))
    );
    assert_eq!(
        ad.apply(&route6(3, "fe80::2", true)),
        Some(LinkChange::Router6(Some(a("fe80::2"))))
    );
    assert_eq!(ad.apply(&route6(9, "fe80::9", true)), None);
    assert_eq!(
        ad.apply(&route6(3, "fe80::2", false)),
        Some(LinkChange::Router6(Some(a("fe80::1"))))
    );
    // a router advertising a lifetime of 0 is no default router any more
    assert_eq!(
        ad.apply(&route6(3, "fe80::1", false)),
        Some(LinkChange::Router6(None))
    );
    // a fixed gw6 ignores the routes
    let mut fixed = addressing(Router6::Fixed(a("fe80::1")), Delegation::None);
    assert_eq!(fixed.apply(&route6(3, "fe80::7", true)), None);
    assert_eq!(fixed.v6().unwrap().router(), Some(a("fe80::1")));
}

#[test]
fn prefix6_auto_follows_a_renumbering() {
    let mut ad = addressing(Router6::Fixed(a("fe80::1")), Delegation::Auto(Vec::new()));
    let delegated = |p: &str, present| LinkEvent::Delegated {
        prefix: a(p),
        prefix_len: 56,
        present,
    };
    assert_eq!(
        ad.apply(&delegated("2001:2:1:100::", true)),
        Some(LinkChange::Prefix6(Some((a("2001:2:1:100::"), 56))))
    );
    // the client's renewal brings another prefix, then withdraws the old one
    assert_eq!(
        ad.apply(&delegated("2001:2:1:200::", true)),
        Some(LinkChange::Prefix6(Some((a("2001:2:1:200::"), 56))))
    );
    assert_eq!(ad.apply(&delegated("2001:2:1:100::", false)), None);
    assert_eq!(
        ad.apply(&delegated("2001:2:1:200::", false)),
        Some(LinkChange::Prefix6(None))
    );
    // a fixed prefix6 ignores them
    let fixed = Delegation::Fixed(a("2001:2:1::"), 48);
    let mut fixed = addressing(Router6::Fixed(a("fe80::1")), fixed);
    assert_eq!(fixed.apply(&delegated("2001:2:9::", true)), None);
    assert_eq!(fixed.v6().unwrap().prefix(), Some((a("2001:2:1::"), 48)));
}

#[test]
fn a_resync_takes_the_dump_as_the_truth_and_a_new_interface_starts_empty() {
    let mut ad = addressing(Router6::Auto(Vec::new()), Delegation::None);
    ad.apply(&addr6(3, "2001:2:0:1::1", true, true));
    ad.apply(&route6(3, "fe80::1", true));
    let dump = vec![
        LinkEvent::Link {
            ifindex: 3,
            name: "eth1".into(),
            carrier: true,
        },
        LinkEvent::Address {
            ifindex: 3,
            addr: "198.18.1.1".parse().unwrap(),
            prefix_len: 24,
            present: true,
        },
        addr6(3, "2001:2:0:1::2", true, true),
        route6(3, "fe80::1", true),
    ];
    let changes = ad.resync(&dump);
    assert_eq!(
        changes,
        [
            LinkChange::Carrier(true),
            LinkChange::Address6(Some(a("2001:2:0:1::2")))
        ]
    );
    // pppd's redial: a new interface of the name has nothing until the kernel says so
    let new = LinkEvent::Link {
        ifindex: 7,
        name: "eth1".into(),
        carrier: true,
    };
    ad.apply(&new);
    assert_eq!(ad.v6().unwrap().current(), None);
    assert_eq!(ad.v6().unwrap().router(), None);
    assert_eq!(
        ad.apply(&addr6(7, "2001:2:0:1::3", true, true)),
        Some(LinkChange::Address6(Some(a("2001:2:0:1::3"))))
    );
}

#[test]
fn the_record_takes_ipv6_flows_only_while_its_ipv6_is_up_and_reachable() {
    let mut f = Ipv6Facts::new(Some(a("2001:2:0:1::1")), Some(a("fe80::1")), None, false);
    f.state = crate::health::State::Up;
    // no router MAC yet
    assert!(!f.is_up(true));
    f.router_mac = Some([2, 0, 0, 0, 0, 1]);
    assert!(f.is_up(true));
    // judged by the line's health without IPv6 targets of its own, apart from it with them
    assert!(!f.is_up(false));
    f.own_targets = true;
    assert!(f.is_up(false));
    f.addr = None;
    assert!(!f.is_up(true));
    assert_eq!(f.translation(), "nat66");
}

#[test]
fn an_address_or_prefix_told_again_changes_nothing() {
    // two stable global addresses (two prefixes in the RA, or SLAAC beside DHCPv6): each RA
    // refreshes their lifetimes, and the kernel tells each again
    let mut ad = Addressing6::new(
        None,
        Router6::Fixed(a("fe80::1")),
        Delegation::Auto(Vec::new()),
    );
    assert_eq!(
        ad.apply(&addr6(3, "2001:2:0:1::1", true, true)),
        Some(LinkChange::Address6(Some(a("2001:2:0:1::1"))))
    );
    assert_eq!(ad.apply(&addr6(3, "2001:2:0:1::2", true, true)), None);
    for refreshed in ["2001:2:0:1::1", "2001:2:0:1::2", "2001:2:0:1::1"] {
        assert_eq!(
            ad.apply(&addr6(3, refreshed, true, true)),
            None,
            "{refreshed}"
        );
    }
    // the chosen one deprecated: the other takes over, and keeps the line when the first is
    // refreshed again
    assert_eq!(
        ad.apply(&addr6(3, "2001:2:0:1::1", false, true)),
        Some(LinkChange::Address6(Some(a("2001:2:0:1::2"))))
    );
    assert_eq!(ad.apply(&addr6(3, "2001:2:0:1::1", true, true)), None);
    // a resync with both keeps the choice, whatever the dump's order
    let dump = [
        addr6(3, "2001:2:0:1::1", true, true),
        addr6(3, "2001:2:0:1::2", true, true),
    ];
    assert_eq!(ad.resync(dump.iter()), []);
    assert_eq!(ad.current(), Some(a("2001:2:0:1::2")));

    // two delegated prefixes: a renewal of the older one does not put it first
    let delegated = |p: &str| LinkEvent::Delegated {
        prefix: a(p),
        prefix_len: 56,
        present: true,
    };
    ad.apply(&delegated("2001:2:1:100::"));
    assert_eq!(
        ad.apply(&delegated("2001:2:1:200::")),
        Some(LinkChange::Prefix6(Some((a("2001:2:1:200::"), 56))))
    );
    assert_eq!(ad.apply(&delegated("2001:2:1:100::")), None);
    let dump = [delegated("2001:2:1:100::"), delegated("2001:2:1:200::")];
    assert_eq!(ad.resync(dump.iter()), [LinkChange::Address6(None)]);
    assert_eq!(ad.current(), None, "the addresses were not in the dump");
    assert_eq!(ad.prefix(), Some((a("2001:2:1:200::"), 56)));
}
