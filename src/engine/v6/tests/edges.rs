//! The edges of the engine's IPv6: replies with no hop left.

use super::*;

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
