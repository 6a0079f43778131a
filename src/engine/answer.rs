//! Packets the engine writes itself, towards a LAN host: ICMP "network unreachable" when no
//! line can carry its traffic, and the TCP segments that end a connection whose line died.
//!
//! Ending a connection needs the host's receive sequence number exactly (RFC 5961: a reset
//! that is merely in the window is answered with a challenge ACK, not accepted). The fast
//! path carries most long connections without showing the engine their sequence numbers, so
//! the engine asks the host: a one-byte segment far from the host's window makes its stack
//! answer with a duplicate ACK (RFC 9293 3.10.7.4; Linux never rate-limits this answer for a
//! segment that carries data), whose acknowledgement number is the exact value; the reset is
//! then built from that answer in place.

use super::checksum::{checksum, pseudo_header};
use super::packet::{
    ICMP_DEST_UNREACHABLE, IP_DST, IP_SRC, Ipv4, PROTO_ICMP, PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST,
    TCP_SYN, refresh_ip_checksum, write_u16, write_u32,
};

const IP_HEADER: usize = 20;
const TCP_HEADER: usize = 20;
/// ICMP destination unreachable, code 0: network unreachable.
pub const NET_UNREACHABLE: u8 = 0;
/// ICMP destination unreachable, code 13: communication administratively prohibited.
pub const ADMIN_PROHIBITED: u8 = 13;
/// Bytes of the offending packet an ICMP error quotes beyond its IP header (RFC 792).
const QUOTED_L4: usize = 8;
/// Largest ICMP error built: header, ICMP header, quoted header with options, 8 bytes.
pub const MAX_UNREACHABLE: usize = IP_HEADER + 8 + 60 + QUOTED_L4;
/// Length of the segment that asks a host for its sequence numbers.
pub const SEQUENCE_PROBE: usize = IP_HEADER + TCP_HEADER + 1;

/// An IPv4 header without options, checksum included.
fn ip_header(buf: &mut [u8], total: usize, proto: u8, src: u32, dst: u32) {
    buf[..IP_HEADER].fill(0);
    buf[0] = 0x45;
    write_u16(
        buf,
        2,
        u16::try_from(total).expect("an answer fits in 64 KiB"),
    );
    buf[6] = 0x40; // don't fragment
    buf[8] = 64;
    buf[9] = proto;
    write_u32(buf, IP_SRC, src);
    write_u32(buf, IP_DST, dst);
    refresh_ip_checksum(buf, 0);
}

/// A TCP header without options after an IP header, checksum over `payload_len` bytes after
/// it included.
#[allow(clippy::too_many_arguments)]
fn tcp_segment(
    buf: &mut [u8],
    src: (u32, u16),
    dst: (u32, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload_len: usize,
) {
    let total = IP_HEADER + TCP_HEADER + payload_len;
    ip_header(buf, total, PROTO_TCP, src.0, dst.0);
    let t = &mut buf[IP_HEADER..total];
    t[..TCP_HEADER].fill(0);
    write_u16(t, 0, src.1);
    write_u16(t, 2, dst.1);
    write_u32(t, 4, seq);
    write_u32(t, 8, ack);
    t[12] = 0x50; // data offset: 5 words, the 20 bytes of TCP_HEADER
    t[13] = flags;
    let l4_len = u16::try_from(TCP_HEADER + payload_len).expect("an answer fits in 64 KiB");
    let pseudo = pseudo_header(src.0, dst.0, PROTO_TCP, l4_len);
    let c = checksum(t, pseudo);
    write_u16(t, 16, c);
}

/// Writes into `buf` a segment from `remote` to the LAN endpoint `host` that the host's stack
/// cannot accept and answers with a duplicate ACK: one byte, half the sequence space away
/// from `peer_seq` (the last sequence number seen from the remote end).
pub fn sequence_probe(
    buf: &mut [u8; SEQUENCE_PROBE],
    remote: (u32, u16),
    host: (u32, u16),
    peer_seq: u32,
) {
    buf[IP_HEADER + TCP_HEADER] = 0;
    tcp_segment(
        buf,
        remote,
        host,
        peer_seq.wrapping_add(1 << 31),
        0,
        TCP_ACK,
        1,
    );
}

/// Turns the TCP segment in `buf` (from a LAN host, validated as `ip`) into the reset its
/// sender will accept, from its peer: sequence number = the segment's acknowledgement number
/// (the host's next expected byte), and an acknowledgement of everything the segment
/// carried. Returns the reset's length; `buf` is at least that long.
pub fn reset_in_place(buf: &mut [u8], ip: &Ipv4) -> usize {
    let (seq, ack) = ip.tcp_seq_ack(buf);
    let flags = ip.tcp_flags(buf);
    let payload = u32::try_from(ip.tcp_payload_len(buf)).expect("an IPv4 packet is under 64 KiB");
    let consumed = payload + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
    let (src_port, dst_port) = ip.ports(buf);
    // a SYN acknowledges nothing yet: its reset carries no sequence number the host checks
    let reset_seq = if flags & TCP_ACK != 0 { ack } else { 0 };
    tcp_segment(
        buf,
        (ip.dst, dst_port),
        (ip.src, src_port),
        reset_seq,
        seq.wrapping_add(consumed),
        TCP_RST | TCP_ACK,
        0,
    );
    IP_HEADER + TCP_HEADER
}

/// Writes into `out` an ICMP destination unreachable of `code` about the packet in `buf`
/// (validated as `ip`), addressed to its sender. The error comes from the unreachable destination: a
/// gateway address would arrive on the TUN device as a martian source. Returns its length.
/// `out` must hold [`MAX_UNREACHABLE`] bytes.
pub fn unreachable(buf: &[u8], ip: &Ipv4, code: u8, out: &mut [u8]) -> usize {
    let quoted_len = (ip.l4 - ip.base + QUOTED_L4).min(ip.end - ip.base);
    let total = IP_HEADER + 8 + quoted_len;
    ip_header(out, total, PROTO_ICMP, ip.dst, ip.src);
    let icmp = &mut out[IP_HEADER..total];
    icmp[..8].fill(0);
    icmp[0] = ICMP_DEST_UNREACHABLE;
    icmp[1] = code;
    icmp[8..].copy_from_slice(&buf[ip.base..ip.base + quoted_len]);
    let c = checksum(icmp, 0);
    write_u16(icmp, 2, c);
    total
}

/// Whether a packet may be answered with an ICMP error: never an error about an ICMP error
/// (RFC 1122 3.2.2).
pub fn may_answer(buf: &[u8], ip: &Ipv4) -> bool {
    ip.proto != PROTO_ICMP || !super::icmp::is_error(ip.icmp_type(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checksum::{checksum, pseudo_header};
    use crate::engine::packet::read_u32;

    fn reset_seq(buf: &[u8]) -> u32 {
        read_u32(buf, IP_HEADER + 4)
    }

    const HOST: u32 = u32::from_be_bytes([198, 18, 3, 10]);
    const SERVER: u32 = u32::from_be_bytes([198, 19, 0, 1]);

    fn valid_tcp(buf: &[u8]) -> bool {
        let ip = Ipv4::parse(buf, 0).unwrap();
        let l4 = &buf[ip.l4..ip.end];
        checksum(&buf[..20], 0) == 0
            && checksum(
                l4,
                pseudo_header(ip.src, ip.dst, PROTO_TCP, u16::try_from(l4.len()).unwrap()),
            ) == 0
    }

    #[test]
    fn the_probe_is_one_byte_half_the_sequence_space_away() {
        let mut p = [0u8; SEQUENCE_PROBE];
        sequence_probe(&mut p, (SERVER, 443), (HOST, 40000), 1000);
        #[rustfmt::skip]
        let expected_head = [
            0x45, 0, 0, 41, 0, 0, 0x40, 0, 64, 6, // IPv4, 41 bytes, DF, TTL 64, TCP
        ];
        assert_eq!(p[..10], expected_head);
        assert_eq!(p[12..16], SERVER.to_be_bytes());
        assert_eq!(p[16..20], HOST.to_be_bytes());
        assert_eq!(p[20..24], [0x01, 0xbb, 0x9c, 0x40]);
        assert_eq!(p[24..28], (1000u32 + (1 << 31)).to_be_bytes());
        assert_eq!(p[32..34], [0x50, TCP_ACK]);
        assert!(valid_tcp(&p));
    }

    #[test]
    fn a_duplicate_ack_becomes_the_reset_its_sender_accepts() {
        // the host's answer: seq 5000 (its next byte to send), ack 777 (next byte expected),
        // with 12 bytes of timestamp options
        let mut seg = vec![0u8; 52];
        tcp_segment(
            &mut seg,
            (HOST, 40000),
            (SERVER, 443),
            5000,
            777,
            TCP_ACK,
            12,
        );
        seg[32] = 8 << 4; // data offset 32: the 12 bytes are options
        let ip = Ipv4::parse(&seg, 0).unwrap();
        let len = reset_in_place(&mut seg, &ip);
        assert_eq!(len, 40);
        let rst = &seg[..len];
        assert!(valid_tcp(rst));
        assert_eq!(rst[12..16], SERVER.to_be_bytes(), "from the peer");
        assert_eq!(rst[16..20], HOST.to_be_bytes());
        assert_eq!(rst[20..24], [0x01, 0xbb, 0x9c, 0x40]);
        assert_eq!(reset_seq(rst), 777, "exactly what the host expects next");
        assert_eq!(rst[28..32], 5000u32.to_be_bytes(), "nothing carried");
        assert_eq!(rst[33], TCP_RST | TCP_ACK);
    }

    #[test]
    fn a_syn_gets_a_reset_acknowledging_it() {
        let mut seg = vec![0u8; 40];
        tcp_segment(&mut seg, (HOST, 40000), (SERVER, 443), 9, 0, TCP_SYN, 0);
        let ip = Ipv4::parse(&seg, 0).unwrap();
        reset_in_place(&mut seg, &ip);
        assert_eq!(reset_seq(&seg), 0);
        assert_eq!(seg[28..32], 10u32.to_be_bytes());
        assert!(valid_tcp(&seg));
    }

    #[test]
    fn unreachable_quotes_the_header_and_eight_bytes() {
        let mut udp = vec![0u8; 100];
        ip_header(&mut udp, 100, 17, HOST, SERVER);
        let ip = Ipv4::parse(&udp, 0).unwrap();
        let mut out = [0u8; MAX_UNREACHABLE];
        let n = unreachable(&udp, &ip, NET_UNREACHABLE, &mut out);
        assert_eq!(n, 20 + 8 + 28);
        let err = &out[..n];
        assert_eq!(checksum(&err[..20], 0), 0);
        assert_eq!(checksum(&err[20..], 0), 0);
        assert_eq!(err[12..16], SERVER.to_be_bytes());
        assert_eq!(err[16..20], HOST.to_be_bytes());
        assert_eq!(err[20..22], [3, 0]);
        assert_eq!(err[28..56], udp[..28]);
        let parsed = Ipv4::parse(err, 0).unwrap();
        assert!(!may_answer(err, &parsed), "never an error about an error");
        assert!(may_answer(&udp, &ip));
    }
}
