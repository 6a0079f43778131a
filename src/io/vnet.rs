//! The virtio-net header the kernel puts before each packet on a TUN device opened with
//! IFF_VNET_HDR and on a packet socket with PACKET_VNET_HDR. It carries what the packet
//! bytes cannot: whether the transport checksum is still partial and how a GSO super-packet
//! is to be segmented. wanlb passes it through, so segmentation happens as late as possible.

pub const LEN: usize = 10;

pub const F_NEEDS_CSUM: u8 = 1;

/// Little-endian fields (the TUN and packet-socket byte order on little-endian hosts, and
/// what virtio 1.0 specifies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    /// Offset of the checksummed region, counted from the start of what follows the header
    /// (the IP header on TUN, the Ethernet header on a packet socket).
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHeader {
    pub fn read(b: &[u8; LEN]) -> VnetHeader {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    pub fn write(&self, b: &mut [u8; LEN]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// The same header for a packet whose link-layer header grew (positive) or shrank
    /// (negative) by `delta` bytes: offsets that count from the packet start move with it.
    pub fn shifted(mut self, delta: i32) -> VnetHeader {
        let shift = |v: u16| (i32::from(v) + delta).clamp(0, i32::from(u16::MAX)) as u16;
        if self.needs_csum() {
            self.csum_start = shift(self.csum_start);
        }
        if self.hdr_len != 0 {
            self.hdr_len = shift(self.hdr_len);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shift() {
        // TCPv4 GSO, partial checksum at IP offset 20 + 16, as TUN hands it over
        let bytes = [0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00];
        let h = VnetHeader::read(&bytes);
        assert_eq!(
            (h.gso_size, h.csum_start, h.csum_offset, h.hdr_len),
            (1448, 20, 16, 66)
        );
        let eth = h.shifted(14);
        assert_eq!((eth.csum_start, eth.hdr_len), (34, 80));
        let mut out = [0u8; LEN];
        eth.shifted(-14).write(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn offsets_without_meaning_are_left_alone() {
        let h = VnetHeader {
            csum_start: 7,
            ..VnetHeader::default()
        };
        assert_eq!(h.shifted(14), h);
    }
}
