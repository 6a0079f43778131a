//! The TCP header (RFC 9293), and of its options the one the NAT reads: window scale
//! (RFC 7323 2.2).

use super::{Error, Field, get_u16, get_u32, set_u16, set_u32};

/// Where the fields are, in bytes from the start of the header.
pub mod field {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// A header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const CWR: u8 = 0x80;

/// The largest window scale (RFC 7323 2.3): a larger one is taken as this.
const MAX_WINDOW_SCALE: u8 = 14;

/// A view of a TCP segment: its header and whatever of its data the buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    pub const fn new_unchecked(buffer: T) -> TcpSegment<T> {
        TcpSegment { buffer }
    }

    /// A view of untrusted bytes: the 20 bytes of a header without options, and a data offset
    /// that says at least that many. Options the data offset claims past the end of the buffer
    /// are not refused: the NAT reads none of them but the window scale, which is then absent.
    pub fn new_checked(buffer: T) -> Result<TcpSegment<T>, Error> {
        let segment = TcpSegment::new_unchecked(buffer);
        if segment.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if segment.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        Ok(segment)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// The header's length in bytes, options included, as its data offset says.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// FIN, SYN, RST, PSH, ACK, URG, ECE and CWR, one bit each.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The window field as sent: scaled by its sender's window scale, except in a SYN.
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The option bytes the buffer holds.
    pub fn options(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        &buf[HEADER_LEN..self.header_len().clamp(HEADER_LEN, buf.len())]
    }

    /// Bytes of data after the header.
    pub fn payload_len(&self) -> usize {
        self.buffer.as_ref().len().saturating_sub(self.header_len())
    }

    /// The window scale option, if the segment has one (only a SYN's means anything); above
    /// 14 taken as 14. A malformed option list ends the search.
    pub fn window_scale(&self) -> Option<u8> {
        let mut options = self.options();
        while let [kind, rest @ ..] = options {
            match *kind {
                0 => return None, // the end of the option list
                1 => options = rest,
                _ => {
                    let len = usize::from(*rest.first()?);
                    if len < 2 || len > options.len() {
                        return None;
                    }
                    if *kind == 3 && len == 3 {
                        return Some(options[2].min(MAX_WINDOW_SCALE));
                    }
                    options = &options[len..];
                }
            }
        }
        None
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_seq_number(&mut self, seq: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, seq);
    }

    pub fn set_ack_number(&mut self, ack: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, ack);
    }

    /// A header of `len` bytes (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len.is_multiple_of(4) && (HEADER_LEN..=60).contains(&len));
        self.buffer.as_mut()[field::DATA_OFF] = u8::try_from((len / 4) << 4).unwrap_or(0xf0);
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    pub fn set_window_len(&mut self, window: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, window);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    pub fn set_urgent(&mut self, urgent: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, urgent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN from port 40000 to 443, sequence number 77, acknowledgement 88, window 4321, with
    /// the options Linux sends: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    #[rustfmt::skip]
    const SYN_SEGMENT: [u8; 40] = [
        0x9c, 0x40, 0x01, 0xbb, 0x00, 0x00, 0x00, 0x4d, 0x00, 0x00, 0x00, 0x58,
        0xa0, 0x02, 0x10, 0xe1, 0x12, 0x34, 0x00, 0x00,
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn fields_are_read_where_rfc_9293_puts_them() {
        let s = TcpSegment::new_checked(&SYN_SEGMENT[..]).unwrap();
        assert_eq!((s.src_port(), s.dst_port()), (40000, 443));
        assert_eq!((s.seq_number(), s.ack_number()), (77, 88));
        assert_eq!((s.header_len(), s.flags(), s.window_len()), (40, SYN, 4321));
        assert_eq!(s.checksum(), 0x1234);
        assert_eq!(s.options(), &SYN_SEGMENT[20..]);
        assert_eq!(s.payload_len(), 0);
        assert_eq!(s.window_scale(), Some(7));
    }

    #[test]
    fn a_segment_written_field_by_field_is_the_literal() {
        let mut buf = [0u8; 40];
        buf[20..].copy_from_slice(&SYN_SEGMENT[20..]);
        let mut s = TcpSegment::new_unchecked(&mut buf[..]);
        s.set_src_port(40000);
        s.set_dst_port(443);
        s.set_seq_number(77);
        s.set_ack_number(88);
        s.set_header_len(40);
        s.set_flags(SYN);
        s.set_window_len(4321);
        s.set_checksum(0x1234);
        s.set_urgent(0);
        assert_eq!(buf, SYN_SEGMENT);
    }

    #[test]
    fn untrusted_bytes_are_checked_once() {
        let check = |bytes: &[u8]| TcpSegment::new_checked(bytes).map(|_| ());
        assert_eq!(check(&SYN_SEGMENT[..19]), Err(Error::Truncated));
        let mut offset_4 = SYN_SEGMENT;
        offset_4[12] = 0x40;
        assert_eq!(check(&offset_4), Err(Error::Malformed));
        // options claimed past the end: taken, and none read
        let s = TcpSegment::new_checked(&SYN_SEGMENT[..24]).unwrap();
        assert_eq!((s.options(), s.payload_len()), (&SYN_SEGMENT[20..24], 0));
        assert_eq!(s.window_scale(), None);
    }

    #[test]
    fn the_window_scale_option_is_found_among_the_others() {
        let scale = |options: &[u8]| {
            let mut s = SYN_SEGMENT[..20].to_vec();
            s.extend_from_slice(options);
            s[12] = u8::try_from((20 + options.len()) / 4 * 16).unwrap();
            TcpSegment::new_checked(&s[..]).unwrap().window_scale()
        };
        assert_eq!(scale(&[1, 3, 3, 15]), Some(14), "at most 14");
        assert_eq!(scale(&[2, 4, 5, 0xb4]), None);
        assert_eq!(scale(&[0, 3, 3, 7]), None, "after the end");
        // an option whose length runs past the header, or is below 2, ends the list
        assert_eq!(scale(&[1, 1, 8, 9]), None);
        assert_eq!(scale(&[2, 0, 3, 3]), None);
    }
}
