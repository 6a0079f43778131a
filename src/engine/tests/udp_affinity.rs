//! One public address per UDP socket (RFC 4787 REQ-1 across the uplinks).

use super::*;

/// `(uplink, external port)` of a UDP datagram from `LAN:port` to `to`, as it left.
fn udp_from(e: &impl Gateway, port: u16, to: u32) -> (Verdict, u16) {
    let mut p = Ipv4Packet::udp(LAN, to, port, 3478, b"stun").build();
    let v = out(e, t(0), &mut p);
    (v, read_u16(&p, 20))
}

#[test]
fn one_udp_socket_keeps_one_uplink_and_port_for_every_destination() {
    let e = Engine::new(config((61000, 65535), vec![]));
    // by weight alone these six would go 0, 1, 0, 0, 1, 0
    let first = udp_from(&e, 5000, dst(1));
    for i in 2..=6 {
        assert_eq!(udp_from(&e, 5000, dst(i)), first, "dst({i})");
    }
    assert_eq!(e.mapping_count(), 1);
    // with destination affinity they spread as before, each uplink with its own mapping
    let mut cfg = config((61000, 65535), vec![]);
    cfg.udp_affinity = UdpAffinity::Destination;
    let e = Engine::new(cfg);
    let picks: Vec<Verdict> = (1..=6).map(|i| udp_from(&e, 5000, dst(i)).0).collect();
    assert_eq!(
        picks,
        [0, 1, 0, 0, 1, 0].map(Verdict::Uplink),
        "spread by weight"
    );
    assert_eq!(e.mapping_count(), 2);
}

#[test]
fn new_udp_sockets_still_split_by_weight_and_pins_still_win() {
    let pin = Pin {
        prefix: Prefix::new(dst(91), 32).unwrap(),
        uplink: 1,
        strict: false,
    };
    let e = Engine::new(config((61000, 65535), vec![pin]));
    // a socket per query: 2:1, interleaved
    let mut seen = [0u32; 2];
    for i in 1..=30u16 {
        let Verdict::Uplink(u) = udp_from(&e, 6000 + i, dst(i.into())).0 else {
            panic!("dropped")
        };
        seen[usize::from(u)] += 1;
    }
    assert_eq!(seen, [20, 10]);
    // socket 6001 lives on uplink 0; its datagram to the pinned server takes the pin, with
    // the pinned uplink's mapping, and its other destinations stay on uplink 0
    assert_eq!(udp_from(&e, 6001, dst(91)).0, Verdict::Uplink(1));
    assert_eq!(udp_from(&e, 6001, dst(50)).0, Verdict::Uplink(0));
}

#[test]
fn a_udp_socket_whose_uplink_dies_follows_the_failover_rules() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let (first, _) = udp_from(&e, 5000, dst(1));
    assert_eq!(first, Verdict::Uplink(0));
    e.set_uplink_up(0, false, &CarriedFlows::NONE);
    // its flow moves at its next packet, and its new destinations go where the flow went
    assert_eq!(udp_from(&e, 5000, dst(1)).0, Verdict::Uplink(1));
    let moved = udp_from(&e, 5000, dst(2));
    assert_eq!(moved.0, Verdict::Uplink(1));
    assert_eq!(udp_from(&e, 5000, dst(3)), moved);
    // back up: the socket keeps its uplink (both ends would see a new address otherwise)
    e.set_uplink_up(0, true, &CarriedFlows::NONE);
    assert_eq!(udp_from(&e, 5000, dst(4)), moved);
}

#[test]
fn a_socket_placed_by_its_endpoint_leaves_its_destinations_other_flows_where_they_are() {
    let e = Engine::new(config((61000, 65535), vec![]));
    // the socket on uplink 0 (dst(1)); a TCP connection to dst(2) by weight on uplink 1
    assert_eq!(udp_from(&e, 5000, dst(1)).0, Verdict::Uplink(0));
    let syn = |port| {
        Ipv4Packet::tcp(LAN, dst(2), port, 443, b"")
            .flags(tcp_flags::SYN)
            .seq(1)
            .build()
    };
    assert_eq!(out(&e, t(0), &mut syn(40000)), Verdict::Uplink(1));
    // the socket's datagram to dst(2) keeps the socket's uplink...
    assert_eq!(udp_from(&e, 5000, dst(2)).0, Verdict::Uplink(0));
    // ...and dst(2)'s next connection still takes dst(2)'s
    assert_eq!(out(&e, t(1), &mut syn(40001)), Verdict::Uplink(1));
}

#[test]
fn after_a_failback_a_socket_keeps_the_uplink_its_flows_moved_to() {
    let e = Engine::new(config((61000, 65535), vec![]));
    assert_eq!(udp_from(&e, 5000, dst(1)).0, Verdict::Uplink(0));
    assert_eq!(udp_from(&e, 5000, dst(2)).0, Verdict::Uplink(0));
    e.set_uplink_up(0, false, &CarriedFlows::NONE);
    // dst(1)'s flow moves; dst(2)'s, idle, still holds the mapping on uplink 0
    let moved = udp_from(&e, 5000, dst(1));
    assert_eq!(moved.0, Verdict::Uplink(1));
    e.set_uplink_up(0, true, &CarriedFlows::NONE);
    // a new destination goes where the socket talks now, at the same address and port
    assert_eq!(udp_from(&e, 5000, dst(3)), moved);
}
