//! ICMP errors: the embedded header of the packet that caused them names the flow, and
//! translating one rewrites that header, its checksums, and the outer packet (RFC 5508).

use super::DropReason;
use super::checksum::{Delta, checksum};
use super::packet::{
    ICMP_DEST_UNREACHABLE, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, Ipv4,
    PROTO_ICMP, PROTO_TCP, PROTO_UDP, read_u16, read_u32, write_u16,
};

/// ICMP header length before the embedded packet.
const ICMP_HEADER: usize = 8;

/// Whether the ICMP message of `buf` (validated as `outer`) has a right checksum. A message
/// with a partial checksum (made on this host, to be completed by the device) has none to
/// check yet.
pub fn checksum_ok(buf: &[u8], outer: &Ipv4, csum: super::L4Checksum) -> bool {
    csum == super::L4Checksum::Partial || checksum(&buf[outer.l4..outer.end], 0) == 0
}

pub fn is_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    )
}

/// The packet quoted in an ICMP error: its IPv4 header and the first 8 bytes of its transport
/// header, which hold both ports (TCP, UDP) or the echo identifier (ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedded {
    base: usize,
    l4: usize,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Embedded {
    pub fn parse(buf: &[u8], outer: &Ipv4) -> Result<Embedded, DropReason> {
        let base = outer.l4 + ICMP_HEADER;
        let quoted = buf.get(base..outer.end).ok_or(DropReason::Malformed)?;
        if quoted.len() < 20 || quoted[0] >> 4 != 4 {
            return Err(DropReason::Malformed);
        }
        let ihl = usize::from(quoted[0] & 0x0f) * 4;
        if ihl < 20 || quoted.len() < ihl + 8 {
            return Err(DropReason::Malformed);
        }
        if read_u16(quoted, 6) & 0x1fff != 0 {
            // a non-first fragment quotes no ports
            return Err(DropReason::Fragment);
        }
        let proto = quoted[9];
        let l4 = &quoted[ihl..];
        let (src_port, dst_port) = match proto {
            PROTO_TCP | PROTO_UDP => (read_u16(l4, 0), read_u16(l4, 2)),
            PROTO_ICMP if l4[0] == ICMP_ECHO_REQUEST => (read_u16(l4, 4), 0),
            _ => return Err(DropReason::UnsupportedIcmp),
        };
        Ok(Embedded {
            base,
            l4: base + ihl,
            proto,
            src: read_u32(quoted, 12),
            dst: read_u32(quoted, 16),
            src_port,
            dst_port,
        })
    }
}

/// Which way an error is being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorDirection {
    /// From an uplink to the LAN: the quoted packet left through wanlb, so its source becomes
    /// the LAN endpoint again, and so does the outer destination.
    Inbound,
    /// From the LAN to an uplink: the quoted packet is a reply wanlb delivered, so its
    /// destination becomes the external endpoint, and the outer source the uplink address.
    Outbound,
}

/// Rewrites an ICMP error in place for the mapping `(addr, port)`. The outer ICMP checksum is
/// recomputed over the whole message, so it is complete afterwards whatever it was before.
pub fn translate(
    buf: &mut [u8],
    outer: &Ipv4,
    emb: &Embedded,
    dir: ErrorDirection,
    addr: u32,
    port: u16,
) {
    let (emb_addr_at, old_addr, outer_addr_at, old_outer) = match dir {
        ErrorDirection::Inbound => (emb.base + 12, emb.src, outer.base + 16, outer.dst),
        ErrorDirection::Outbound => (emb.base + 16, emb.dst, outer.base + 12, outer.src),
    };
    let (port_at, old_port) = match (emb.proto, dir) {
        (PROTO_ICMP, _) => (emb.l4 + 4, emb.src_port),
        (_, ErrorDirection::Inbound) => (emb.l4, emb.src_port),
        (_, ErrorDirection::Outbound) => (emb.l4 + 2, emb.dst_port),
    };
    let addr_delta = Delta::new().addr(old_addr, addr);
    let port_delta = Delta::new().word(old_port, port);

    // quoted packet: address, header checksum, port, and its transport checksum if quoted
    buf[emb_addr_at..emb_addr_at + 4].copy_from_slice(&addr.to_be_bytes());
    let emb_ip_check = emb.base + 10;
    write_u16(
        buf,
        emb_ip_check,
        addr_delta.apply_complete(read_u16(buf, emb_ip_check)),
    );
    write_u16(buf, port_at, port);
    let (check_at, delta) = match emb.proto {
        PROTO_TCP => (emb.l4 + 16, addr_delta.plus(port_delta)),
        PROTO_UDP => (emb.l4 + 6, addr_delta.plus(port_delta)),
        _ => (emb.l4 + 2, port_delta),
    };
    if check_at + 2 <= outer.end {
        let old = read_u16(buf, check_at);
        if !(emb.proto == PROTO_UDP && old == 0) {
            write_u16(buf, check_at, delta.apply_complete(old));
        }
    }

    // outer header
    buf[outer_addr_at..outer_addr_at + 4].copy_from_slice(&addr.to_be_bytes());
    let outer_check = outer.base + 10;
    let outer_delta = Delta::new().addr(old_outer, addr);
    write_u16(
        buf,
        outer_check,
        outer_delta.apply_complete(read_u16(buf, outer_check)),
    );

    write_u16(buf, outer.l4 + 2, 0);
    let c = checksum(&buf[outer.l4..outer.end], 0);
    write_u16(buf, outer.l4 + 2, c);
}
