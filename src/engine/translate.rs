//! What the NAT reads of a packet and how it rewrites it in place: one end of a packet
//! (address and port, or an echo's identifier), and an ICMP error together with the packet it
//! quotes (RFC 5508). Every checksum is updated incrementally (RFC 1624); a partial one
//! (CHECKSUM_PARTIAL) as the pseudo header's sum, which ports are no part of.

use super::checksum::Delta;
use super::wire::icmp::{self, IcmpMessage, QuotedPacket};
use super::wire::{
    Ipv4Packet, L4Checksum, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TcpSegment, UdpDatagram,
};
use super::{Direction, DropReason};

/// Whether `ip` (a whole datagram, not a fragment) carries what the NAT translates: TCP, UDP or
/// ICMP, with the fixed part of its header.
pub fn check_transport<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> Result<(), DropReason> {
    let l4 = ip.payload();
    match ip.protocol() {
        PROTO_TCP => TcpSegment::new_checked(l4).map(|_| ())?,
        PROTO_UDP => UdpDatagram::new_checked(l4).map(|_| ())?,
        PROTO_ICMP => IcmpMessage::new_checked(l4).map(|_| ())?,
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(())
}

/// Source and destination port (TCP, UDP), or an echo's identifier as the source "port" and 0
/// as the destination (ICMP), of a packet [`check_transport`] took.
pub fn ports<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> (u16, u16) {
    let l4 = ip.payload();
    match ip.protocol() {
        PROTO_ICMP => (IcmpMessage::new_unchecked(l4).echo_ident(), 0),
        PROTO_TCP => {
            let t = TcpSegment::new_unchecked(l4);
            (t.src_port(), t.dst_port())
        }
        _ => {
            let u = UdpDatagram::new_unchecked(l4);
            (u.src_port(), u.dst_port())
        }
    }
}

/// The ICMP message an ICMP packet carries.
pub fn icmp<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> IcmpMessage<&[u8]> {
    IcmpMessage::new_unchecked(ip.payload())
}

/// Which end of a packet a rewrite touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

/// A transport checksum after a rewrite: `pseudo` changed the pseudo header (the addresses),
/// `port` the header itself. UDP without a checksum (0) keeps none, and a UDP checksum that
/// comes to 0 is sent as 0xffff.
pub(super) fn updated(check: u16, csum: L4Checksum, pseudo: Delta, port: Delta, udp: bool) -> u16 {
    match csum {
        L4Checksum::Partial => pseudo.apply_partial(check),
        L4Checksum::Complete if udp && check == 0 => 0,
        L4Checksum::Complete => {
            let full = pseudo.plus(port).apply_complete(check);
            if udp && full == 0 { 0xffff } else { full }
        }
    }
}

/// Rewrites one end of a packet [`check_transport`] took (or a fragment's first piece): its
/// address, and its port (TCP, UDP) or echo identifier (ICMP, which has it at the source and
/// the reply at the destination alike), with both checksums.
pub fn rewrite_end(
    ip: &mut Ipv4Packet<&mut [u8]>,
    end: End,
    addr: u32,
    port: u16,
    csum: L4Checksum,
) {
    let old_addr = match end {
        End::Source => ip.src_addr(),
        End::Destination => ip.dst_addr(),
    };
    let addr_delta = Delta::new().addr(old_addr, addr);
    match end {
        End::Source => ip.set_src_addr(addr),
        End::Destination => ip.set_dst_addr(addr),
    }
    ip.set_checksum(addr_delta.apply_complete(ip.checksum()));
    let proto = ip.protocol();
    // ICMP has no pseudo header: only the identifier counts
    rewrite_port(
        ip.payload_mut(),
        proto,
        end,
        port,
        csum,
        addr_delta,
        Delta::new(),
    );
}

/// Rewrites the port (TCP, UDP) or the echo identifier (ICMP, ICMPv6) at `end` of the
/// transport header `l4` of protocol `proto`, with its checksum: `addr_delta` is what the
/// address change did to the pseudo header, `icmp_delta` the part of it ICMP covers (nothing
/// for ICMPv4, the addresses for ICMPv6).
pub(super) fn rewrite_port(
    l4: &mut [u8],
    proto: u8,
    end: End,
    port: u16,
    csum: L4Checksum,
    addr_delta: Delta,
    icmp_delta: Delta,
) {
    match proto {
        PROTO_TCP => {
            let mut t = TcpSegment::new_unchecked(l4);
            let old = match end {
                End::Source => t.src_port(),
                End::Destination => t.dst_port(),
            };
            match end {
                End::Source => t.set_src_port(port),
                End::Destination => t.set_dst_port(port),
            }
            let port_delta = Delta::new().word(old, port);
            t.set_checksum(updated(t.checksum(), csum, addr_delta, port_delta, false));
        }
        PROTO_UDP => {
            let mut u = UdpDatagram::new_unchecked(l4);
            let old = match end {
                End::Source => u.src_port(),
                End::Destination => u.dst_port(),
            };
            match end {
                End::Source => u.set_src_port(port),
                End::Destination => u.set_dst_port(port),
            }
            let port_delta = Delta::new().word(old, port);
            u.set_checksum(updated(u.checksum(), csum, addr_delta, port_delta, true));
        }
        _ => {
            let mut m = IcmpMessage::new_unchecked(l4);
            let port_delta = Delta::new().word(m.echo_ident(), port);
            m.set_echo_ident(port);
            m.set_checksum(updated(m.checksum(), csum, icmp_delta, port_delta, false));
        }
    }
}

/// Whether the ICMP message of `ip` has a right checksum. A message with a partial checksum
/// (made on this host, to be completed by the device) has none to check yet.
pub fn icmp_checksum_ok<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>, csum: L4Checksum) -> bool {
    csum == L4Checksum::Partial || icmp(ip).verify_checksum()
}

/// The packet an ICMP error quotes, checked: an IPv4 header and 8 bytes of the transport
/// header, of TCP, UDP or an echo request, and not a fragment after the first (it quotes no
/// ports).
pub fn quoted<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> Result<QuotedPacket<&[u8]>, DropReason> {
    let quoted =
        QuotedPacket::new_checked(icmp(ip).into_data()).map_err(|_| DropReason::Malformed)?;
    if quoted.is_later_fragment() {
        return Err(DropReason::Fragment);
    }
    match quoted.protocol() {
        PROTO_TCP | PROTO_UDP => Ok(quoted),
        PROTO_ICMP if quoted.icmp_type() == icmp::ECHO_REQUEST => Ok(quoted),
        _ => Err(DropReason::UnsupportedIcmp),
    }
}

/// Source and destination port of a quoted TCP or UDP packet, or its echo identifier as the
/// source "port" and 0 as the destination: the quote's ends, named as [`ports`] names a
/// packet's.
pub fn quoted_ports<T: AsRef<[u8]>>(quoted: &QuotedPacket<T>) -> (u16, u16) {
    match quoted.protocol() {
        PROTO_ICMP => (quoted.src_port(), 0),
        _ => (quoted.src_port(), quoted.dst_port()),
    }
}

/// Rewrites an ICMP error in place (its quote checked by [`quoted`]) for the mapping
/// `(addr, port)`, which way it goes saying which end: [`Direction::Inbound`], from an uplink
/// to the LAN, about a packet that left through wanlb: the quoted source and the outer
/// destination become the LAN endpoint again; [`Direction::Outbound`], from the LAN, about a
/// packet wanlb delivered: the quoted destination and the outer source become the external
/// endpoint. The ICMP checksum is recomputed over the whole message, so it is complete
/// afterwards whatever it was before.
pub fn translate_error(ip: &mut Ipv4Packet<&mut [u8]>, dir: Direction, addr: u32, port: u16) {
    let old_outer = match dir {
        Direction::Inbound => ip.dst_addr(),
        Direction::Outbound => ip.src_addr(),
    };
    {
        let mut message = IcmpMessage::new_unchecked(ip.payload_mut());
        let mut quote = QuotedPacket::new_unchecked(message.data_mut());
        let proto = quote.protocol();
        let (old_addr, old_port) = match (dir, proto) {
            (Direction::Inbound, _) => (quote.src_addr(), quote.src_port()),
            (Direction::Outbound, PROTO_ICMP) => (quote.dst_addr(), quote.src_port()),
            (Direction::Outbound, _) => (quote.dst_addr(), quote.dst_port()),
        };
        let addr_delta = Delta::new().addr(old_addr, addr);
        let port_delta = Delta::new().word(old_port, port);
        match dir {
            Direction::Inbound => quote.set_src_addr(addr),
            Direction::Outbound => quote.set_dst_addr(addr),
        }
        quote.set_checksum(addr_delta.apply_complete(quote.checksum()));
        // an echo's identifier is at its source whichever way; ports are at their end
        match (dir, proto) {
            (_, PROTO_ICMP) | (Direction::Inbound, _) => quote.set_src_port(port),
            (Direction::Outbound, _) => quote.set_dst_port(port),
        }
        if let Some(old) = quote.transport_checksum() {
            let delta = match proto {
                PROTO_ICMP => port_delta,
                _ => addr_delta.plus(port_delta),
            };
            if !(proto == PROTO_UDP && old == 0) {
                quote.set_transport_checksum(delta.apply_complete(old));
            }
        }
    }
    match dir {
        Direction::Inbound => ip.set_dst_addr(addr),
        Direction::Outbound => ip.set_src_addr(addr),
    }
    let outer_delta = Delta::new().addr(old_outer, addr);
    ip.set_checksum(outer_delta.apply_complete(ip.checksum()));
    IcmpMessage::new_unchecked(ip.payload_mut()).fill_checksum();
}
