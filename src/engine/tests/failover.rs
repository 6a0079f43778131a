//! An uplink that dies, comes back, turns backup or changes its address: what happens to the
//! flows on it, and what the LAN hosts are told.

use super::*;

#[test]
fn a_dead_uplinks_udp_flow_continues_from_the_other_uplink_at_its_next_packet() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let first = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"a").build();
    assert_eq!(out(&e, t(0), first), Verdict::Uplink(0));
    let old_port = read_u16(first, 20);
    assert!(
        e.set_uplink_up(0, false, &CarriedFlows::NONE).is_empty(),
        "no TCP to reset"
    );
    let next = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"b").build();
    assert_eq!(out(&e, t(10), next), Verdict::Uplink(1));
    assert_eq!(
        read_u32(next, 12),
        UPLINK_2,
        "from the other uplink's address"
    );
    assert_eq!(e.counters().moved, 1);
    assert_eq!(e.flow_count(), 1, "moved, not duplicated");
    assert_eq!(e.mapping_count(), 1, "the old port went back to its pool");
    // a late answer to the old mapping belongs to nothing now
    let late = &mut Ipv4Packet::udp(dst(1), UPLINK_1, 5000, old_port, b"late").build();
    assert_eq!(inb(&e, t(11), 0, late), Verdict::Drop(DropReason::NoFlow));

    // the uplink returns: new destinations use it again, the moved flow stays where it is
    e.set_uplink_up(0, true, &CarriedFlows::NONE);
    let again = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"c").build();
    assert_eq!(out(&e, t(20), again), Verdict::Uplink(1));
    // (a socket each: one socket would keep the uplink its first datagram took)
    let picks: Vec<_> = (2..=4u16)
        .map(|i| {
            out(
                &e,
                t(21),
                &mut Ipv4Packet::udp(LAN, dst(i.into()), i, 53, b"q").build(),
            )
        })
        .collect();
    assert!(picks.contains(&Verdict::Uplink(0)), "{picks:?}");
    assert_eq!(e.counters().moved, 1);
}

#[test]
fn a_dead_uplinks_destinations_are_placed_anew_and_stay_after_it_returns() {
    let e = Engine::new(config((61000, 65535), vec![]));
    assert_eq!(
        out(
            &e,
            t(0),
            &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    e.set_uplink_up(0, false, &CarriedFlows::NONE);
    e.set_uplink_up(0, true, &CarriedFlows::NONE);
    // released while the uplink was down: the next flow is placed by weight (uplink 1 is
    // next in the 2:1 sequence after one pick of uplink 0)...
    assert_eq!(
        out(
            &e,
            t(1),
            &mut Ipv4Packet::udp(LAN, dst(1), 2, 53, b"q").build()
        ),
        Verdict::Uplink(1)
    );
    // ...and the destination stays there
    assert_eq!(
        out(
            &e,
            t(2),
            &mut Ipv4Packet::udp(LAN, dst(1), 3, 53, b"q").build()
        ),
        Verdict::Uplink(1)
    );
}

#[test]
fn a_dead_uplinks_tcp_connections_are_reset_with_the_hosts_own_sequence_number() {
    let e = Engine::new(config((61000, 65535), vec![]));
    established(&e);
    let probes = e.set_uplink_up(0, false, &CarriedFlows::NONE);
    assert_eq!(probes.len(), 1);
    let probe = &probes[0];
    // from the server to the host, one byte half the sequence space from the server's last
    assert_eq!(read_u32(probe, 12), dst(1));
    assert_eq!(read_u32(probe, 16), LAN);
    assert_eq!(read_u16(probe, 20), 443);
    assert_eq!(read_u16(probe, 22), 40000);
    assert_eq!(read_u32(probe, 24), 5000u32.wrapping_add(1 << 31));
    assert_eq!(probe.len(), 41);
    assert_eq!(tcp_of(probe).flags(), ACK);

    // the host answers with a duplicate ACK: it becomes the reset, back to the host
    let dupack = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&e, t(10), dupack), Verdict::Tun);
    let expected = Ipv4Packet::tcp(dst(1), LAN, 443, 40000, b"")
        .id(0)
        .flags(tcp_flags::RST | ACK)
        .seq(5000)
        .ack(101)
        .window(0)
        .build();
    assert_eq!(
        dupack[..40],
        expected[..],
        "seq = the host's ack, byte for byte"
    );
    assert_eq!(e.counters().resets, 1);
    assert_eq!(
        e.counters().uplinks[0].outbound_packets,
        2,
        "the answer left through no uplink"
    );
    // the connection is gone: the same four-tuple opens anew on the healthy uplink
    assert_eq!((e.flow_count(), e.mapping_count()), (0, 0));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(tcp_flags::SYN)
        .seq(7)
        .build();
    assert_eq!(out(&e, t(20), syn), Verdict::Uplink(1));
}

#[test]
fn with_keep_a_dead_uplinks_tcp_connections_are_left_alone() {
    let mut cfg = config((61000, 65535), vec![]);
    cfg.reset_tcp_on_down = false;
    let e = Engine::new(cfg);
    established(&e);
    assert!(e.set_uplink_up(0, false, &CarriedFlows::NONE).is_empty());
    let more = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&e, t(10), more), Verdict::Uplink(0));
    assert_eq!(e.counters().resets, 0);
}

#[test]
fn a_connection_not_yet_answered_is_reset_at_its_next_retransmission() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(tcp_flags::SYN)
        .seq(100)
        .build();
    assert_eq!(out(&e, t(0), syn), Verdict::Uplink(0));
    assert!(
        e.set_uplink_up(0, false, &CarriedFlows::NONE).is_empty(),
        "nothing to ask"
    );
    let again = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(tcp_flags::SYN)
        .seq(100)
        .build();
    assert_eq!(out(&e, t(1000), again), Verdict::Tun);
    let reset = tcp_of(again);
    assert_eq!(reset.flags(), tcp_flags::RST | ACK);
    assert_eq!(
        (reset.seq_number(), reset.ack_number()),
        (0, 101),
        "acknowledges the SYN"
    );
}

#[test]
fn a_backup_tier_carries_traffic_only_while_the_first_tier_is_down() {
    let mut cfg = config((61000, 65535), vec![]);
    cfg.uplinks[1].tier = 2;
    let e = Engine::new(cfg);
    for i in 1..=6 {
        let p = &mut Ipv4Packet::udp(LAN, dst(i), 1, 53, b"q").build();
        assert_eq!(out(&e, t(0), p), Verdict::Uplink(0));
    }
    e.set_uplink_up(0, false, &CarriedFlows::NONE);
    let udp = &mut Ipv4Packet::udp(LAN, dst(10), 7, 7, b"u").build();
    assert_eq!(out(&e, t(1), udp), Verdict::Uplink(1));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(11), 40000, 443, b"")
        .flags(tcp_flags::SYN)
        .seq(1)
        .build();
    assert_eq!(out(&e, t(1), syn), Verdict::Uplink(1));
    assert!(
        e.set_uplink_up(0, true, &CarriedFlows::NONE).is_empty(),
        "the backup's TCP is left to finish"
    );
    // new destinations and the backup's UDP come back to tier 1; its TCP stays
    let udp = &mut Ipv4Packet::udp(LAN, dst(10), 7, 7, b"u").build();
    assert_eq!(out(&e, t(2), udp), Verdict::Uplink(0));
    let tcp = &mut Ipv4Packet::tcp(LAN, dst(11), 40000, 443, b"")
        .flags(ACK)
        .seq(2)
        .ack(1)
        .build();
    assert_eq!(out(&e, t(2), tcp), Verdict::Uplink(1));
    let fresh = &mut Ipv4Packet::udp(LAN, dst(12), 1, 53, b"q").build();
    assert_eq!(out(&e, t(2), fresh), Verdict::Uplink(0));
}

#[test]
fn a_strict_pin_refuses_while_its_uplink_is_down_and_the_host_is_told() {
    let pin = Pin {
        prefix: Prefix::new(dst(91), 32).unwrap(),
        uplink: 1,
        strict: true,
    };
    let e = Engine::new(config((61000, 65535), vec![pin]));
    e.set_uplink_up(1, false, &CarriedFlows::NONE);
    let p = &mut Ipv4Packet::udp(LAN, dst(91), 6667, 6667, b"irc").build();
    let v = out(&e, t(0), p);
    assert_eq!(v, Verdict::Drop(DropReason::PinnedUplinkDown));
    assert!(DropReason::PinnedUplinkDown.is_unreachable());
    let mut answer = [0u8; MAX_UNREACHABLE];
    let n = e
        .unreachable(t(0), DropReason::PinnedUplinkDown, p, &mut answer)
        .expect("answered");
    assert_eq!(answer[20..22], [3, 0]);
    assert_eq!(answer[28..n], p[..28]);
    // other destinations still go out
    let other = &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build();
    assert_eq!(out(&e, t(0), other), Verdict::Uplink(0));
}

#[test]
fn unreachables_are_rate_limited() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let p = Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build();
    let mut answer = [0u8; MAX_UNREACHABLE];
    let sent = (0..200)
        .filter(|_| {
            e.unreachable(t(0), DropReason::NoUplink, &p, &mut answer)
                .is_some()
        })
        .count();
    assert_eq!(sent, 50, "a burst of 50");
    // a second later, 100 more at most
    let sent = (0..200)
        .filter(|_| {
            e.unreachable(t(1000), DropReason::NoUplink, &p, &mut answer)
                .is_some()
        })
        .count();
    assert_eq!(sent, 50, "refilled up to the burst");
    assert_eq!(e.counters().unreachables, 100);
}

#[test]
fn a_new_address_takes_new_flows_and_ends_those_of_the_old_one() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let e = WithFastPath::new(Engine::new(config((61000, 65535), vec![])), fake.clone());
    established(&e);
    // a UDP flow, answered and steady: on the fast path
    let mut query = Ipv4Packet::udp(LAN, dst(1), 5000, 53, b"q").build();
    assert_eq!(out(&e, t(4), &mut query), Verdict::Uplink(0));
    let port = read_u16(&query, 20);
    for i in 0..u64::from(HAND_OVER_AFTER) {
        let mut reply = Ipv4Packet::udp(dst(1), UPLINK_1, 53, port, b"a").build();
        assert_eq!(inb(&e, t(5 + i), 0, &mut reply), Verdict::Tun);
    }
    assert!(
        fake.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("hand over 17"))
    );
    let renewed = u32::from_be_bytes([198, 18, 1, 2]);
    let probes = e.set_uplink_addr(0, renewed);
    assert_eq!(
        probes.len(),
        1,
        "the TCP connection cannot follow: it is reset"
    );
    // both came back from the fast path, under the keys they were handed over with
    let log = fake.log.lock().unwrap().clone();
    assert!(log.contains(&"withdraw 17 5000".to_string()), "{log:?}");
    // the UDP flow continues from the new address at its next packet
    let mut next = Ipv4Packet::udp(LAN, dst(1), 5000, 53, b"q").build();
    assert_eq!(out(&e, t(20), &mut next), Verdict::Uplink(0));
    assert_eq!(read_u32(&next, 12), renewed);
    assert_eq!(e.counters().moved, 1);
    // the TCP connection's next segment from the host is answered with the reset
    let ack = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"x")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&e, t(21), ack), Verdict::Tun);
    assert_eq!(e.counters().resets, 1);
    // replies to the old address are not the uplink's any more
    let mut late = Ipv4Packet::udp(dst(1), UPLINK_1, 53, port, b"a").build();
    assert_eq!(
        inb(&e, t(22), 0, &mut late),
        Verdict::Drop(DropReason::NotForUplink)
    );
    // new flows leave from the new address, and the same address again changes nothing
    let mut fresh = Ipv4Packet::udp(LAN, dst(9), 7, 53, b"q").build();
    out(&e, t(23), &mut fresh);
    assert!([renewed, UPLINK_2].contains(&read_u32(&fresh, 12)));
    assert!(e.set_uplink_addr(0, renewed).is_empty());
}
