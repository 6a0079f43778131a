//! Packets the engine writes itself, towards a LAN host: ICMP "network unreachable" when no
//! uplink can carry its traffic, and the TCP segments that end a connection whose uplink died.
//!
//! Ending a connection needs the host's receive sequence number exactly (RFC 5961: a reset
//! that is merely in the window is answered with a challenge ACK, not accepted). The fast
//! path carries most long connections without showing the engine their sequence numbers, so
//! the engine asks the host: a one-byte segment far from the host's window makes its stack
//! answer with a duplicate ACK (RFC 9293 3.10.7.4; Linux never rate-limits this answer for a
//! segment that carries data), whose acknowledgement number is the exact value; the reset is
//! then built from that answer in place.

use super::checksum::{checksum, pseudo_header};
use super::fragment::Fragment;
use super::wire::icmp::{self, IcmpMessage};
use super::wire::tcp::{self, TcpSegment};
use super::wire::{Ipv4Packet, PROTO_ICMP, PROTO_TCP, ipv4};
use super::{DropReason, Engine, Timestamp, lock, translate};

use std::sync::atomic::Ordering;

const IP_HEADER: usize = ipv4::HEADER_LEN;
const TCP_HEADER: usize = tcp::HEADER_LEN;
/// ICMP destination unreachable, code 0: network unreachable.
pub const NET_UNREACHABLE: u8 = 0;
/// ICMP destination unreachable, code 13: communication administratively prohibited.
pub const ADMIN_PROHIBITED: u8 = 13;
/// Not an ICMP code: the source is outside the LAN's networks, answered for IPv6 only
/// (ICMPv6 code 5, source address failed ingress policy), so that a host whose prefix
/// wanlb does not know (the LAN renumbered while it runs) falls back to IPv4 at once. An
/// IPv4 source outside the LAN is a spoofed one, and not answered.
pub const SOURCE_POLICY: u8 = 0xff;
/// Largest ICMPv4 error built: header, ICMP header, quoted header with options, 8 bytes.
const MAX_UNREACHABLE4: usize =
    IP_HEADER + icmp::HEADER_LEN + ipv4::MAX_HEADER_LEN + icmp::QUOTED_TRANSPORT_LEN;
/// Largest ICMP or ICMPv6 error built: what [`Engine::unreachable`] needs of `out`.
pub const MAX_UNREACHABLE: usize = if MAX_UNREACHABLE4 > super::v6::MAX_UNREACHABLE6 {
    MAX_UNREACHABLE4
} else {
    super::v6::MAX_UNREACHABLE6
};
/// Length of the segment that asks a host for its sequence numbers.
pub const SEQUENCE_PROBE: usize = IP_HEADER + TCP_HEADER + 1;

/// An IPv4 header without options at the start of `buf`, checksum included.
fn ip_header(buf: &mut [u8], total: usize, proto: u8, src: u32, dst: u32) {
    buf[..IP_HEADER].fill(0);
    let mut ip = Ipv4Packet::new_unchecked(buf);
    ip.set_version_and_header_len(IP_HEADER);
    ip.set_total_len(u16::try_from(total).expect("an answer fits in 64 KiB"));
    ip.set_whole(true); // don't fragment
    ip.set_ttl(64);
    ip.set_protocol(proto);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
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
    let l4 = &mut buf[IP_HEADER..total];
    l4[..TCP_HEADER].fill(0);
    let mut t = TcpSegment::new_unchecked(&mut l4[..]);
    t.set_src_port(src.1);
    t.set_dst_port(dst.1);
    t.set_seq_number(seq);
    t.set_ack_number(ack);
    t.set_header_len(TCP_HEADER);
    t.set_flags(flags);
    let l4_len = u16::try_from(TCP_HEADER + payload_len).expect("an answer fits in 64 KiB");
    let c = checksum(l4, pseudo_header(src.0, dst.0, PROTO_TCP, l4_len));
    TcpSegment::new_unchecked(l4).set_checksum(c);
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
        tcp::ACK,
        1,
    );
}

/// Turns the TCP segment `ip` (from a LAN host, checked) into the reset its sender will
/// accept, from its peer: sequence number = the segment's acknowledgement number (the host's
/// next expected byte), and an acknowledgement of everything the segment carried. Returns the
/// reset's length; the buffer is at least that long.
pub fn reset_in_place(ip: Ipv4Packet<&mut [u8]>) -> usize {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let segment = TcpSegment::new_unchecked(ip.payload());
    let (src_port, dst_port) = (segment.src_port(), segment.dst_port());
    let (seq, ack) = reset_numbers(&segment);
    tcp_segment(
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

/// The sequence and acknowledgement numbers of the reset that answers `segment` (either
/// family): the segment's acknowledgement number (the host's next expected byte), and an
/// acknowledgement of everything the segment carried.
pub(in crate::engine) fn reset_numbers(segment: &TcpSegment<&[u8]>) -> (u32, u32) {
    let (seq, ack, flags) = (segment.seq_number(), segment.ack_number(), segment.flags());
    let payload = u32::try_from(segment.payload_len()).expect("a packet is under 64 KiB");
    let consumed = payload + u32::from(flags & tcp::SYN != 0) + u32::from(flags & tcp::FIN != 0);
    // a SYN acknowledges nothing yet: its reset carries no sequence number the host checks
    let reset_seq = if flags & tcp::ACK != 0 { ack } else { 0 };
    (reset_seq, seq.wrapping_add(consumed))
}

/// Writes into `out` an ICMP destination unreachable of `code` about `ip` (checked),
/// addressed to its sender. The error comes from the unreachable destination: a gateway
/// address would arrive on the TUN device as a martian source. Returns its length. `out` must
/// hold [`MAX_UNREACHABLE`] bytes.
pub fn unreachable<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>, code: u8, out: &mut [u8]) -> usize {
    let quoted_len = (ip.header_len() + icmp::QUOTED_TRANSPORT_LEN).min(ip.total_len());
    let total = IP_HEADER + icmp::HEADER_LEN + quoted_len;
    ip_header(out, total, PROTO_ICMP, ip.dst_addr(), ip.src_addr());
    let mut message = IcmpMessage::new_unchecked(&mut out[IP_HEADER..total]);
    message.set_msg_type(icmp::DEST_UNREACHABLE);
    message.set_code(code);
    message.clear_rest_of_header();
    message
        .data_mut()
        .copy_from_slice(&ip.datagram()[..quoted_len]);
    message.fill_checksum();
    total
}

/// Whether a packet may be answered with an ICMP error: never an error about an ICMP error
/// (RFC 1122 3.2.2).
pub fn may_answer<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> bool {
    ip.protocol() != PROTO_ICMP || !super::translate::icmp(ip).is_error()
}

/// ICMP errors the engine sends: at most 100 a second after a burst of 50 (RFC 1812 4.3.2.8
/// asks routers to limit them).
#[derive(Debug)]
pub(super) struct RateLimit {
    pub(super) tokens: u64,
    pub(super) last_ms: u64,
}

impl RateLimit {
    pub(super) const BURST: u64 = 50;
    const EVERY_MS: u64 = 10;

    pub(super) fn take(&mut self, now: Timestamp) -> bool {
        let elapsed = now.as_millis().saturating_sub(self.last_ms);
        let earned = elapsed / Self::EVERY_MS;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(Self::BURST);
            self.last_ms += earned * Self::EVERY_MS;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Engine {
    /// Writes into `out` (at least [`MAX_UNREACHABLE`] bytes) the ICMP destination
    /// unreachable (ICMPv6 for an IPv6 packet) answering `pkt`, a packet `outbound` dropped
    /// for `reason`; `None` if the
    /// reason is not answered ([`DropReason::is_unreachable`]), the packet must not be, or
    /// the rate limit says no. Returns the answer's length.
    pub fn unreachable(
        &self,
        now: Timestamp,
        reason: DropReason,
        pkt: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let code = reason.unreachable_code()?;
        if ipv4::version_of(pkt) == Some(6) {
            return self.unreachable6(now, code, pkt, out);
        }
        if code == SOURCE_POLICY {
            return None;
        }
        let ip = Ipv4Packet::new_checked(pkt).ok()?;
        if ip.is_fragment() {
            // of a fragmented datagram, only the first piece is answered (RFC 1812 4.3.2.7)
            let piece = Fragment::of(&ip).ok().filter(Fragment::is_first)?;
            piece.check_first(&ip).ok()?;
        } else {
            translate::check_transport(&ip).ok()?;
        }
        if !may_answer(&ip) || !lock(&self.unreachable_budget).take(now) {
            return None;
        }
        self.unreachables.fetch_add(1, Ordering::Relaxed);
        Some(unreachable(&ip, code, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset_seq(buf: &[u8]) -> u32 {
        TcpSegment::new_checked(&buf[IP_HEADER..])
            .unwrap()
            .seq_number()
    }

    const HOST: u32 = u32::from_be_bytes([198, 18, 3, 10]);
    const SERVER: u32 = u32::from_be_bytes([198, 19, 0, 1]);

    fn valid_tcp(buf: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(buf).unwrap();
        let l4 = ip.payload();
        let len = u16::try_from(l4.len()).unwrap();
        ip.verify_checksum()
            && checksum(
                l4,
                pseudo_header(ip.src_addr(), ip.dst_addr(), PROTO_TCP, len),
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
        assert_eq!(p[32..34], [0x50, tcp::ACK]);
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
            tcp::ACK,
            12,
        );
        seg[32] = 8 << 4; // data offset 32: the 12 bytes are options
        let len = reset_in_place(Ipv4Packet::new_checked(&mut seg[..]).unwrap());
        assert_eq!(len, 40);
        let rst = &seg[..len];
        assert!(valid_tcp(rst));
        assert_eq!(rst[12..16], SERVER.to_be_bytes(), "from the peer");
        assert_eq!(rst[16..20], HOST.to_be_bytes());
        assert_eq!(rst[20..24], [0x01, 0xbb, 0x9c, 0x40]);
        assert_eq!(reset_seq(rst), 777, "exactly what the host expects next");
        assert_eq!(rst[28..32], 5000u32.to_be_bytes(), "nothing carried");
        assert_eq!(rst[33], tcp::RST | tcp::ACK);
    }

    #[test]
    fn a_syn_gets_a_reset_acknowledging_it() {
        let mut seg = vec![0u8; 40];
        tcp_segment(&mut seg, (HOST, 40000), (SERVER, 443), 9, 0, tcp::SYN, 0);
        reset_in_place(Ipv4Packet::new_checked(&mut seg[..]).unwrap());
        assert_eq!(reset_seq(&seg), 0);
        assert_eq!(seg[28..32], 10u32.to_be_bytes());
        assert!(valid_tcp(&seg));
    }

    #[test]
    fn unreachable_quotes_the_header_and_eight_bytes() {
        let mut udp = vec![0u8; 100];
        ip_header(&mut udp, 100, 17, HOST, SERVER);
        let ip = Ipv4Packet::new_checked(&udp[..]).unwrap();
        let mut out = [0u8; MAX_UNREACHABLE];
        let n = unreachable(&ip, NET_UNREACHABLE, &mut out);
        assert_eq!(n, 20 + 8 + 28);
        let err = &out[..n];
        assert_eq!(checksum(&err[..20], 0), 0);
        assert_eq!(checksum(&err[20..], 0), 0);
        assert_eq!(err[12..16], SERVER.to_be_bytes());
        assert_eq!(err[16..20], HOST.to_be_bytes());
        assert_eq!(err[20..22], [3, 0]);
        assert_eq!(err[28..56], udp[..28]);
        let parsed = Ipv4Packet::new_checked(err).unwrap();
        assert!(!may_answer(&parsed), "never an error about an error");
        assert!(may_answer(&ip));
    }
}
