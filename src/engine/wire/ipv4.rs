//! The IPv4 header (RFC 791): the one place its version, header length and total length are
//! read and checked.

use super::{Error, Field, get_u16, get_u32, set_u16, set_u32};
use crate::engine::checksum::checksum;

/// Where the fields are, in bytes from the start of the header.
pub mod field {
    use super::Field;

    pub const VER_IHL: usize = 0;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// A header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// The largest header: 15 words.
pub const MAX_HEADER_LEN: usize = 60;
/// Bytes of data after its header an IPv4 datagram can carry: a fragment reaching past this
/// is malformed (the "ping of death").
pub const MAX_DATA_LEN: usize = 65_535 - HEADER_LEN;

const DONT_FRAGMENT: u16 = 0x4000;
const MORE_FRAGMENTS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// The IP version of the packet in `buf`: the first nibble, where IPv4 and IPv6 both keep it.
pub fn version_of(buf: &[u8]) -> Option<u8> {
    buf.first().map(|b| b >> 4)
}

/// A view of an IPv4 packet. Checked, the buffer holds the whole header and the datagram its
/// total length says (bytes after that, link-layer padding, are outside [`Ipv4Packet::payload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view of bytes the caller knows to be a whole IPv4 header (it wrote them, or checked
    /// them through another view). Accessors may panic on a buffer too short.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// A view of untrusted bytes: version 4, a header length of at least 20 bytes, a total
    /// length from the header length up to what the buffer holds.
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, Error> {
        let packet = Ipv4Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Version);
        }
        let header = self.header_len();
        if header < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let total = self.total_len();
        if total < header {
            return Err(Error::Malformed);
        }
        if total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header's length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The datagram's length in bytes, header included.
    pub fn total_len(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), field::LENGTH))
    }

    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & DONT_FRAGMENT != 0
    }

    /// "More fragments": a piece of a datagram, not its last.
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & MORE_FRAGMENTS != 0
    }

    /// Where its data starts in its datagram's data, in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) * 8
    }

    /// A piece of a fragmented datagram (any piece: the first has more to come, the others an
    /// offset).
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & (MORE_FRAGMENTS | OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum(self.header(), 0) == 0
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The datagram: header and data, without what follows its total length.
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }

    /// What the header carries: the transport header and data (of a fragment, its piece).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// [`Ipv4Packet::payload`], borrowed from the buffer rather than the view.
    pub fn into_payload(self) -> &'a [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        &self.buffer[start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Version 4 and a header of `len` bytes (a multiple of 4, at most 60).
    pub fn set_version_and_header_len(&mut self, len: usize) {
        debug_assert!(len.is_multiple_of(4) && (HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        let words = u8::try_from(len / 4).unwrap_or(0x0f);
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | words;
    }

    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// "Don't fragment" as given, and no fragment fields: a whole datagram.
    pub fn set_whole(&mut self, dont_frag: bool) {
        let flags = if dont_frag { DONT_FRAGMENT } else { 0 };
        set_u16(self.buffer.as_mut(), field::FLG_OFF, flags);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    pub fn set_src_addr(&mut self, addr: u32) {
        set_u32(self.buffer.as_mut(), field::SRC_ADDR, addr);
    }

    pub fn set_dst_addr(&mut self, addr: u32) {
        set_u32(self.buffer.as_mut(), field::DST_ADDR, addr);
    }

    /// Computes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.header(), 0);
        self.set_checksum(c);
    }

    /// The transport header and data, to be rewritten.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram from 198.18.3.10 to 198.19.0.1 with 4 bytes of data ("ping"), DF,
    /// TTL 64, identification 1, then two bytes of link-layer padding.
    #[rustfmt::skip]
    const PACKET: [u8; 34] = [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xab, 0x9b,
        0xc6, 0x12, 0x03, 0x0a, 0xc6, 0x13, 0x00, 0x01,
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x7c, 0xb6, 0x70, 0x69, 0x6e, 0x67,
        0xee, 0xee,
    ];

    #[test]
    fn fields_are_read_where_rfc_791_puts_them() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 20, 32));
        assert_eq!((p.ident(), p.ttl(), p.protocol()), (1, 64, 17));
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.src_addr(), u32::from_be_bytes([198, 18, 3, 10]));
        assert_eq!(p.dst_addr(), u32::from_be_bytes([198, 19, 0, 1]));
        assert_eq!(p.checksum(), 0xab9b);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &PACKET[20..32], "the padding is not data");
        assert_eq!(p.datagram(), &PACKET[..32]);
        assert_eq!(version_of(&PACKET), Some(4));
        assert_eq!(version_of(&[]), None);
    }

    #[test]
    fn a_packet_written_field_by_field_is_the_literal() {
        let mut buf = [0u8; 32];
        buf[20..].copy_from_slice(&PACKET[20..32]);
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(20);
        p.set_total_len(32);
        p.set_ident(1);
        p.set_whole(true);
        p.set_ttl(64);
        p.set_protocol(17);
        p.set_src_addr(u32::from_be_bytes([198, 18, 3, 10]));
        p.set_dst_addr(u32::from_be_bytes([198, 19, 0, 1]));
        p.fill_checksum();
        assert_eq!(buf, PACKET[..32]);
    }

    #[test]
    fn untrusted_bytes_are_checked_once() {
        let check = |bytes: &[u8]| Ipv4Packet::new_checked(bytes).map(|_| ());
        assert_eq!(check(&PACKET[..19]), Err(Error::Truncated));
        let mut v6 = PACKET;
        v6[0] = 0x65;
        assert_eq!(check(&v6), Err(Error::Version));
        let mut short_header = PACKET;
        short_header[0] = 0x44;
        assert_eq!(check(&short_header), Err(Error::Malformed));
        let mut options_past_the_end = PACKET;
        options_past_the_end[0] = 0x4f; // 60 bytes of header in 34
        assert_eq!(check(&options_past_the_end), Err(Error::Malformed));
        let mut total_below_header = PACKET;
        total_below_header[3] = 19;
        assert_eq!(check(&total_below_header), Err(Error::Malformed));
        let mut total_past_the_end = PACKET;
        total_past_the_end[3] = 35;
        assert_eq!(check(&total_past_the_end), Err(Error::Truncated));
        // exactly as long as it says, padding or not
        assert_eq!(check(&PACKET[..32]), Ok(()));
        assert_eq!(check(&PACKET), Ok(()));
    }

    #[test]
    fn fragment_fields() {
        let mut first = PACKET;
        first[6] = 0x20; // more fragments, offset 0
        let p = Ipv4Packet::new_checked(&first[..]).unwrap();
        assert!(p.is_fragment() && p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 0);
        let mut last = PACKET;
        last[6..8].copy_from_slice(&[0x00, 0xb9]); // offset 185 words: 1480 bytes
        let p = Ipv4Packet::new_checked(&last[..]).unwrap();
        assert!(p.is_fragment() && !p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn the_payload_follows_the_options() {
        let mut with_options = vec![0x46];
        with_options.extend_from_slice(&PACKET[1..20]);
        with_options.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP END
        with_options.extend_from_slice(&PACKET[20..32]);
        with_options[3] = 36;
        let mut p = Ipv4Packet::new_checked(&mut with_options[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), &PACKET[20..32]);
        p.payload_mut()[0] = 0xff;
        assert_eq!(with_options[24], 0xff);
    }
}
