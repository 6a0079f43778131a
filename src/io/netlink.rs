//! What the kernel says about links, IPv4 addresses and IPv4 default routes, over netlink
//! (messages by netlink-packet-route, the socket by netlink-sys). One socket is subscribed to
//! the changes; a second one asks for the whole state, at start and whenever the first
//! overflowed, which the caller takes as the truth (what is not in it is gone): every change
//! is heard at once (no polling), and one lost in an overflow is found at the next dump.

use std::io;
use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::uplink::LinkEvent as Event;

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;

#[derive(Debug)]
pub struct LinkWatch {
    changes: Socket,
    queries: Socket,
}

impl LinkWatch {
    /// Subscribes to link, address and route changes; [`LinkWatch::read`] then hands over
    /// the current state of each first, then every change.
    pub fn open() -> io::Result<LinkWatch> {
        let mut changes = Socket::new(NETLINK_ROUTE)?;
        changes.bind(&SocketAddr::new(
            0,
            RTMGRP_LINK
                | RTMGRP_IPV4_IFADDR
                | RTMGRP_IPV4_ROUTE
                | RTMGRP_IPV6_IFADDR
                | RTMGRP_IPV6_ROUTE,
        ))?;
        changes.set_non_blocking(true)?;
        let mut queries = Socket::new(NETLINK_ROUTE)?;
        queries.bind_auto()?;
        queries.connect(&SocketAddr::new(0, 0))?;
        Ok(LinkWatch { changes, queries })
    }

    /// Hands every link, address and default route there is to `f`, as events.
    pub fn ask_all(&self, f: &mut impl FnMut(Event)) -> io::Result<()> {
        let requests = [
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            RouteNetlinkMessage::GetAddress({
                let mut m = AddressMessage::default();
                m.header.family = AddressFamily::Inet;
                m
            }),
            RouteNetlinkMessage::GetRoute({
                let mut m = RouteMessage::default();
                m.header.address_family = AddressFamily::Inet;
                m
            }),
            RouteNetlinkMessage::GetAddress({
                let mut m = AddressMessage::default();
                m.header.family = AddressFamily::Inet6;
                m
            }),
            RouteNetlinkMessage::GetRoute({
                let mut m = RouteMessage::default();
                m.header.address_family = AddressFamily::Inet6;
                m
            }),
        ];
        // one dump at a time: a netlink socket runs a single dump
        for (seq, request) in requests.into_iter().enumerate() {
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            header.sequence_number = seq as u32 + 1;
            let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
            message.finalize();
            let mut buf = vec![0u8; message.buffer_len()];
            message.serialize(&mut buf);
            self.queries.send(&buf, 0)?;
            let mut reply = Vec::with_capacity(64 * 1024);
            'dump: loop {
                reply.clear();
                self.queries.recv(&mut reply, 0)?;
                let mut done = false;
                parse(&reply, &mut |m| match m {
                    Parsed::Event(e) => f(e),
                    Parsed::Done => done = true,
                });
                if done {
                    break 'dump;
                }
            }
        }
        Ok(())
    }

    /// Hands every change waiting on the socket to `f`. Returns true when the kernel had more
    /// changes than the socket could queue (ENOBUFS): some were lost, and the caller must ask
    /// for the whole state again ([`LinkWatch::ask_all`]).
    pub fn read(&self, mut f: impl FnMut(Event)) -> io::Result<bool> {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut overflowed = false;
        loop {
            buf.clear();
            match self.changes.recv(&mut buf, 0) {
                Ok(_) => parse(&buf, &mut |m| {
                    if let Parsed::Event(e) = m {
                        f(e)
                    }
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(overflowed),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!("link changes overflowed the netlink socket; asking again");
                    overflowed = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.changes.as_raw_fd()
    }
}

/// Hands every link, address and followed route there is to `f`, once.
pub fn dump(mut f: impl FnMut(Event)) -> io::Result<()> {
    LinkWatch::open()?.ask_all(&mut f)
}

/// The priorities of the IPv4 routing rules that send every packet to the local table (the
/// kernel makes one, at priority 0), from a dump of the rules.
pub fn local_rule_priorities() -> io::Result<Vec<u32>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut request = RuleMessage::default();
    request.header.family = AddressFamily::Inet;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetRule(request)),
    );
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut priorities = Vec::new();
    let mut reply = Vec::with_capacity(64 * 1024);
    loop {
        reply.clear();
        socket.recv(&mut reply, 0)?;
        let mut rest = &reply[..];
        while let Ok(header) = NetlinkBuffer::new_checked(rest) {
            let len = header.length() as usize;
            let Some(one) = rest.get(..len) else { break };
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(one).map(|m| m.payload) {
                Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRule(rule))) => {
                    priorities.extend(local_rule_priority(&rule));
                }
                Ok(NetlinkPayload::Done(_)) => return Ok(priorities),
                Ok(NetlinkPayload::Error(e)) => {
                    return Err(io::Error::other(format!("dumping the rules: {e:?}")));
                }
                _ => {}
            }
            rest = rest.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
        }
    }
}

/// The priority of `rule` if it sends every IPv4 packet to the local table.
fn local_rule_priority(rule: &RuleMessage) -> Option<u32> {
    const LOCAL: u32 = 255;
    let h = &rule.header;
    let mut table = u32::from(h.table);
    let mut priority = 0;
    for a in &rule.attributes {
        match a {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = *p,
            // -1 says "none"
            RuleAttribute::Protocol(_)
            | RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX) => {}
            // a selector: not every packet
            _ => return None,
        }
    }
    let every_packet = h.family == AddressFamily::Inet
        && h.src_len == 0
        && h.dst_len == 0
        && h.tos == 0
        && h.action == RuleAction::ToTable
        && !h.flags.contains(RuleFlags::Invert);
    (every_packet && table == LOCAL).then_some(priority)
}

/// What one netlink message says.
enum Parsed {
    Event(Event),
    /// The end of a dump.
    Done,
}

/// The messages in a datagram from the kernel; anything malformed ends the walk, anything
/// else is skipped.
fn parse(mut buf: &[u8], f: &mut impl FnMut(Parsed)) {
    while let Ok(header) = NetlinkBuffer::new_checked(buf) {
        let len = header.length() as usize;
        let Some(one) = buf.get(..len) else { return };
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(one) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(inner) => {
                    if let Some(e) = event(inner) {
                        f(Parsed::Event(e));
                    }
                }
                NetlinkPayload::Done(_) | NetlinkPayload::Error(_) => f(Parsed::Done),
                _ => {}
            },
            Err(e) => tracing::debug!(error = %e, "a netlink message wanlb cannot read"),
        }
        // messages are 4-byte aligned
        buf = buf.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
}

fn event(message: RouteNetlinkMessage) -> Option<Event> {
    match message {
        RouteNetlinkMessage::NewLink(m) => {
            let flags = m.header.flags;
            Some(Event::Link {
                ifindex: m.header.index,
                name: link_name(&m),
                carrier: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
            })
        }
        RouteNetlinkMessage::DelLink(m) => Some(Event::LinkGone {
            ifindex: m.header.index,
            name: link_name(&m),
        }),
        RouteNetlinkMessage::NewAddress(m) => address(&m, true).or_else(|| address6(&m, true)),
        RouteNetlinkMessage::DelAddress(m) => address(&m, false).or_else(|| address6(&m, false)),
        RouteNetlinkMessage::NewRoute(m) => default_route(&m, true).or_else(|| route6(&m, true)),
        RouteNetlinkMessage::DelRoute(m) => default_route(&m, false).or_else(|| route6(&m, false)),
        _ => None,
    }
}

fn link_name(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn address(m: &AddressMessage, present: bool) -> Option<Event> {
    if m.header.family != AddressFamily::Inet {
        return None;
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
    // point-to-point link, and the same as IFA_LOCAL elsewhere
    let local = |a: &AddressAttribute| match a {
        AddressAttribute::Local(IpAddr::V4(addr)) => Some(*addr),
        _ => None,
    };
    let any = |a: &AddressAttribute| match a {
        AddressAttribute::Address(IpAddr::V4(addr)) => Some(*addr),
        _ => None,
    };
    let addr = m
        .attributes
        .iter()
        .find_map(local)
        .or_else(|| m.attributes.iter().find_map(any))?;
    Some(Event::Address {
        ifindex: m.header.index,
        addr,
        prefix_len: m.header.prefix_len,
        present,
    })
}

fn address6(m: &AddressMessage, present: bool) -> Option<Event> {
    if m.header.family != AddressFamily::Inet6 {
        return None;
    }
    let addr = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V6(addr)) => Some(*addr),
        _ => None,
    })?;
    if addr.is_unicast_link_local() || addr.is_loopback() {
        return None;
    }
    // IFA_FLAGS holds all of them; the header only the first eight
    let flags = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(m.header.flags.bits())));
    // IFA_F_TEMPORARY is IFA_F_SECONDARY's bit, for IPv6
    let unstable = AddressFlags::Secondary
        | AddressFlags::Deprecated
        | AddressFlags::Tentative
        | AddressFlags::Dadfailed;
    Some(Event::Address6 {
        ifindex: m.header.index,
        addr,
        prefix_len: m.header.prefix_len,
        stable: !flags.intersects(unstable),
        present,
    })
}

/// An IPv6 route of the main table wanlb follows: a default route through a link, or the
/// `unreachable` route a DHCPv6 client puts in for a prefix it was delegated.
fn route6(m: &RouteMessage, present: bool) -> Option<Event> {
    let h = &m.header;
    if h.address_family != AddressFamily::Inet6
        || route_table(m) != u32::from(RouteHeader::RT_TABLE_MAIN)
        || h.protocol == RouteProtocol::from(super::host_route::ROUTE_PROTO)
    {
        return None;
    }
    if h.kind == RouteType::Unreachable && h.protocol == RouteProtocol::Dhcp {
        let prefix = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => Some(*d),
            _ => None,
        })?;
        return Some(Event::Delegated {
            prefix,
            prefix_len: h.destination_prefix_length,
            present,
        });
    }
    if h.destination_prefix_length != 0 || h.kind != RouteType::Unicast {
        return None;
    }
    let ifindex = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })?;
    let gateway = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(*g),
        _ => None,
    })?;
    // the kernel's own default when the route names none (ip -6 route: 1024)
    let metric = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(1024);
    Some(Event::DefaultRoute6 {
        ifindex,
        gateway,
        metric,
        present,
    })
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn default_route(m: &RouteMessage, present: bool) -> Option<Event> {
    let h = &m.header;
    let table = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    // wanlb's own route (--host-traffic follow) follows the lines; it says nothing of them
    if h.address_family != AddressFamily::Inet
        || h.destination_prefix_length != 0
        || table != u32::from(RouteHeader::RT_TABLE_MAIN)
        || h.protocol == RouteProtocol::from(super::host_route::ROUTE_PROTO)
    {
        return None;
    }
    let ifindex = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })?;
    let gateway = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
        _ => None,
    })?;
    Some(Event::DefaultRoute {
        ifindex,
        gateway,
        present,
    })
}

#[cfg(test)]
mod tests;
