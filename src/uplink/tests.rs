//! The records, the kinds of link, and what the kernel's events mean for an uplink.

use std::net::Ipv4Addr;

use super::link::{mac_to_u64, u64_to_mac};
use super::*;

fn address(ifindex: u32, last: u8, present: bool) -> LinkEvent {
    LinkEvent::Address {
        ifindex,
        addr: Ipv4Addr::new(198, 18, 1, last),
        prefix_len: 24,
        present,
    }
}

#[test]
fn an_uplink_follows_its_interfaces_first_address() {
    let a = |last| Ipv4Addr::new(198, 18, 1, last);
    let mut uplink = Addressing::new("eth1", 3, None, vec![(a(1), 24)]);
    assert_eq!(uplink.current(), Some(a(1)));
    // another interface's address, or the one it has again, change nothing
    assert_eq!(uplink.apply(&address(4, 9, true)), None);
    assert_eq!(uplink.apply(&address(3, 1, true)), None);
    // a renewal: the new address first added, then the old one removed
    assert_eq!(uplink.apply(&address(3, 2, true)), None);
    assert_eq!(
        uplink.apply(&address(3, 1, false)),
        Some(LinkChange::Address(Some(a(2))))
    );
    // the lease lost: no address, then one again
    assert_eq!(
        uplink.apply(&address(3, 2, false)),
        Some(LinkChange::Address(None))
    );
    assert_eq!(
        uplink.apply(&address(3, 7, true)),
        Some(LinkChange::Address(Some(a(7))))
    );
}

#[test]
fn with_gw_auto_the_gateway_follows_the_default_route() {
    let g = |last| Ipv4Addr::new(198, 18, 1, last);
    let route = |ifindex, last, present| LinkEvent::DefaultRoute {
        ifindex,
        gateway: g(last),
        present,
    };
    let mut fixed = Addressing::new("eth1", 3, None, vec![(g(1), 24)]);
    assert_eq!(fixed.apply(&route(3, 253, true)), None, "a given gw stays");
    let mut uplink =
        Addressing::new("eth1", 3, None, vec![(g(1), 24)]).following_gateway(Some(g(254)));
    assert_eq!(
        uplink.apply(&route(4, 9, true)),
        None,
        "another interface's"
    );
    // told again at start (the kernel's dump): no change
    assert_eq!(uplink.apply(&route(3, 254, true)), None);
    // a renewal removes the route, then adds one through another router
    assert_eq!(uplink.apply(&route(3, 254, false)), None);
    assert_eq!(
        uplink.apply(&route(3, 254, false)),
        None,
        "the last gateway stays"
    );
    assert_eq!(
        uplink.apply(&route(3, 253, true)),
        Some(LinkChange::Gateway(g(253)))
    );
    // a replace: only the new route is told; the newest is in force
    assert_eq!(
        uplink.apply(&route(3, 252, true)),
        Some(LinkChange::Gateway(g(252)))
    );
    assert_eq!(
        uplink.apply(&route(3, 252, false)),
        Some(LinkChange::Gateway(g(253)))
    );
}

#[test]
fn a_dump_says_what_is_gone_too() {
    let a = |last| Ipv4Addr::new(198, 18, 1, last);
    let link = |ifindex, name: &str| LinkEvent::Link {
        ifindex,
        name: name.into(),
        carrier: true,
    };
    let mut uplink = Addressing::new("eth1", 3, None, vec![(a(1), 24)]);
    // the address changed while nobody listened (before start, or in an overflow)
    let dump = [link(3, "eth1"), address(3, 2, true), address(4, 9, true)];
    assert_eq!(
        uplink.resync(&dump),
        [LinkChange::Carrier(true), LinkChange::Address(Some(a(2)))]
    );
    // the same again: only the carrier, said again
    assert_eq!(uplink.resync(&dump), [LinkChange::Carrier(true)]);
    // no address in it: none left; the interface missing: gone; back with a new index
    assert_eq!(
        uplink.resync(&[link(3, "eth1")]),
        [LinkChange::Carrier(true), LinkChange::Address(None)]
    );
    assert_eq!(uplink.resync(&[link(4, "eth2")]), [LinkChange::Gone]);
    assert_eq!(
        uplink.resync(&[link(7, "eth1"), address(7, 3, true)]),
        [
            LinkChange::Reappeared {
                ifindex: 7,
                carrier: true
            },
            LinkChange::Address(Some(a(3)))
        ]
    );
    // and followed from then on
    assert_eq!(uplink.ifindex(), 7);
    assert_eq!(
        uplink.resync(&[link(7, "eth1"), address(7, 3, true)]),
        [LinkChange::Carrier(true)]
    );
}

#[test]
fn addresses_told_again_keep_their_order() {
    let a = |last| Ipv4Addr::new(198, 18, 1, last);
    let mut uplink = Addressing::new("eth1", 3, None, vec![(a(1), 24), (a(2), 24)]);
    // the kernel's answer to asking for every address, at start or after an overflow
    assert_eq!(uplink.apply(&address(3, 1, true)), None);
    assert_eq!(uplink.apply(&address(3, 2, true)), None);
    assert_eq!(uplink.current(), Some(a(1)));
}

#[test]
fn a_given_src_is_used_while_the_interface_has_it() {
    let a = |last| Ipv4Addr::new(198, 18, 1, last);
    let mut uplink = Addressing::new("eth1", 3, Some(a(5)), vec![(a(1), 24), (a(5), 24)]);
    assert_eq!(uplink.current(), Some(a(5)));
    assert_eq!(uplink.apply(&address(3, 1, false)), None);
    assert_eq!(
        uplink.apply(&address(3, 5, false)),
        Some(LinkChange::Address(None))
    );
    assert_eq!(
        uplink.apply(&address(3, 6, true)),
        None,
        "not the address it was given"
    );
    assert_eq!(
        uplink.apply(&address(3, 5, true)),
        Some(LinkChange::Address(Some(a(5))))
    );
}

#[test]
fn a_removed_interface_is_gone_and_its_return_is_noticed() {
    let mut uplink = Addressing::new("ppp0", 9, None, vec![(Ipv4Addr::new(198, 18, 5, 1), 24)]);
    let link = |ifindex, carrier| LinkEvent::Link {
        ifindex,
        name: "ppp0".into(),
        carrier,
    };
    assert_eq!(
        uplink.apply(&link(9, false)),
        Some(LinkChange::Carrier(false))
    );
    let gone = LinkEvent::LinkGone {
        ifindex: 9,
        name: "ppp0".into(),
    };
    assert_eq!(uplink.apply(&gone), Some(LinkChange::Gone));
    assert_eq!(uplink.current(), None);
    // pppd's redial: a new ppp0, without carrier yet, then its address, then carrier
    assert_eq!(
        uplink.apply(&link(12, false)),
        Some(LinkChange::Reappeared {
            ifindex: 12,
            carrier: false
        })
    );
    assert_eq!(uplink.ifindex(), 12, "the new interface is followed");
    let (a, b) = (Ipv4Addr::new(198, 18, 5, 1), Ipv4Addr::new(198, 18, 5, 7));
    let address = |ifindex, addr, present| LinkEvent::Address {
        ifindex,
        addr,
        prefix_len: 32,
        present,
    };
    assert_eq!(uplink.apply(&address(9, b, true)), None, "the old one's");
    assert_eq!(
        uplink.apply(&address(12, a, true)),
        Some(LinkChange::Address(Some(a)))
    );
    assert_eq!(uplink.subnets(), [(a, 32)]);
    assert_eq!(
        uplink.apply(&link(12, true)),
        Some(LinkChange::Carrier(true))
    );
    assert_eq!(uplink.apply(&gone), None, "the old one is gone already");
}

#[test]
fn the_subnets_are_the_interfaces_addresses_with_their_prefixes() {
    let a = |last| Ipv4Addr::new(198, 18, 1, last);
    let mut uplink = Addressing::new("eth1", 3, None, vec![(a(1), 24)]);
    let on = |addr, prefix_len, present| LinkEvent::Address {
        ifindex: 3,
        addr,
        prefix_len,
        present,
    };
    assert_eq!(uplink.apply(&on(a(1), 32, true)), None, "the same address");
    assert_eq!(uplink.subnets(), [(a(1), 24), (a(1), 32)]);
    assert_eq!(uplink.apply(&on(a(1), 24, false)), None, "still there");
    assert_eq!(uplink.subnets(), [(a(1), 32)]);
    assert_eq!(
        uplink.apply(&on(a(1), 32, false)),
        Some(LinkChange::Address(None))
    );
}

#[test]
fn mac_packs_into_u64_and_back() {
    let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
    assert_eq!(u64_to_mac(mac_to_u64(mac)), mac);
    assert_eq!(format_mac(mac), "02:42:ac:11:00:02");
}

#[test]
fn links_without_a_mac_header_are_point_to_point_and_the_rest_is_refused() {
    assert_eq!(LinkKind::of(1, false), Some(LinkKind::Ethernet));
    // ppp0, wwan0 in raw-IP mode, TUN and WireGuard, IPIP and GRE with a remote
    for hardware_type in [512, 519, 0xfffe, 768, 778] {
        assert_eq!(
            LinkKind::of(hardware_type, true),
            Some(LinkKind::PointToPoint),
            "{hardware_type}"
        );
    }
    assert_eq!(LinkKind::of(0xfffe, false), Some(LinkKind::PointToPoint));
    // GRE without a remote has a header; loopback and InfiniBand are no lines
    assert_eq!(LinkKind::of(778, false), None);
    assert_eq!(LinkKind::of(772, false), None);
    assert_eq!(LinkKind::of(32, false), None);
    assert_eq!(LinkKind::Ethernet.header_len(), 14);
    assert_eq!(LinkKind::PointToPoint.header_len(), 0);
}

#[test]
fn a_point_to_point_line_needs_no_mac_to_be_reached() {
    let uplink = |link| {
        Uplink::new(0, "isp", "dev", link)
            .on_interface(3, [0; 6])
            .with_address(Ipv4Addr::new(198, 18, 5, 1), None)
    };
    let ppp = uplink(LinkKind::PointToPoint);
    assert_eq!(ppp.next_hop(), Some(NextHop::Peer));
    let eth = uplink(LinkKind::Ethernet);
    assert_eq!(eth.next_hop(), None, "until ARP answers");
    eth.set_gateway_mac([2, 0, 0, 0, 0, 0xfe]);
    assert_eq!(
        eth.next_hop(),
        Some(NextHop::Gateway([2, 0, 0, 0, 0, 0xfe]))
    );
}

#[test]
fn an_uplink_on_a_new_interface_asks_for_its_gateways_mac_again() {
    let gateway = Ipv4Addr::new(198, 18, 1, 254);
    let eth = Uplink::new(1, "isp", "eth1", LinkKind::Ethernet)
        .on_interface(3, [2, 0, 0, 0, 0, 1])
        .with_address(Ipv4Addr::new(198, 18, 1, 1), Some(gateway));
    assert!(eth.set_gateway_mac([2, 0, 0, 0, 0, 0xfe]));
    assert!(!eth.set_gateway_mac([2, 0, 0, 0, 0, 0xfe]), "no change");
    eth.moved_to(9, [2, 0, 0, 0, 0, 9]);
    assert_eq!((eth.ifindex(), eth.mac()), (9, [2, 0, 0, 0, 0, 9]));
    assert_eq!(eth.next_hop(), None, "until ARP answers again");
    assert_eq!(eth.gateway(), Some(gateway));
    let uplinks = Uplinks::new(vec![
        Uplink::new(0, "a", "eth1", LinkKind::Ethernet),
        Uplink::new(1, "b", "ppp0", LinkKind::PointToPoint),
    ]);
    assert_eq!(uplinks[1].name, "b");
    let ids: Vec<UplinkId> = uplinks.iter().map(|u| u.id).collect();
    assert_eq!(ids, [0, 1]);
}
