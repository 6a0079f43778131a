//! ICMPv4 messages (RFC 792): echo, and the errors that quote the packet they are about.

use super::{Error, Field, PROTO_ICMP, PROTO_TCP, PROTO_UDP, get_u16, ipv4, set_u16, set_u32};
use super::{tcp, udp};
use crate::engine::checksum::checksum;

/// Where the fields are, in bytes from the start of the message.
pub mod field {
    use super::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo request and reply.
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
}

/// The header: type, code, checksum and four bytes that depend on the type.
pub const HEADER_LEN: usize = 8;

pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACHABLE: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAMETER_PROBLEM: u8 = 12;

/// A view of an ICMPv4 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpMessage<T> {
    pub const fn new_unchecked(buffer: T) -> IcmpMessage<T> {
        IcmpMessage { buffer }
    }

    /// A view of untrusted bytes: the 8 bytes of the header.
    pub fn new_checked(buffer: T) -> Result<IcmpMessage<T>, Error> {
        let message = IcmpMessage::new_unchecked(buffer);
        if message.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(message)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// An echo's identifier: what the NAT maps, as it maps a port.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// An error about another packet: destination unreachable, time exceeded, parameter
    /// problem.
    pub fn is_error(&self) -> bool {
        is_error(self.msg_type())
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref(), 0) == 0
    }

    /// What follows the header: an echo's data, or the packet an error quotes.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<'a> IcmpMessage<&'a [u8]> {
    /// [`IcmpMessage::data`], borrowed from the buffer rather than the view.
    pub fn into_data(self) -> &'a [u8] {
        &self.buffer[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpMessage<T> {
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.buffer.as_mut()[field::TYPE] = msg_type;
    }

    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    pub fn set_echo_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, ident);
    }

    pub fn set_echo_seq_no(&mut self, seq_no: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, seq_no);
    }

    /// The four bytes after the checksum: 0 for the errors wanlb sends.
    pub fn clear_rest_of_header(&mut self) {
        set_u32(self.buffer.as_mut(), field::ECHO_IDENT.start..HEADER_LEN, 0);
    }

    /// Computes the checksum over the whole message from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.buffer.as_ref(), 0);
        self.set_checksum(c);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Whether messages of `msg_type` are errors about another packet.
pub fn is_error(msg_type: u8) -> bool {
    matches!(
        msg_type,
        DEST_UNREACHABLE | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// Bytes of the transport header an ICMP error quotes at least (RFC 792): both ports of TCP
/// and UDP, an echo's identifier.
pub const QUOTED_TRANSPORT_LEN: usize = 8;

/// A view of the packet an ICMPv4 error quotes: its IPv4 header, whole, and at least the first
/// [`QUOTED_TRANSPORT_LEN`] bytes of its transport header. Its total length is the original
/// packet's, longer than the quote: the quote ends where the error does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> QuotedPacket<T> {
    /// A view of a quote checked before, through another view.
    pub const fn new_unchecked(buffer: T) -> QuotedPacket<T> {
        QuotedPacket { buffer }
    }

    /// A view of untrusted bytes (an error's [`IcmpMessage::data`]): an IPv4 header and 8 bytes
    /// after it.
    pub fn new_checked(buffer: T) -> Result<QuotedPacket<T>, Error> {
        let quoted = QuotedPacket::new_unchecked(buffer);
        let header = quoted.header();
        if quoted.buffer.as_ref().len() < ipv4::HEADER_LEN {
            return Err(Error::Truncated);
        }
        if header.version() != 4 {
            return Err(Error::Version);
        }
        if header.header_len() < ipv4::HEADER_LEN {
            return Err(Error::Malformed);
        }
        if quoted.buffer.as_ref().len() < header.header_len() + QUOTED_TRANSPORT_LEN {
            return Err(Error::Truncated);
        }
        Ok(quoted)
    }

    /// The quoted IPv4 header (its payload, which its total length would place past the quote,
    /// is [`QuotedPacket::transport`]).
    fn header(&self) -> ipv4::Ipv4Packet<&[u8]> {
        ipv4::Ipv4Packet::new_unchecked(self.buffer.as_ref())
    }

    pub fn protocol(&self) -> u8 {
        self.header().protocol()
    }

    pub fn src_addr(&self) -> u32 {
        self.header().src_addr()
    }

    pub fn dst_addr(&self) -> u32 {
        self.header().dst_addr()
    }

    pub fn checksum(&self) -> u16 {
        self.header().checksum()
    }

    /// A piece of a datagram after the first: it quotes no transport header.
    pub fn is_later_fragment(&self) -> bool {
        self.header().frag_offset() != 0
    }

    /// The quoted bytes of the transport header (at least 8).
    pub fn transport(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header().header_len()..]
    }

    /// TCP's and UDP's source port; an echo's identifier.
    pub fn src_port(&self) -> u16 {
        get_u16(self.transport(), self.src_port_field())
    }

    /// TCP's and UDP's destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.transport(), tcp::field::DST_PORT)
    }

    /// An ICMP quote's message type.
    pub fn icmp_type(&self) -> u8 {
        self.transport()[field::TYPE]
    }

    fn src_port_field(&self) -> Field {
        match self.protocol() {
            PROTO_ICMP => field::ECHO_IDENT,
            _ => tcp::field::SRC_PORT,
        }
    }

    /// Where the quoted transport checksum is, if the quote holds it.
    fn transport_checksum_field(&self) -> Option<Field> {
        let field = match self.protocol() {
            PROTO_TCP => tcp::field::CHECKSUM,
            PROTO_UDP => udp::field::CHECKSUM,
            _ => field::CHECKSUM,
        };
        (field.end <= self.transport().len()).then_some(field)
    }

    /// The quoted transport checksum, if the quote holds it.
    pub fn transport_checksum(&self) -> Option<u16> {
        let field = self.transport_checksum_field()?;
        Some(get_u16(self.transport(), field))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> QuotedPacket<T> {
    fn header_mut(&mut self) -> ipv4::Ipv4Packet<&mut [u8]> {
        ipv4::Ipv4Packet::new_unchecked(self.buffer.as_mut())
    }

    pub fn set_src_addr(&mut self, addr: u32) {
        self.header_mut().set_src_addr(addr);
    }

    pub fn set_dst_addr(&mut self, addr: u32) {
        self.header_mut().set_dst_addr(addr);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.header_mut().set_checksum(checksum);
    }

    fn transport_mut(&mut self) -> &mut [u8] {
        let start = self.header().header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// TCP's and UDP's source port; an echo's identifier.
    pub fn set_src_port(&mut self, port: u16) {
        let field = self.src_port_field();
        set_u16(self.transport_mut(), field, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.transport_mut(), tcp::field::DST_PORT, port);
    }

    /// Writes the quoted transport checksum, if the quote holds it.
    pub fn set_transport_checksum(&mut self, checksum: u16) {
        if let Some(field) = self.transport_checksum_field() {
            set_u16(self.transport_mut(), field, checksum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port unreachable from 198.18.101.1 to 198.18.1.1, quoting the UDP datagram
    /// 198.18.1.1:61000 -> 198.19.0.1:53 whole.
    #[rustfmt::skip]
    const UNREACHABLE: [u8; 40] = [
        0x03, 0x03, 0x8a, 0x42, 0x00, 0x00, 0x00, 0x00,
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xad, 0xa4,
        0xc6, 0x12, 0x01, 0x01, 0xc6, 0x13, 0x00, 0x01,
        0xee, 0x48, 0x00, 0x35, 0x00, 0x0c, 0xa5, 0x5f, 0x70, 0x69, 0x6e, 0x67,
    ];

    /// An echo request, identifier 0x1234, sequence number 1, data "abcdefgh".
    #[rustfmt::skip]
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01,
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    ];

    #[test]
    fn an_echo_request_is_read_and_written_where_rfc_792_puts_it() {
        let m = IcmpMessage::new_checked(&ECHO[..]).unwrap();
        assert_eq!(
            (m.msg_type(), m.code(), m.checksum()),
            (ECHO_REQUEST, 0, 0x5435)
        );
        assert_eq!((m.echo_ident(), m.echo_seq_no()), (0x1234, 1));
        assert!(m.verify_checksum() && !m.is_error());
        assert_eq!(m.data(), b"abcdefgh");
        let mut buf = [0u8; 16];
        let mut w = IcmpMessage::new_unchecked(&mut buf[..]);
        w.set_msg_type(ECHO_REQUEST);
        w.set_code(0);
        w.set_echo_ident(0x1234);
        w.set_echo_seq_no(1);
        w.data_mut().copy_from_slice(b"abcdefgh");
        w.fill_checksum();
        assert_eq!(buf, ECHO);
        assert_eq!(IcmpMessage::new_checked(&ECHO[..7]), Err(Error::Truncated));
    }

    #[test]
    fn an_error_quotes_the_packet_it_is_about() {
        let m = IcmpMessage::new_checked(&UNREACHABLE[..]).unwrap();
        assert!(m.is_error() && m.verify_checksum());
        assert_eq!((m.msg_type(), m.code()), (DEST_UNREACHABLE, 3));
        let q = QuotedPacket::new_checked(m.data()).unwrap();
        assert_eq!(q.protocol(), PROTO_UDP);
        assert_eq!(q.src_addr(), u32::from_be_bytes([198, 18, 1, 1]));
        assert_eq!(q.dst_addr(), u32::from_be_bytes([198, 19, 0, 1]));
        assert_eq!((q.src_port(), q.dst_port()), (61000, 53));
        assert_eq!(
            (q.checksum(), q.transport_checksum()),
            (0xada4, Some(0xa55f))
        );
        assert!(!q.is_later_fragment());
        // a quote of 8 transport bytes holds UDP's checksum, not TCP's
        let udp = QuotedPacket::new_checked(&UNREACHABLE[8..36]).unwrap();
        assert_eq!(udp.transport_checksum(), Some(0xa55f));
        let mut tcp = UNREACHABLE[8..36].to_vec();
        tcp[9] = PROTO_TCP;
        let q = QuotedPacket::new_checked(&tcp[..]).unwrap();
        assert_eq!(q.transport_checksum(), None);
    }

    #[test]
    fn a_quote_is_rewritten_in_place() {
        let mut quote = UNREACHABLE[8..].to_vec();
        let mut q = QuotedPacket::new_checked(&mut quote[..]).unwrap();
        q.set_src_addr(u32::from_be_bytes([198, 18, 3, 10]));
        q.set_dst_addr(u32::from_be_bytes([198, 19, 0, 2]));
        q.set_src_port(5353);
        q.set_dst_port(5354);
        q.set_checksum(0x0102);
        q.set_transport_checksum(0x0304);
        assert_eq!(quote[12..20], [198, 18, 3, 10, 198, 19, 0, 2]);
        assert_eq!(quote[10..12], [1, 2]);
        assert_eq!(
            quote[20..28],
            [0x14, 0xe9, 0x14, 0xea, 0x00, 0x0c, 0x03, 0x04]
        );
        // an echo's identifier is its "source port"
        let mut echo = UNREACHABLE[8..28].to_vec();
        echo[9] = PROTO_ICMP;
        echo.extend_from_slice(&ECHO[..8]);
        let mut q = QuotedPacket::new_checked(&mut echo[..]).unwrap();
        assert_eq!((q.icmp_type(), q.src_port()), (ECHO_REQUEST, 0x1234));
        q.set_src_port(61000);
        assert_eq!(echo[24..26], [0xee, 0x48]);
    }

    #[test]
    fn a_quote_too_short_or_not_ipv4_is_refused() {
        let quote = &UNREACHABLE[8..];
        let check = |bytes: &[u8]| QuotedPacket::new_checked(bytes).map(|_| ());
        assert_eq!(
            check(&quote[..27]),
            Err(Error::Truncated),
            "7 transport bytes"
        );
        assert_eq!(check(&quote[..19]), Err(Error::Truncated));
        let mut v6 = quote.to_vec();
        v6[0] = 0x65;
        assert_eq!(check(&v6), Err(Error::Version));
        let mut ihl_4 = quote.to_vec();
        ihl_4[0] = 0x44;
        assert_eq!(check(&ihl_4), Err(Error::Malformed));
        let mut later = quote.to_vec();
        later[7] = 1; // offset 8 bytes
        assert!(
            QuotedPacket::new_checked(&later[..])
                .unwrap()
                .is_later_fragment()
        );
    }
}
