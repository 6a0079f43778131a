//! IPv6 port forwards through the engine: at a NAT66 line's address and at an NPTv6 line's
//! translated address of the host, closed elsewhere, with IPv4's limits.

use super::*;
use crate::engine::offload::CarriedFlows;
use crate::engine::port_forward::{Forward, ForwardCount};

/// tcp:8080 of line 0 (NAT66) to HOST:80, and tcp:22 of line 1 (NPTv6) to HOST_B:22.
fn forwards() -> Vec<Forward<V6>> {
    vec![
        Forward {
            proto: PROTO_TCP,
            port: 8080,
            uplink: 0,
            host: HOST,
            host_port: 80,
        },
        Forward {
            proto: PROTO_TCP,
            port: 22,
            uplink: 1,
            host: HOST_B,
            host_port: 22,
        },
    ]
}

fn forwarding(limits: Limits) -> Engine {
    let e = engine_with_limits((61000, 61999), limits)
        .with_lan_nets6(vec![Prefix::masked(LAN_NET, 64).unwrap()])
        .with_forwards6(forwards());
    e.set_uplink6(0, nat66_line(true));
    e.set_uplink6(1, npt_line(true));
    e
}

/// HOST_B's address as line 1 translates it.
fn host_b_outside(e: &Engine) -> u128 {
    e.v6.line(1).unwrap().npt.unwrap().outbound(HOST_B).unwrap()
}

#[test]
fn a_connection_to_a_nat66_lines_forwarded_port_reaches_the_host_and_is_answered_from_it() {
    let e = forwarding(Limits::unlimited());
    let mut syn = packet(
        server(1),
        LINE0_ADDR,
        PROTO_TCP,
        &tcp(40000, 8080, 7, 0, SYN, &[]),
    );
    assert_eq!(inb(&e, t(0), 0, &mut syn), Verdict::Tun);
    assert_eq!(
        syn,
        packet(server(1), HOST, PROTO_TCP, &tcp(40000, 80, 7, 0, SYN, &[]))
    );
    let mut answer = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(80, 40000, 300, 8, SYN | ACK, &[]),
    );
    assert_eq!(out(&e, t(1), &mut answer), Verdict::Uplink(0));
    assert_eq!(
        answer,
        packet(
            LINE0_ADDR,
            server(1),
            PROTO_TCP,
            &tcp(8080, 40000, 300, 8, SYN | ACK, &[])
        )
    );
    assert_eq!(e.forward_counts6()[0], ForwardCount { live: 1, opened: 1 });
    // the pool never hands the forwarded port out
    let mut own = packet(
        HOST_B,
        server(2),
        PROTO_TCP,
        &tcp(8080, 443, 1, 0, SYN, &[]),
    );
    let _ = out(&e, t(2), &mut own);
    assert_ne!(u16::from_be_bytes([own[40], own[41]]), 8080);
    // the flow ends, and the forward counts it out
    e.expire6(t(3 * 60 * 60 * 1000), &CarriedFlows::default());
    assert_eq!(e.forward_counts6()[0].live, 0);
}

#[test]
fn a_connection_to_a_hosts_translated_address_on_an_npt_line_reaches_it_untouched_but_the_address()
{
    let e = forwarding(Limits::unlimited());
    let outside = host_b_outside(&e);
    let sent = packet(
        server(1),
        outside,
        PROTO_TCP,
        &tcp(40000, 22, 7, 0, SYN, &[]),
    );
    let mut syn = sent.clone();
    assert_eq!(inb(&e, t(0), 1, &mut syn), Verdict::Tun);
    assert_eq!(&syn[24..40], &HOST_B.to_be_bytes());
    assert_eq!(&syn[40..], &sent[40..], "the transport as it came");
    assert!(transport_ok(&syn), "checksum-neutral");
    let mut answer = packet(
        HOST_B,
        server(1),
        PROTO_TCP,
        &tcp(22, 40000, 300, 8, SYN | ACK, &[]),
    );
    assert_eq!(out(&e, t(1), &mut answer), Verdict::Uplink(1));
    assert_eq!(&answer[8..24], &outside.to_be_bytes());
    assert!(transport_ok(&answer));
    assert_eq!(e.forward_counts6()[1], ForwardCount { live: 1, opened: 1 });
    // the connection goes on, and ends with the forward counting it out
    let mut ack = packet(
        server(1),
        outside,
        PROTO_TCP,
        &tcp(40000, 22, 8, 301, ACK, b"hi"),
    );
    assert_eq!(inb(&e, t(2), 1, &mut ack), Verdict::Tun);
    e.expire6(t(3 * 60 * 60 * 1000), &CarriedFlows::default());
    assert_eq!(e.forward_counts6()[1].live, 0);
    assert_eq!(e.flows6(), 0);
}

#[test]
fn only_the_forwarded_port_of_the_forwarded_host_is_open() {
    let e = forwarding(Limits::unlimited());
    let outside_b = host_b_outside(&e);
    let outside_a = e.v6.line(1).unwrap().npt.unwrap().outbound(HOST).unwrap();
    let knocks = [
        // another port of the NAT66 line's address, the forwarded port on the other line
        (
            0,
            packet(
                server(1),
                LINE0_ADDR,
                PROTO_TCP,
                &tcp(4, 8081, 7, 0, SYN, &[]),
            ),
        ),
        (
            1,
            packet(
                server(1),
                outside_b,
                PROTO_TCP,
                &tcp(4, 8080, 7, 0, SYN, &[]),
            ),
        ),
        // another port of the forwarded host, the forwarded port of another host
        (
            1,
            packet(server(1), outside_b, PROTO_TCP, &tcp(4, 23, 7, 0, SYN, &[])),
        ),
        (
            1,
            packet(server(1), outside_a, PROTO_TCP, &tcp(4, 22, 7, 0, SYN, &[])),
        ),
        // UDP at a TCP forward
        (
            1,
            packet(server(1), outside_b, PROTO_UDP, &udp(4, 22, b"x")),
        ),
    ];
    for (uplink, mut p) in knocks {
        assert_eq!(
            inb(&e, t(0), uplink, &mut p),
            Verdict::Drop(DropReason::NoFlow)
        );
    }
    // not a SYN
    let mut p = packet(server(1), outside_b, PROTO_TCP, &tcp(4, 22, 7, 0, ACK, &[]));
    assert_eq!(
        inb(&e, t(0), 1, &mut p),
        Verdict::Drop(DropReason::ForwardNotSyn)
    );
    assert_eq!(e.flows6(), 0);
}

#[test]
fn one_source_block_gets_its_share_and_the_oldest_embryonic_gives_way() {
    let e = forwarding(Limits {
        max_flows_per_forward_source: 2,
        max_flows_per_host: 3,
        ..Limits::unlimited()
    });
    let syn =
        |src: u128, port: u16| packet(src, LINE0_ADDR, PROTO_TCP, &tcp(port, 8080, 7, 0, SYN, &[]));
    // two from one /48, the third from it refused
    assert_eq!(inb(&e, t(0), 0, &mut syn(server(1), 1)), Verdict::Tun);
    assert_eq!(inb(&e, t(1), 0, &mut syn(server(2), 2)), Verdict::Tun);
    assert_eq!(
        inb(&e, t(2), 0, &mut syn(server(3), 3)),
        Verdict::Drop(DropReason::ForwardSourceLimit)
    );
    // another /48 takes the forward's last place; a fourth makes the oldest embryonic give
    // way, in its shard (the same remote address: the same shard)
    let other = |n: u128| 0x2001_0002_0001_u128 << 80 | n;
    assert_eq!(inb(&e, t(3), 0, &mut syn(other(1), 4)), Verdict::Tun);
    assert_eq!(inb(&e, t(4), 0, &mut syn(other(1), 5)), Verdict::Tun);
    assert_eq!(e.forward_counts6()[0], ForwardCount { live: 3, opened: 4 });
    assert_eq!(
        e.counters().evictions[1],
        1,
        "one embryonic connection ended"
    );
}

#[test]
fn a_forwarded_udp_flow_follows_its_lines_new_address() {
    let forward = Forward {
        proto: PROTO_UDP,
        port: 5000,
        uplink: 0,
        host: HOST,
        host_port: 5000,
    };
    let e = engine_with_limits((61000, 61999), Limits::unlimited())
        .with_lan_nets6(vec![Prefix::masked(LAN_NET, 64).unwrap()])
        .with_forwards6(vec![forward]);
    e.set_uplink6(0, nat66_line(true));
    let mut knock = packet(server(1), LINE0_ADDR, PROTO_UDP, &udp(7000, 5000, b"hi"));
    assert_eq!(inb(&e, t(0), 0, &mut knock), Verdict::Tun);
    // the line's address changes; the flow keeps its line (its client knows only it) and is
    // reached at the new address, where the forward now is
    let moved = LINE0_ADDR + 1;
    e.set_uplink6(
        0,
        Uplink6 {
            addr: Some(moved),
            ..nat66_line(true)
        },
    );
    let mut answer = packet(HOST, server(1), PROTO_UDP, &udp(5000, 7000, b"ho"));
    assert_eq!(out(&e, t(1), &mut answer), Verdict::Uplink(0));
    assert_eq!(&answer[8..24], &moved.to_be_bytes());
    let mut again = packet(server(1), moved, PROTO_UDP, &udp(7000, 5000, b"hi"));
    assert_eq!(inb(&e, t(2), 0, &mut again), Verdict::Tun);
    assert_eq!(
        again,
        packet(server(1), HOST, PROTO_UDP, &udp(7000, 5000, b"hi"))
    );
}
