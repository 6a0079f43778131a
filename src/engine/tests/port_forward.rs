//! Port forwards in the engine: a connection from outside to a forwarded port of an uplink
//! reaches its LAN host, and everything the LAN host sends back on it leaves through that
//! uplink, whatever weights, pins, affinity and health say.

use super::*;
use super::{FakeFastPath, WithFastPath, config};
use crate::engine::port_forward::{Forward, ForwardCount};
use crate::engine::select::{Pin, Prefix};
use std::sync::Arc;
use wanlb_testkit::Ipv4Packet;

const LAN: [u8; 4] = [198, 18, 3, 10];
const CLIENT: [u8; 4] = [198, 19, 0, 5];
const UPLINK_1: [u8; 4] = [198, 18, 1, 1];
const UPLINK_2: [u8; 4] = [198, 18, 2, 1];
const POOL: (u16, u16) = (61000, 65535);

/// tcp:8080 of isp2 to the LAN host's web server on 80.
const WEB: Forward = Forward {
    proto: PROTO_TCP,
    port: 8080,
    uplink: 1,
    host: u32::from_be_bytes(LAN),
    host_port: 80,
};
/// udp:5060 of isp2 to the LAN host's 5060.
const SIP: Forward = Forward {
    proto: PROTO_UDP,
    port: 5060,
    uplink: 1,
    host: u32::from_be_bytes(LAN),
    host_port: 5060,
};

fn engine(config: EngineConfig) -> Engine {
    Engine::new(config).with_forwards(vec![WEB, SIP])
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn out(e: &impl Gateway, ms: u64, p: &mut [u8]) -> Verdict {
    e.send_out(t(ms), p, &mut L4Checksum::Complete)
}

fn inb(e: &impl Gateway, ms: u64, uplink: UplinkId, p: &mut [u8]) -> Verdict {
    e.send_in(t(ms), uplink, p, &mut L4Checksum::Complete)
}

/// A TCP segment with `flags`, sequence and acknowledgement numbers.
fn tcp(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    Ipv4Packet::tcp(src, dst, ports.0, ports.1, b"")
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .build()
}

/// The client's connection to isp2:8080 (from its port 50000), opened and established;
/// every packet checked on the way.
fn connect(e: &impl Gateway) {
    let mut syn = tcp(CLIENT, UPLINK_2, (50000, 8080), tcp_flags::SYN, 7000, 0);
    assert_eq!(inb(e, 0, 1, &mut syn), Verdict::Tun);
    let mut synack = tcp(
        LAN,
        CLIENT,
        (80, 50000),
        tcp_flags::SYN | tcp_flags::ACK,
        300,
        7001,
    );
    assert_eq!(out(e, 1, &mut synack), Verdict::Uplink(1));
    let mut ack = tcp(CLIENT, UPLINK_2, (50000, 8080), tcp_flags::ACK, 7001, 301);
    assert_eq!(inb(e, 2, 1, &mut ack), Verdict::Tun);
}

#[test]
fn a_syn_to_a_forwarded_port_reaches_the_lan_host_and_its_answer_leaves_by_that_uplink() {
    let e = engine(config(POOL, vec![]));
    let mut syn = tcp(CLIENT, UPLINK_2, (50000, 8080), tcp_flags::SYN, 7000, 0);
    assert_eq!(inb(&e, 0, 1, &mut syn), Verdict::Tun);
    assert_eq!(
        syn,
        tcp(CLIENT, LAN, (50000, 80), tcp_flags::SYN, 7000, 0),
        "to the LAN host's port, checksums as if it had been sent there"
    );
    let mut synack = tcp(
        LAN,
        CLIENT,
        (80, 50000),
        tcp_flags::SYN | tcp_flags::ACK,
        300,
        7001,
    );
    assert_eq!(out(&e, 1, &mut synack), Verdict::Uplink(1));
    assert_eq!(
        synack,
        tcp(
            UPLINK_2,
            CLIENT,
            (8080, 50000),
            tcp_flags::SYN | tcp_flags::ACK,
            300,
            7001
        ),
        "from isp2's address and the forwarded port"
    );
    let mut ack = tcp(CLIENT, UPLINK_2, (50000, 8080), tcp_flags::ACK, 7001, 301);
    assert_eq!(inb(&e, 2, 1, &mut ack), Verdict::Tun);
    let counts = e.forward_counts();
    assert_eq!(counts[0], ForwardCount { live: 1, opened: 1 });
    assert_eq!(counts[1], ForwardCount::default());
    // no port of the pool, no destination bound, nothing toward isp2's share
    assert_eq!((e.mapping_count(), e.destination_count()), (0, 0));
    let c = e.counters().uplinks[1];
    assert_eq!((c.flows, c.destinations), (0, 0));
    assert_eq!((c.inbound_packets, c.outbound_packets), (2, 1));

    // UDP opens on its first datagram, and the same client may open more
    let mut hello = Ipv4Packet::udp(CLIENT, UPLINK_2, 6000, 5060, b"INVITE").build();
    assert_eq!(inb(&e, 3, 1, &mut hello), Verdict::Tun);
    assert_eq!(
        hello,
        Ipv4Packet::udp(CLIENT, LAN, 6000, 5060, b"INVITE").build()
    );
    let mut answer = Ipv4Packet::udp(LAN, CLIENT, 5060, 6000, b"200 OK").build();
    assert_eq!(out(&e, 4, &mut answer), Verdict::Uplink(1));
    assert_eq!(
        answer,
        Ipv4Packet::udp(UPLINK_2, CLIENT, 5060, 6000, b"200 OK").build()
    );
    assert_eq!(e.forward_counts()[1], ForwardCount { live: 1, opened: 1 });
}

#[test]
fn replies_leave_by_the_forwards_uplink_whatever_weights_pins_and_affinity_say() {
    let client = Prefix::new(u32::from_be_bytes(CLIENT), 32).unwrap();
    let pin = Pin {
        prefix: client,
        uplink: 0,
        strict: false,
    };
    let mut cfg = config(POOL, vec![pin]);
    cfg.uplinks[0].weight = 100;
    cfg.uplinks[1].weight = 1;
    let e = engine(cfg.clone());
    // the LAN host's own flow to the client goes by the pin, and binds the client to isp1
    let mut own = Ipv4Packet::udp(LAN, CLIENT, 4000, 53, b"q").build();
    assert_eq!(out(&e, 0, &mut own), Verdict::Uplink(0));
    connect(&e);
    for i in 0..10 {
        let mut data = tcp(LAN, CLIENT, (80, 50000), tcp_flags::ACK, 301 + i, 7001);
        assert_eq!(out(&e, 10 + u64::from(i), &mut data), Verdict::Uplink(1));
    }
    // isp2 made a backup, so its flows would move: the forward's stay
    cfg.uplinks[1].tier = 2;
    e.reconfigure(&cfg);
    let mut data = tcp(LAN, CLIENT, (80, 50000), tcp_flags::ACK, 311, 7001);
    assert_eq!(out(&e, 30, &mut data), Verdict::Uplink(1));
    let mut hello = Ipv4Packet::udp(CLIENT, UPLINK_2, 6000, 5060, b"hi").build();
    assert_eq!(inb(&e, 31, 1, &mut hello), Verdict::Tun);
    for ms in 32..35 {
        let mut answer = Ipv4Packet::udp(LAN, CLIENT, 5060, 6000, b"hi").build();
        assert_eq!(out(&e, ms, &mut answer), Verdict::Uplink(1));
    }
    assert_eq!(e.counters().moved, 0);
    // and the LAN host's own traffic still follows the pin
    let mut own = Ipv4Packet::udp(LAN, CLIENT, 4001, 53, b"q").build();
    assert_eq!(out(&e, 40, &mut own), Verdict::Uplink(0));
}

#[test]
fn what_no_forward_opens_is_dropped_and_counted() {
    let e = engine(config(POOL, vec![]));
    let drop = |uplink: UplinkId, mut p: Vec<u8>| inb(&e, 0, uplink, &mut p);
    let no_flow = Verdict::Drop(DropReason::NoFlow);
    let not_syn = Verdict::Drop(DropReason::ForwardNotSyn);
    // a port nobody forwarded, the forwarded port of the other uplink, the other protocol
    let syn = |dst, port| tcp(CLIENT, dst, (50000, port), tcp_flags::SYN, 1, 0);
    assert_eq!(drop(1, syn(UPLINK_2, 8081)), no_flow);
    assert_eq!(drop(0, syn(UPLINK_1, 8080)), no_flow);
    let udp = Ipv4Packet::udp(CLIENT, UPLINK_2, 6000, 8080, b"x").build();
    assert_eq!(drop(1, udp), no_flow);
    // the forwarded port, but no SYN opening a connection
    let to_web = |flags| tcp(CLIENT, UPLINK_2, (50000, 8080), flags, 1, 1);
    for flags in [
        tcp_flags::ACK,
        tcp_flags::SYN | tcp_flags::ACK,
        tcp_flags::RST,
        tcp_flags::SYN | tcp_flags::FIN,
    ] {
        assert_eq!(drop(1, to_web(flags)), not_syn, "flags {flags:#x}");
    }
    let c = e.counters();
    assert_eq!(
        (
            c.drop_count(DropReason::NoFlow),
            c.drop_count(DropReason::ForwardNotSyn)
        ),
        (3, 4)
    );
    assert_eq!(e.flow_count(), 0);
    assert_eq!(e.forward_counts()[0], ForwardCount::default());
}

#[test]
fn the_pool_never_hands_out_a_forwarded_port() {
    // a pool of three TCP ports, the middle one forwarded on isp2: every uplink keeps it aside
    for uplink in [0, 1] {
        let everything = Pin {
            prefix: Prefix::new(0, 0).unwrap(),
            uplink,
            strict: false,
        };
        let e = engine(config((8079, 8081), vec![everything]));
        let mut ports = Vec::new();
        for i in 0..3u8 {
            let port = 40000 + u16::from(i);
            let mut syn = tcp(LAN, [198, 19, 1, i], (port, 443), tcp_flags::SYN, 1, 0);
            match out(&e, 0, &mut syn) {
                Verdict::Uplink(u) => {
                    assert_eq!(u, uplink);
                    ports.push(read_u16(&syn, 20));
                }
                v => assert_eq!(v, Verdict::Drop(DropReason::PortsExhausted)),
            }
        }
        ports.sort_unstable();
        assert_eq!(ports, [8079, 8081], "isp{}", uplink + 1);
        assert_eq!(e.ports_in_use(uplink), [2, 0, 0]);
        // UDP's pool keeps 8080: only TCP is forwarded there
        let mut taken = Vec::new();
        for port in 1..=4 {
            let mut udp = Ipv4Packet::udp(LAN, [198, 19, 2, 1], port, 53, b"q").build();
            if out(&e, 0, &mut udp) == Verdict::Uplink(uplink) {
                taken.push(read_u16(&udp, 20));
            }
        }
        taken.sort_unstable();
        assert_eq!(taken, [8079, 8080, 8081]);
    }
}

#[test]
fn a_forwards_uplink_going_down_resets_its_connections_and_moves_nothing() {
    let elsewhere = [198, 19, 9, 9];
    let pin = Pin {
        prefix: Prefix::new(u32::from_be_bytes(elsewhere), 32).unwrap(),
        uplink: 1,
        strict: false,
    };
    let e = engine(config(POOL, vec![pin]));
    connect(&e);
    // the server's own connection out from port 80, through a port of isp2's pool, not
    // answered yet
    let mut own = tcp(LAN, elsewhere, (80, 443), tcp_flags::SYN, 1, 0);
    assert_eq!(out(&e, 2, &mut own), Verdict::Uplink(1));
    let mut hello = Ipv4Packet::udp(CLIENT, UPLINK_2, 6000, 5060, b"hi").build();
    assert_eq!(inb(&e, 3, 1, &mut hello), Verdict::Tun);
    let probes = e.set_uplink_up(1, false, &CarriedFlows::NONE);
    assert_eq!(
        probes.len(),
        1,
        "the connection is reset, as a NAT'd one would be"
    );
    let probe = &probes[0];
    assert_eq!(read_u32(probe, 12), u32::from_be_bytes(CLIENT));
    assert_eq!(read_u32(probe, 16), u32::from_be_bytes(LAN));
    assert_eq!((read_u16(probe, 20), read_u16(probe, 22)), (50000, 80));
    // the server answers with a duplicate ACK: it becomes the reset, back to the server
    let mut dupack = tcp(LAN, CLIENT, (80, 50000), tcp_flags::ACK, 301, 7001);
    assert_eq!(out(&e, 10, &mut dupack), Verdict::Tun);
    assert_eq!(tcp_of(&dupack).flags(), tcp_flags::RST | tcp_flags::ACK);
    assert_eq!(e.counters().resets, 1);
    // UDP has nowhere else to go (the remote end knows isp2's address only): it stays, to go
    // on when the uplink comes back
    let mut answer = Ipv4Packet::udp(LAN, CLIENT, 5060, 6000, b"hi").build();
    assert_eq!(out(&e, 11, &mut answer), Verdict::Uplink(1));
    assert_eq!(e.counters().moved, 0);
    assert_eq!(
        e.forward_counts(),
        [
            ForwardCount { live: 0, opened: 1 },
            ForwardCount { live: 1, opened: 1 }
        ]
    );
    // the forward took no port of the pool, so its end gave none back: the server's own
    // connection keeps its port
    assert_eq!(e.mapping_count(), 1);

    // with --on-uplink-down keep, the connection waits for the uplink
    let mut cfg = config(POOL, vec![]);
    cfg.reset_tcp_on_down = false;
    let e = engine(cfg);
    connect(&e);
    assert!(e.set_uplink_up(1, false, &CarriedFlows::NONE).is_empty());
    let mut data = tcp(LAN, CLIENT, (80, 50000), tcp_flags::ACK, 301, 7001);
    assert_eq!(out(&e, 10, &mut data), Verdict::Uplink(1));
}

#[test]
fn the_fast_path_carries_forwarded_flows_and_keeps_them_when_their_uplink_leaves() {
    let fake = Arc::new(FakeFastPath::default());
    let e = WithFastPath::new(engine(config(POOL, vec![])), fake.clone());
    connect(&e);
    for i in 0..u32::from(HAND_OVER_AFTER) {
        let mut data = tcp(LAN, CLIENT, (80, 50000), tcp_flags::ACK, 301 + i, 7001);
        assert_eq!(out(&e, 10, &mut data), Verdict::Uplink(1));
    }
    let exchange = |client_port: u16| {
        let mut hello = Ipv4Packet::udp(CLIENT, UPLINK_2, client_port, 5060, b"hi").build();
        assert_eq!(inb(&e, 20, 1, &mut hello), Verdict::Tun);
        for _ in 0..HAND_OVER_AFTER {
            let mut answer = Ipv4Packet::udp(LAN, CLIENT, 5060, client_port, b"hi").build();
            assert_eq!(out(&e, 21, &mut answer), Verdict::Uplink(1));
        }
    };
    exchange(6000);
    let log = || fake.log.lock().unwrap().clone();
    assert_eq!(
        log(),
        [
            "hand over 6 198.18.3.10:80 -> 198.19.0.5:50000 as 198.18.2.1:8080",
            "hand over 17 198.18.3.10:5060 -> 198.19.0.5:6000 as 198.18.2.1:5060"
        ]
    );
    // isp2 made a backup: its UDP flows would move, so they come back from the fast path;
    // the forward's stay there, and a new one is handed over all the same
    let mut cfg = config(POOL, vec![]);
    cfg.uplinks[1].tier = 2;
    e.reconfigure(&cfg);
    exchange(6001);
    assert_eq!(
        log()[2..],
        ["hand over 17 198.18.3.10:5060 -> 198.19.0.5:6001 as 198.18.2.1:5060"]
    );
}

#[test]
fn a_forward_follows_its_uplinks_new_address() {
    let fake = Arc::new(FakeFastPath::default());
    let e = WithFastPath::new(engine(config(POOL, vec![])), fake.clone());
    connect(&e);
    // a UDP flow through the forward, steady: on the fast path
    let hello = |to: [u8; 4]| Ipv4Packet::udp(CLIENT, to, 6000, 5060, b"hi").build();
    let answer = || Ipv4Packet::udp(LAN, CLIENT, 5060, 6000, b"hi").build();
    assert_eq!(inb(&e, 3, 1, &mut hello(UPLINK_2)), Verdict::Tun);
    for _ in 0..HAND_OVER_AFTER {
        assert_eq!(out(&e, 4, &mut answer()), Verdict::Uplink(1));
    }
    let log = || fake.log.lock().unwrap().clone();
    assert_eq!(
        log(),
        ["hand over 17 198.18.3.10:5060 -> 198.19.0.5:6000 as 198.18.2.1:5060"]
    );

    // isp2's address changes (a PPPoE reconnect): the TCP connection cannot follow it
    let renewed = [198, 18, 2, 7];
    let probes = e.set_uplink_addr(1, u32::from_be_bytes(renewed));
    assert_eq!(probes.len(), 1, "the connection is reset");
    // the UDP flow comes back from the fast path, which translates to the old address
    assert_eq!(log()[1..], ["withdraw 17 5060"]);
    // the server's next datagram leaves through isp2 from its new address, still from the
    // forwarded port: the forward follows its uplink, never turns into a flow of the pool
    let mut next = answer();
    assert_eq!(out(&e, 10, &mut next), Verdict::Uplink(1));
    assert_eq!(
        next,
        Ipv4Packet::udp(renewed, CLIENT, 5060, 6000, b"hi").build()
    );
    assert_eq!((e.counters().moved, e.mapping_count()), (0, 0));
    // the client, told the new address, goes on from the same port, and the flow goes back
    // to the fast path with the new address
    assert_eq!(inb(&e, 11, 1, &mut hello(renewed)), Verdict::Tun);
    for _ in 0..HAND_OVER_AFTER {
        assert_eq!(out(&e, 12, &mut answer()), Verdict::Uplink(1));
    }
    assert_eq!(
        log()[2..],
        ["hand over 17 198.18.3.10:5060 -> 198.19.0.5:6000 as 198.18.2.7:5060"]
    );
    assert_eq!(e.forward_counts()[1], ForwardCount { live: 1, opened: 1 });
}

#[test]
fn a_forward_clashing_with_the_hosts_own_flow_is_refused_and_flows_expire_cleanly() {
    // the client pinned to isp2: the LAN host's own flow to it shares the forward's uplink
    let client = Prefix::new(u32::from_be_bytes(CLIENT), 32).unwrap();
    let pin = Pin {
        prefix: client,
        uplink: 1,
        strict: false,
    };
    let e = engine(config(POOL, vec![pin]));
    // the LAN host talks to the client from 5060 itself, through a port of the pool
    let own = || Ipv4Packet::udp(LAN, CLIENT, 5060, 5060, b"REGISTER").build();
    assert_eq!(out(&e, 0, &mut own()), Verdict::Uplink(1));
    assert_eq!(e.mapping_count(), 1);
    // the client's datagram from that same port to the forward would be a second flow
    // between the same two ends
    let mut clash = Ipv4Packet::udp(CLIENT, UPLINK_2, 5060, 5060, b"INVITE").build();
    assert_eq!(
        inb(&e, 1, 1, &mut clash),
        Verdict::Drop(DropReason::ForwardClash)
    );
    let mut other = Ipv4Packet::udp(CLIENT, UPLINK_2, 5061, 5060, b"INVITE").build();
    assert_eq!(inb(&e, 2, 1, &mut other), Verdict::Tun);
    assert_eq!(e.flow_count(), 2);
    // the forwarded flow expires; the host's own keeps its port and its binding
    let udp = Timeouts::default().udp;
    assert_eq!(out(&e, udp / 2, &mut own()), Verdict::Uplink(1));
    e.expire(t(udp + 2), &CarriedFlows::NONE);
    assert_eq!((e.flow_count(), e.mapping_count()), (1, 1));
    assert_eq!(e.forward_counts()[1], ForwardCount { live: 0, opened: 1 });
    e.expire(t(udp + udp / 2 + 10 * 60_000), &CarriedFlows::NONE);
    assert_eq!(
        (e.flow_count(), e.mapping_count(), e.destination_count()),
        (0, 0, 0)
    );
}

#[test]
fn a_forward_of_an_uplink_off_for_its_cap_opens_nothing_until_the_cap_is_lifted() {
    use crate::metered::CapEffect;
    let none = &crate::engine::offload::CarriedFlows::NONE;
    let e = engine(config(POOL, vec![]));
    let syn = || tcp(CLIENT, UPLINK_2, (50000, 8080), tcp_flags::SYN, 7000, 0);
    let sip = || Ipv4Packet::udp(CLIENT, UPLINK_2, 6000, 5060, b"INVITE").build();
    // ranked below for its cap (backup), or only told (warn): the forward still serves
    e.set_cap_effect(1, CapEffect::Backup, none);
    assert_eq!(inb(&e, 0, 1, &mut syn()), Verdict::Tun);
    // off for its cap: neither a new connection nor a new datagram exchange
    e.set_cap_effect(1, CapEffect::Off, none);
    let off = Verdict::Drop(DropReason::ForwardUplinkOff);
    let mut other = tcp(CLIENT, UPLINK_2, (50001, 8080), tcp_flags::SYN, 1, 0);
    assert_eq!(inb(&e, 10, 1, &mut other), off);
    assert_eq!(inb(&e, 10, 1, &mut sip()), off);
    assert_eq!(e.counters().drop_count(DropReason::ForwardUplinkOff), 2);
    // a new period lifts the cap: the forward serves again
    e.set_cap_effect(1, CapEffect::None, none);
    assert_eq!(inb(&e, 20, 1, &mut sip()), Verdict::Tun);
}
