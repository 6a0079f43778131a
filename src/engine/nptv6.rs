//! IPv6-to-IPv6 network prefix translation (NPTv6, RFC 6296): stateless, one to one, and
//! checksum-neutral: the prefix is swapped and one 16-bit word after it is adjusted so that
//! the address's one's-complement sum is unchanged, so no transport checksum (TCP, UDP,
//! ICMPv6, whose pseudo headers hold the addresses) needs rewriting, nor any quoted in an
//! ICMPv6 error.
//!
//! Which LAN /64 maps where ([`Nptv6::for_lan`]): the two prefixes of a translation have one
//! length, so a LAN prefix and a line's delegated prefix of different lengths are brought to
//! the longer one.
//!
//! - The LAN prefix is the longer (a LAN /64, a /56 delegated): the LAN /64 maps to the /64
//!   of the delegated prefix with the same subnet bits after the delegated length
//!   (fd00:1:2:5::/64 with 2001:2:0:100::/56 maps to 2001:2:0:105::/64). Each line that
//!   delegates a prefix gives every LAN /64 its own, and a LAN of several /64s keeps them
//!   apart.
//! - The delegated prefix is the longer (a LAN /48 ULA, a /56 or a /64 delegated): the
//!   first subnets of the LAN prefix that the delegated one holds map, in order
//!   (fd00:1:2::/48 with 2001:2:0:100::/56 maps fd00:1:2:0::/56, subnets 0 to 0xff);
//!   the others do not (number the LAN's /64s from 0).
//!
//! Where the adjustment goes (RFC 6296 3.4): for a translation of 48 bits or fewer, the word
//! of bits 48 to 63 (the subnet ID); for a longer one (up to 64 bits), the first word of the
//! interface identifier that is not 0xffff. A word 0xffff there (a /48's subnet 0xffff, an
//! interface identifier of all ones) is not translated (3.5 and 3.6): the caller drops it.

use super::checksum::{fold, sum};
use super::family::{Family, V6};
use super::select::Prefix;

/// The longest translation: its adjustment must land in the interface identifier.
pub const MAX_PREFIX_LEN: u8 = 64;

/// The translation between an internal (LAN) and an external prefix of one length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nptv6 {
    internal: Prefix<V6>,
    external: Prefix<V6>,
    /// Added (one's complement) to the adjusted word going out; its complement coming in.
    adjustment: u16,
}

impl Nptv6 {
    /// The translation of `internal` to `external`; `None` unless both have one length, of
    /// at most [`MAX_PREFIX_LEN`] bits.
    pub fn new(internal: Prefix<V6>, external: Prefix<V6>) -> Option<Nptv6> {
        let len = internal.prefix_len();
        if len != external.prefix_len() || len > MAX_PREFIX_LEN {
            return None;
        }
        // RFC 6296 3.2: the adjustment is the internal prefix's sum less the external one's
        let sum_of = |p: Prefix<V6>| fold(sum(&p.addr().to_be_bytes(), 0));
        let adjustment = fold(u64::from(sum_of(internal)) + u64::from(!sum_of(external)));
        Some(Nptv6 {
            internal,
            external,
            adjustment,
        })
    }

    /// The translation of the LAN prefix `lan` to a line's `delegated` prefix, brought to one
    /// length as the module says; `None` if that length exceeds [`MAX_PREFIX_LEN`].
    pub fn for_lan(lan: Prefix<V6>, delegated: Prefix<V6>) -> Option<Nptv6> {
        let len = lan.prefix_len().max(delegated.prefix_len());
        if len > MAX_PREFIX_LEN {
            return None;
        }
        let keep = V6::mask(u128::MAX, len);
        let cut = |p: Prefix<V6>| !V6::mask(u128::MAX, p.prefix_len());
        // each side's bits past its own length come from the other side's prefix: the
        // LAN's subnet bits into a shorter delegated prefix, zeros into a shorter LAN prefix
        let external = delegated.addr() | (lan.addr() & cut(delegated) & keep);
        Nptv6::new(
            Prefix::masked(lan.addr(), len)?,
            Prefix::masked(external, len)?,
        )
    }

    pub fn internal(&self) -> Prefix<V6> {
        self.internal
    }

    pub fn external(&self) -> Prefix<V6> {
        self.external
    }

    /// The external address of the LAN address `addr`; `None` if it is outside the internal
    /// prefix, or its adjusted word is 0xffff.
    pub fn outbound(&self, addr: u128) -> Option<u128> {
        self.internal
            .contains(addr)
            .then(|| self.swap(addr, self.external, self.adjustment))?
    }

    /// The LAN address of the external address `addr`; `None` if it is outside the external
    /// prefix, or its adjusted word is 0xffff.
    pub fn inbound(&self, addr: u128) -> Option<u128> {
        self.external
            .contains(addr)
            .then(|| self.swap(addr, self.internal, !self.adjustment))?
    }

    fn swap(&self, addr: u128, to: Prefix<V6>, adjustment: u16) -> Option<u128> {
        let len = self.internal.prefix_len();
        let mut words = words_of(addr);
        let at = if len <= 48 {
            3
        } else {
            (4..8).find(|&i| words[i] != 0xffff)?
        };
        if words[at] == 0xffff {
            return None;
        }
        let host = addr_of(words) & !V6::mask(u128::MAX, len);
        words = words_of(to.addr() | host);
        let adjusted = fold(u64::from(words[at]) + u64::from(adjustment));
        // 0xffff and 0 are one number in one's complement: 0xffff is kept out of addresses
        words[at] = if adjusted == 0xffff { 0 } else { adjusted };
        Some(addr_of(words))
    }
}

fn words_of(addr: u128) -> [u16; 8] {
    let b = addr.to_be_bytes();
    std::array::from_fn(|i| u16::from_be_bytes([b[2 * i], b[2 * i + 1]]))
}

fn addr_of(words: [u16; 8]) -> u128 {
    words
        .iter()
        .fold(0u128, |acc, &w| acc << 16 | u128::from(w))
}

#[cfg(test)]
mod tests;
