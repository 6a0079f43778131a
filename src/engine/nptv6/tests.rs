use super::*;
use crate::engine::checksum::{checksum, pseudo_header6};
use proptest::prelude::*;

fn addr(words: [u16; 8]) -> u128 {
    addr_of(words)
}

fn prefix(words: [u16; 8], len: u8) -> Prefix<V6> {
    Prefix::masked(addr(words), len).unwrap()
}

#[test]
fn rfc_6296_appendix_b() {
    // the RFC's worked example (arithmetic only): fd01:203:405::/48 to 2001:db8:1::/48
    // takes fd01:203:405:1::1234 to 2001:db8:1:d550::1234
    let npt = Nptv6::new(
        prefix([0xfd01, 0x0203, 0x0405, 0, 0, 0, 0, 0], 48),
        prefix([0x2001, 0x0db8, 0x0001, 0, 0, 0, 0, 0], 48),
    )
    .unwrap();
    let inside = addr([0xfd01, 0x0203, 0x0405, 1, 0, 0, 0, 0x1234]);
    let outside = addr([0x2001, 0x0db8, 0x0001, 0xd550, 0, 0, 0, 0x1234]);
    assert_eq!(npt.outbound(inside), Some(outside));
    assert_eq!(npt.inbound(outside), Some(inside));
}

#[test]
fn a_translated_address_keeps_every_transport_checksum() {
    // a UDP datagram's checksum from [fd00:1:2:5::a]:5353 to [2001:2:ff::1]:53, then the
    // source translated to the delegated /56: the same checksum is right for it
    let npt = Nptv6::for_lan(
        prefix([0xfd00, 1, 2, 5, 0, 0, 0, 0], 64),
        prefix([0x2001, 2, 0, 0x100, 0, 0, 0, 0], 56),
    )
    .unwrap();
    let src = addr([0xfd00, 1, 2, 5, 0, 0, 0, 0x0a]);
    let dst = addr([0x2001, 2, 0xff, 0, 0, 0, 0, 1]);
    let mut udp = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0, 0, b'p', b'i', b'n', b'g',
    ];
    let c = checksum(&udp, pseudo_header6(src, dst, 17, 12));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let out = npt.outbound(src).unwrap();
    assert_eq!(
        out >> 64,
        addr([0x2001, 2, 0, 0x105, 0, 0, 0, 0]) >> 64,
        "the LAN /64 keeps its subnet bits in the /56"
    );
    assert_ne!(out, src);
    assert_eq!(checksum(&udp, pseudo_header6(out, dst, 17, 12)), 0);
    assert_eq!(npt.inbound(out), Some(src));
}

#[test]
fn which_lan_subnets_map_where() {
    // a LAN /48 and a delegated /56: the LAN's subnets 0 to 0xff map, in order
    let npt = Nptv6::for_lan(
        prefix([0xfd00, 1, 2, 0, 0, 0, 0, 0], 48),
        prefix([0x2001, 2, 0, 0x100, 0, 0, 0, 0], 56),
    )
    .unwrap();
    assert_eq!(npt.internal(), prefix([0xfd00, 1, 2, 0, 0, 0, 0, 0], 56));
    assert_eq!(
        npt.external(),
        prefix([0x2001, 2, 0, 0x100, 0, 0, 0, 0], 56)
    );
    let subnet_7 = addr([0xfd00, 1, 2, 7, 0, 0, 0, 1]);
    let out = npt.outbound(subnet_7).unwrap();
    assert!(npt.external().contains(out));
    assert_eq!(npt.inbound(out), Some(subnet_7));
    assert_eq!(npt.outbound(addr([0xfd00, 1, 2, 0x100, 0, 0, 0, 1])), None);
    // equal lengths: prefix for prefix
    let npt = Nptv6::for_lan(
        prefix([0xfd00, 1, 2, 5, 0, 0, 0, 0], 64),
        prefix([0x2001, 2, 0, 0x105, 0, 0, 0, 0], 64),
    )
    .unwrap();
    assert_eq!(
        npt.external(),
        prefix([0x2001, 2, 0, 0x105, 0, 0, 0, 0], 64)
    );
    // nothing past /64
    assert_eq!(
        Nptv6::for_lan(
            prefix([0xfd00, 1, 2, 5, 0, 0, 0, 0], 80),
            prefix([0x2001, 2, 0, 0x100, 0, 0, 0, 0], 56),
        ),
        None
    );
    assert_eq!(
        Nptv6::new(
            prefix([0xfd00, 1, 2, 0, 0, 0, 0, 0], 48),
            prefix([0x2001, 2, 0, 0x100, 0, 0, 0, 0], 56),
        ),
        None,
        "one length on both sides"
    );
}

#[test]
fn an_all_ones_word_is_not_translated() {
    let npt48 = Nptv6::new(
        prefix([0xfd00, 1, 2, 0, 0, 0, 0, 0], 48),
        prefix([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
    )
    .unwrap();
    assert_eq!(
        npt48.outbound(addr([0xfd00, 1, 2, 0xffff, 0, 0, 0, 1])),
        None
    );
    assert_eq!(
        npt48.inbound(addr([0x2001, 2, 0, 0xffff, 0, 0, 0, 1])),
        None
    );
    // a /64: the first interface identifier word that is not all ones is adjusted
    let npt64 = Nptv6::new(
        prefix([0xfd00, 1, 2, 5, 0, 0, 0, 0], 64),
        prefix([0x2001, 2, 0, 0x105, 0, 0, 0, 0], 64),
    )
    .unwrap();
    let skips = addr([0xfd00, 1, 2, 5, 0xffff, 0x1234, 0, 1]);
    let out = npt64.outbound(skips).unwrap();
    assert_eq!(words_of(out)[4], 0xffff);
    assert_ne!(words_of(out)[5], 0x1234);
    assert_eq!(npt64.inbound(out), Some(skips));
    let all_ones = addr([0xfd00, 1, 2, 5, 0xffff, 0xffff, 0xffff, 0xffff]);
    assert_eq!(npt64.outbound(all_ones), None);
    // outside the prefixes
    assert_eq!(npt64.outbound(addr([0xfd00, 1, 2, 6, 0, 0, 0, 1])), None);
    assert_eq!(npt64.inbound(addr([0x2001, 2, 0, 0x106, 0, 0, 0, 1])), None);
}

proptest! {
    #[test]
    fn translation_is_one_to_one_and_checksum_neutral(
        host in any::<u128>(), int in any::<u128>(), ext in any::<u128>(),
        len in prop_oneof![Just(48u8), Just(56u8), Just(60u8), Just(64u8), 16u8..=64],
    ) {
        let npt = Nptv6::new(
            Prefix::masked(int, len).unwrap(),
            Prefix::masked(ext, len).unwrap(),
        ).unwrap();
        let inside = V6::mask(int, len) | (host & !V6::mask(u128::MAX, len));
        if let Some(out) = npt.outbound(inside) {
            prop_assert!(npt.external().contains(out));
            prop_assert_eq!(fold(sum(&out.to_be_bytes(), 0)) % 0xffff,
                fold(sum(&inside.to_be_bytes(), 0)) % 0xffff);
            prop_assert_eq!(npt.inbound(out), Some(inside));
        }
    }
}
