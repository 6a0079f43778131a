//! IPv6 flows and the kernel fast path: handed over once steady (NAT66 and NPTv6 alike),
//! taken back and withdrawn by IPv4's rules, a NAT66 port reused only once the fast path let go.

use super::*;
use crate::engine::HAND_OVER_AFTER;
use crate::engine::flow::Acked;
use crate::engine::offload::{Carried, CarriedFlows, FastFlow, FastPathDone, FastPathWork};

/// `e` handing steady IPv6 flows of every host to a fast path (and no IPv4 one).
fn with_fast_path(e: Engine) -> Engine {
    e.with_fast_path(vec![])
        .with_fast_path6(vec![Prefix::masked(0, 0).unwrap()])
}

/// The IPv6 work queued, taken.
fn taken(e: &Engine) -> Vec<FastPathWork<V6>> {
    let (mut four, mut six) = (Vec::new(), Vec::new());
    e.take_fast_path_work(&mut four, &mut six);
    assert!(four.is_empty(), "no IPv4 work: {four:?}");
    six
}

/// A UDP exchange from HOST:5353 to `server(1)`:53 through line `uplink` at `to` (the
/// address the server sees, and the port), `n` times each way, from `at` ms on.
fn exchange(e: &Engine, uplink: UplinkId, to: (u128, u16), n: u64, at: u64) {
    for i in 0..n {
        let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
        assert_eq!(out(e, t(at + 2 * i), &mut p), Verdict::Uplink(uplink));
        let mut r = packet(server(1), to.0, PROTO_UDP, &udp(53, to.1, b"a"));
        assert_eq!(inb(e, t(at + 2 * i + 1), uplink, &mut r), Verdict::Tun);
    }
}

fn udp_flow(uplink: UplinkId, ext: (u128, u16)) -> FastFlow<V6> {
    FastFlow {
        key: FlowKey {
            int_addr: HOST,
            rem_addr: server(1),
            int_port: 5353,
            rem_port: 53,
            proto: PROTO_UDP,
        },
        uplink,
        ext_addr: ext.0,
        ext_port: ext.1,
    }
}

#[test]
fn a_steady_nat66_flow_is_handed_over_once_with_its_line_address_and_port() {
    let e = with_fast_path(nat66_engine());
    exchange(&e, 0, (LINE0_ADDR, 61000), 1, 0);
    assert_eq!(taken(&e), [], "a query and its answer stay in the engine");
    exchange(&e, 0, (LINE0_ADDR, 61000), u64::from(HAND_OVER_AFTER), 10);
    let flow = udp_flow(0, (LINE0_ADDR, 61000));
    assert_eq!(taken(&e), [FastPathWork::HandOver(flow)]);
    exchange(&e, 0, (LINE0_ADDR, 61000), 3, 100);
    assert_eq!(taken(&e), [], "once");
}

#[test]
fn a_steady_nptv6_flow_is_handed_over_with_its_translated_address_and_own_port() {
    let e = with_fast_path(npt_engine());
    let lines = e.v6.lines.load();
    let ext = lines[1].npt.unwrap().outbound(HOST).unwrap();
    exchange(&e, 1, (ext, 5353), u64::from(HAND_OVER_AFTER), 0);
    assert_eq!(
        taken(&e),
        [FastPathWork::HandOver(udp_flow(1, (ext, 5353)))]
    );
    // a ping too: its identifier kept
    for i in 0..u64::from(HAND_OVER_AFTER) {
        let mut p = packet(HOST, server(2), PROTO_ICMPV6, &echo(128, 0x1234, 1));
        assert_eq!(out(&e, t(100 + i), &mut p), Verdict::Uplink(1));
        let mut r = packet(server(2), ext, PROTO_ICMPV6, &echo(129, 0x1234, 1));
        assert_eq!(inb(&e, t(100 + i), 1, &mut r), Verdict::Tun);
    }
    let work = taken(&e);
    let [FastPathWork::HandOver(f)] = work.as_slice() else {
        panic!("one hand-over: {work:?}");
    };
    assert_eq!(
        (f.ext_addr, f.ext_port, f.key.int_port),
        (ext, 0x1234, 0x1234)
    );
}

#[test]
fn a_host_the_fast_path_does_not_reach_stays_in_the_engine() {
    let e = nat66_engine()
        .with_fast_path(vec![])
        .with_fast_path6(vec![Prefix::masked(LAN_NET + (1 << 64), 64).unwrap()]);
    exchange(
        &e,
        0,
        (LINE0_ADDR, 61000),
        2 * u64::from(HAND_OVER_AFTER),
        0,
    );
    assert_eq!(taken(&e), []);
}

#[test]
fn a_reset_takes_an_ipv6_connection_back() {
    let e = with_fast_path(nat66_engine());
    let seg_out = |flags, seq, ack| {
        packet(
            HOST,
            server(1),
            PROTO_TCP,
            &tcp(40000, 443, seq, ack, flags, b""),
        )
    };
    let seg_in = |flags, seq, ack| {
        packet(
            server(1),
            LINE0_ADDR,
            PROTO_TCP,
            &tcp(443, 61000, seq, ack, flags, b""),
        )
    };
    assert_eq!(out(&e, t(0), &mut seg_out(SYN, 100, 0)), Verdict::Uplink(0));
    assert_eq!(
        inb(&e, t(1), 0, &mut seg_in(SYN | ACK, 5000, 101)),
        Verdict::Tun
    );
    for i in 0..u64::from(HAND_OVER_AFTER) {
        assert_eq!(
            out(&e, t(2 + i), &mut seg_out(ACK, 101, 5001)),
            Verdict::Uplink(0)
        );
    }
    let work = taken(&e);
    let [FastPathWork::HandOver(f)] = work.as_slice() else {
        panic!("one hand-over: {work:?}");
    };
    // the fast path passes up the reset: the engine sees the session change and takes it back
    assert_eq!(
        out(&e, t(20), &mut seg_out(RST, 101, 0)),
        Verdict::Uplink(0)
    );
    assert_eq!(taken(&e), [FastPathWork::TakeBack(*f)]);
    e.fast_path_done6(&[FastPathDone::TakenBack(*f, 1234)]);
}

#[test]
fn an_ended_nat66_flow_gives_its_port_back_only_once_the_fast_path_let_go() {
    let e = with_fast_path(nat66_engine());
    exchange(&e, 0, (LINE0_ADDR, 61000), u64::from(HAND_OVER_AFTER), 0);
    let flow = udp_flow(0, (LINE0_ADDR, 61000));
    assert_eq!(taken(&e), [FastPathWork::HandOver(flow)]);
    // past the engine's timeout, but the fast path carried it a second ago: it lives on
    let udp_timeout = Timeouts::default().udp;
    let recent = Carried {
        idle_ms: Some(1_000),
        ..Carried::default()
    };
    let carried = CarriedFlows::NONE.with_entries6(vec![(flow.key, recent)]);
    e.expire(t(udp_timeout + 100), &carried);
    assert_eq!(e.flows6(), 1);
    assert_eq!(taken(&e), []);
    // idle there too: withdrawn, and its one port is not another host's until then
    e.expire(t(3 * udp_timeout), &CarriedFlows::NONE);
    assert_eq!(e.flows6(), 0);
    let work = taken(&e);
    let [FastPathWork::Withdraw(f, Some(release))] = work.as_slice() else {
        panic!("one withdrawal with a port to release: {work:?}");
    };
    assert_eq!(*f, flow);
    let mut q = packet(HOST_B, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(
        out(&e, t(3 * udp_timeout + 1), &mut q),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    e.fast_path_done6(&[FastPathDone::Released(*release)]);
    let mut q = packet(HOST_B, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(3 * udp_timeout + 2), &mut q), Verdict::Uplink(0));
}

#[test]
fn an_ended_nptv6_flow_is_withdrawn_with_no_port_to_give_back() {
    let e = with_fast_path(npt_engine());
    let ext = e.v6.lines.load()[1].npt.unwrap().outbound(HOST).unwrap();
    exchange(&e, 1, (ext, 5353), u64::from(HAND_OVER_AFTER), 0);
    assert_eq!(taken(&e).len(), 1);
    e.expire(t(3 * Timeouts::default().udp), &CarriedFlows::NONE);
    assert_eq!(
        taken(&e),
        [FastPathWork::Withdraw(udp_flow(1, (ext, 5353)), None)]
    );
}

#[test]
fn a_line_whose_ipv6_goes_down_or_is_renumbered_takes_its_flows_back() {
    let e = with_fast_path(nat66_engine());
    exchange(&e, 0, (LINE0_ADDR, 61000), u64::from(HAND_OVER_AFTER), 0);
    let flow = udp_flow(0, (LINE0_ADDR, 61000));
    assert_eq!(taken(&e), [FastPathWork::HandOver(flow)]);
    // renumbered: taken back under the address the fast path was told of
    e.set_uplink6(
        0,
        Uplink6 {
            addr: Some(LINE0_ADDR + 0x100),
            ..nat66_line(true)
        },
    );
    assert_eq!(taken(&e), [FastPathWork::TakeBack(flow)]);
    // the flow moves to the new address at its next packet, and is handed over from there
    exchange(
        &e,
        0,
        (LINE0_ADDR + 0x100, 61000),
        u64::from(HAND_OVER_AFTER),
        100,
    );
    let moved = udp_flow(0, (LINE0_ADDR + 0x100, 61000));
    let work = taken(&e);
    assert_eq!(
        work.last(),
        Some(&FastPathWork::HandOver(moved)),
        "{work:?}"
    );
    // down: taken back, and offered to no line while none takes IPv6
    e.set_uplink6(
        0,
        Uplink6 {
            addr: Some(LINE0_ADDR + 0x100),
            ..nat66_line(false)
        },
    );
    assert_eq!(taken(&e), [FastPathWork::TakeBack(moved)]);
}

#[test]
fn a_refused_hand_over_is_asked_again_after_as_many_packets() {
    let e = with_fast_path(nat66_engine());
    exchange(&e, 0, (LINE0_ADDR, 61000), u64::from(HAND_OVER_AFTER), 0);
    let flow = udp_flow(0, (LINE0_ADDR, 61000));
    assert_eq!(taken(&e), [FastPathWork::HandOver(flow)]);
    e.fast_path_done6(&[FastPathDone::Refused(flow)]);
    assert_eq!(taken(&e), [FastPathWork::Withdraw(flow, None)]);
    // an exchange is two packets
    exchange(&e, 0, (LINE0_ADDR, 61000), 1, 100);
    assert_eq!(taken(&e), []);
    exchange(&e, 0, (LINE0_ADDR, 61000), 1, 200);
    assert_eq!(taken(&e), [FastPathWork::HandOver(flow)]);
}

#[test]
fn flows_of_the_address_before_a_renumbering_are_named_by_it_until_taken_back() {
    let e = with_fast_path(nat66_engine());
    let first = e.v6.line(0).unwrap().epoch;
    let moved = Uplink6 {
        addr: Some(LINE0_ADDR + 1),
        ..nat66_line(true)
    };
    e.set_uplink6(0, moved);
    let line = e.v6.line(0).unwrap();
    assert_eq!(line.as_of(first).unwrap().facts.addr, Some(LINE0_ADDR));
    assert_eq!(
        line.as_of(first.wrapping_add(1)).unwrap().facts.addr,
        Some(LINE0_ADDR + 1)
    );
    // a change of health alone keeps what the line was before
    e.set_uplink6(0, Uplink6 { up: false, ..moved });
    let line = e.v6.line(0).unwrap();
    assert_eq!(line.as_of(first).unwrap().facts.addr, Some(LINE0_ADDR));
    // two renumberings back, nothing is named: those flows were taken back at the first
    e.set_uplink6(
        0,
        Uplink6 {
            addr: Some(LINE0_ADDR + 2),
            ..moved
        },
    );
    assert!(e.v6.line(0).unwrap().as_of(first).is_none());
}

#[test]
fn a_backup_lines_flows_come_back_when_a_better_line_returns() {
    let uplinks = [("isp1", 1u8, 1u8), ("backup", 2, 2)]
        .iter()
        .map(|&(name, net, tier)| UplinkConfig {
            name: name.into(),
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
        ports: (61000, 61000),
        seed: 42,
        reset_tcp_on_down: true,
        udp_affinity: UdpAffinity::Destination,
        limits: Limits::unlimited(),
    })
    .with_lan_nets6(vec![Prefix::masked(LAN_NET, 64).unwrap()]);
    let e = with_fast_path(e);
    let backup = Uplink6 {
        addr: Some(LINE1_PREFIX | 2),
        ..nat66_line(true)
    };
    e.set_uplink6(1, backup);
    // the primary's IPv6 is down: the flow takes the backup and is handed over there
    exchange(
        &e,
        1,
        (LINE1_PREFIX | 2, 61000),
        u64::from(HAND_OVER_AFTER),
        0,
    );
    let flow = udp_flow(1, (LINE1_PREFIX | 2, 61000));
    assert_eq!(taken(&e), [FastPathWork::HandOver(flow)]);
    // it comes back: the backup leaves service, and its flow comes back from the kernel to
    // move at its next packet
    assert!(e.set_uplink6(0, nat66_line(true)).is_empty());
    assert_eq!(taken(&e), [FastPathWork::TakeBack(flow)]);
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(100), &mut p), Verdict::Uplink(0));
}

#[test]
fn a_cap_reset_asks_for_the_sequence_number_the_fast_path_last_carried() {
    let e = with_fast_path(nat66_engine());
    let seg_out = |flags, seq, ack| {
        let l4 = tcp(40000, 443, seq, ack, flags, b"");
        packet(HOST, server(1), PROTO_TCP, &l4)
    };
    let seg_in = |flags, seq, ack| {
        let l4 = tcp(443, 61000, seq, ack, flags, b"");
        packet(server(1), LINE0_ADDR, PROTO_TCP, &l4)
    };
    assert_eq!(out(&e, t(0), &mut seg_out(SYN, 100, 0)), Verdict::Uplink(0));
    let mut answer = seg_in(SYN | ACK, 5000, 101);
    assert_eq!(inb(&e, t(1), 0, &mut answer), Verdict::Tun);
    for i in 0..u64::from(HAND_OVER_AFTER) {
        let mut p = seg_out(ACK, 101, 5001);
        assert_eq!(out(&e, t(2 + i), &mut p), Verdict::Uplink(0));
    }
    let work = taken(&e);
    let [FastPathWork::HandOver(f)] = work.as_slice() else {
        panic!("one hand-over: {work:?}");
    };
    // the kernel carried 9 MB since: the host now acknowledges 9,005,001
    let acked = Acked {
        ack: 9_005_001,
        window: 1000,
    };
    let carried = Carried {
        acks: [Some(acked), None],
        ..Carried::default()
    };
    let carried = CarriedFlows::default().with_entries6(vec![(f.key, carried)]);
    let resets = e.set_cap_effect(0, crate::metered::CapEffect::Off, &carried);
    let [probe] = resets.v6.as_slice() else {
        panic!("one probe: {resets:?}");
    };
    let seq = u32::from_be_bytes(probe[44..48].try_into().unwrap());
    assert_eq!(
        seq,
        9_005_001u32.wrapping_add(1 << 31),
        "far from the window as it is now"
    );
}
