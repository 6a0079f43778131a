//! Internet checksum arithmetic (RFC 1071) and incremental updates (RFC 1624).
//!
//! A NAT rewrite changes a few 16-bit words of a header. Rather than summing the whole packet
//! again, it accumulates the change as a [`Delta`] and applies it to each checksum the words
//! take part in. The same delta serves both checksum states the kernel hands over:
//! a complete checksum (the complemented sum, RFC 1624 eqn. 3) and a partial one
//! (CHECKSUM_PARTIAL: the field holds the uncomplemented pseudo-header sum, to which the
//! device later adds the sum of the L4 bytes).

/// Folds a wide one's-complement accumulator to 16 bits.
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the loop leaves a value below 2^16"
)]
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's-complement sum of `data` as big-endian 16-bit words (odd tail padded with zero),
/// added to `initial`. Not folded, not complemented.
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        acc += u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [b] = rest {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// The complete checksum over `data` (the checksum field itself must read as zero).
pub fn checksum(data: &[u8], initial: u64) -> u16 {
    !fold(sum(data, initial))
}

/// Sum of the IPv4 pseudo header used by TCP and UDP.
pub fn pseudo_header(src: u32, dst: u32, proto: u8, l4_len: u16) -> u64 {
    u64::from(src >> 16)
        + u64::from(src & 0xffff)
        + u64::from(dst >> 16)
        + u64::from(dst & 0xffff)
        + u64::from(proto)
        + u64::from(l4_len)
}

/// Sum of the IPv6 pseudo header (RFC 8200 8.1) used by TCP, UDP and ICMPv6.
pub fn pseudo_header6(src: u128, dst: u128, proto: u8, l4_len: u32) -> u64 {
    sum(&src.to_be_bytes(), 0)
        + sum(&dst.to_be_bytes(), 0)
        + u64::from(proto)
        + u64::from(l4_len >> 16)
        + u64::from(l4_len & 0xffff)
}

/// The accumulated change of some 16-bit words: the sum of `~old + new` over each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    pub fn new() -> Self {
        Self(0)
    }

    pub fn word(mut self, old: u16, new: u16) -> Self {
        self.0 += u64::from(!old) + u64::from(new);
        self
    }

    pub fn addr(self, old: u32, new: u32) -> Self {
        let ([o1, o2, o3, o4], [n1, n2, n3, n4]) = (old.to_be_bytes(), new.to_be_bytes());
        self.word(u16::from_be_bytes([o1, o2]), u16::from_be_bytes([n1, n2]))
            .word(u16::from_be_bytes([o3, o4]), u16::from_be_bytes([n3, n4]))
    }

    /// The change of an IPv6 address: its eight words.
    pub fn addr6(self, old: u128, new: u128) -> Self {
        Self(self.0 + sum(&(!old).to_be_bytes(), 0) + sum(&new.to_be_bytes(), 0))
    }

    pub fn plus(self, other: Delta) -> Self {
        Self(self.0 + other.0)
    }

    /// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`.
    pub fn apply_complete(self, check: u16) -> u16 {
        !fold(u64::from(!check) + self.0)
    }

    /// A partial checksum holds an uncomplemented sum, so the change is simply added.
    pub fn apply_partial(self, check: u16) -> u16 {
        fold(u64::from(check) + self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data, 0), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    proptest! {
        #[test]
        fn incremental_equals_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 4..64),
            word_index in 0usize..30,
            new in any::<u16>(),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            let i = (word_index % (data.len() / 2 - 1)) * 2 + 2;
            // words 0..2 hold the checksum field
            data[0] = 0; data[1] = 0;
            let check = checksum(&data, 0);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let updated = Delta::new().word(old, new).apply_complete(check);
            let full = checksum(&data, 0);
            // +0 and -0 are the same one's-complement number
            prop_assert!(updated == full || (updated ^ full) == 0xffff && (updated == 0 || full == 0));
        }

        #[test]
        fn partial_update_then_completion_equals_full(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            src in any::<u32>(), dst in any::<u32>(), new_src in any::<u32>(),
        ) {
            let len = u16::try_from(payload.len()).unwrap();
            let partial = fold(pseudo_header(src, dst, 17, len));
            let updated = Delta::new().addr(src, new_src).apply_partial(partial);
            let completed = !fold(sum(&payload, u64::from(updated)));
            let full = checksum(&payload, pseudo_header(new_src, dst, 17, len));
            prop_assert!(completed == full || (completed ^ full) == 0xffff && (completed == 0 || full == 0));
        }

        #[test]
        fn a_v6_address_change_updates_as_recomputation_does(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            src in any::<u128>(), dst in any::<u128>(), new_src in any::<u128>(),
        ) {
            let len = u32::try_from(payload.len()).unwrap();
            let check = checksum(&payload, pseudo_header6(src, dst, 17, len));
            let updated = Delta::new().addr6(src, new_src).apply_complete(check);
            let full = checksum(&payload, pseudo_header6(new_src, dst, 17, len));
            prop_assert!(updated == full || (updated ^ full) == 0xffff && (updated == 0 || full == 0));
        }
    }
}
