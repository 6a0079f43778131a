//! Watching each uplink's IPv6 through that uplink, apart from its IPv4: ICMPv6 echo to the
//! IPv6 health targets from the line's IPv6 address to its router's MAC (or bare to the peer
//! of a point-to-point link), and neighbour solicitations to the router every round, whose
//! advertisements give its MAC (RFC 4861), as ARP does for IPv4. The frames are built and
//! read here (pure, tested without root); the monitor sends and receives them.
//!
//! What the IPv6 of a line is judged by: with IPv6 targets, their answers (and the router's
//! to neighbour discovery); without (every configuration written before wanlb carried IPv6),
//! the router's answers to neighbour discovery while the line itself is up.

use std::net::Ipv6Addr;

use crate::engine::checksum;
use crate::probe::PAYLOAD_LEN;

use super::super::packet_socket::{ETH_HEADER, ETH_P_IPV6};

pub const IPV6_HEADER: usize = 40;
const PROTO_ICMPV6: u8 = 58;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
const NEIGHBOUR_SOLICIT: u8 = 135;
const NEIGHBOUR_ADVERT: u8 = 136;
/// Neighbour discovery's hop limit: a message with any other was forwarded, and is not to
/// be believed (RFC 4861 7.1).
const ND_HOP_LIMIT: u8 = 255;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;

const ECHO_LEN: usize = 8 + PAYLOAD_LEN;
pub const ECHO6_FRAME: usize = ETH_HEADER + IPV6_HEADER + ECHO_LEN;
const NS_LEN: usize = 8 + 16 + 8;
pub const NS_FRAME: usize = ETH_HEADER + IPV6_HEADER + NS_LEN;

/// The ICMPv6 checksum of `message` (its checksum field zero) from `src` to `dst`.
pub fn icmp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = [0u8; 40];
    pseudo[..16].copy_from_slice(&src.octets());
    pseudo[16..32].copy_from_slice(&dst.octets());
    pseudo[32..36].copy_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo[39] = PROTO_ICMPV6;
    checksum::checksum(message, checksum::sum(&pseudo, 0))
}

/// Writes an IPv6 header carrying `payload_len` bytes of ICMPv6 into `ip`.
fn ipv6_header(ip: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize, hops: u8) {
    ip[0] = 0x60;
    ip[1..4].fill(0);
    ip[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    ip[6] = PROTO_ICMPV6;
    ip[7] = hops;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
}

/// Fills in the ICMPv6 message after the IPv6 header at `ip` with its checksum.
fn fill_icmp6_checksum(ip: &mut [u8]) {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).expect("16 bytes"));
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).expect("16 bytes"));
    let message = &mut ip[IPV6_HEADER..];
    message[2..4].fill(0);
    let sum = icmp6_checksum(src, dst, message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// Where a frame goes: to the router's MAC from ours, or bare to a point-to-point peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop6 {
    Router { ours: [u8; 6], router: [u8; 6] },
    Peer,
}

/// An ICMPv6 echo request from `src` to `target` with identifier `id`, sequence number `seq`
/// and `payload`, built in `frame`: returns what to send.
pub fn echo_request<'a>(
    frame: &'a mut [u8; ECHO6_FRAME],
    hop: Hop6,
    (src, target): (Ipv6Addr, Ipv6Addr),
    (id, seq): (u16, u16),
    payload: &[u8; PAYLOAD_LEN],
) -> &'a [u8] {
    let start = match hop {
        Hop6::Router { ours, router } => {
            ethernet(frame, router, ours);
            0
        }
        Hop6::Peer => ETH_HEADER,
    };
    let ip = &mut frame[ETH_HEADER..];
    ipv6_header(ip, src, target, ECHO_LEN, 64);
    let echo = &mut ip[IPV6_HEADER..];
    echo[0] = ECHO_REQUEST;
    echo[1] = 0;
    echo[4..6].copy_from_slice(&id.to_be_bytes());
    echo[6..8].copy_from_slice(&seq.to_be_bytes());
    echo[8..].copy_from_slice(payload);
    fill_icmp6_checksum(ip);
    &frame[start..]
}

fn ethernet(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
}

/// The solicited-node multicast address of `target` (RFC 4291 2.7.1).
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

/// The solicited flag of a neighbour advertisement (RFC 4861 4.4).
const NA_SOLICITED: u8 = 0x40;

/// A neighbour solicitation for `router` from `src` (an address of ours on the link) and our
/// MAC `ours`: to the router's MAC `known` when it is known (a check that it still answers
/// there), else to its solicited-node multicast group.
pub fn neighbour_solicitation(
    ours: [u8; 6],
    src: Ipv6Addr,
    router: Ipv6Addr,
    known: Option<[u8; 6]>,
) -> [u8; NS_FRAME] {
    let mut frame = [0u8; NS_FRAME];
    let (dst_mac, dst) = match known {
        Some(mac) => (mac, router),
        None => {
            let group = solicited_node(router);
            let g = group.octets();
            ([0x33, 0x33, g[12], g[13], g[14], g[15]], group)
        }
    };
    ethernet(&mut frame, dst_mac, ours);
    let ip = &mut frame[ETH_HEADER..];
    ipv6_header(ip, src, dst, NS_LEN, ND_HOP_LIMIT);
    let ns = &mut ip[IPV6_HEADER..];
    ns[0] = NEIGHBOUR_SOLICIT;
    ns[8..24].copy_from_slice(&router.octets());
    ns[24] = OPT_SOURCE_LL;
    ns[25] = 1; // in units of 8 bytes
    ns[26..32].copy_from_slice(&ours);
    fill_icmp6_checksum(ip);
    frame
}

/// The IPv6 header's source, and the ICMPv6 message after it, of `ip` if it holds one with a
/// correct checksum (and hop limit `hops`, if given); padding beyond the payload length is
/// not part of it.
fn icmp6(ip: &[u8], hops: Option<u8>) -> Option<(Ipv6Addr, &[u8])> {
    let header = ip.get(..IPV6_HEADER)?;
    if header[0] >> 4 != 6 || header[6] != PROTO_ICMPV6 || hops.is_some_and(|h| header[7] != h) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let message = ip.get(IPV6_HEADER..IPV6_HEADER + len)?;
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&header[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?);
    (message.len() >= 8 && icmp6_checksum(src, dst, message) == 0).then_some((src, message))
}

/// An ICMPv6 echo reply as the socket reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct EchoReply6<'a> {
    pub from: Ipv6Addr,
    pub id: u16,
    pub seq: u16,
    pub payload: &'a [u8],
}

/// The echo reply in `ip`, an IPv6 packet, if it is one with a correct checksum.
pub fn echo_reply(ip: &[u8]) -> Option<EchoReply6<'_>> {
    let (from, m) = icmp6(ip, None)?;
    (m[0] == ECHO_REPLY && m[1] == 0).then(|| EchoReply6 {
        from,
        id: u16::from_be_bytes([m[4], m[5]]),
        seq: u16::from_be_bytes([m[6], m[7]]),
        payload: &m[8..],
    })
}

/// The MAC `router` advertises in `frame` (an Ethernet frame), if it is a neighbour
/// advertisement for it that answers our solicitation from `asked_from` (its solicited flag
/// set, sent to that address), not forwarded, with a correct checksum: the target link-layer
/// address option's, else the frame's source (RFC 4861 allows leaving the option out of an
/// answer to a unicast solicitation). An unsolicited advertisement (RFC 4861 7.2.5: it may
/// only update an entry, never make one reachable) steers nothing.
pub fn advertised_mac(frame: &[u8], router: Ipv6Addr, asked_from: Ipv6Addr) -> Option<[u8; 6]> {
    let ip = frame.get(ETH_HEADER..)?;
    let (_, m) = icmp6(ip, Some(ND_HOP_LIMIT))?;
    if m[0] != NEIGHBOUR_ADVERT || m[1] != 0 || m.get(8..24)? != router.octets() {
        return None;
    }
    if m[4] & NA_SOLICITED == 0 || ip.get(24..40)? != asked_from.octets() {
        return None;
    }
    let mut options = m.get(24..)?;
    while options.len() >= 8 {
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        if options[0] == OPT_TARGET_LL && len == 8 {
            return options[2..8].try_into().ok();
        }
        options = &options[len..];
    }
    frame.get(6..12)?.try_into().ok()
}

#[cfg(test)]
mod tests;
