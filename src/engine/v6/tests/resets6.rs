//! IPv6 TCP connections reset towards the LAN host when a cap takes their line out of
//! service, and by failback=move, as IPv4's are: a probe asks the host for its sequence
//! number, and its answer becomes the reset.

use super::*;
use crate::engine::CarriedFlows;
use crate::engine::failback::{FailbackMode, FailbackPolicy};
use crate::engine::select::Balance;
use crate::metered::CapEffect;

const NONE: &CarriedFlows = &CarriedFlows::NONE;

/// A connection from HOST:`port` to server(1):443 through line 0 (NAT66), established, the
/// server's last segment ending at 7006.
fn established_on_line0(e: &Engine, port: u16) {
    let mut syn = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(port, 443, 100, 0, SYN, &[]),
    );
    assert_eq!(out(e, t(0), &mut syn), Verdict::Uplink(0));
    let ext = u16::from_be_bytes([syn[40], syn[41]]);
    let flags = SYN | ACK;
    let mut syn_ack = packet(
        server(1),
        LINE0_ADDR,
        PROTO_TCP,
        &tcp(443, ext, 7000, 101, flags, &[]),
    );
    assert_eq!(inb(e, t(1), 0, &mut syn_ack), Verdict::Tun);
    let mut ack = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(port, 443, 101, 7001, ACK, &[]),
    );
    assert_eq!(out(e, t(2), &mut ack), Verdict::Uplink(0));
    let mut data = packet(
        server(1),
        LINE0_ADDR,
        PROTO_TCP,
        &tcp(443, ext, 7001, 101, ACK, b"hello"),
    );
    assert_eq!(inb(e, t(3), 0, &mut data), Verdict::Tun);
}

/// `probe` is the one for HOST:`port`; the host's answer to it becomes a reset carrying the
/// host's own acknowledgement number, written back to the host.
fn reset_by_answer(e: &Engine, now: Timestamp, probe: &[u8], port: u16) {
    let expected = packet(
        server(1),
        HOST,
        PROTO_TCP,
        &answer_tcp(443, port, 7001u32.wrapping_add(1 << 31), 0, ACK, &[0]),
    );
    assert_eq!(probe, &expected[..]);
    let mut dup_ack = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(port, 443, 101, 7006, ACK, &[]),
    );
    assert_eq!(out(e, now, &mut dup_ack), Verdict::Tun);
    let reset = packet(
        server(1),
        HOST,
        PROTO_TCP,
        &answer_tcp(443, port, 7006, 101, RST | ACK, &[]),
    );
    assert_eq!(dup_ack[..60], reset[..]);
    assert!(transport_ok(&dup_ack[..60]));
}

#[test]
fn a_line_off_for_its_cap_resets_its_ipv6_tcp_with_the_hosts_own_sequence_number() {
    let e = nat66_engine();
    e.set_uplink6(1, npt_line(true));
    established_on_line0(&e, 40000);
    // ranked below the others: what runs keeps running
    assert!(e.set_cap_effect(0, CapEffect::Backup, NONE).is_empty());
    // out of service: as if down
    let resets = e.set_cap_effect(0, CapEffect::Off, NONE);
    assert_eq!((resets.v4.len(), resets.v6.len()), (0, 1));
    reset_by_answer(&e, t(4), &resets.v6[0], 40000);
    assert_eq!(e.counters().resets, 1);
    assert_eq!(e.flows6(), 0);
}

#[test]
fn with_move_ipv6_tcp_leaves_the_backup_after_the_grace_but_a_pinned_one_stays() {
    // line 0 a backup (tier 2) whose failback is move, 5 minutes
    let uplinks = [(1u8, 2u8), (2, 1)]
        .iter()
        .map(|&(net, tier)| UplinkConfig {
            name: format!("isp{net}"),
            addr: u32::from_be_bytes([198, 18, net, 1]),
            weight: 1,
            tier,
        })
        .collect();
    let e = Engine::new(EngineConfig {
        uplinks,
        pins: vec![],
        affinity_timeout_ms: 10 * MIN,
        timeouts: Timeouts::default(),
        ports: (61000, 61001),
        seed: 42,
        reset_tcp_on_down: true,
        udp_affinity: UdpAffinity::Destination,
        limits: Limits::unlimited(),
    })
    .with_lan_nets6(vec![Prefix::masked(LAN_NET, 64).unwrap()]);
    let lte = FailbackPolicy {
        mode: FailbackMode::Move,
        grace_ms: 5 * MIN,
    };
    e.set_line_policy(Balance::Destinations, vec![lte, FailbackPolicy::default()]);
    let pin = Pin {
        prefix: Prefix::masked(server(9), 128).unwrap(),
        uplink: 0,
        strict: false,
    };
    e.set_pins6(vec![pin]);
    // the better line 1 down: connections on the backup, line 0
    e.set_uplink_up(1, false, NONE);
    e.set_uplink6(0, nat66_line(true));
    established_on_line0(&e, 40000);
    let mut pinned = packet(HOST, server(9), PROTO_TCP, &tcp(40001, 443, 1, 0, SYN, &[]));
    assert_eq!(out(&e, t(0), &mut pinned), Verdict::Uplink(0));
    // line 1 back, IPv4 and IPv6: after the grace, not before, the connection is reset
    assert!(e.set_uplink_up(1, true, NONE).is_empty());
    assert!(
        e.set_uplink6(1, npt_line(true)).is_empty(),
        "TCP stays at first"
    );
    assert!(e.fail_back(e.failbacks_due(t(10_000)), NONE).is_empty());
    let due = e.failbacks_due(t(10_000 + 5 * MIN));
    assert_eq!(due, 1);
    let resets = e.fail_back(due, NONE);
    assert_eq!(
        (resets.v4.len(), resets.v6.len()),
        (0, 1),
        "the pinned one stays"
    );
    reset_by_answer(&e, t(6 * MIN), &resets.v6[0], 40000);
    let mut more = packet(HOST, server(9), PROTO_TCP, &tcp(40001, 443, 2, 0, ACK, &[]));
    assert_eq!(out(&e, t(6 * MIN), &mut more), Verdict::Uplink(0));
}
