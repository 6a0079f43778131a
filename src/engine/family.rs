//! Address families. The flow table, the NAT's mappings, the destination bindings and the
//! per-host shares are written once, for any family; an IPv4 flow keeps 4-byte addresses, and
//! [`V6`] beside it keeps 16-byte ones (its packet view is `wire::ipv6`).

use std::fmt::Debug;
use std::hash::Hash;

/// An address family: what its addresses are, and the prefix arithmetic on them.
pub trait Family: Copy + Debug + Default + Eq + Hash + Send + Sync + 'static {
    /// One address, as the tables keep it.
    type Addr: Copy + Debug + Default + Eq + Ord + Hash + Send + Sync;

    /// Bits in an address: the longest prefix.
    const BITS: u8;

    /// The prefix one host's addresses are taken to share when nothing says more (the
    /// network its unverified addresses share a host's share in, see `hosts`): a /24 of
    /// IPv4; a host may use every address of its /64 of IPv6.
    const HOST_NET: u8;

    /// `addr` with all but its first `len` bits cleared (`len` at most [`Family::BITS`]).
    fn mask(addr: Self::Addr, len: u8) -> Self::Addr;
}

/// IPv4: addresses as 32-bit numbers, most significant byte first on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V4;

impl Family for V4 {
    type Addr = u32;
    const BITS: u8 = 32;
    const HOST_NET: u8 = 24;

    fn mask(addr: u32, len: u8) -> u32 {
        addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    }
}

/// IPv6: addresses as 128-bit numbers, most significant byte first on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V6;

impl Family for V6 {
    type Addr = u128;
    const BITS: u8 = 128;
    const HOST_NET: u8 = 64;

    fn mask(addr: u128, len: u8) -> u128 {
        addr & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_keeps_the_prefix_bits_only() {
        let addr = u32::from_be_bytes([198, 18, 3, 10]);
        assert_eq!(V4::mask(addr, 24), u32::from_be_bytes([198, 18, 3, 0]));
        assert_eq!(V4::mask(addr, 0), 0);
        assert_eq!(V4::mask(addr, 32), addr);
        assert_eq!(V4::mask(addr, 15), u32::from_be_bytes([198, 18, 0, 0]));
    }

    #[test]
    fn a_v6_mask_keeps_the_prefix_bits_only() {
        let addr = u128::from_be_bytes([
            0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x01, 0x23, 0, 0, 0, 0, 0, 0, 0, 0x0a,
        ]);
        assert_eq!(V6::mask(addr, 48), 0x2001_0002_0000_u128 << 80);
        assert_eq!(V6::mask(addr, 56), 0x0020_0100_0200_0001_u128 << 72);
        assert_eq!(V6::mask(addr, 0), 0);
        assert_eq!(V6::mask(addr, 128), addr);
    }
}
