//! The UDP header (RFC 768).

use super::{Error, Field, get_u16, set_u16};

/// Where the fields are, in bytes from the start of the header.
pub mod field {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram. Its length field is not checked against the buffer: the NAT
/// rewrites ports and the checksum only, and leaves the datagram's length to its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    pub const fn new_unchecked(buffer: T) -> UdpDatagram<T> {
        UdpDatagram { buffer }
    }

    /// A view of untrusted bytes: the 8 bytes of the header.
    pub fn new_checked(buffer: T) -> Result<UdpDatagram<T>, Error> {
        let datagram = UdpDatagram::new_unchecked(buffer);
        if datagram.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(datagram)
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

    /// The length field: header and data, in bytes.
    pub fn len_field(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum field; 0: sent without one.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_len_field(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From port 5353 to 53, 12 bytes long, checksum 0x7cb6, data "ping".
    const DATAGRAM: [u8; 12] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x7c, 0xb6, 0x70, 0x69, 0x6e, 0x67,
    ];

    #[test]
    fn fields_are_read_where_rfc_768_puts_them() {
        let d = UdpDatagram::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((d.src_port(), d.dst_port()), (5353, 53));
        assert_eq!((d.len_field(), d.checksum()), (12, 0x7cb6));
        assert_eq!(
            UdpDatagram::new_checked(&DATAGRAM[..7]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn a_datagram_written_field_by_field_is_the_literal() {
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(b"ping");
        let mut d = UdpDatagram::new_unchecked(&mut buf[..]);
        d.set_src_port(5353);
        d.set_dst_port(53);
        d.set_len_field(12);
        d.set_checksum(0x7cb6);
        assert_eq!(buf, DATAGRAM);
    }
}
