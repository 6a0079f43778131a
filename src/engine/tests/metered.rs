//! Uplinks that cost money, as the engine sees them: a cap reached (the uplink ranked below
//! the others, or out of service), failback off a backup, balance by bytes.

use super::super::failback::{FailbackMode, FailbackPolicy};
use super::super::select::Balance;
use super::tcp_flags::SYN;
use super::*;
use crate::metered::CapEffect;

const NONE: &CarriedFlows = &CarriedFlows::NONE;

/// Resets the TCP connections whose failback is due at `now`.
fn fail_back(e: &Engine, now: Timestamp) -> Vec<[u8; SEQUENCE_PROBE]> {
    e.fail_back(e.failbacks_due(now), NONE).v4
}

/// A fibre line (0) and an LTE backup of tier 2 (1) whose failback is `mode`, 5 minutes.
fn fibre_and_lte(mode: FailbackMode, pins: Vec<Pin>) -> Engine {
    let mut cfg = config((61000, 65535), pins);
    cfg.uplinks[1].tier = 2;
    let e = Engine::new(cfg);
    let keep = FailbackPolicy::default();
    let lte = FailbackPolicy {
        mode,
        grace_ms: 5 * MIN,
    };
    e.set_line_policy(Balance::Destinations, vec![keep, lte]);
    e
}

/// An established connection from LAN port `port` to `to`:443 through uplink 1 (the LTE).
fn established_on_lte(e: &Engine, port: u16, to: u32) {
    let syn = &mut Ipv4Packet::tcp(LAN, to, port, 443, b"")
        .flags(SYN)
        .seq(100)
        .build();
    assert_eq!(out(e, t(0), syn), Verdict::Uplink(1));
    let ext = read_u16(syn, 20);
    let synack = &mut Ipv4Packet::tcp(to, UPLINK_2, 443, ext, b"")
        .flags(SYN | ACK)
        .seq(4999)
        .ack(101)
        .build();
    assert_eq!(inb(e, t(1), 1, synack), Verdict::Tun);
    let ack = &mut Ipv4Packet::tcp(LAN, to, port, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(e, t(2), ack), Verdict::Uplink(1));
}

/// The host's next segment of the connection from `port`: where it goes.
fn next_segment(e: &Engine, now: Timestamp, port: u16, to: u32) -> Verdict {
    let more = &mut Ipv4Packet::tcp(LAN, to, port, 443, b"x")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    out(e, now, more)
}

#[test]
fn with_move_tcp_leaves_the_backup_after_the_grace_and_not_before() {
    let pin = Pin {
        prefix: Prefix::new(dst(9), 32).unwrap(),
        uplink: 1,
        strict: false,
    };
    let e = fibre_and_lte(FailbackMode::Move, vec![pin]);
    e.set_uplink_up(0, false, NONE);
    established_on_lte(&e, 40000, dst(1));
    established_on_lte(&e, 40001, dst(9));
    assert!(
        e.set_uplink_up(0, true, NONE).is_empty(),
        "TCP stays at first"
    );
    assert!(fail_back(&e, t(10_000)).is_empty());
    assert_eq!(
        next_segment(&e, t(20_000), 40000, dst(1)),
        Verdict::Uplink(1)
    );
    assert!(
        fail_back(&e, t(10_000 + 5 * MIN - 1)).is_empty(),
        "not before"
    );
    let probes = fail_back(&e, t(10_000 + 5 * MIN));
    assert_eq!(probes.len(), 1, "the pinned one stays");
    assert_eq!(read_u32(&probes[0], 12), dst(1));
    assert_eq!(read_u16(&probes[0], 22), 40000);
    // the host's answer becomes its reset; the pinned connection goes on
    assert_eq!(next_segment(&e, t(6 * MIN), 40000, dst(1)), Verdict::Tun);
    assert_eq!(
        next_segment(&e, t(6 * MIN), 40001, dst(9)),
        Verdict::Uplink(1)
    );
    assert!(fail_back(&e, t(20 * MIN)).is_empty(), "once");
    assert_eq!(e.counters().resets, 1);
}

#[test]
fn with_keep_tcp_finishes_on_the_backup() {
    let e = fibre_and_lte(FailbackMode::Keep, vec![]);
    e.set_uplink_up(0, false, NONE);
    established_on_lte(&e, 40000, dst(1));
    e.set_uplink_up(0, true, NONE);
    assert!(fail_back(&e, t(1_000)).is_empty());
    assert!(fail_back(&e, t(60 * MIN)).is_empty());
    assert_eq!(
        next_segment(&e, t(61 * MIN), 40000, dst(1)),
        Verdict::Uplink(1)
    );
}

#[test]
fn a_flapping_primary_resets_nothing() {
    let e = fibre_and_lte(FailbackMode::Move, vec![]);
    e.set_uplink_up(0, false, NONE);
    established_on_lte(&e, 40000, dst(1));
    for k in 0..10 {
        e.set_uplink_up(0, true, NONE);
        assert!(fail_back(&e, t(k * 4 * MIN)).is_empty());
        assert!(fail_back(&e, t(k * 4 * MIN + 3 * MIN)).is_empty());
        // down again before the grace is over
        assert!(e.set_uplink_up(0, false, NONE).is_empty());
        assert!(fail_back(&e, t(k * 4 * MIN + 4 * MIN - 1)).is_empty());
    }
    assert_eq!(
        next_segment(&e, t(41 * MIN), 40000, dst(1)),
        Verdict::Uplink(1)
    );
    assert_eq!(e.counters().resets, 0);
}

#[test]
fn a_line_at_its_cap_as_backup_takes_no_new_destination_and_keeps_its_flows() {
    let pin = Pin {
        prefix: Prefix::new(dst(9), 32).unwrap(),
        uplink: 0,
        strict: true,
    };
    let e = Engine::new(config((61000, 65535), vec![pin]));
    let running = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"a").build();
    assert_eq!(out(&e, t(0), running), Verdict::Uplink(0));
    assert!(e.set_cap_effect(0, CapEffect::Backup, NONE).is_empty());
    for i in 2..=8 {
        let p = &mut Ipv4Packet::udp(LAN, dst(i), 1, 53, b"q").build();
        assert_eq!(out(&e, t(1), p), Verdict::Uplink(1), "destination {i}");
    }
    // what runs on it keeps running, the pin stays, and a new destination of the running
    // socket goes elsewhere
    let again = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"b").build();
    assert_eq!(out(&e, t(2), again), Verdict::Uplink(0));
    let pinned = &mut Ipv4Packet::udp(LAN, dst(9), 2, 53, b"q").build();
    assert_eq!(out(&e, t(2), pinned), Verdict::Uplink(0));
    let other = &mut Ipv4Packet::udp(LAN, dst(20), 5000, 5000, b"c").build();
    assert_eq!(out(&e, t(2), other), Verdict::Uplink(1));
    assert_eq!(e.counters().moved, 0);
    // with the other line down, it takes new flows again
    e.set_uplink_up(1, false, NONE);
    let p = &mut Ipv4Packet::udp(LAN, dst(30), 1, 53, b"q").build();
    assert_eq!(out(&e, t(3), p), Verdict::Uplink(0));
}

#[test]
fn a_line_at_its_cap_with_off_leaves_service_as_if_down() {
    let strict = Pin {
        prefix: Prefix::new(dst(9), 32).unwrap(),
        uplink: 0,
        strict: true,
    };
    let loose = Pin {
        prefix: Prefix::new(dst(8), 32).unwrap(),
        uplink: 0,
        strict: false,
    };
    let e = Engine::new(config((61000, 65535), vec![strict, loose]));
    let running = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"a").build();
    assert_eq!(out(&e, t(0), running), Verdict::Uplink(0));
    e.set_cap_effect(0, CapEffect::Off, NONE);
    let again = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"b").build();
    assert_eq!(out(&e, t(1), again), Verdict::Uplink(1), "moved");
    assert_eq!(e.counters().moved, 1);
    let pinned = &mut Ipv4Packet::udp(LAN, dst(8), 2, 53, b"q").build();
    assert_eq!(
        out(&e, t(1), pinned),
        Verdict::Uplink(1),
        "a pin falls back"
    );
    let strictly = &mut Ipv4Packet::udp(LAN, dst(9), 2, 53, b"q").build();
    assert_eq!(
        out(&e, t(1), strictly),
        Verdict::Drop(DropReason::PinnedUplinkDown)
    );
    // the cap lifted (a new period): back in service
    e.set_cap_effect(0, CapEffect::None, NONE);
    let back = &mut Ipv4Packet::udp(LAN, dst(9), 3, 53, b"q").build();
    assert_eq!(out(&e, t(2), back), Verdict::Uplink(0));
}

#[test]
fn by_bytes_new_destinations_go_to_the_line_below_its_share() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let policy = vec![FailbackPolicy::default(); 2];
    e.set_line_policy(Balance::Bytes, policy.clone());
    // weights 2:1; the first line carried ten times the second
    e.set_recent_bytes(&[10_000_000, 1_000_000]);
    for i in 1..=10u16 {
        let p = &mut Ipv4Packet::udp(LAN, dst(i.into()), i, 53, b"q").build();
        assert_eq!(out(&e, t(0), p), Verdict::Uplink(1));
    }
    e.set_line_policy(Balance::Destinations, policy);
    let picks: Vec<Verdict> = (11..=13u16)
        .map(|i| {
            out(
                &e,
                t(0),
                &mut Ipv4Packet::udp(LAN, dst(i.into()), i, 53, b"q").build(),
            )
        })
        .collect();
    assert!(picks.contains(&Verdict::Uplink(0)), "{picks:?}");
}
