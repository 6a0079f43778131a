//! Typed views of the packets wanlb reads and writes, in the manner of smoltcp's `wire`.
//!
//! A view wraps a buffer (`&[u8]`, `&mut [u8]`, `Vec<u8>`: anything `AsRef<[u8]>`, and
//! `AsMut<[u8]>` to write), is checked once when it is made from untrusted bytes
//! (`new_checked`), and then reads and writes its fields at offsets that check proved in range:
//! an accessor cannot be handed another buffer than the one checked. `new_unchecked` is for
//! bytes the caller wrote itself, or checked through another view. Field positions are
//! constants in each module's `field`; version and header-length parsing is written once, in
//! [`ipv4`].
//!
//! The network-layer views sit beside each other by family ([`ipv4`], [`ipv6`]);
//! the transport views ([`tcp`], [`udp`], [`icmp`]) take the transport bytes of either.
//! A view only locates fields: option bytes (IPv4, TCP) are skipped by their length fields,
//! and what a field means for the NAT is the engine's business, not the view's.

pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use icmp::{IcmpMessage, QuotedPacket};
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use tcp::TcpSegment;
pub use udp::UdpDatagram;

/// IP protocol numbers of what the NAT translates.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Why bytes are not the packet a view was asked to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its headers, or than a length field says.
    Truncated,
    /// A field that contradicts another, or the protocol: a header length below the minimum,
    /// a total length shorter than the header.
    Malformed,
    /// Another IP version than the view's.
    Version,
    /// An IPv6 extension header the engine does not walk: a routing header with segments
    /// left, ESP, AH, mobility and the like, or more of them than a host sends.
    ExtensionHeader,
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

/// A field's byte range.
type Field = std::ops::Range<usize>;

fn get_u16(buf: &[u8], field: Field) -> u16 {
    let b = &buf[field];
    u16::from_be_bytes([b[0], b[1]])
}

fn get_u32(buf: &[u8], field: Field) -> u32 {
    let b = &buf[field];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn set_u16(buf: &mut [u8], field: Field, value: u16) {
    buf[field].copy_from_slice(&value.to_be_bytes());
}

fn set_u32(buf: &mut [u8], field: Field, value: u32) {
    buf[field].copy_from_slice(&value.to_be_bytes());
}
