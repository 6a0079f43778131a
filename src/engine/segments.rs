//! What an uplink carries of a GSO super-packet beyond the packet itself. The worker passes
//! super-packets on whole (up to 64 KiB behind one set of headers); the line carries, and
//! the ISP counts, each segment with headers of its own. Without this, a bulk TCP transfer
//! counts about 3% short of what the carrier's meter says.

use super::wire::{Ipv4Packet, PROTO_TCP, PROTO_UDP, TcpSegment};
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

/// The segments after the first of the IPv4 super-packet `ip`, cut into segments of
/// `gso_size` transport payload bytes, and the IP and transport header bytes they add:
/// `(0, 0)` for a packet that is one segment, or not TCP or UDP.
pub fn extra_segments(ip: &[u8], gso_size: u16) -> (u64, u64) {
    let Ok(packet) = Ipv4Packet::new_checked(ip) else {
        return (0, 0);
    };
    let ip_header = packet.header_len();
    let (proto, total) = (packet.protocol(), packet.total_len());
    let transport = match proto {
        PROTO_TCP => match TcpSegment::new_checked(packet.payload()) {
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

    #[test]
    fn what_is_not_a_super_packet_counts_nothing_more() {
        let p = Build::udp(A, B, 5000, 443, &[1u8; 100]).build();
        assert_eq!(extra_segments(&p, 0), (0, 0));
        assert_eq!(extra_segments(&p[..10], 1200), (0, 0), "cut short");
        let ping = Build::icmp_echo_request(A, B, 1, 1, &[0u8; 3000]).build();
        assert_eq!(extra_segments(&ping, 1000), (0, 0));
    }
}
