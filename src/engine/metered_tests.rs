//! Lines that cost money, as the engine sees them: a cap reached (the line ranked below the
//! others, or out of service), failback off a backup, balance by bytes.

use super::failback::{FailbackMode, FailbackPolicy};
use super::packet::{TCP_SYN, read_u16};
use super::select::{Balance, Pin, Prefix};
use super::tests::config;
use super::*;
use wanlb_testkit::Ipv4Packet;

const LAN: u32 = u32::from_be_bytes([198, 18, 3, 10]);
const UPLINK_2: u32 = u32::from_be_bytes([198, 18, 2, 1]);
const ACK: u8 = 0x10;
const MIN: u64 = 60_000;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn dst(i: u32) -> u32 {
    u32::from_be_bytes([198, 19, 0, 0]) + i
}

fn out(e: &Engine, now: Timestamp, pkt: &mut [u8]) -> Verdict {
    e.outbound(now, pkt, &mut L4Checksum::Complete)
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
        .flags(TCP_SYN)
        .seq(100)
        .build();
    assert_eq!(out(e, t(0), syn), Verdict::Uplink(1));
    let ext = read_u16(syn, 20);
    let synack = &mut Ipv4Packet::tcp(to, UPLINK_2, 443, ext, b"")
        .flags(TCP_SYN | ACK)
        .seq(4999)
        .ack(101)
        .build();
    assert_eq!(
        e.inbound(t(1), 1, synack, &mut L4Checksum::Complete),
        Verdict::Tun
    );
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
    e.set_uplink_up(0, false);
    established_on_lte(&e, 40000, dst(1));
    established_on_lte(&e, 40001, dst(9));
    assert!(e.set_uplink_up(0, true).is_empty(), "TCP stays at first");
    assert!(e.fail_back(t(10_000)).is_empty());
    assert_eq!(
        next_segment(&e, t(20_000), 40000, dst(1)),
        Verdict::Uplink(1)
    );
    assert!(
        e.fail_back(t(10_000 + 5 * MIN - 1)).is_empty(),
        "not before"
    );
    let probes = e.fail_back(t(10_000 + 5 * MIN));
    assert_eq!(probes.len(), 1, "the pinned one stays");
    assert_eq!(packet::read_u32(&probes[0], 12), dst(1));
    assert_eq!(read_u16(&probes[0], 22), 40000);
    // the host's answer becomes its reset; the pinned connection goes on
    assert_eq!(next_segment(&e, t(6 * MIN), 40000, dst(1)), Verdict::Tun);
    assert_eq!(
        next_segment(&e, t(6 * MIN), 40001, dst(9)),
        Verdict::Uplink(1)
    );
    assert!(e.fail_back(t(20 * MIN)).is_empty(), "once");
    assert_eq!(e.counters().resets, 1);
}

#[test]
fn with_keep_tcp_finishes_on_the_backup() {
    let e = fibre_and_lte(FailbackMode::Keep, vec![]);
    e.set_uplink_up(0, false);
    established_on_lte(&e, 40000, dst(1));
    e.set_uplink_up(0, true);
    assert!(e.fail_back(t(1_000)).is_empty());
    assert!(e.fail_back(t(60 * MIN)).is_empty());
    assert_eq!(
        next_segment(&e, t(61 * MIN), 40000, dst(1)),
        Verdict::Uplink(1)
    );
}

#[test]
fn a_flapping_primary_resets_nothing() {
    let e = fibre_and_lte(FailbackMode::Move, vec![]);
    e.set_uplink_up(0, false);
    established_on_lte(&e, 40000, dst(1));
    for k in 0..10 {
        e.set_uplink_up(0, true);
        assert!(e.fail_back(t(k * 4 * MIN)).is_empty());
        assert!(e.fail_back(t(k * 4 * MIN + 3 * MIN)).is_empty());
        // down again before the grace is over
        assert!(e.set_uplink_up(0, false).is_empty());
        assert!(e.fail_back(t(k * 4 * MIN + 4 * MIN - 1)).is_empty());
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
    assert!(e.set_cap_effect(0, CapEffect::Backup).is_empty());
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
    e.set_uplink_up(1, false);
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
    e.set_cap_effect(0, CapEffect::Off);
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
    e.set_cap_effect(0, CapEffect::None);
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
