//! The IPv6 packets the engine writes itself towards a LAN host: the segment that asks a
//! host for its sequence number, the reset built from its answer in place (see
//! [`crate::engine::answer`] for why), and ICMPv6 destination unreachable when no line can
//! carry its IPv6 (so that its stack falls back to IPv4 at once).

use crate::engine::answer::{NET_UNREACHABLE, SOURCE_POLICY, reset_numbers};
use crate::engine::checksum::{checksum, pseudo_header6};
use crate::engine::wire::ipv6::{self, Headers};
use crate::engine::wire::tcp::{self, TcpSegment};
use crate::engine::wire::{Ipv6Packet, PROTO_ICMPV6, PROTO_TCP, icmp, icmpv6};
use crate::engine::{Engine, Timestamp, lock};

use std::sync::atomic::Ordering;

const IP_HEADER: usize = ipv6::HEADER_LEN;
const TCP_HEADER: usize = tcp::HEADER_LEN;

/// Length of the IPv6 segment that asks a host for its sequence numbers.
pub const SEQUENCE_PROBE6: usize = IP_HEADER + TCP_HEADER + 1;

/// An IPv6 header and a TCP header without options at the start of `buf`, the checksum over
/// `payload_len` bytes after them included.
fn tcp_segment6(
    buf: &mut [u8],
    src: (u128, u16),
    dst: (u128, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload_len: usize,
) {
    let l4_len = TCP_HEADER + payload_len;
    let mut ip = Ipv6Packet::new_unchecked(&mut buf[..]);
    ip.set_version();
    ip.set_payload_len(u16::try_from(l4_len).expect("an answer fits in 64 KiB"));
    ip.set_next_header(PROTO_TCP);
    ip.set_hop_limit(64);
    ip.set_src_addr(src.0);
    ip.set_dst_addr(dst.0);
    let l4 = &mut buf[IP_HEADER..IP_HEADER + l4_len];
    l4[..TCP_HEADER].fill(0);
    let mut t = TcpSegment::new_unchecked(&mut l4[..]);
    t.set_src_port(src.1);
    t.set_dst_port(dst.1);
    t.set_seq_number(seq);
    t.set_ack_number(ack);
    t.set_header_len(TCP_HEADER);
    t.set_flags(flags);
    let len = u32::try_from(l4_len).expect("an answer fits in 64 KiB");
    let c = checksum(l4, pseudo_header6(src.0, dst.0, PROTO_TCP, len));
    TcpSegment::new_unchecked(l4).set_checksum(c);
}

/// Writes into `buf` a segment from `remote` to the LAN endpoint `host` that the host's stack
/// cannot accept and answers with a duplicate ACK: one byte, half the sequence space away
/// from `peer_seq`.
pub(in crate::engine) fn sequence_probe6(
    buf: &mut [u8; SEQUENCE_PROBE6],
    remote: (u128, u16),
    host: (u128, u16),
    peer_seq: u32,
) {
    buf[IP_HEADER + TCP_HEADER] = 0;
    tcp_segment6(
        buf,
        remote,
        host,
        peer_seq.wrapping_add(1 << 31),
        0,
        tcp::ACK,
        1,
    );
}

/// Turns the TCP segment `ip` (from a LAN host, checked, its transport at `h`) into the
/// reset its sender will accept, from its peer: sequence number = the segment's
/// acknowledgement number. Written from the start of the buffer, without the segment's
/// extension headers; its payload length says how long it is.
pub(in crate::engine) fn reset_in_place6(ip: Ipv6Packet<&mut [u8]>, h: &Headers) -> usize {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let segment = TcpSegment::new_unchecked(ip.from(h.transport_at));
    let (src_port, dst_port) = (segment.src_port(), segment.dst_port());
    let (seq, ack) = reset_numbers(&segment);
    tcp_segment6(
        ip.into_inner(),
        (dst, dst_port),
        (src, src_port),
        seq,
        ack,
        tcp::RST | tcp::ACK,
        0,
    );
    IP_HEADER + TCP_HEADER
}

/// Bytes of the packet an ICMPv6 destination unreachable quotes at most: its header, a few
/// extension headers and its transport header (RFC 4443 asks for as much as fits in 1280
/// bytes; what the host needs to find its socket is at the start).
pub const UNREACHABLE6_QUOTE: usize = 128;
/// Largest ICMPv6 error built.
pub const MAX_UNREACHABLE6: usize = IP_HEADER + icmp::HEADER_LEN + UNREACHABLE6_QUOTE;

/// Writes into `out` an ICMPv6 destination unreachable of `code` (ICMPv6's) about `ip`,
/// addressed to its sender from its destination, as IPv4's is. Returns its length.
pub(in crate::engine) fn unreachable6<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
    code: u8,
    out: &mut [u8],
) -> usize {
    let quoted = &ip.packet()[..ip.total_len().min(UNREACHABLE6_QUOTE)];
    let message_len = icmp::HEADER_LEN + quoted.len();
    let (src, dst) = (ip.dst_addr(), ip.src_addr());
    let mut header = Ipv6Packet::new_unchecked(&mut out[..]);
    header.set_version();
    header.set_payload_len(u16::try_from(message_len).expect("under 64 KiB"));
    header.set_next_header(PROTO_ICMPV6);
    header.set_hop_limit(64);
    header.set_src_addr(src);
    header.set_dst_addr(dst);
    let message = &mut out[IP_HEADER..IP_HEADER + message_len];
    message[..icmp::HEADER_LEN].fill(0);
    message[0] = icmpv6::DEST_UNREACHABLE;
    message[1] = code;
    message[icmp::HEADER_LEN..].copy_from_slice(quoted);
    icmpv6::fill_checksum(src, dst, message);
    IP_HEADER + message_len
}

impl Engine {
    /// [`Engine::unreachable`] of an IPv6 packet.
    pub(in crate::engine) fn unreachable6(
        &self,
        now: Timestamp,
        code: u8,
        pkt: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let ip = Ipv6Packet::new_checked(pkt).ok()?;
        let h = ip.headers().ok()?;
        // of a fragmented datagram only the first piece; never an error about an error
        if h.fragment.is_some_and(|f| !f.is_first()) {
            return None;
        }
        if h.proto == PROTO_ICMPV6 {
            let l4 = ip.from(h.transport_at);
            if l4.first().is_none_or(|&t| icmpv6::is_error(t)) {
                return None;
            }
        }
        let code = match code {
            NET_UNREACHABLE => icmpv6::NO_ROUTE,
            SOURCE_POLICY => icmpv6::SOURCE_POLICY,
            _ => icmpv6::ADMIN_PROHIBITED,
        };
        if !lock(&self.unreachable_budget).take(now) {
            return None;
        }
        self.unreachables.fetch_add(1, Ordering::Relaxed);
        Some(unreachable6(&ip, code, out))
    }
}
