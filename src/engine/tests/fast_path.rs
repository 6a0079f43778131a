//! What the engine hands the fast path and takes back, and what it learns from it.

use super::tcp::{alive_at, open_tcp, seg_in, seg_out, tcp_engine, tcp_timeouts};
use super::*;

#[test]
fn steady_flows_are_handed_over_once_and_withdrawn_when_they_end() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let e = WithFastPath::new(single_port_engine(), fake.clone());
    let log = || fake.log.lock().unwrap().clone();
    let (tcp_out, tcp_in) = (
        Ipv4Packet::l4(PROTO_TCP, LAN, dst(1), 40000, 443, b"").build(),
        Ipv4Packet::l4(PROTO_TCP, dst(1), UPLINK_1, 443, 61000, b"").build(),
    );
    // a TCP flow seen one way only is never handed over, however long it goes on
    for i in 0..2 * u64::from(HAND_OVER_AFTER) {
        out(&e, t(i), &mut tcp_out.clone());
    }
    assert_eq!(log(), Vec::<String>::new());
    // its first reply makes it steady: handed over once, whatever follows
    inb(&e, t(100), 0, &mut tcp_in.clone());
    out(&e, t(101), &mut tcp_out.clone());
    assert_eq!(
        log(),
        ["hand over 6 198.18.3.10:40000 -> 198.19.0.1:443 as 198.18.1.1:61000"]
    );
    // a query and its answer stay in the engine, and so does a ping nobody answers
    out(
        &e,
        t(200),
        &mut Ipv4Packet::udp(LAN, dst(2), 53, 53, b"q").build(),
    );
    inb(
        &e,
        t(201),
        0,
        &mut Ipv4Packet::udp(dst(2), UPLINK_1, 53, 61000, b"a").build(),
    );
    for i in 0..2 * u64::from(HAND_OVER_ONE_WAY_AFTER) {
        out(
            &e,
            t(300 + i),
            &mut Ipv4Packet::l4(PROTO_ICMP, LAN, dst(2), 7, 0, b"").build(),
        );
    }
    assert_eq!(log().len(), 1);
    // a one-way UDP stream moves after more packets than an answered flow
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) - 1 {
        out(
            &e,
            t(500 + i),
            &mut Ipv4Packet::udp(LAN, dst(3), 5004, 5004, b"rtp").build(),
        );
    }
    assert_eq!(log().len(), 1);
    out(
        &e,
        t(600),
        &mut Ipv4Packet::udp(LAN, dst(3), 5004, 5004, b"rtp").build(),
    );
    assert_eq!(
        log()[1],
        "hand over 17 198.18.3.10:5004 -> 198.19.0.3:5004 as 198.18.1.1:61000"
    );

    // the fast path keeps the flows it carries alive past the engine's own timeouts...
    *fake.idle.lock().unwrap() = Some(1_000);
    let timeouts = Timeouts::default();
    e.expire(t(timeouts.tcp_established + 101));
    assert_eq!(
        e.flow_count(),
        2,
        "the DNS and ICMP flows expired, the handed-over ones did not"
    );
    // ...until it reports them idle too; then they are withdrawn before their ports return
    *fake.idle.lock().unwrap() = None;
    e.expire(t(2 * timeouts.tcp_established));
    assert_eq!(e.flow_count(), 0);
    assert_eq!(log()[2..], ["withdraw 6 40000", "withdraw 17 5004"]);
}

#[test]
fn a_dead_uplinks_flows_come_back_from_the_fast_path() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let e = WithFastPath::new(Engine::new(config((61000, 65535), vec![])), fake.clone());
    established(&e);
    let udp = Ipv4Packet::udp(LAN, dst(1), 5004, 5004, b"rtp").build();
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) {
        out(&e, t(10 + i), &mut udp.clone());
    }
    let log = || fake.log.lock().unwrap().clone();
    assert_eq!(log().len(), 2, "{:?}", log());
    e.set_uplink_up(0, false);
    let log = log();
    assert_eq!(
        log[2..],
        ["withdraw 6 40000", "withdraw 17 5004"],
        "{log:?}"
    );
    // and they stay in the engine while they move or end
    out(&e, t(200), &mut udp.clone());
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) - 2 {
        out(&e, t(300 + i), &mut udp.clone());
    }
    let dupack = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&e, t(400), dupack), Verdict::Tun);
    assert_eq!(
        fake.log.lock().unwrap().len(),
        4,
        "nothing handed over again"
    );
}

#[test]
fn a_reset_on_a_flow_the_fast_path_carries_is_judged_by_the_window_it_carried() {
    use std::sync::Arc;
    let to = tcp_timeouts();
    let fast = Arc::new(FakeFastPath::terse());
    let e = WithFastPath::new(tcp_engine(), fast.clone());
    let log = || fast.log.lock().unwrap().clone();
    let port = open_tcp(&e);
    assert_eq!(log(), ["hand over 40000"]);
    // the fast path carried a megabyte since: the host expects 1,005,000 now. A reset at the
    // window the engine saw last is stale: forwarded, nothing changes, the flow stays there
    *fast.lan_acked.lock().unwrap() = Some(flow::Acked {
        ack: 1_005_000,
        window: 1000,
    });
    assert_eq!(
        inb(&e, t(10), 0, &mut seg_in(port, tcp_flags::RST, 5000, 0)),
        Verdict::Tun
    );
    assert_eq!(log().len(), 1);
    assert!(alive_at(&e, 10 + to.tcp_reset));
    // in the window it carried: taken, and the flow comes back to the engine, which must see
    // whether the sender goes on (a reset the host did not take) or falls silent
    let rst = &mut seg_in(port, tcp_flags::RST, 1_005_000 + 999, 0);
    assert_eq!(inb(&e, t(20), 0, rst), Verdict::Tun);
    assert_eq!(log()[1..], ["withdraw 40000"]);
    // the server goes on: the reset did not hold, the session is established again and goes
    // back to the fast path after a few more packets
    for i in 0..u64::from(HAND_OVER_AFTER) {
        let data = &mut seg_in(port, ACK, 1_005_000, 101);
        assert_eq!(inb(&e, t(30 + i), 0, data), Verdict::Tun);
    }
    assert_eq!(log()[2..], ["hand over 40000"]);
    assert!(alive_at(&e, 30 + to.tcp_reset + 10));
}

#[test]
fn a_session_starting_over_comes_back_from_the_fast_path_for_its_handshake() {
    use std::sync::Arc;
    let fast = Arc::new(FakeFastPath::terse());
    let e = WithFastPath::new(tcp_engine(), fast.clone());
    let log = || fast.log.lock().unwrap().clone();
    let port = open_tcp(&e);
    out(&e, t(10), &mut seg_out(ACK | tcp_flags::FIN, 101, 5000));
    inb(
        &e,
        t(11),
        0,
        &mut seg_in(port, ACK | tcp_flags::FIN, 5000, 102),
    );
    assert_eq!(log(), ["hand over 40000"], "a closing flow may stay there");
    out(&e, t(20), &mut seg_out(tcp_flags::SYN, 90_000, 0));
    assert_eq!(log()[1..], ["withdraw 40000"]);
    inb(
        &e,
        t(21),
        0,
        &mut seg_in(port, tcp_flags::SYN | ACK, 70_000, 90_001),
    );
    out(&e, t(22), &mut seg_out(ACK, 90_001, 70_001));
    assert_eq!(
        log().len(),
        2,
        "not before it is established and a few packets long"
    );
    inb(&e, t(23), 0, &mut seg_in(port, ACK, 70_001, 90_001));
    assert_eq!(log()[2..], ["hand over 40000"]);
}

#[test]
fn a_dead_uplinks_probe_misses_the_window_the_fast_path_carried() {
    use std::sync::Arc;
    let fast = Arc::new(FakeFastPath::terse());
    let e = WithFastPath::new(tcp_engine(), fast.clone());
    open_tcp(&e);
    // the engine last saw the host expect 5000; since, the fast path carried 3 GB, so that
    // 5000 + 2^31 would now be inside the host's window
    let now = 5000u32.wrapping_add(3 << 30);
    *fast.lan_acked.lock().unwrap() = Some(flow::Acked {
        ack: now,
        window: 65535,
    });
    let probes = e.set_uplink_up(0, false);
    assert_eq!(probes.len(), 1);
    assert_eq!(read_u32(&probes[0], 24), now.wrapping_add(1 << 31));
    assert_eq!(fast.log.lock().unwrap()[1..], ["withdraw 40000"]);
}

#[test]
fn the_busiest_destinations_count_both_ways_and_what_the_fast_path_carried() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let e = WithFastPath::new(Engine::new(config((61000, 65535), vec![])), fake.clone());
    // dst(1): 3 UDP flows of one 100-byte datagram each way (128 IP bytes a datagram)
    for port in 1..=3 {
        let mut p = Ipv4Packet::udp(LAN, dst(1), port, 53, &[0; 100]).build();
        assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
        let ext = read_u16(&p, 20);
        let mut r = Ipv4Packet::udp(dst(1), UPLINK_1, 53, ext, &[0; 100]).build();
        assert_eq!(inb(&e, t(1), 0, &mut r), Verdict::Tun);
    }
    // dst(2): one small datagram out
    let mut p = Ipv4Packet::udp(LAN, dst(2), 9, 53, b"q").build();
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(1));
    let busiest = e.busiest_destinations(10);
    let seen: Vec<_> = busiest
        .iter()
        .map(|d| (d.addr, d.uplink, d.bytes, d.flows))
        .collect();
    assert_eq!(seen, [(dst(1), 0, 6 * 128, 3), (dst(2), 1, 29, 1)]);
    assert_eq!(e.busiest_destinations(1).len(), 1);

    // a steady TCP flow to dst(3), handed over; the fast path says it carried 1 MB
    *fake.bytes.lock().unwrap() = 1_000_000;
    let syn = &mut Ipv4Packet::tcp(LAN, dst(3), 40000, 443, b"")
        .flags(tcp_flags::SYN)
        .seq(1)
        .build();
    let Verdict::Uplink(u) = out(&e, t(2), syn) else {
        panic!("dropped")
    };
    let ext = read_u16(syn, 20);
    let addr = [UPLINK_1, UPLINK_2][usize::from(u)];
    inb(
        &e,
        t(3),
        u,
        &mut Ipv4Packet::tcp(dst(3), addr, 443, ext, b"")
            .flags(tcp_flags::SYN | ACK)
            .seq(100)
            .ack(2)
            .build(),
    );
    for i in 0..u64::from(HAND_OVER_AFTER) {
        out(
            &e,
            t(4 + i),
            &mut Ipv4Packet::tcp(LAN, dst(3), 40000, 443, b"")
                .flags(ACK)
                .seq(2)
                .ack(101)
                .build(),
        );
    }
    assert!(
        fake.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("hand over 6"))
    );
    let top = e.busiest_destinations(1)[0];
    assert_eq!((top.addr, top.flows), (dst(3), 1));
    assert!(top.bytes > 1_000_000, "{top:?}");
    // taken back (the host resets it): what the fast path carried stays with the flow
    out(
        &e,
        t(10),
        &mut Ipv4Packet::tcp(LAN, dst(3), 40000, 443, b"")
            .flags(tcp_flags::RST)
            .seq(2)
            .ack(101)
            .build(),
    );
    assert!(
        fake.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("withdraw 6"))
    );
    *fake.bytes.lock().unwrap() = 0;
    let top = e.busiest_destinations(1)[0];
    assert!(top.bytes > 1_000_000, "{top:?}");
}

/// Every LAN host, as far as the fast path's reach goes.
fn everywhere() -> Vec<Prefix> {
    vec![Prefix::new(0, 0).unwrap()]
}

/// Whether the engine has the flow of LAN port `port` to `remote` on the fast path.
fn engine_hands_over(e: &Engine, remote: u32, port: u16) -> bool {
    let mut on = false;
    lock(&e.shards[shard_of(remote)])
        .flows
        .for_each_mut(|f| on |= f.key.int_port == port && f.on_fast_path);
    on
}

#[test]
fn a_flow_taken_back_while_its_hand_over_waits_is_taken_back_after_it() {
    // the hand-over and the reset that takes the flow back come in one batch, before the
    // worker carries the batch's work out
    let fast = FakeFastPath::terse();
    let e = tcp_engine().with_fast_path(everywhere());
    open_tcp(&e);
    assert!(engine_hands_over(&e, dst(1), 40000));
    assert_eq!(
        out(&e, t(10), &mut seg_out(tcp_flags::RST, 101, 5000)),
        Verdict::Uplink(0)
    );
    assert!(!engine_hands_over(&e, dst(1), 40000));
    fast.carry_out(&e);
    assert_eq!(
        *fast.log.lock().unwrap(),
        ["hand over 40000", "withdraw 40000"]
    );
    assert_eq!(fast.held(), [0u16; 0], "the kernel lets go of it too");
}

#[test]
fn a_port_goes_back_to_its_pool_only_once_the_kernel_let_go_of_its_flow() {
    let fast = FakeFastPath::default();
    let e = single_port_engine().with_fast_path(everywhere());
    // LAN:5000's flow, answered and a few packets long: handed over, with the pool's one port
    let query = Ipv4Packet::udp(LAN, dst(1), 5000, 53, b"q").build();
    let answer = Ipv4Packet::udp(dst(1), UPLINK_1, 53, 61000, b"a").build();
    out(&e, t(0), &mut query.clone());
    assert_eq!(inb(&e, t(1), 0, &mut answer.clone()), Verdict::Tun);
    for i in 0..u64::from(HAND_OVER_AFTER) {
        assert_eq!(out(&e, t(2 + i), &mut query.clone()), Verdict::Uplink(0));
    }
    fast.carry_out(&e);
    assert_eq!(fast.held(), [5000]);
    // it expires (the kernel carried nothing of it either): its withdrawal is queued...
    let later = Timeouts::default().udp + 10;
    e.expire(t(later), &fast.carried(&e));
    assert_eq!(e.flow_count(), 0);
    // ...and until that is carried out, the kernel may still carry the flow with that port:
    // no other LAN endpoint gets it
    let mut other = Ipv4Packet::udp(LAN, dst(1), 6000, 53, b"q").build();
    assert_eq!(
        out(&e, t(later + 1), &mut other.clone()),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    fast.carry_out(&e);
    assert_eq!(fast.held(), [0u16; 0]);
    assert_eq!(out(&e, t(later + 2), &mut other), Verdict::Uplink(0));
    assert_eq!(read_u16(&other, 20), 61000);
}

#[test]
fn a_refused_hand_over_is_taken_back_behind_a_later_one_and_offered_again() {
    let fast = FakeFastPath::terse();
    let e = tcp_engine().with_fast_path(everywhere());
    let port = open_tcp(&e);
    // a worker takes the hand-over...
    let mut taken = Vec::new();
    e.take_fast_path_work(&mut taken, &mut Vec::new());
    assert_eq!(taken.len(), 1);
    // ...and meanwhile the flow is taken back (a reset the server does not take: the LAN host
    // goes on), then steady again and handed over anew
    out(&e, t(10), &mut seg_out(tcp_flags::RST, 101, 5000));
    for i in 0..u64::from(HAND_OVER_AFTER) {
        out(&e, t(11 + i), &mut seg_out(ACK, 101, 5000));
    }
    assert!(engine_hands_over(&e, dst(1), 40000));
    // the kernel's maps were full for the first hand-over: whatever is queued behind it, the
    // kernel ends up not holding the flow, and the engine knows
    *fast.full.lock().unwrap() = true;
    fast.carry_out_taken(&e, taken);
    *fast.full.lock().unwrap() = false;
    fast.carry_out(&e);
    assert_eq!(
        *fast.log.lock().unwrap(),
        [
            "refuse 40000",
            "withdraw 40000",
            "hand over 40000",
            "withdraw 40000"
        ]
    );
    assert_eq!(fast.held(), [0u16; 0]);
    assert!(!engine_hands_over(&e, dst(1), 40000));
    // offered again after as many packets
    for i in 0..u64::from(HAND_OVER_AFTER) {
        inb(&e, t(20 + i), 0, &mut seg_in(port, ACK, 5000, 101));
    }
    fast.carry_out(&e);
    assert_eq!(fast.held(), [40000]);
    assert!(engine_hands_over(&e, dst(1), 40000));
}

#[test]
fn a_full_queue_defers_a_hand_over_and_counts_it() {
    let fast = FakeFastPath::default();
    let e = Engine::new(config((61000, 65535), vec![])).with_fast_path_queue(everywhere(), 1);
    // two one-way UDP streams ready in one batch: the queue takes one
    let stream = |port| Ipv4Packet::udp(LAN, dst(1), port, 5004, b"rtp").build();
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) {
        out(&e, t(i), &mut stream(5004));
        out(&e, t(i), &mut stream(5006));
    }
    assert_eq!(e.counters().hand_overs_deferred, 1);
    fast.carry_out(&e);
    assert_eq!(fast.held(), [5004]);
    // the other is offered again after as many packets
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) {
        out(&e, t(100 + i), &mut stream(5006));
    }
    fast.carry_out(&e);
    assert_eq!(fast.held(), [5004, 5006]);
    assert_eq!(e.counters().hand_overs_deferred, 1);
}

#[test]
fn hosts_the_fast_path_cannot_reach_stay_in_the_engine() {
    // the fast path reaches the LAN link's subnet only; a host behind another router is
    // never handed over, however steady its flow
    let fast = FakeFastPath::default();
    let link = Prefix::new(LAN, 24).unwrap();
    let e = Engine::new(config((61000, 65535), vec![])).with_fast_path(vec![link]);
    let routed = u32::from_be_bytes([198, 18, 44, 10]);
    for (host, port) in [(routed, 5004), (LAN, 5006)] {
        for i in 0..2 * u64::from(HAND_OVER_ONE_WAY_AFTER) {
            let mut p = Ipv4Packet::udp(host, dst(1), port, 5004, b"rtp").build();
            assert!(matches!(out(&e, t(i), &mut p), Verdict::Uplink(_)));
        }
    }
    fast.carry_out(&e);
    assert_eq!(fast.held(), [5006]);
}

#[test]
fn a_flow_used_after_the_sweep_read_its_clock_is_not_idle() {
    // The sweep reads its clock, then the fast path's maps (syscalls, slow on a loaded
    // machine), then each shard in turn: meanwhile a worker stamps a flow with a later time.
    // That flow was just used: it keeps its mapping, and its answers reach the LAN host.
    let e = Engine::new(config((61000, 65535), vec![]));
    let p = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"a").build();
    let Verdict::Uplink(u) = out(&e, t(10_001), p) else {
        panic!("not sent");
    };
    let (addr, ext) = (read_u32(p, 12), read_u16(p, 20));
    e.expire(t(10_000), &CarriedFlows::NONE);
    assert_eq!(e.flow_count(), 1, "just used: not idle");
    let answer = &mut Ipv4Packet::udp(dst(1), addr, 5000, ext, b"b").build();
    assert_eq!(inb(&e, t(10_002), u, answer), Verdict::Tun);
    assert_eq!(read_u32(answer, 16), LAN);
    // and it still expires once idle for its timeout
    e.expire(t(10_001 + Timeouts::default().udp), &CarriedFlows::NONE);
    assert_eq!(e.flow_count(), 1, "answered at 10 002");
    e.expire(t(10_002 + Timeouts::default().udp), &CarriedFlows::NONE);
    assert_eq!(e.flow_count(), 0);
}
