//! The IPv6 health frames, byte for byte.

use super::*;

const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The router's answer to a solicitation from `to` for `router`, with `options`.
fn advert(router: Ipv6Addr, to: Ipv6Addr, hops: u8, options: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; ETH_HEADER + IPV6_HEADER + 24 + options.len()];
    ethernet(&mut frame, OURS, ROUTER_MAC);
    let ip = &mut frame[ETH_HEADER..];
    ipv6_header(ip, router, to, 24 + options.len(), hops);
    let na = &mut ip[IPV6_HEADER..];
    na[0] = NEIGHBOUR_ADVERT;
    na[4] = 0xe0; // router, solicited, override
    na[8..24].copy_from_slice(&router.octets());
    na[24..].copy_from_slice(options);
    fill_icmp6_checksum(ip);
    frame
}

#[test]
fn an_echo_request_is_an_icmpv6_echo_to_the_routers_mac() {
    let mut frame = [0u8; ECHO6_FRAME];
    let hop = Hop6::Router {
        ours: OURS,
        router: ROUTER_MAC,
    };
    let payload = [7u8; PAYLOAD_LEN];
    let (src, dst) = (a("2001:2:0:1::1"), a("2001:2:0:ff::1"));
    let sent = echo_request(&mut frame, hop, (src, dst), (0x1234, 0x5678), &payload).to_vec();
    assert_eq!(
        &sent[..14],
        &[2, 0, 0, 0, 0, 0xfe, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]
    );
    let ip = &sent[14..];
    assert_eq!(&ip[..8], &[0x60, 0, 0, 0, 0, 20, 58, 64]);
    assert_eq!(&ip[8..24], &src.octets());
    assert_eq!(&ip[24..40], &dst.octets());
    assert_eq!(
        &ip[40..48],
        &[128, 0, ip[42], ip[43], 0x12, 0x34, 0x56, 0x78]
    );
    // the checksum covers the pseudo-header: summing everything again gives zero
    assert_eq!(icmp6_checksum(src, dst, &ip[40..]), 0);
    // the same probe bare, for a point-to-point link
    let mut bare = [0u8; ECHO6_FRAME];
    let bare = echo_request(
        &mut bare,
        Hop6::Peer,
        (src, dst),
        (0x1234, 0x5678),
        &payload,
    );
    assert_eq!(bare, ip);
}

#[test]
fn an_echo_reply_is_read_only_with_its_checksum_right() {
    let mut frame = [0u8; ECHO6_FRAME];
    let (ours, target) = (a("2001:2:0:1::1"), a("2001:2:0:ff::1"));
    let payload = [9u8; PAYLOAD_LEN];
    echo_request(&mut frame, Hop6::Peer, (target, ours), (1, 2), &payload);
    let ip = &mut frame[ETH_HEADER..];
    ip[IPV6_HEADER] = ECHO_REPLY;
    fill_icmp6_checksum(ip);
    let mut padded = ip.to_vec();
    padded.extend([0u8; 6]); // link-layer padding is not payload
    assert_eq!(
        echo_reply(&padded),
        Some(EchoReply6 {
            from: target,
            id: 1,
            seq: 2,
            payload: &payload,
        })
    );
    padded[IPV6_HEADER + 9] ^= 1;
    assert_eq!(echo_reply(&padded), None);
    assert_eq!(echo_reply(&ip[..30]), None);
}

#[test]
fn the_solicited_node_group_keeps_the_last_24_bits() {
    // RFC 4291 2.7.1's way: FF02:0:0:0:0:1:FFXX:XXXX
    assert_eq!(
        solicited_node(a("2001:2::1:800:200e:8c6c")),
        a("ff02::1:ff0e:8c6c")
    );
    assert_eq!(solicited_node(a("fe80::1")), a("ff02::1:ff00:1"));
}

#[test]
fn a_solicitation_goes_to_the_group_until_the_mac_is_known() {
    let (src, router) = (a("fd00:1::1"), a("fe80::1"));
    let frame = neighbour_solicitation(OURS, src, router, None);
    assert_eq!(&frame[..6], &[0x33, 0x33, 0xff, 0, 0, 1]);
    let ip = &frame[ETH_HEADER..];
    assert_eq!(&ip[..8], &[0x60, 0, 0, 0, 0, 32, 58, 255]);
    assert_eq!(&ip[24..40], &a("ff02::1:ff00:1").octets());
    let ns = &ip[IPV6_HEADER..];
    assert_eq!(ns[0], 135);
    assert_eq!(&ns[4..8], &[0, 0, 0, 0]);
    assert_eq!(&ns[8..24], &router.octets());
    assert_eq!(&ns[24..32], &[1, 1, 2, 0, 0, 0, 0, 1]);
    assert_eq!(icmp6_checksum(src, a("ff02::1:ff00:1"), ns), 0);
    let unicast = neighbour_solicitation(OURS, src, router, Some(ROUTER_MAC));
    assert_eq!(&unicast[..6], &ROUTER_MAC);
    assert_eq!(&unicast[ETH_HEADER + 24..ETH_HEADER + 40], &router.octets());
}

#[test]
fn an_advertisement_gives_the_routers_mac_if_it_is_believable() {
    let (router, ours) = (a("fe80::1"), a("fd00:1::1"));
    let tlla = [2, 1, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];
    let na = advert(router, ours, 255, &tlla);
    assert_eq!(
        advertised_mac(&na, router, ours),
        Some([0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f])
    );
    // without the option: the frame's source
    assert_eq!(
        advertised_mac(&advert(router, ours, 255, &[]), router, ours),
        Some(ROUTER_MAC)
    );
    // another target, a forwarded one, a bad checksum, a zero-length option: none
    assert_eq!(advertised_mac(&na, a("fe80::2"), ours), None);
    assert_eq!(
        advertised_mac(&advert(router, ours, 254, &tlla), router, ours),
        None
    );
    let mut bad = na.clone();
    bad[ETH_HEADER + IPV6_HEADER + 30] ^= 0xff;
    assert_eq!(advertised_mac(&bad, router, ours), None);
    let zero = advert(router, ours, 255, &[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(advertised_mac(&zero, router, ours), None);
    for cut in 0..na.len() {
        let _ = advertised_mac(&na[..cut], router, ours);
    }
}

#[test]
fn only_an_advertisement_answering_our_solicitation_gives_the_routers_mac() {
    let (router, ours) = (a("fe80::1"), a("fd00:1::1"));
    let tlla = [2, 1, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];
    let na = advert(router, ours, 255, &tlla);
    assert!(advertised_mac(&na, router, ours).is_some());
    // unsolicited (the S flag clear), as anyone on the segment can send it: none
    let mut unsolicited = na.clone();
    unsolicited[ETH_HEADER + IPV6_HEADER + 4] = 0xa0; // router, override
    fill_icmp6_checksum(&mut unsolicited[ETH_HEADER..]);
    assert_eq!(advertised_mac(&unsolicited, router, ours), None);
    // to all nodes, or to another address than our solicitation's source: none
    for to in [a("ff02::1"), a("fd00:1::2")] {
        let elsewhere = advert(router, to, 255, &tlla);
        assert_eq!(advertised_mac(&elsewhere, router, ours), None);
    }
}
