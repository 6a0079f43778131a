//! Validated views of the IPv4, TCP, UDP and ICMP headers wanlb rewrites.
//!
//! Parsing only locates fields: option bytes (IPv4 options, TCP options) are skipped by their
//! length fields and never interpreted, so a fixed-offset view is all the NAT needs. Every
//! index below is checked once by [`Ipv4::parse`]; the accessors then cannot go out of range.

use super::DropReason;
use super::checksum::{Delta, checksum};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const IPV4_MIN_HEADER: usize = 20;
pub const IP_CHECKSUM: usize = 10;
pub const IP_SRC: usize = 12;
pub const IP_DST: usize = 16;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Where the fields of one IPv4 packet are. `l4` is the offset of the transport header and
/// `end` the end of the IP datagram (link-layer padding beyond the total length is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub base: usize,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    pub l4: usize,
    pub end: usize,
}

pub fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

pub fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

pub fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

pub fn write_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

impl Ipv4 {
    /// Validates the IPv4 header at `base` and the minimum transport header for TCP, UDP and
    /// ICMP. Fragments are refused: a non-first fragment carries no ports.
    pub fn parse(buf: &[u8], base: usize) -> Result<Ipv4, DropReason> {
        let hdr = buf.get(base..).ok_or(DropReason::Malformed)?;
        if hdr.len() < IPV4_MIN_HEADER {
            return Err(DropReason::Malformed);
        }
        if hdr[0] >> 4 != 4 {
            return Err(DropReason::NotIpv4);
        }
        let ihl = usize::from(hdr[0] & 0x0f) * 4;
        let total = usize::from(read_u16(hdr, 2));
        if ihl < IPV4_MIN_HEADER || total < ihl || total > hdr.len() {
            return Err(DropReason::Malformed);
        }
        let frag = read_u16(hdr, 6);
        if frag & 0x3fff != 0 {
            return Err(DropReason::Fragment);
        }
        let proto = hdr[9];
        let l4_len = total - ihl;
        let min_l4 = match proto {
            PROTO_TCP => {
                if l4_len < 20 || usize::from(hdr[ihl + 12] >> 4) * 4 < 20 {
                    return Err(DropReason::Malformed);
                }
                20
            }
            PROTO_UDP | PROTO_ICMP => 8,
            _ => return Err(DropReason::UnsupportedProtocol),
        };
        if l4_len < min_l4 {
            return Err(DropReason::Malformed);
        }
        Ok(Ipv4 {
            base,
            proto,
            src: read_u32(hdr, IP_SRC),
            dst: read_u32(hdr, IP_DST),
            l4: base + ihl,
            end: base + total,
        })
    }

    /// Offset of the transport checksum field.
    pub fn l4_checksum_at(&self) -> usize {
        match self.proto {
            PROTO_TCP => self.l4 + 16,
            PROTO_UDP => self.l4 + 6,
            _ => self.l4 + 2,
        }
    }

    /// Source and destination port (TCP, UDP), or the echo identifier as the source "port"
    /// and 0 as the destination (ICMP).
    pub fn ports(&self, buf: &[u8]) -> (u16, u16) {
        match self.proto {
            PROTO_ICMP => (read_u16(buf, self.l4 + 4), 0),
            _ => (read_u16(buf, self.l4), read_u16(buf, self.l4 + 2)),
        }
    }

    pub fn tcp_flags(&self, buf: &[u8]) -> u8 {
        if self.proto == PROTO_TCP {
            buf[self.l4 + 13]
        } else {
            0
        }
    }

    pub fn icmp_type(&self, buf: &[u8]) -> u8 {
        buf[self.l4]
    }

    /// TCP sequence and acknowledgement numbers (only for TCP).
    pub fn tcp_seq_ack(&self, buf: &[u8]) -> (u32, u32) {
        (read_u32(buf, self.l4 + 4), read_u32(buf, self.l4 + 8))
    }

    /// Bytes of TCP payload (only for TCP).
    pub fn tcp_payload_len(&self, buf: &[u8]) -> usize {
        let header = usize::from(buf[self.l4 + 12] >> 4) * 4;
        (self.end - self.l4).saturating_sub(header)
    }
}

/// How the kernel handed over the transport checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Checksum {
    /// The field holds the complemented checksum of the segment (or 0 for a UDP datagram
    /// sent without one).
    Complete,
    /// CHECKSUM_PARTIAL: the field holds the uncomplemented pseudo-header sum; the device adds
    /// the segment bytes later. Ports are not in the pseudo header, so only addresses count.
    Partial,
}

/// Which end of a packet a rewrite touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

/// Rewrites one end (address and port, or ICMP echo identifier) of a validated packet and
/// updates the IPv4 header checksum and the transport checksum incrementally.
pub fn rewrite(buf: &mut [u8], ip: &Ipv4, end: End, addr: u32, port: u16, csum: L4Checksum) {
    let (addr_at, old_addr) = match end {
        End::Source => (ip.base + IP_SRC, ip.src),
        End::Destination => (ip.base + IP_DST, ip.dst),
    };
    let port_at = match (ip.proto, end) {
        (PROTO_ICMP, _) => ip.l4 + 4,
        (_, End::Source) => ip.l4,
        (_, End::Destination) => ip.l4 + 2,
    };
    let old_port = read_u16(buf, port_at);
    let addr_delta = Delta::new().addr(old_addr, addr);
    let port_delta = Delta::new().word(old_port, port);

    write_u32(buf, addr_at, addr);
    write_u16(buf, port_at, port);
    let ip_check = ip.base + IP_CHECKSUM;
    write_u16(
        buf,
        ip_check,
        addr_delta.apply_complete(read_u16(buf, ip_check)),
    );

    let at = ip.l4_checksum_at();
    let old = read_u16(buf, at);
    let pseudo = if ip.proto == PROTO_ICMP {
        Delta::new()
    } else {
        addr_delta
    };
    let new = match csum {
        L4Checksum::Partial => pseudo.apply_partial(old),
        L4Checksum::Complete if ip.proto == PROTO_UDP && old == 0 => 0,
        L4Checksum::Complete => {
            let full = pseudo.plus(port_delta).apply_complete(old);
            if ip.proto == PROTO_UDP && full == 0 {
                0xffff
            } else {
                full
            }
        }
    };
    write_u16(buf, at, new);
}

/// Recomputes the IPv4 header checksum from scratch.
pub fn refresh_ip_checksum(buf: &mut [u8], base: usize) {
    let ihl = usize::from(buf[base] & 0x0f) * 4;
    write_u16(buf, base + IP_CHECKSUM, 0);
    let c = checksum(&buf[base..base + ihl], 0);
    write_u16(buf, base + IP_CHECKSUM, c);
}
