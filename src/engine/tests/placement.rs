//! Where new flows go and what they take: ports from the pools, uplinks by pin, affinity and
//! weight, and what expiry gives back.

use super::translation::UDP_OUT;
use super::*;

#[test]
fn pool_exhaustion_is_a_counted_drop() {
    let e = single_port_engine();
    let mut p = UDP_OUT;
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    // another LAN port on the same uplink: the one-port pool is taken
    let e2 = Engine::new(config((61000, 61000), vec![]));
    e2.set_uplink_up(1, false, &CarriedFlows::NONE);
    let mut a = UDP_OUT;
    let mut b = UDP_OUT;
    b[21] ^= 1; // other source port (checksum no longer matters for the drop)
    assert_eq!(out(&e2, t(0), &mut a), Verdict::Uplink(0));
    assert_eq!(
        out(&e2, t(0), &mut b),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    assert_eq!(e2.counters().drop_count(DropReason::PortsExhausted), 1);
    // once the first flow expires its port is free again
    e2.expire(t(Timeouts::default().udp), &CarriedFlows::NONE);
    let mut b = UDP_OUT;
    b[21] ^= 1;
    assert_eq!(
        out(&e2, t(Timeouts::default().udp), &mut b),
        Verdict::Uplink(0)
    );
}

#[test]
fn no_uplink_up_is_a_counted_drop() {
    let e = single_port_engine();
    e.set_uplink_up(0, false, &CarriedFlows::NONE);
    e.set_uplink_up(1, false, &CarriedFlows::NONE);
    let mut p = UDP_OUT;
    assert_eq!(out(&e, t(0), &mut p), Verdict::Drop(DropReason::NoUplink));
    assert_eq!(e.counters().drop_count(DropReason::NoUplink), 1);
}

#[test]
fn weighted_shares_over_new_destinations_stay_within_one() {
    let e = Engine::new(by_destination(config((61000, 65535), vec![])));
    let mut seen = [0i64; 2];
    for i in 1..=90 {
        let mut p = Ipv4Packet::udp(LAN, dst(i), 5000, 53, b"q").build();
        let Verdict::Uplink(u) = out(&e, t(0), &mut p) else {
            panic!("dropped")
        };
        seen[usize::from(u)] += 1;
        assert!(
            (3 * seen[0] - 2 * i64::from(i)).abs() <= 3,
            "after {i}: {seen:?}"
        );
    }
    assert_eq!(seen, [60, 30]);
    assert_eq!(e.counters().uplinks[0].destinations, 60);
    assert_eq!(e.counters().uplinks[1].destinations, 30);
}

#[test]
fn flows_to_one_destination_share_its_uplink() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let mut first = None;
    for port in 0..20u16 {
        let mut p =
            Ipv4Packet::udp(LAN + u32::from(port % 3), dst(7), 1000 + port, 443, b"x").build();
        let v = out(&e, t(u64::from(port)), &mut p);
        assert_eq!(*first.get_or_insert(v), v);
    }
    assert_eq!(e.flow_count(), 20);
    assert_eq!(e.destination_count(), 1);
}

#[test]
fn lan_endpoint_keeps_its_external_port_across_destinations() {
    let e = Engine::new(by_destination(config((61000, 65535), vec![])));
    let mut a = Ipv4Packet::udp(LAN, dst(1), 5000, 53, b"q").build();
    let mut b = Ipv4Packet::udp(LAN, dst(4), 5000, 53, b"q").build();
    // dst(1) -> uplink 0, dst(2) -> 1, dst(3) -> 0; dst(4) -> 0 again
    assert_eq!(out(&e, t(0), &mut a), Verdict::Uplink(0));
    for i in [2, 3] {
        out(
            &e,
            t(0),
            &mut Ipv4Packet::udp(LAN, dst(i), 9, 53, b"q").build(),
        );
    }
    assert_eq!(out(&e, t(0), &mut b), Verdict::Uplink(0));
    assert_eq!(read_u16(&a, 20), read_u16(&b, 20));
    // (LAN:5000, uplink 0), (LAN:9, uplink 1), (LAN:9, uplink 0)
    assert_eq!(e.mapping_count(), 3);
}

#[test]
fn pins_win_and_do_not_count_against_weights() {
    let pin = Pin {
        prefix: Prefix::new(dst(91), 32).unwrap(),
        uplink: 1,
        strict: false,
    };
    let e = Engine::new(by_destination(config((61000, 65535), vec![pin])));
    for _ in 0..5 {
        let mut p = Ipv4Packet::udp(LAN, dst(91), 6667, 6667, b"irc").build();
        assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(1));
        // a new flow each time: a new LAN port
        e.expire(t(Timeouts::default().udp), &CarriedFlows::NONE);
    }
    // the weighted sequence is untouched by the pinned flows: it starts at uplink 0
    let picks: Vec<_> = (1..=3)
        .map(|i| {
            out(
                &e,
                t(0),
                &mut Ipv4Packet::udp(LAN, dst(i), 5000, 53, b"q").build(),
            )
        })
        .collect();
    assert_eq!(
        picks,
        [Verdict::Uplink(0), Verdict::Uplink(1), Verdict::Uplink(0)]
    );
}

#[test]
fn pinned_destination_falls_back_when_its_uplink_is_down() {
    let pin = Pin {
        prefix: Prefix::new(dst(91), 32).unwrap(),
        uplink: 1,
        strict: false,
    };
    let e = Engine::new(config((61000, 65535), vec![pin]));
    e.set_uplink_up(1, false, &CarriedFlows::NONE);
    let mut p = Ipv4Packet::udp(LAN, dst(91), 6667, 6667, b"irc").build();
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
}

#[test]
fn affinity_holds_for_the_idle_timeout_after_the_last_flow() {
    let udp_timeout = Timeouts::default().udp;
    let e = Engine::new(config((61000, 65535), vec![]));
    // dst(1) takes uplink 0; the next weighted pick would be uplink 1
    assert_eq!(
        out(
            &e,
            t(0),
            &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    // last packet at 1 min; the flow expires 5 min later; the binding 10 min after the packet
    assert_eq!(
        out(
            &e,
            t(MIN),
            &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    e.expire(t(MIN + udp_timeout), &CarriedFlows::NONE);
    assert_eq!(e.flow_count(), 0);
    assert_eq!(e.destination_count(), 1);
    let now = MIN + 10 * MIN - 1;
    e.expire(t(now), &CarriedFlows::NONE);
    assert_eq!(
        out(
            &e,
            t(now),
            &mut Ipv4Packet::udp(LAN, dst(1), 2, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    // that new flow refreshed the binding; let it lapse fully this time
    let later = now + udp_timeout + 10 * MIN;
    e.expire(t(later), &CarriedFlows::NONE);
    assert_eq!(e.destination_count(), 0);
    assert_eq!(
        out(
            &e,
            t(later),
            &mut Ipv4Packet::udp(LAN, dst(1), 3, 53, b"q").build()
        ),
        Verdict::Uplink(1)
    );
}

#[test]
fn expiry_returns_ports_and_keeps_live_flows() {
    let e = Engine::new(config((61000, 65535), vec![]));
    out(
        &e,
        t(0),
        &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build(),
    );
    out(
        &e,
        t(200_000),
        &mut Ipv4Packet::udp(LAN, dst(2), 2, 53, b"q").build(),
    );
    e.expire(t(Timeouts::default().udp), &CarriedFlows::NONE);
    assert_eq!((e.flow_count(), e.mapping_count()), (1, 1));
}

#[test]
fn workers_sharing_the_engine_never_share_an_external_port() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let ports = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for worker in 0..4u32 {
            let (e, ports) = (&e, &ports);
            s.spawn(move || {
                for i in 0..500u32 {
                    // each worker its own LAN host, every flow a new LAN port and destination
                    let mut p = Ipv4Packet::udp(
                        LAN + worker,
                        dst(worker * 1000 + i),
                        10000 + u16::try_from(i).unwrap(),
                        53,
                        b"q",
                    )
                    .build();
                    let Verdict::Uplink(u) = e.outbound(t(0), &mut p, &mut L4Checksum::Complete)
                    else {
                        panic!("dropped")
                    };
                    ports.lock().unwrap().push((u, read_u16(&p, 20)));
                }
            });
        }
    });
    let mut ports = ports.into_inner().unwrap();
    ports.sort();
    let total = ports.len();
    ports.dedup();
    assert_eq!(
        ports.len(),
        total,
        "an external (uplink, port) was given twice"
    );
    assert_eq!(
        (e.flow_count(), e.mapping_count(), e.destination_count()),
        (2000, 2000, 2000)
    );
    let c = e.counters();
    assert_eq!(
        c.uplinks.iter().map(|u| u.outbound_packets).sum::<u64>(),
        2000
    );
    assert_eq!(
        c.uplinks.iter().map(|u| u.destinations).collect::<Vec<_>>(),
        [1333, 667],
        "2:1 even when picked from four threads"
    );
}
