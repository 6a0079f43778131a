//! What an uplink carries of a GSO super-packet beyond the packet itself. The worker passes
//! super-packets on whole (up to 64 KiB behind one set of headers); the line carries, and
//! the ISP counts, each segment with headers of its own. Without this, a bulk TCP transfer
//! counts about 3% short of what the carrier's meter says.

use super::wire::{Ipv4Packet, Ipv6Packet, PROTO_TCP, PROTO_UDP, TcpSegment};
use super::{Direction, Engine, UplinkId};

use std::sync::atomic::{AtomicU64, Ordering};

/// Per uplink and direction, the segments after the first of each super-packet, and their
/// headers.
#[derive(Debug, Default)]
pub(super) struct SegmentCounts {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl SegmentCounts {
    pub(super) fn read(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The segments after the first of the super-packet `ip` (IPv4, or IPv6: by its version
/// nibble), cut into segments of `gso_size` transport payload bytes, and the IP (IPv6: with
/// its extension headers) and transport header bytes they add: `(0, 0)` for a packet that is
/// one segment, or not TCP or UDP.
pub fn extra_segments(ip: &[u8], gso_size: u16) -> (u64, u64) {
    let (ip_header, proto, total) = match ip.first().map(|b| b >> 4) {
        Some(6) => {
            let Ok(packet) = Ipv6Packet::new_checked(ip) else {
                return (0, 0);
            };
            match packet.headers() {
                Ok(h) if h.fragment.is_none() => (h.transport_at, h.proto, packet.total_len()),
                _ => return (0, 0),
            }
        }
        _ => match Ipv4Packet::new_checked(ip) {
            Ok(packet) => (packet.header_len(), packet.protocol(), packet.total_len()),
            Err(_) => return (0, 0),
        },
    };
    let transport = match proto {
        PROTO_TCP => match TcpSegment::new_checked(ip.get(ip_header..total).unwrap_or_default()) {
            Ok(tcp) => tcp.header_len(),
            Err(_) => return (0, 0),
        },
        PROTO_UDP => 8,
        _ => return (0, 0),
    };
    let headers = ip_header + transport;
    let payload = total.saturating_sub(headers);
    if gso_size == 0 || payload == 0 {
        return (0, 0);
    }
    let more = payload.div_ceil(usize::from(gso_size)) - 1;
    (more as u64, (more * headers) as u64)
}

impl Engine {
    /// Counts what `uplink` carries, `direction`, of a GSO super-packet the engine passed
    /// (its IP packet `ip`, with segments of `gso_size` payload bytes) beyond the packet
    /// itself: [`extra_segments`].
    pub fn count_segments(&self, uplink: UplinkId, direction: Direction, ip: &[u8], gso_size: u16) {
        let (packets, bytes) = extra_segments(ip, gso_size);
        if packets == 0 {
            return;
        }
        if let Some(counts) = self.segments.get(usize::from(uplink)) {
            let c = &counts[direction.index()];
            c.packets.fetch_add(packets, Ordering::Relaxed);
            c.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wanlb_testkit::Ipv4Packet as Build;

    const A: u32 = u32::from_be_bytes([198, 18, 3, 10]);
    const B: u32 = u32::from_be_bytes([198, 19, 0, 1]);

    #[test]
    fn a_tcp_super_packet_counts_the_headers_of_every_segment() {
        // 10 000 bytes of payload behind 20 + 20 bytes of headers, 1448 a segment: 7
        // segments, so 6 more sets of headers
        let p = Build::tcp(A, B, 40000, 443, &[7u8; 10_000]).build();
        assert_eq!(extra_segments(&p, 1448), (6, 6 * 40));
        // exactly two segments' worth, and one
        assert_eq!(extra_segments(&p, 5000), (1, 40));
        assert_eq!(extra_segments(&p, 10_000), (0, 0));
    }

    #[test]
    fn a_udp_super_packet_counts_8_bytes_of_udp_header_a_segment() {
        let p = Build::udp(A, B, 5000, 443, &[1u8; 3 * 1200 + 1]).build();
        assert_eq!(extra_segments(&p, 1200), (3, 3 * 28));
    }

    /// An IPv6 packet from `fd00::a` to `2001:2::1`: `next` first, then `ext` (extension
    /// headers), then `l4`.
    fn ipv6(next: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&u16::try_from(ext.len() + l4.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&(0xfd00_u128 << 112 | 0xa).to_be_bytes());
        p.extend_from_slice(&(0x2001_0002_u128 << 96 | 1).to_be_bytes());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn an_ipv6_super_packet_counts_its_40_bytes_extension_headers_and_transport_a_segment() {
        // 10 000 bytes behind 40 + 20 bytes of headers, 1440 a segment: 7 segments, 6 more
        // sets of headers
        let mut tcp = vec![0u8; 20];
        tcp[12] = 0x50;
        tcp.extend_from_slice(&[7u8; 10_000]);
        let p = ipv6(PROTO_TCP, &[], &tcp);
        assert_eq!(extra_segments(&p, 1440), (6, 6 * 60));
        // UDP behind an 8-byte destination options header: 40 + 8 + 8 a segment
        let mut udp = vec![0u8; 8];
        udp.extend_from_slice(&[1u8; 3 * 1200 + 1]);
        let p = ipv6(60, &[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0], &udp);
        assert_eq!(extra_segments(&p, 1200), (3, 3 * 56));
        // cut short, or not TCP or UDP
        assert_eq!(extra_segments(&p[..30], 1200), (0, 0));
        let echo = ipv6(58, &[], &[128u8; 3000]);
        assert_eq!(extra_segments(&echo, 1000), (0, 0));
    }

    #[test]
    fn what_is_not_a_super_packet_counts_nothing_more() {
        let p = Build::udp(A, B, 5000, 443, &[1u8; 100]).build();
        assert_eq!(extra_segments(&p, 0), (0, 0));
        assert_eq!(extra_segments(&p[..10], 1200), (0, 0), "cut short");
        let ping = Build::icmp_echo_request(A, B, 1, 1, &[0u8; 3000]).build();
        assert_eq!(extra_segments(&ping, 1000), (0, 0));
    }
}
