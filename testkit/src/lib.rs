//! IPv4 packets for wanlb's tests, benches and tools: TCP, UDP and ICMP, built field by field,
//! with every checksum computed from scratch here (never with wanlb's incremental code, which
//! these packets check).
//!
//! ```
//! use wanlb_testkit::{Ipv4Packet, TCP_SYN};
//! use std::net::Ipv4Addr;
//!
//! let (host, server) = (Ipv4Addr::new(198, 18, 3, 10), Ipv4Addr::new(198, 19, 0, 1));
//! let query = Ipv4Packet::udp(host, server, 5000, 53, b"q").build();
//! let syn = Ipv4Packet::tcp(host, server, 40000, 443, b"").flags(TCP_SYN).seq(100).build();
//! let ping = Ipv4Packet::icmp_echo_request(host, server, 7, 1, b"abcd").ttl(1).build();
//! assert_eq!((query.len(), syn.len(), ping.len()), (29, 40, 32));
//! ```
//!
//! Unless told otherwise a packet has no IP options, TOS 0, identification 1, "don't
//! fragment" set and TTL 64; a TCP segment is an ACK with sequence number 1, acknowledgement
//! number 0 and window 65535. Addresses are anything that converts into an [`Ipv4Addr`]: an
//! `Ipv4Addr`, a `u32` or a `[u8; 4]`.

// Packet code: no length or field is ever cut short by a cast.
#![warn(clippy::cast_possible_truncation)]

pub mod checksum;

use std::net::Ipv4Addr;

use checksum::{checksum, fold, pseudo_header};

/// wanlb's flags for the example network (scripts/testbed.sh), as the README documents them.
pub const EXAMPLE_FLAGS: [&str; 8] = [
    "--lan",
    "eth0",
    "--uplink",
    "isp1,dev=eth1,gw=198.18.1.254,weight=2",
    "--uplink",
    "isp2,dev=eth2,gw=198.18.2.254,weight=1",
    "--pin",
    "198.19.200.91/32=isp2",
];

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// Bytes of an IPv4 header without options.
pub const IPV4_HEADER: usize = 20;
/// Bytes of a TCP header without options.
pub const TCP_HEADER: usize = 20;
/// Bytes of a UDP header.
pub const UDP_HEADER: usize = 8;
/// Bytes of an ICMP header (type, code, checksum and the four bytes that depend on the type).
pub const ICMP_HEADER: usize = 8;

/// An IPv4 packet being described; [`build`](Ipv4Packet::build) makes its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "build() makes the packet's bytes"]
pub struct Ipv4Packet {
    tos: u8,
    id: u16,
    dont_fragment: bool,
    more_fragments: bool,
    fragment_offset: u16,
    ttl: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    options: Vec<u8>,
    total_len: Option<u16>,
    ip_checksum: Option<u16>,
    transport: Transport,
    l4_checksum: Option<u16>,
    payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
        rest: [u8; 4],
    },
    /// Another protocol: the payload is everything after the IP header.
    Other {
        proto: u8,
    },
}

impl Ipv4Packet {
    fn new(
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        transport: Transport,
        payload: &[u8],
    ) -> Ipv4Packet {
        Ipv4Packet {
            tos: 0,
            id: 1,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            src: src.into(),
            dst: dst.into(),
            options: Vec::new(),
            total_len: None,
            ip_checksum: None,
            transport,
            l4_checksum: None,
            payload: payload.to_vec(),
        }
    }

    /// A UDP datagram carrying `payload`.
    pub fn udp(
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Ipv4Packet {
        Ipv4Packet::new(src, dst, Transport::Udp { sport, dport }, payload)
    }

    /// A TCP segment carrying `payload`: an ACK, sequence number 1, acknowledgement number 0,
    /// window 65535, no TCP options (change them with [`flags`](Self::flags),
    /// [`seq`](Self::seq), [`ack`](Self::ack) and [`window`](Self::window)).
    pub fn tcp(
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Ipv4Packet {
        let tcp = Transport::Tcp {
            sport,
            dport,
            seq: 1,
            ack: 0,
            flags: TCP_ACK,
            window: 0xffff,
        };
        Ipv4Packet::new(src, dst, tcp, payload)
    }

    /// An ICMP echo request (ping) with identifier `id` and sequence number `seq`.
    pub fn icmp_echo_request(
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        id: u16,
        seq: u16,
        payload: &[u8],
    ) -> Ipv4Packet {
        let rest = echo_rest(id, seq);
        Ipv4Packet::icmp(src, dst, ICMP_ECHO_REQUEST, 0, rest, payload)
    }

    /// An ICMP echo reply with identifier `id` and sequence number `seq`.
    pub fn icmp_echo_reply(
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        id: u16,
        seq: u16,
        payload: &[u8],
    ) -> Ipv4Packet {
        let rest = echo_rest(id, seq);
        Ipv4Packet::icmp(src, dst, ICMP_ECHO_REPLY, 0, rest, payload)
    }

    /// Any ICMP message: its type, code, the four header bytes after the checksum (for an
    /// error: unused, or the next-hop MTU) and what follows (for an error: the quoted
    /// packet's header and its first 8 bytes).
    pub fn icmp(
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        kind: u8,
        code: u8,
        rest: [u8; 4],
        payload: &[u8],
    ) -> Ipv4Packet {
        Ipv4Packet::new(src, dst, Transport::Icmp { kind, code, rest }, payload)
    }

    /// A packet of protocol `proto` whose bytes after the IP header are `l4`, as they are
    /// (no checksum is computed in them): GRE, a non-first fragment, a malformed header.
    pub fn raw(
        proto: u8,
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        l4: &[u8],
    ) -> Ipv4Packet {
        Ipv4Packet::new(src, dst, Transport::Other { proto }, l4)
    }

    /// One packet of a flow of protocol `proto` between `sport` and `dport`: a TCP segment
    /// (as [`tcp`](Self::tcp) makes it), a UDP datagram, or an ICMP echo request whose
    /// identifier is `sport` (sequence number 1; `dport` is unused). For tests that go over
    /// all three protocols alike.
    ///
    /// # Panics
    ///
    /// For another protocol.
    pub fn l4(
        proto: u8,
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Ipv4Packet {
        match proto {
            PROTO_TCP => Ipv4Packet::tcp(src, dst, sport, dport, payload),
            PROTO_UDP => Ipv4Packet::udp(src, dst, sport, dport, payload),
            PROTO_ICMP => Ipv4Packet::icmp_echo_request(src, dst, sport, 1, payload),
            _ => panic!("Ipv4Packet::l4: protocol {proto} is not TCP, UDP or ICMP"),
        }
    }

    // The IP header.

    /// The type-of-service byte (DSCP and ECN).
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    /// The identification field.
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// The "don't fragment" flag (set unless told otherwise).
    pub fn dont_fragment(mut self, df: bool) -> Self {
        self.dont_fragment = df;
        self
    }

    /// The "more fragments" flag.
    pub fn more_fragments(mut self, mf: bool) -> Self {
        self.more_fragments = mf;
        self
    }

    /// The fragment offset, in units of 8 bytes (at most 8191).
    pub fn fragment_offset(mut self, offset: u16) -> Self {
        assert!(offset < 1 << 13, "fragment offset {offset} is over 13 bits");
        self.fragment_offset = offset;
        self
    }

    /// IP options, a multiple of 4 bytes and at most 40 (pad them with end-of-options, 0).
    pub fn options(mut self, options: &[u8]) -> Self {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "IP options must be a multiple of 4 bytes and at most 40, not {}",
            options.len()
        );
        self.options = options.to_vec();
        self
    }

    /// Puts `len` in the total-length field instead of the packet's length (a packet cut
    /// short, or padded).
    pub fn total_len(mut self, len: u16) -> Self {
        self.total_len = Some(len);
        self
    }

    /// Puts `check` in the header-checksum field instead of the right checksum.
    pub fn ip_checksum(mut self, check: u16) -> Self {
        self.ip_checksum = Some(check);
        self
    }

    // TCP.

    /// The TCP flags (`TCP_SYN | TCP_ACK`, ...).
    pub fn flags(mut self, new: u8) -> Self {
        match &mut self.transport {
            Transport::Tcp { flags, .. } => *flags = new,
            other => panic!("flags() on a {}", other.name()),
        }
        self
    }

    /// The TCP sequence number.
    pub fn seq(mut self, new: u32) -> Self {
        match &mut self.transport {
            Transport::Tcp { seq, .. } => *seq = new,
            other => panic!("seq() on a {}", other.name()),
        }
        self
    }

    /// The TCP acknowledgement number.
    pub fn ack(mut self, new: u32) -> Self {
        match &mut self.transport {
            Transport::Tcp { ack, .. } => *ack = new,
            other => panic!("ack() on a {}", other.name()),
        }
        self
    }

    /// The TCP window.
    pub fn window(mut self, new: u16) -> Self {
        match &mut self.transport {
            Transport::Tcp { window, .. } => *window = new,
            other => panic!("window() on a {}", other.name()),
        }
        self
    }

    // The transport checksum.

    /// A UDP datagram without a checksum (the field 0, which UDP over IPv4 allows).
    pub fn no_udp_checksum(self) -> Self {
        assert!(
            matches!(self.transport, Transport::Udp { .. }),
            "no_udp_checksum() on a {}",
            self.transport.name()
        );
        self.l4_checksum(0)
    }

    /// Puts `check` in the TCP, UDP or ICMP checksum field instead of the right checksum.
    pub fn l4_checksum(mut self, check: u16) -> Self {
        self.l4_checksum = Some(check);
        self
    }

    // The bytes.

    /// The IP protocol number.
    pub fn proto(&self) -> u8 {
        match self.transport {
            Transport::Tcp { .. } => PROTO_TCP,
            Transport::Udp { .. } => PROTO_UDP,
            Transport::Icmp { .. } => PROTO_ICMP,
            Transport::Other { proto } => proto,
        }
    }

    /// The whole packet, checksums included.
    ///
    /// # Panics
    ///
    /// When it would be longer than 65,535 bytes.
    pub fn build(&self) -> Vec<u8> {
        let l4 = self.build_l4();
        let ihl = IPV4_HEADER + self.options.len();
        let len = u16::try_from(ihl + l4.len())
            .unwrap_or_else(|_| panic!("{} bytes: too long for IPv4", ihl + l4.len()));
        let ihl_words = u8::try_from(ihl / 4).expect("at most 15 words");
        let frag = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | self.fragment_offset;
        let mut p = Vec::with_capacity(usize::from(len));
        p.extend_from_slice(&[0x40 | ihl_words, self.tos]);
        p.extend_from_slice(&self.total_len.unwrap_or(len).to_be_bytes());
        p.extend_from_slice(&self.id.to_be_bytes());
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[self.ttl, self.proto(), 0, 0]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(&self.options);
        let check = self.ip_checksum.unwrap_or_else(|| checksum(&p, 0));
        p[10..12].copy_from_slice(&check.to_be_bytes());
        p.extend_from_slice(&l4);
        p
    }

    /// The bytes after the IP header alone (the transport header and the payload), checksum
    /// included: what a raw socket of the protocol sends, the kernel adding the IP header.
    pub fn build_l4(&self) -> Vec<u8> {
        let payload = &self.payload;
        let mut l4 = Vec::with_capacity(TCP_HEADER + payload.len());
        let checksum_at = match self.transport {
            Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
            } => {
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&seq.to_be_bytes());
                l4.extend_from_slice(&ack.to_be_bytes());
                // data offset 5 words, the flags, the window, checksum and urgent pointer 0
                l4.extend_from_slice(&[0x50, flags]);
                l4.extend_from_slice(&window.to_be_bytes());
                l4.extend_from_slice(&[0, 0, 0, 0]);
                Some(16)
            }
            Transport::Udp { sport, dport } => {
                let len = u16::try_from(UDP_HEADER + payload.len()).unwrap_or_else(|_| {
                    panic!("{} payload bytes: too long for UDP", payload.len())
                });
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&len.to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
                Some(6)
            }
            Transport::Icmp { kind, code, rest } => {
                l4.extend_from_slice(&[kind, code, 0, 0]);
                l4.extend_from_slice(&rest);
                Some(2)
            }
            Transport::Other { .. } => None,
        };
        l4.extend_from_slice(payload);
        if let Some(at) = checksum_at {
            let check = self
                .l4_checksum
                .unwrap_or_else(|| l4_checksum(self.proto(), self.src, self.dst, &l4));
            l4[at..at + 2].copy_from_slice(&check.to_be_bytes());
        }
        l4
    }
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Tcp { .. } => "TCP segment",
            Transport::Udp { .. } => "UDP datagram",
            Transport::Icmp { .. } => "ICMP message",
            Transport::Other { .. } => "packet of another protocol",
        }
    }
}

fn echo_rest(id: u16, seq: u16) -> [u8; 4] {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    [a, b, c, d]
}

/// The checksum of TCP, UDP or ICMP bytes `l4` (whose checksum field reads as zero). A UDP
/// checksum that comes out as 0 is sent as 0xffff, 0 meaning "none".
fn l4_checksum(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> u16 {
    let pseudo = if proto == PROTO_ICMP {
        0
    } else {
        let len = u16::try_from(l4.len()).expect("checked by the caller");
        pseudo_header(src.into(), dst.into(), proto, len)
    };
    match checksum(l4, pseudo) {
        0 if proto == PROTO_UDP => 0xffff,
        c => c,
    }
}

fn read_u16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn read_addr(p: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3])
}

/// The IP header's length, from its IHL field.
fn header_len(p: &[u8]) -> usize {
    assert!(
        p.len() >= IPV4_HEADER && p[0] >> 4 == 4,
        "not an IPv4 packet: {:02x?}",
        &p[..p.len().min(IPV4_HEADER)]
    );
    let ihl = usize::from(p[0] & 0xf) * 4;
    assert!(
        (IPV4_HEADER..=p.len()).contains(&ihl),
        "IHL {ihl} does not fit a {}-byte packet",
        p.len()
    );
    ihl
}

/// Recomputes the IP header checksum of `p` (after a change to its header).
pub fn fix_ip_checksum(p: &mut [u8]) {
    let ihl = header_len(p);
    p[10..12].copy_from_slice(&[0, 0]);
    let check = checksum(&p[..ihl], 0);
    p[10..12].copy_from_slice(&check.to_be_bytes());
}

/// Recomputes every checksum of a TCP, UDP or ICMP packet from scratch (after a change to
/// its bytes): the IP header's, and the transport's over the bytes up to the total length
/// (or to the end of `p`, when the total length claims more). A UDP checksum of 0, "none",
/// stays 0; a non-first fragment has only its IP header checksum.
pub fn fix_checksums(p: &mut [u8]) {
    fix_ip_checksum(p);
    let ihl = header_len(p);
    let total = usize::from(read_u16(p, 2));
    let end = if (ihl..=p.len()).contains(&total) {
        total
    } else {
        p.len()
    };
    let (proto, src, dst) = (p[9], read_addr(p, 12), read_addr(p, 16));
    if read_u16(p, 6) & 0x1fff != 0 {
        return;
    }
    let at = match proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        PROTO_ICMP => 2,
        _ => return,
    };
    let l4 = &mut p[ihl..end];
    if l4.len() < at + 2 || (proto == PROTO_UDP && l4[6..8] == [0, 0]) {
        return;
    }
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    let check = l4_checksum(proto, src, dst, l4);
    l4[at..at + 2].copy_from_slice(&check.to_be_bytes());
}

/// The answer to `p`: addresses swapped, and ports swapped (TCP, UDP) or an echo request
/// turned into its reply (ICMP); everything else as in `p`, checksums recomputed.
pub fn reply_to(p: &[u8]) -> Vec<u8> {
    let ihl = header_len(p);
    let mut r = p.to_vec();
    r[12..16].copy_from_slice(&p[16..20]);
    r[16..20].copy_from_slice(&p[12..16]);
    match p[9] {
        PROTO_TCP | PROTO_UDP => {
            r[ihl..ihl + 2].copy_from_slice(&p[ihl + 2..ihl + 4]);
            r[ihl + 2..ihl + 4].copy_from_slice(&p[ihl..ihl + 2]);
        }
        PROTO_ICMP if p[ihl] == ICMP_ECHO_REQUEST => r[ihl] = ICMP_ECHO_REPLY,
        PROTO_ICMP if p[ihl] == ICMP_ECHO_REPLY => r[ihl] = ICMP_ECHO_REQUEST,
        _ => {}
    }
    fix_checksums(&mut r);
    r
}

/// Takes one off the TTL of `p` and updates the header checksum incrementally (RFC 1624
/// eqn. 3), as a router forwarding it does: a wrong checksum stays as wrong as it was.
///
/// # Panics
///
/// When the TTL is 0.
pub fn decrement_ttl(p: &mut [u8]) {
    let old = read_u16(p, 8);
    p[8] = p[8]
        .checked_sub(1)
        .expect("a packet with TTL 0 is never forwarded");
    let new = read_u16(p, 8);
    let check = read_u16(p, 10);
    let check = !fold(u64::from(!check) + u64::from(!old) + u64::from(new));
    p[10..12].copy_from_slice(&check.to_be_bytes());
}

#[cfg(test)]
mod tests;
