//! The IPv6 packets the engine writes itself towards a LAN host: the segment that asks a
//! host for its sequence number, and the reset built from its answer in place (see
//! [`crate::engine::answer`] for why).

use crate::engine::checksum::{checksum, pseudo_header6};
use crate::engine::wire::ipv6::{self, Headers};
use crate::engine::wire::tcp::{self, TcpSegment};
use crate::engine::wire::{Ipv6Packet, PROTO_TCP};

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
    let (seq, ack, flags) = (segment.seq_number(), segment.ack_number(), segment.flags());
    let (src_port, dst_port) = (segment.src_port(), segment.dst_port());
    let payload = u32::try_from(segment.payload_len()).expect("an IPv6 packet is under 64 KiB");
    let consumed = payload + u32::from(flags & tcp::SYN != 0) + u32::from(flags & tcp::FIN != 0);
    let reset_seq = if flags & tcp::ACK != 0 { ack } else { 0 };
    tcp_segment6(
        ip.into_inner(),
        (dst, dst_port),
        (src, src_port),
        reset_seq,
        seq.wrapping_add(consumed),
        tcp::RST | tcp::ACK,
        0,
    );
    IP_HEADER + TCP_HEADER
}
