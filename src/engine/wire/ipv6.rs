//! The IPv6 header (RFC 8200) and the extension headers hosts really send, walked with bounds:
//! hop-by-hop and destination options, a routing header with no segments left, a fragment
//! header. Anything else between the header and the transport (a routing header still to be
//! followed, ESP, AH, mobility, an unknown number) is [`Error::ExtensionHeader`], for the
//! engine to drop and count.

use super::{Error, Field, get_u16, get_u32, set_u16};

/// Where the fields are, in bytes from the start of the header.
pub mod field {
    use super::Field;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// The fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Next-header numbers of the extension headers walked.
pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const DEST_OPTIONS: u8 = 60;
/// "No next header": nothing follows (a packet of padding, say); nothing to translate.
pub const NO_NEXT_HEADER: u8 = 59;

/// Extension headers (RFC 7045) no host's packet through a NAT carries: refused.
pub const ESP: u8 = 50;
pub const AUTH: u8 = 51;
pub const MOBILITY: u8 = 135;
pub const HIP: u8 = 139;
pub const SHIM6: u8 = 140;
pub const EXPERIMENT_1: u8 = 253;
pub const EXPERIMENT_2: u8 = 254;

/// The fragment header's length: it has no length field.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Extension headers walked at most before the transport: more is no host's packet (RFC 8200
/// 4.1 names at most six kinds, each once, destination options twice).
pub const MAX_EXTENSION_HEADERS: usize = 6;

/// The fragment header of a piece of a datagram (RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Where the fragment header starts, in bytes from the start of the packet.
    pub at: usize,
    pub ident: u32,
    /// Where this piece's data starts in the datagram's fragmentable part, in bytes.
    pub offset: u16,
    pub more: bool,
}

impl FragmentHeader {
    /// RFC 6946: a fragment header with offset 0 and no more to come is no fragment; the
    /// packet is taken as whole.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }

    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// What the walk over the extension headers found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// The transport protocol (the last next-header value).
    pub proto: u8,
    /// Where the transport header starts (of a later fragment: where its piece of data
    /// starts), in bytes from the start of the packet.
    pub transport_at: usize,
    pub fragment: Option<FragmentHeader>,
}

/// Walks the extension headers of the packet `buf` (from its first byte: the IPv6 header),
/// whose header says `first` comes next, up to the transport header. Reads only what `buf`
/// holds: a quote in an ICMPv6 error may end anywhere.
pub fn walk(buf: &[u8], first: u8) -> Result<Headers, Error> {
    let mut next = first;
    let mut at = HEADER_LEN;
    let mut fragment = None;
    for i in 0..MAX_EXTENSION_HEADERS {
        match next {
            HOP_BY_HOP | DEST_OPTIONS | ROUTING => {
                // hop-by-hop options come first or not at all (RFC 8200 4.1)
                if next == HOP_BY_HOP && i != 0 {
                    return Err(Error::Malformed);
                }
                let header = buf.get(at..at + 8).ok_or(Error::Truncated)?;
                // a routing header with segments left would have this node send the packet
                // elsewhere than its destination: no host sends that through a NAT
                if next == ROUTING && header[3] != 0 {
                    return Err(Error::ExtensionHeader);
                }
                let len = (usize::from(header[1]) + 1) * 8;
                if buf.len() < at + len {
                    return Err(Error::Truncated);
                }
                next = header[0];
                at += len;
            }
            FRAGMENT => {
                if fragment.is_some() {
                    return Err(Error::Malformed);
                }
                let header = buf
                    .get(at..at + FRAGMENT_HEADER_LEN)
                    .ok_or(Error::Truncated)?;
                let off_flags = get_u16(header, 2..4);
                fragment = Some(FragmentHeader {
                    at,
                    ident: get_u32(header, 4..8),
                    offset: off_flags & 0xfff8,
                    more: off_flags & 1 != 0,
                });
                next = header[0];
                at += FRAGMENT_HEADER_LEN;
                // a later piece holds no further headers: its data follows
                if fragment.is_some_and(|f| !f.is_first()) {
                    break;
                }
            }
            ESP | AUTH | MOBILITY | HIP | SHIM6 | EXPERIMENT_1 | EXPERIMENT_2 => {
                return Err(Error::ExtensionHeader);
            }
            _ => break,
        }
    }
    if matches!(next, HOP_BY_HOP | DEST_OPTIONS | ROUTING | FRAGMENT)
        && fragment.is_none_or(|f| f.is_first())
    {
        // more extension headers than any host sends
        return Err(Error::ExtensionHeader);
    }
    Ok(Headers {
        proto: next,
        transport_at: at,
        fragment,
    })
}

/// A view of an IPv6 packet. Checked, the buffer holds the fixed header and the payload its
/// length says (bytes after that, link-layer padding, are outside [`Ipv6Packet::packet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view of bytes the caller knows to hold a whole IPv6 header.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// A view of untrusted bytes: version 6, and a payload length that the buffer holds. A
    /// jumbogram (payload length 0 with a hop-by-hop option saying more) has no place on a
    /// link wanlb serves: malformed.
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, Error> {
        let packet = Ipv6Packet::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 6 {
            return Err(Error::Version);
        }
        if packet.payload_len() == 0 && packet.next_header() != NO_NEXT_HEADER {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + packet.payload_len() > len {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Bytes after the fixed header: extension headers, transport header and data.
    pub fn payload_len(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN))
    }

    /// The packet's length: header and payload.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> u128 {
        get_u128(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> u128 {
        get_u128(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The extension headers walked (see [`walk`]), within the packet's length.
    pub fn headers(&self) -> Result<Headers, Error> {
        walk(self.packet(), self.next_header())
    }

    /// The packet: header and payload, without what follows its length.
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }

    /// The bytes from `at` (a transport header's start, from [`Ipv6Packet::headers`]) to the
    /// packet's end.
    pub fn from(&self, at: usize) -> &[u8] {
        &self.buffer.as_ref()[at..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Version 6, traffic class and flow label 0.
    pub fn set_version(&mut self) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&[0x60, 0, 0, 0]);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    pub fn set_next_header(&mut self, next: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next;
    }

    pub fn set_hop_limit(&mut self, hops: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hops;
    }

    pub fn set_src_addr(&mut self, addr: u128) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.to_be_bytes());
    }

    pub fn set_dst_addr(&mut self, addr: u128) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.to_be_bytes());
    }

    /// The bytes from `at` to the packet's end, to be rewritten.
    pub fn from_mut(&mut self, at: usize) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[at..end]
    }
}

/// An address at `field` of `buf`.
pub fn get_u128(buf: &[u8], field: Field) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[field]);
    u128::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::{PROTO_TCP, PROTO_UDP};

    /// A UDP datagram from [fd00::a]:5353 to [2001:2::1]:53, hop limit 64, data "ping",
    /// then two bytes of link-layer padding.
    #[rustfmt::skip]
    const PACKET: [u8; 54] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x11, 0x40,
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
        0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0x70, 0x69, 0x6e, 0x67,
        0xee, 0xee,
    ];

    const FD00_A: u128 = 0xfd00_u128 << 112 | 0x0a;
    const DOC_1: u128 = 0x2001_0002_u128 << 96 | 1;

    /// `PACKET` with `ext` (extension headers whose first is `first`, the last naming UDP)
    /// between its header and its UDP header.
    fn with_extensions(first: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = PACKET[..40].to_vec();
        p[field::NEXT_HEADER] = first;
        let len = u16::try_from(12 + ext.len()).unwrap();
        p[4..6].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(ext);
        p.extend_from_slice(&PACKET[40..52]);
        p
    }

    #[test]
    fn fields_are_read_where_rfc_8200_puts_them() {
        let p = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.version(), p.payload_len(), p.total_len()), (6, 12, 52));
        assert_eq!((p.next_header(), p.hop_limit()), (PROTO_UDP, 64));
        assert_eq!((p.src_addr(), p.dst_addr()), (FD00_A, DOC_1));
        assert_eq!(p.packet(), &PACKET[..52], "the padding is not the packet");
        let h = p.headers().unwrap();
        assert_eq!((h.proto, h.transport_at, h.fragment), (PROTO_UDP, 40, None));
        assert_eq!(p.from(h.transport_at), &PACKET[40..52]);
    }

    #[test]
    fn a_packet_written_field_by_field_is_the_literal() {
        let mut buf = [0xffu8; 52];
        buf[40..].copy_from_slice(&PACKET[40..52]);
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_version();
        p.set_payload_len(12);
        p.set_next_header(PROTO_UDP);
        p.set_hop_limit(64);
        p.set_src_addr(FD00_A);
        p.set_dst_addr(DOC_1);
        assert_eq!(buf, PACKET[..52]);
    }

    #[test]
    fn untrusted_bytes_are_checked_once() {
        let check = |bytes: &[u8]| Ipv6Packet::new_checked(bytes).map(|_| ());
        assert_eq!(check(&PACKET[..39]), Err(Error::Truncated));
        let mut v4 = PACKET;
        v4[0] = 0x45;
        assert_eq!(check(&v4), Err(Error::Version));
        let mut past_the_end = PACKET;
        past_the_end[5] = 15; // 55 bytes in 54
        assert_eq!(check(&past_the_end), Err(Error::Truncated));
        let mut jumbo = PACKET;
        jumbo[5] = 0;
        assert_eq!(check(&jumbo), Err(Error::Malformed));
        assert_eq!(check(&PACKET[..52]), Ok(()));
    }

    #[test]
    fn options_headers_are_walked_to_the_transport() {
        // hop-by-hop (8 bytes: PadN), then destination options (16 bytes: PadN), then UDP
        #[rustfmt::skip]
        let ext = [
            DEST_OPTIONS, 0, 1, 4, 0, 0, 0, 0,
            PROTO_UDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let p = with_extensions(HOP_BY_HOP, &ext);
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        let h = ip.headers().unwrap();
        assert_eq!((h.proto, h.transport_at, h.fragment), (PROTO_UDP, 64, None));
        assert_eq!(ip.from(h.transport_at), &PACKET[40..52]);
    }

    #[test]
    fn a_routing_header_is_walked_only_with_no_segments_left() {
        let done = [PROTO_UDP, 0, 4, 0, 0, 0, 0, 0];
        let p = with_extensions(ROUTING, &done);
        assert_eq!(walk(&p, ROUTING).unwrap().transport_at, 48);
        let to_follow = [PROTO_UDP, 0, 4, 1, 0, 0, 0, 0];
        let p = with_extensions(ROUTING, &to_follow);
        assert_eq!(walk(&p, ROUTING), Err(Error::ExtensionHeader));
    }

    #[test]
    fn a_fragment_header_is_read() {
        // first piece: offset 0, more to come, identification 0x01020304
        let first = [PROTO_UDP, 0, 0x00, 0x01, 1, 2, 3, 4];
        let p = with_extensions(FRAGMENT, &first);
        let h = walk(&p, FRAGMENT).unwrap();
        let f = h.fragment.unwrap();
        assert_eq!((h.proto, h.transport_at), (PROTO_UDP, 48));
        assert_eq!(
            (f.at, f.ident, f.offset, f.more),
            (40, 0x0102_0304, 0, true)
        );
        assert!(f.is_first() && !f.is_atomic());
        // a later piece: offset 1232 (154 units of 8), last; its data follows the header,
        // whatever it looks like
        let later = [DEST_OPTIONS, 0, 0x04, 0xd0, 1, 2, 3, 4];
        let p = with_extensions(FRAGMENT, &later);
        let h = walk(&p, FRAGMENT).unwrap();
        let f = h.fragment.unwrap();
        assert_eq!((h.transport_at, f.offset, f.more), (48, 1232, false));
        assert!(!f.is_first());
        // an atomic fragment (RFC 6946)
        let atomic = [PROTO_TCP, 0, 0, 0, 9, 9, 9, 9];
        let p = with_extensions(FRAGMENT, &atomic);
        assert!(walk(&p, FRAGMENT).unwrap().fragment.unwrap().is_atomic());
    }

    #[test]
    fn headers_out_of_place_or_out_of_bounds_are_refused() {
        // hop-by-hop after destination options
        #[rustfmt::skip]
        let late_hbh = [
            HOP_BY_HOP, 0, 1, 4, 0, 0, 0, 0,
            PROTO_UDP, 0, 1, 4, 0, 0, 0, 0,
        ];
        let p = with_extensions(DEST_OPTIONS, &late_hbh);
        assert_eq!(walk(&p, DEST_OPTIONS), Err(Error::Malformed));
        // a length past the packet's end
        let long = [PROTO_UDP, 200, 1, 4, 0, 0, 0, 0];
        let p = with_extensions(DEST_OPTIONS, &long);
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.headers(), Err(Error::Truncated));
        // cut inside the header
        assert_eq!(walk(&p[..44], DEST_OPTIONS), Err(Error::Truncated));
        // two fragment headers
        #[rustfmt::skip]
        let twice = [
            FRAGMENT, 0, 0, 1, 1, 2, 3, 4,
            PROTO_UDP, 0, 0, 1, 1, 2, 3, 4,
        ];
        let p = with_extensions(FRAGMENT, &twice);
        assert_eq!(walk(&p, FRAGMENT), Err(Error::Malformed));
        // a chain of destination options longer than any host sends
        let mut chain = Vec::new();
        for _ in 0..MAX_EXTENSION_HEADERS + 1 {
            chain.extend_from_slice(&[DEST_OPTIONS, 0, 1, 4, 0, 0, 0, 0]);
        }
        chain.extend_from_slice(&[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
        let p = with_extensions(DEST_OPTIONS, &chain);
        assert_eq!(walk(&p, DEST_OPTIONS), Err(Error::ExtensionHeader));
    }
}
