//! What the kernel's netlink messages become.

use super::*;
use netlink_packet_route::address::AddressHeader;
use netlink_packet_route::link::LinkHeader;

fn datagram(messages: Vec<RouteNetlinkMessage>) -> Vec<u8> {
    let mut out = Vec::new();
    for inner in messages {
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        );
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        out.extend(buf);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    out
}

fn events(buf: &[u8]) -> Vec<Event> {
    let mut seen = Vec::new();
    parse(buf, &mut |p| {
        if let Parsed::Event(e) = p {
            seen.push(e)
        }
    });
    seen
}

#[test]
fn only_a_rule_sending_every_packet_to_the_local_table_is_the_local_rule() {
    let rule = |table: u8, attributes: Vec<RuleAttribute>| {
        let mut m = RuleMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.table = table;
        m.header.action = RuleAction::ToTable;
        m.attributes = attributes;
        m
    };
    // the kernel's own (as it dumps it), and one moved to priority 2
    let kernels = rule(
        255,
        vec![
            RuleAttribute::Table(255),
            RuleAttribute::SuppressPrefixLen(u32::MAX),
            RuleAttribute::Protocol(RouteProtocol::Kernel),
        ],
    );
    assert_eq!(local_rule_priority(&kernels), Some(0));
    assert_eq!(
        local_rule_priority(&rule(
            255,
            vec![RuleAttribute::Table(255), RuleAttribute::Priority(2)]
        )),
        Some(2)
    );
    // the main table's, and a rule with a selector
    assert_eq!(
        local_rule_priority(&rule(254, vec![RuleAttribute::Priority(32766)])),
        None
    );
    let suppressing = rule(255, vec![RuleAttribute::SuppressPrefixLen(0)]);
    assert_eq!(local_rule_priority(&suppressing), None);
    let marked = rule(
        255,
        vec![RuleAttribute::FwMark(0x7100), RuleAttribute::Priority(1)],
    );
    assert_eq!(local_rule_priority(&marked), None);
    let mut inverted = rule(255, vec![]);
    inverted.header.flags = RuleFlags::Invert;
    assert_eq!(local_rule_priority(&inverted), None);
}

#[test]
fn links_addresses_and_default_routes_become_events() {
    let mut link = LinkMessage::default();
    link.header = LinkHeader {
        index: 3,
        flags: LinkFlags::Up | LinkFlags::Running,
        ..LinkHeader::default()
    };
    link.attributes.push(LinkAttribute::IfName("eth1".into()));
    let mut down = link.clone();
    down.header.flags = LinkFlags::Up;
    let mut addr = AddressMessage::default();
    addr.header = AddressHeader {
        family: AddressFamily::Inet,
        prefix_len: 24,
        index: 3,
        ..AddressHeader::default()
    };
    addr.attributes
        .push(AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(
            198, 18, 1, 2,
        ))));
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.table = RouteHeader::RT_TABLE_MAIN;
    route.attributes.push(RouteAttribute::Oif(3));
    route
        .attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
            198, 18, 1, 254,
        ))));
    // a route that is not a default one says nothing
    let mut subnet = route.clone();
    subnet.header.destination_prefix_length = 24;
    let buf = datagram(vec![
        RouteNetlinkMessage::NewLink(link.clone()),
        RouteNetlinkMessage::NewLink(down),
        RouteNetlinkMessage::NewAddress(addr.clone()),
        RouteNetlinkMessage::DelAddress(addr),
        RouteNetlinkMessage::NewRoute(route),
        RouteNetlinkMessage::NewRoute(subnet),
        RouteNetlinkMessage::DelLink(link),
    ]);
    let name = || "eth1".to_string();
    let a = Ipv4Addr::new(198, 18, 1, 2);
    assert_eq!(
        events(&buf),
        [
            Event::Link {
                ifindex: 3,
                name: name(),
                carrier: true
            },
            Event::Link {
                ifindex: 3,
                name: name(),
                carrier: false
            },
            Event::Address {
                ifindex: 3,
                addr: a,
                prefix_len: 24,
                present: true
            },
            Event::Address {
                ifindex: 3,
                addr: a,
                prefix_len: 24,
                present: false
            },
            Event::DefaultRoute {
                ifindex: 3,
                gateway: Ipv4Addr::new(198, 18, 1, 254),
                present: true
            },
            Event::LinkGone {
                ifindex: 3,
                name: name()
            },
        ]
    );
}

#[test]
fn malformed_datagrams_end_the_walk_without_a_panic() {
    let mut link = LinkMessage::default();
    link.header.index = 7;
    let mut buf = datagram(vec![RouteNetlinkMessage::NewLink(link)]);
    buf[0] = 200; // a length past the end
    assert!(events(&buf).is_empty());
    assert!(events(&[1, 2, 3]).is_empty());
    let mut short = datagram(vec![]);
    short.extend([16, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(events(&short).is_empty());
}

#[test]
fn ipv6_addresses_default_routes_and_delegated_prefixes_become_events() {
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    let address = |addr: &str, flags: AddressFlags| {
        let mut m = AddressMessage::default();
        m.header = AddressHeader {
            family: AddressFamily::Inet6,
            prefix_len: 64,
            index: 3,
            ..AddressHeader::default()
        };
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V6(v6(addr))));
        m.attributes.push(AddressAttribute::Flags(flags));
        m
    };
    let route = |dst: Option<(&str, u8)>, kind: RouteType, protocol: RouteProtocol| {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.kind = kind;
        m.header.protocol = protocol;
        if let Some((d, len)) = dst {
            m.header.destination_prefix_length = len;
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet6(v6(d))));
        }
        m.attributes.push(RouteAttribute::Oif(3));
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(v6("fe80::1"))));
        m.attributes.push(RouteAttribute::Priority(512));
        m
    };
    let buf = datagram(vec![
        RouteNetlinkMessage::NewAddress(address("2001:2:0:1::1", AddressFlags::Permanent)),
        // temporary (IFA_F_TEMPORARY, IFA_F_SECONDARY's bit) and deprecated: not stable
        RouteNetlinkMessage::NewAddress(address("2001:2:0:1::aa", AddressFlags::Secondary)),
        RouteNetlinkMessage::DelAddress(address("2001:2:0:1::bb", AddressFlags::Deprecated)),
        // link-local: the kernel's business
        RouteNetlinkMessage::NewAddress(address("fe80::2", AddressFlags::Permanent)),
        RouteNetlinkMessage::NewRoute(route(None, RouteType::Unicast, RouteProtocol::Ra)),
        RouteNetlinkMessage::DelRoute(route(None, RouteType::Unicast, RouteProtocol::Ra)),
        RouteNetlinkMessage::NewRoute(route(
            Some(("2001:2:1::", 48)),
            RouteType::Unreachable,
            RouteProtocol::Dhcp,
        )),
        // an unreachable route of the admin's, and a subnet's route: nothing
        RouteNetlinkMessage::NewRoute(route(
            Some(("2001:2:9::", 48)),
            RouteType::Unreachable,
            RouteProtocol::Static,
        )),
        RouteNetlinkMessage::NewRoute(route(
            Some(("2001:2:0:1::", 64)),
            RouteType::Unicast,
            RouteProtocol::Kernel,
        )),
    ]);
    assert_eq!(
        events(&buf),
        [
            Event::Address6 {
                ifindex: 3,
                addr: v6("2001:2:0:1::1"),
                prefix_len: 64,
                stable: true,
                present: true,
            },
            Event::Address6 {
                ifindex: 3,
                addr: v6("2001:2:0:1::aa"),
                prefix_len: 64,
                stable: false,
                present: true,
            },
            Event::Address6 {
                ifindex: 3,
                addr: v6("2001:2:0:1::bb"),
                prefix_len: 64,
                stable: false,
                present: false,
            },
            Event::DefaultRoute6 {
                ifindex: 3,
                gateway: v6("fe80::1"),
                metric: 512,
                present: true,
            },
            Event::DefaultRoute6 {
                ifindex: 3,
                gateway: v6("fe80::1"),
                metric: 512,
                present: false,
            },
            Event::Delegated {
                prefix: v6("2001:2:1::"),
                prefix_len: 48,
                present: true,
            },
        ]
    );
}
