//! What the NAT reads of an IPv6 packet and how it rewrites it in place: one end (address,
//! and port or echo identifier), and an ICMPv6 error with the packet it quotes. NAT66 updates
//! the transport checksum incrementally (TCP, UDP and ICMPv6 all cover the addresses through
//! the pseudo header); NPTv6 changes an address by a checksum-neutral amount and leaves every
//! checksum as it is.

use crate::engine::checksum::Delta;
use crate::engine::translate::{End, rewrite_port};
use crate::engine::wire::icmp::IcmpMessage;
use crate::engine::wire::icmpv6::{self, QuotedPacket6};
use crate::engine::wire::ipv6::Headers;
use crate::engine::wire::{
    Ipv6Packet, L4Checksum, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TcpSegment, UdpDatagram,
};
use crate::engine::{Direction, DropReason};

/// Whether the transport at `h` is one the NAT translates, with its fixed header (of a
/// first fragment too: its piece must hold it).
pub(super) fn check_transport6<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
    h: &Headers,
) -> Result<(), DropReason> {
    let l4 = ip.from(h.transport_at);
    match h.proto {
        PROTO_TCP => TcpSegment::new_checked(l4).map(|_| ())?,
        PROTO_UDP => UdpDatagram::new_checked(l4).map(|_| ())?,
        PROTO_ICMPV6 => IcmpMessage::new_checked(l4).map(|_| ())?,
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(())
}

/// Source and destination port, or an echo's identifier and 0.
pub(super) fn ports6<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>, h: &Headers) -> (u16, u16) {
    let l4 = ip.from(h.transport_at);
    match h.proto {
        PROTO_ICMPV6 => (IcmpMessage::new_unchecked(l4).echo_ident(), 0),
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

/// How one end of a packet is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rewrite {
    /// NAT66: to this address and port (or echo identifier), checksum updated.
    Nat(u128, u16),
    /// NPTv6: to this address, checksum-neutral; the port stays.
    Prefix(u128),
}

/// Rewrites one end of a packet [`check_transport6`] took (or a first fragment).
pub(super) fn rewrite_end6(
    ip: &mut Ipv6Packet<&mut [u8]>,
    h: &Headers,
    end: End,
    to: Rewrite,
    csum: L4Checksum,
) {
    let old = match end {
        End::Source => ip.src_addr(),
        End::Destination => ip.dst_addr(),
    };
    let (addr, port) = match to {
        Rewrite::Nat(addr, port) => (addr, Some(port)),
        Rewrite::Prefix(addr) => (addr, None),
    };
    match end {
        End::Source => ip.set_src_addr(addr),
        End::Destination => ip.set_dst_addr(addr),
    }
    let Some(port) = port else {
        return;
    };
    let addr_delta = Delta::new().addr6(old, addr);
    // ICMPv6, unlike ICMPv4, covers the addresses through its pseudo header
    let l4 = ip.from_mut(h.transport_at);
    rewrite_port(l4, h.proto, end, port, csum, addr_delta, addr_delta);
}

/// Whether the ICMPv6 message at `h` has a right checksum (a partial one has none yet).
pub(super) fn icmp_checksum_ok6<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
    h: &Headers,
    csum: L4Checksum,
) -> bool {
    csum == L4Checksum::Partial
        || icmpv6::verify_checksum(ip.src_addr(), ip.dst_addr(), ip.from(h.transport_at))
}

/// The packet an ICMPv6 error at `h` quotes, checked: TCP, UDP or an echo request.
pub(super) fn quoted6<'a, T: AsRef<[u8]>>(
    ip: &'a Ipv6Packet<T>,
    h: &Headers,
) -> Result<QuotedPacket6<&'a [u8]>, DropReason> {
    let data = &ip.from(h.transport_at)[crate::engine::wire::icmp::HEADER_LEN..];
    let quoted = QuotedPacket6::new_checked(data).map_err(|e| match e {
        crate::engine::wire::Error::ExtensionHeader => DropReason::Ipv6ExtensionHeader,
        _ => DropReason::Malformed,
    })?;
    match quoted.protocol() {
        PROTO_TCP | PROTO_UDP => Ok(quoted),
        PROTO_ICMPV6 if quoted.icmp_type() == icmpv6::ECHO_REQUEST => Ok(quoted),
        _ => Err(DropReason::UnsupportedIcmp),
    }
}

/// Rewrites an ICMPv6 error (its quote checked by [`quoted6`]) for the mapping `to`:
/// [`Direction::Inbound`], about a packet that left through wanlb: the quoted source and the
/// outer destination become the LAN end; [`Direction::Outbound`], from the LAN about a packet
/// wanlb delivered: the quoted destination and the outer source become the external end. The
/// outer source of an inbound error (the router that sent it: a Packet Too Big's above all)
/// is kept. The ICMPv6 checksum is recomputed over the whole message, so it is complete
/// afterwards.
pub(super) fn translate_error6(
    ip: &mut Ipv6Packet<&mut [u8]>,
    h: &Headers,
    dir: Direction,
    to: Rewrite,
) {
    let (addr, port) = match to {
        Rewrite::Nat(addr, port) => (addr, Some(port)),
        Rewrite::Prefix(addr) => (addr, None),
    };
    {
        let message = ip.from_mut(h.transport_at);
        let data = &mut message[crate::engine::wire::icmp::HEADER_LEN..];
        let mut quote = QuotedPacket6::new_checked(data).expect("checked by quoted6");
        let proto = quote.protocol();
        let (old_addr, old_port) = match (dir, proto) {
            (Direction::Inbound, _) => (quote.src_addr(), quote.src_port()),
            (Direction::Outbound, PROTO_ICMPV6) => (quote.dst_addr(), quote.src_port()),
            (Direction::Outbound, _) => (quote.dst_addr(), quote.dst_port()),
        };
        match dir {
            Direction::Inbound => quote.set_src_addr(addr),
            Direction::Outbound => quote.set_dst_addr(addr),
        }
        if let Some(port) = port {
            match (dir, proto) {
                (_, PROTO_ICMPV6) | (Direction::Inbound, _) => quote.set_src_port(port),
                (Direction::Outbound, _) => quote.set_dst_port(port),
            }
            // NAT66: the quoted checksum follows its address and port; NPTv6 changes
            // neither's sum
            let delta = Delta::new()
                .addr6(old_addr, addr)
                .plus(Delta::new().word(old_port, port));
            if let Some(old) = quote.transport_checksum()
                && !(proto == PROTO_UDP && old == 0)
            {
                quote.set_transport_checksum(delta.apply_complete(old));
            }
        }
    }
    match dir {
        Direction::Inbound => ip.set_dst_addr(addr),
        Direction::Outbound => ip.set_src_addr(addr),
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    icmpv6::fill_checksum(src, dst, ip.from_mut(h.transport_at));
}
