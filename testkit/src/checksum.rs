//! The Internet checksum (RFC 1071), written plainly, one 16-bit word at a time. It is the
//! oracle wanlb's own incremental checksum code is tested against, so it shares no code with
//! it.

/// One's-complement sum of `data` as big-endian 16-bit words (an odd last byte padded with
/// zero), added to `initial`. Neither folded nor complemented.
pub fn sum(data: &[u8], initial: u64) -> u64 {
    data.chunks(2).fold(initial, |acc, word| match *word {
        [hi, lo] => acc + u64::from(u16::from_be_bytes([hi, lo])),
        [hi] => acc + (u64::from(hi) << 8),
        _ => acc,
    })
}

/// Folds a wide one's-complement sum to 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    loop {
        match u16::try_from(sum) {
            Ok(folded) => return folded,
            Err(_) => sum = (sum & 0xffff) + (sum >> 16),
        }
    }
}

/// The checksum to put in a header: the complemented sum of `data` (whose checksum field
/// must read as zero) and `initial`.
pub fn checksum(data: &[u8], initial: u64) -> u16 {
    !fold(sum(data, initial))
}

/// Sum of the IPv4 pseudo header that TCP and UDP checksums cover; `l4_len` is the length
/// of the TCP or UDP header and payload.
pub fn pseudo_header(src: u32, dst: u32, proto: u8, l4_len: u16) -> u64 {
    sum(&src.to_be_bytes(), 0) + sum(&dst.to_be_bytes(), 0) + u64::from(proto) + u64::from(l4_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data, 0), !0xddf2);
    }

    #[test]
    fn an_odd_length_is_padded_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn folding_carries_until_16_bits_remain() {
        assert_eq!(fold(0x1_ffff), 1);
        assert_eq!(fold(0xffff_ffff_ffff), 0xffff);
        assert_eq!(fold(0), 0);
    }
}
