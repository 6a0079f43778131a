//! The edges of the engine's IPv6: replies with no hop left.

use super::*;
use crate::engine::wire::icmpv6;

#[test]
fn a_reply_with_no_hop_left_is_dropped_and_counted_not_handed_to_the_kernel() {
    for e in [nat66_engine(), npt_engine()] {
        let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5555, 7000, b"q"));
        let Verdict::Uplink(line) = out(&e, t(0), &mut p) else {
            panic!("not sent")
        };
        let ext = u128::from_be_bytes(p[8..24].try_into().unwrap());
        let ext_port = u16::from_be_bytes([p[40], p[41]]);
        let reply = |hops: u8| {
            let mut r = packet(server(1), ext, PROTO_UDP, &udp(7000, ext_port, b"answer"));
            r[7] = hops;
            r
        };
        // the kernel would end it on the gateway's own hop, and tell the internet the LAN
        // host's internal address (before NPTv6, or behind NAT66) in its time exceeded
        for hops in [1, 0] {
            let mut r = reply(hops);
            let sent = r.clone();
            assert_eq!(
                inb(&e, t(1), line, &mut r),
                Verdict::Drop(DropReason::TtlExceeded)
            );
            assert_eq!(r, sent, "not translated");
        }
        assert_eq!(drops(&e, DropReason::TtlExceeded), 2);
        // one hop left: it reaches the host, its hop limit the kernel's to take
        let mut r = reply(2);
        assert_eq!(inb(&e, t(1), line, &mut r), Verdict::Tun);
        assert_eq!(r[7], 2);
        assert_eq!(r[24..40], HOST.to_be_bytes());
    }
}

/// A source outside the LAN's prefixes (a host renumbered into a prefix wanlb has not
/// heard of, until its restart) is answered with ICMPv6 "source address failed ingress
/// policy", so that the host falls back to IPv4 at once; an IPv4 one is not (spoofed).
#[test]
fn an_ipv6_source_outside_the_lan_hears_why_and_an_ipv4_one_does_not() {
    let e = nat66_engine();
    let renumbered = 0x2001_0002_0000_0999_u128 << 64 | 0x0a;
    let mut p = packet(renumbered, server(1), PROTO_UDP, &udp(5000, 53, b"q"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Drop(DropReason::NotFromLan));
    assert!(DropReason::NotFromLan.is_unreachable());
    let mut answer = [0u8; crate::engine::MAX_UNREACHABLE];
    let len = e
        .unreachable(t(0), DropReason::NotFromLan, &p, &mut answer)
        .expect("answered");
    let expected_msg: Vec<u8> = [
        icmpv6::DEST_UNREACHABLE,
        icmpv6::SOURCE_POLICY,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
    .into_iter()
    .chain(p.iter().copied())
    .collect();
    assert_eq!(
        answer[..len],
        packet(server(1), renumbered, PROTO_ICMPV6, &expected_msg)[..]
    );
    let v4 =
        wanlb_testkit::Ipv4Packet::udp([198, 18, 50, 1], [198, 19, 0, 1], 5000, 53, b"q").build();
    assert_eq!(
        e.unreachable(t(0), DropReason::NotFromLan, &v4, &mut answer),
        None
    );
}
