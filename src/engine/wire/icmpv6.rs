//! ICMPv6 (RFC 4443): the message layout is ICMPv4's ([`super::icmp::IcmpMessage`] reads
//! it), with other type numbers and a checksum over the IPv6 pseudo header; and the packet an
//! error quotes, an IPv6 one.

use super::icmp::QUOTED_TRANSPORT_LEN;
use super::ipv6::{self, Headers};
use super::{Error, Field, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, get_u16, set_u16};
use super::{icmp, tcp, udp};
use crate::engine::checksum::{checksum, pseudo_header6};

pub const DEST_UNREACHABLE: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAMETER_PROBLEM: u8 = 4;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
/// Destination unreachable, code 0: no route to destination.
pub const NO_ROUTE: u8 = 0;
/// Destination unreachable, code 1: communication administratively prohibited.
pub const ADMIN_PROHIBITED: u8 = 1;
/// Destination unreachable, code 5: source address failed ingress/egress policy.
pub const SOURCE_POLICY: u8 = 5;

/// Whether messages of `msg_type` are errors about another packet (RFC 4443 2.1: the types
/// below 128; those the engine translates).
pub fn is_error(msg_type: u8) -> bool {
    matches!(
        msg_type,
        DEST_UNREACHABLE | PACKET_TOO_BIG | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// The checksum of the ICMPv6 message `message` (its checksum field read as zero) from `src`
/// to `dst`.
pub fn checksum_of(src: u128, dst: u128, message: &[u8]) -> u16 {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    checksum(message, pseudo_header6(src, dst, PROTO_ICMPV6, len))
}

/// Whether the checksum of `message` from `src` to `dst` is right.
pub fn verify_checksum(src: u128, dst: u128, message: &[u8]) -> bool {
    message.len() >= icmp::HEADER_LEN && checksum_of(src, dst, message) == 0
}

/// Computes the checksum of `message` (at least a header) from `src` to `dst` from scratch.
pub fn fill_checksum(src: u128, dst: u128, message: &mut [u8]) {
    set_u16(message, icmp::field::CHECKSUM, 0);
    let c = checksum_of(src, dst, message);
    set_u16(message, icmp::field::CHECKSUM, c);
}

/// A view of the packet an ICMPv6 error quotes: its IPv6 header, its extension headers and
/// at least [`QUOTED_TRANSPORT_LEN`] bytes of its transport header, of TCP, UDP or ICMPv6, as
/// much of it as fitted in the error (RFC 4443 2.4 c: up to the minimum MTU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedPacket6<T: AsRef<[u8]>> {
    buffer: T,
    headers: Headers,
}

impl<T: AsRef<[u8]>> QuotedPacket6<T> {
    /// A view of untrusted bytes (an error's data). A quoted later fragment quotes no ports:
    /// [`Error::Malformed`].
    pub fn new_checked(buffer: T) -> Result<QuotedPacket6<T>, Error> {
        let buf = buffer.as_ref();
        if buf.len() < ipv6::HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header = ipv6::Ipv6Packet::new_unchecked(buf);
        if header.version() != 6 {
            return Err(Error::Version);
        }
        let headers = ipv6::walk(buf, header.next_header())?;
        if headers.fragment.is_some_and(|f| !f.is_first()) {
            return Err(Error::Malformed);
        }
        if buf.len() < headers.transport_at + QUOTED_TRANSPORT_LEN {
            return Err(Error::Truncated);
        }
        Ok(QuotedPacket6 { buffer, headers })
    }

    fn header(&self) -> ipv6::Ipv6Packet<&[u8]> {
        ipv6::Ipv6Packet::new_unchecked(self.buffer.as_ref())
    }

    pub fn protocol(&self) -> u8 {
        self.headers.proto
    }

    pub fn src_addr(&self) -> u128 {
        self.header().src_addr()
    }

    pub fn dst_addr(&self) -> u128 {
        self.header().dst_addr()
    }

    /// The quoted bytes of the transport header (at least 8).
    pub fn transport(&self) -> &[u8] {
        &self.buffer.as_ref()[self.headers.transport_at..]
    }

    /// TCP's and UDP's source port; an echo's identifier.
    pub fn src_port(&self) -> u16 {
        get_u16(self.transport(), self.src_port_field())
    }

    /// TCP's and UDP's destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.transport(), tcp::field::DST_PORT)
    }

    /// An ICMPv6 quote's message type.
    pub fn icmp_type(&self) -> u8 {
        self.transport()[icmp::field::TYPE]
    }

    fn src_port_field(&self) -> Field {
        match self.protocol() {
            PROTO_ICMPV6 => icmp::field::ECHO_IDENT,
            _ => tcp::field::SRC_PORT,
        }
    }

    fn transport_checksum_field(&self) -> Option<Field> {
        let field = match self.protocol() {
            PROTO_TCP => tcp::field::CHECKSUM,
            PROTO_UDP => udp::field::CHECKSUM,
            _ => icmp::field::CHECKSUM,
        };
        (field.end <= self.transport().len()).then_some(field)
    }

    /// The quoted transport checksum, if the quote holds it.
    pub fn transport_checksum(&self) -> Option<u16> {
        let field = self.transport_checksum_field()?;
        Some(get_u16(self.transport(), field))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> QuotedPacket6<T> {
    pub fn set_src_addr(&mut self, addr: u128) {
        ipv6::Ipv6Packet::new_unchecked(self.buffer.as_mut()).set_src_addr(addr);
    }

    pub fn set_dst_addr(&mut self, addr: u128) {
        ipv6::Ipv6Packet::new_unchecked(self.buffer.as_mut()).set_dst_addr(addr);
    }

    fn transport_mut(&mut self) -> &mut [u8] {
        let at = self.headers.transport_at;
        &mut self.buffer.as_mut()[at..]
    }

    pub fn set_src_port(&mut self, port: u16) {
        let field = self.src_port_field();
        set_u16(self.transport_mut(), field, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.transport_mut(), tcp::field::DST_PORT, port);
    }

    /// Writes the quoted transport checksum, if the quote holds it.
    pub fn set_transport_checksum(&mut self, value: u16) {
        if let Some(field) = self.transport_checksum_field() {
            set_u16(self.transport_mut(), field, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo request from fd00::a to 2001:2::1, identifier 0x1234, sequence 1, data "hi",
    /// its checksum right.
    const SRC: u128 = 0xfd00_u128 << 112 | 0x0a;
    const DST: u128 = 0x2001_0002_u128 << 96 | 1;
    const ECHO: [u8; 10] = [0x80, 0x00, 0xe8, 0x0d, 0x12, 0x34, 0x00, 0x01, 0x68, 0x69];

    #[test]
    fn the_checksum_covers_the_pseudo_header() {
        assert!(verify_checksum(SRC, DST, &ECHO));
        // the same bytes between other addresses: wrong
        assert!(!verify_checksum(SRC + 1, DST, &ECHO));
        let mut message = ECHO;
        message[2..4].fill(0xaa);
        fill_checksum(SRC, DST, &mut message);
        assert_eq!(message, ECHO);
        assert!(
            !verify_checksum(SRC, DST, &ECHO[..4]),
            "shorter than a header"
        );
    }

    #[test]
    fn errors_are_told_from_the_rest() {
        for t in [
            DEST_UNREACHABLE,
            PACKET_TOO_BIG,
            TIME_EXCEEDED,
            PARAMETER_PROBLEM,
        ] {
            assert!(is_error(t));
        }
        for t in [ECHO_REQUEST, ECHO_REPLY, 133, 134, 135, 136, 137, 0, 127] {
            assert!(!is_error(t));
        }
    }

    #[test]
    fn a_quote_is_read_through_its_extension_headers() {
        // the quoted packet: [fd00::a]:5353 -> [2001:2::1]:53 UDP, behind destination
        // options, cut after 8 bytes of UDP
        let mut q = vec![0x60, 0, 0, 0, 0, 20, 60, 64];
        q.extend_from_slice(&SRC.to_be_bytes());
        q.extend_from_slice(&DST.to_be_bytes());
        q.extend_from_slice(&[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
        q.extend_from_slice(&[0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0xab, 0xcd]);
        let mut quote = QuotedPacket6::new_checked(&mut q[..]).unwrap();
        assert_eq!(quote.protocol(), PROTO_UDP);
        assert_eq!((quote.src_addr(), quote.dst_addr()), (SRC, DST));
        assert_eq!((quote.src_port(), quote.dst_port()), (5353, 53));
        assert_eq!(quote.transport_checksum(), Some(0xabcd));
        quote.set_src_port(40000);
        quote.set_src_addr(DST + 7);
        quote.set_transport_checksum(0x1111);
        assert_eq!(&q[48..50], &40000u16.to_be_bytes());
        assert_eq!(&q[8..24], &(DST + 7).to_be_bytes());
        assert_eq!(&q[54..56], &[0x11, 0x11]);
        assert_eq!(
            QuotedPacket6::new_checked(&q[..55]).map(|_| ()),
            Err(Error::Truncated)
        );
        let mut v4 = q.clone();
        v4[0] = 0x45;
        assert_eq!(
            QuotedPacket6::new_checked(&v4[..]).map(|_| ()),
            Err(Error::Version)
        );
    }

    #[test]
    fn a_quoted_later_fragment_names_no_ports() {
        let mut q = vec![0x60, 0, 0, 0, 0, 16, ipv6::FRAGMENT, 64];
        q.extend_from_slice(&SRC.to_be_bytes());
        q.extend_from_slice(&DST.to_be_bytes());
        q.extend_from_slice(&[PROTO_UDP, 0, 0x05, 0xa8, 0, 0, 0, 1]);
        q.extend_from_slice(&[0; 8]);
        assert_eq!(
            QuotedPacket6::new_checked(&q[..]).map(|_| ()),
            Err(Error::Malformed)
        );
    }
}
