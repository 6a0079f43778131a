//! A reload while flows run: weights, pins, tiers and timeouts change, flows stay.

use super::*;

#[test]
fn a_reload_changes_the_split_of_new_destinations_and_keeps_every_flow() {
    let e = Engine::new(by_destination(config((61000, 65535), vec![])));
    let mut before = Vec::new();
    for i in 1..=30u16 {
        let mut p = Ipv4Packet::udp(LAN, dst(i.into()), 5000 + i, 53, b"q").build();
        let v = out(&e, t(0), &mut p);
        before.push((v, read_u16(&p, 20)));
    }
    let mut cfg = config((61000, 65535), vec![]);
    cfg.uplinks[0].weight = 1;
    e.reconfigure(&by_destination(cfg.clone()));
    // every flow keeps its uplink and external port
    for i in 1..=30u16 {
        let mut p = Ipv4Packet::udp(LAN, dst(i.into()), 5000 + i, 53, b"q").build();
        let v = out(&e, t(1), &mut p);
        assert_eq!(
            (v, read_u16(&p, 20)),
            before[usize::from(i) - 1],
            "flow {i}"
        );
    }
    assert_eq!(e.flow_count(), 30);
    // new destinations split 1:1, alternating
    let mut seen = [0u32; 2];
    for i in 101..=140 {
        let mut p = Ipv4Packet::udp(LAN, dst(i), 7000, 53, b"q").build();
        let Verdict::Uplink(u) = out(&e, t(2), &mut p) else {
            panic!("dropped")
        };
        seen[usize::from(u)] += 1;
    }
    assert_eq!(seen, [20, 20]);
    assert_eq!(e.counters().drops.iter().sum::<u64>(), 0);
}

#[test]
fn a_reloaded_pin_takes_new_flows_and_leaves_running_ones() {
    let e = Engine::new(by_destination(config((61000, 65535), vec![])));
    // dst(1) goes to uplink 0 by weight
    let mut running = Ipv4Packet::udp(LAN, dst(1), 6667, 6667, b"irc").build();
    assert_eq!(out(&e, t(0), &mut running), Verdict::Uplink(0));
    let pin = Pin {
        prefix: Prefix::new(dst(0), 24).unwrap(),
        uplink: 1,
        strict: false,
    };
    e.reconfigure(&by_destination(config((61000, 65535), vec![pin])));
    let mut running = Ipv4Packet::udp(LAN, dst(1), 6667, 6667, b"irc").build();
    assert_eq!(out(&e, t(1), &mut running), Verdict::Uplink(0));
    for i in 2..=5 {
        let mut p = Ipv4Packet::udp(LAN, dst(i), 6667, 6667, b"irc").build();
        assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(1), "dst({i})");
    }
    // and a pin removed by the next reload no longer holds
    e.reconfigure(&by_destination(config((61000, 65535), vec![])));
    let picks: Vec<_> = (10..=12)
        .map(|i| {
            out(
                &e,
                t(2),
                &mut Ipv4Packet::udp(LAN, dst(i), 1, 53, b"q").build(),
            )
        })
        .collect();
    assert!(picks.contains(&Verdict::Uplink(0)), "{picks:?}");
}

#[test]
fn an_uplink_reloaded_into_a_backup_tier_gives_up_its_udp_but_not_its_tcp() {
    let e = Engine::new(config((61000, 65535), vec![]));
    // dst(1) -> uplink 0, dst(2) -> uplink 1
    out(
        &e,
        t(0),
        &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build(),
    );
    let udp = &mut Ipv4Packet::udp(LAN, dst(2), 7, 7, b"u").build();
    assert_eq!(out(&e, t(0), udp), Verdict::Uplink(1));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(2), 40000, 443, b"")
        .flags(tcp_flags::SYN)
        .seq(1)
        .build();
    assert_eq!(out(&e, t(0), syn), Verdict::Uplink(1));
    let mut cfg = config((61000, 65535), vec![]);
    cfg.uplinks[1].tier = 2;
    e.reconfigure(&cfg);
    let udp = &mut Ipv4Packet::udp(LAN, dst(2), 7, 7, b"u").build();
    assert_eq!(out(&e, t(1), udp), Verdict::Uplink(0), "moves");
    let tcp = &mut Ipv4Packet::tcp(LAN, dst(2), 40000, 443, b"")
        .flags(ACK)
        .seq(2)
        .ack(1)
        .build();
    assert_eq!(out(&e, t(1), tcp), Verdict::Uplink(1), "left to finish");
    assert_eq!(e.counters().resets, 0);
}

#[test]
fn reloaded_timeouts_apply_at_the_next_expiry() {
    let e = Engine::new(config((61000, 65535), vec![]));
    out(
        &e,
        t(0),
        &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build(),
    );
    let mut cfg = config((61000, 65535), vec![]);
    cfg.timeouts.udp = 2 * MIN;
    cfg.affinity_timeout_ms = MIN;
    e.reconfigure(&cfg);
    e.expire(t(2 * MIN), &CarriedFlows::NONE);
    assert_eq!(e.flow_count(), 0, "the new UDP timeout");
    e.expire(t(3 * MIN), &CarriedFlows::NONE);
    assert_eq!(e.destination_count(), 0, "the new affinity timeout");
}
