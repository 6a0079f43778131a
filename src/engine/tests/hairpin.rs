//! Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8, RFC 5508 REQ-7), and ICMP errors from the LAN
//! checked against the flow they quote. Expected packets are built from scratch by
//! wanlb-testkit (every checksum computed over the whole packet), so the engine's incremental
//! updates must come out byte for byte.

use std::sync::Arc;

use super::*;
use super::{FakeFastPath, WithFastPath, config};
use crate::engine::checksum::{fold, pseudo_header, sum};
use wanlb_testkit::Ipv4Packet;

const A: [u8; 4] = [198, 18, 3, 10];
const B: [u8; 4] = [198, 18, 3, 11];
const C: [u8; 4] = [198, 18, 3, 12];
const SERVER: [u8; 4] = [198, 19, 0, 1];
const UNREACHABLE: u8 = 3;
const PORT_UNREACHABLE: u8 = 3;

fn engine() -> Engine {
    Engine::new(config((61000, 61063), vec![]))
}

fn now() -> Timestamp {
    Timestamp::from_millis(1)
}

fn out(e: &impl Gateway, p: &mut [u8]) -> Verdict {
    e.send_out(now(), p, &mut L4Checksum::Complete)
}

/// The address of `uplink` in [`config`].
fn addr_of(uplink: UplinkId) -> [u8; 4] {
    [198, 18, uplink + 1, 1]
}

/// The uplink and external port (or echo identifier) of the mapping of `host:port` for
/// `proto`, opened by a packet to the server (as a STUN client learns it).
fn mapping(e: &impl Gateway, proto: u8, host: [u8; 4], port: u16) -> (UplinkId, u16) {
    let mut p = Ipv4Packet::l4(proto, host, SERVER, port, 3478, b"stun").build();
    let Verdict::Uplink(u) = out(e, &mut p) else {
        panic!("the packet to the server did not leave")
    };
    let at = if proto == PROTO_ICMP { 24 } else { 20 };
    (u, read_u16(&p, at))
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    Ipv4Packet::udp(src, dst, sport, dport, payload).build()
}

/// A at 4000 and B at 5000 reach each other's UDP mappings through the uplink's address: B
/// first (filtered), then A (B had sent there), then B. Returns the uplink's address, A's
/// external port and B's.
fn udp_hairpin(e: &impl Gateway) -> ([u8; 4], u16, u16) {
    let (u, pa) = mapping(e, PROTO_UDP, A, 4000);
    let (ub, pb) = mapping(e, PROTO_UDP, B, 5000);
    assert_eq!(u, ub, "one destination, one uplink");
    let ext = addr_of(u);
    let mut p = udp(B, ext, 5000, pa, b"from B");
    assert_eq!(out(e, &mut p), Verdict::Drop(DropReason::HairpinNoFlow));
    let mut p = udp(A, ext, 4000, pb, b"from A");
    assert_eq!(out(e, &mut p), Verdict::Hairpin);
    assert_eq!(p, udp(ext, B, pa, 5000, b"from A"));
    let mut p = udp(B, ext, 5000, pa, b"from B");
    assert_eq!(out(e, &mut p), Verdict::Hairpin);
    assert_eq!(p, udp(ext, A, pb, 4000, b"from B"));
    (ext, pa, pb)
}

#[test]
fn udp_reaches_another_hosts_mapping_from_the_senders_own_once_it_sent_there() {
    let e = engine();
    // B's first datagram is filtered as from outside: A has not sent to B's external endpoint;
    // A's gets through, since B had sent to A's; and from then on both ways
    udp_hairpin(&e);
    assert_eq!(e.counters().drop_count(DropReason::HairpinNoFlow), 1);
    // the two flows to the server, and one each way through the uplink's address, on the
    // hosts' own two mappings
    assert_eq!((e.flow_count(), e.mapping_count()), (4, 2));
}

#[test]
fn the_target_filters_hairpinned_packets_by_address_and_port() {
    let e = engine();
    let (ext, pa, pb) = udp_hairpin(&e);
    // C: A never sent to C's external endpoint
    let mut p = udp(C, ext, 6000, pa, b"from C");
    assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::HairpinNoFlow));
    assert_eq!(p, udp(C, ext, 6000, pa, b"from C"), "left as it was");
    // B from another socket: another external port
    let mut p = udp(B, ext, 5001, pa, b"from B's other socket");
    assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::HairpinNoFlow));
    // a port of the pool nobody holds
    let unused = (61000..=61063).find(|p| ![pa, pb].contains(p)).unwrap();
    let mut p = udp(A, ext, 4000, unused, b"to nobody");
    assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::HairpinNoFlow));
    assert_eq!(e.counters().drop_count(DropReason::HairpinNoFlow), 4);
}

#[test]
fn tcp_hole_punching_opens_simultaneously_through_the_uplinks_address() {
    let e = engine();
    let (u, pa) = mapping(&e, PROTO_TCP, A, 40000);
    let (_, pb) = mapping(&e, PROTO_TCP, B, 40001);
    let ext = addr_of(u);
    let tcp = |src, dst, sport, dport, flags, seq, ack| {
        Ipv4Packet::tcp(src, dst, sport, dport, b"")
            .flags(flags)
            .seq(seq)
            .ack(ack)
            .build()
    };
    const ACK: u8 = 0x10;
    // A's SYN punches: filtered at B's mapping, but A's flow is open
    let mut syn_a = tcp(A, ext, 40000, pb, tcp_flags::SYN, 100, 0);
    assert_eq!(
        out(&e, &mut syn_a),
        Verdict::Drop(DropReason::HairpinNoFlow)
    );
    // B's SYN reaches A from B's external endpoint; the handshake completes both ways
    let mut syn_b = tcp(B, ext, 40001, pa, tcp_flags::SYN, 200, 0);
    assert_eq!(out(&e, &mut syn_b), Verdict::Hairpin);
    assert_eq!(syn_b, tcp(ext, A, pb, 40000, tcp_flags::SYN, 200, 0));
    let mut synack = tcp(A, ext, 40000, pb, tcp_flags::SYN | ACK, 100, 201);
    assert_eq!(out(&e, &mut synack), Verdict::Hairpin);
    assert_eq!(
        synack,
        tcp(ext, B, pa, 40001, tcp_flags::SYN | ACK, 100, 201)
    );
    let mut ack = tcp(B, ext, 40001, pa, ACK, 201, 101);
    assert_eq!(out(&e, &mut ack), Verdict::Hairpin);
    assert_eq!(ack, tcp(ext, A, pb, 40000, ACK, 201, 101));

    // a segment with a partial checksum (offloaded) gets the pseudo-header update of both
    // addresses, and stays partial: the device completes it
    let data = Ipv4Packet::tcp(A, ext, 40000, pb, b"data")
        .seq(101)
        .ack(201)
        .build();
    let mut p = data.clone();
    write_u16(&mut p, 36, fold(pseudo_header(ip(A), ip(ext), 6, 24)));
    let mut csum = L4Checksum::Partial;
    assert_eq!(e.outbound(now(), &mut p, &mut csum), Verdict::Hairpin);
    assert_eq!(csum, L4Checksum::Partial);
    assert_eq!(read_u16(&p, 36), fold(pseudo_header(ip(ext), ip(B), 6, 24)));
    let expected = Ipv4Packet::tcp(ext, B, pa, 40001, b"data")
        .seq(101)
        .ack(201)
        .build();
    assert_eq!(!fold(sum(&p[20..], 0)), read_u16(&expected, 36));
    assert_eq!(p[..36], expected[..36]);
}

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

#[test]
fn hairpinned_flows_never_go_to_the_fast_path_nor_follow_their_uplinks_health() {
    let fast = Arc::new(FakeFastPath::default());
    let e = WithFastPath::new(engine(), fast.clone());
    let (ext, pa, pb) = udp_hairpin(&e);
    let (u, tpa) = mapping(&e, PROTO_TCP, A, 40000);
    let (_, tpb) = mapping(&e, PROTO_TCP, B, 40001);
    assert_eq!(addr_of(u), ext);
    let tcp = |src, dst, sport, dport, flags| {
        Ipv4Packet::tcp(src, dst, sport, dport, b"")
            .flags(flags)
            .build()
    };
    // a simultaneous open, as hole punching makes it (an answer to a SYN opens no flow)
    out(&e, &mut tcp(A, ext, 40000, tpb, tcp_flags::SYN));
    out(&e, &mut tcp(B, ext, 40001, tpa, tcp_flags::SYN));
    out(&e, &mut tcp(B, ext, 40001, tpa, tcp_flags::SYN | 0x10));
    out(&e, &mut tcp(A, ext, 40000, tpb, 0x10));
    // far more packets both ways than any flow needs to be handed over
    for _ in 0..2 * HAND_OVER_ONE_WAY_AFTER {
        assert_eq!(out(&e, &mut udp(A, ext, 4000, pb, b"a")), Verdict::Hairpin);
        assert_eq!(out(&e, &mut udp(B, ext, 5000, pa, b"b")), Verdict::Hairpin);
        assert_eq!(
            out(&e, &mut tcp(A, ext, 40000, tpb, 0x10)),
            Verdict::Hairpin
        );
        assert_eq!(
            out(&e, &mut tcp(B, ext, 40001, tpa, 0x10)),
            Verdict::Hairpin
        );
    }
    assert_eq!(*fast.log.lock().unwrap(), Vec::<String>::new());
    // the uplink dies: nothing to reset (the connection never crosses it), nothing moves
    assert_eq!(
        e.set_uplink_up(u, false),
        Vec::<[u8; SEQUENCE_PROBE]>::new()
    );
    let mut p = udp(A, ext, 4000, pb, b"still");
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    assert_eq!(p, udp(ext, B, pa, 5000, b"still"));
    let mut p = tcp(B, ext, 40001, tpa, 0x10);
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    assert_eq!(p, tcp(ext, A, tpb, 40000, 0x10));
    assert_eq!(e.counters().moved, 0);
}

#[test]
fn an_echo_request_to_another_hosts_identifier_is_answered_by_that_host() {
    let e = engine();
    let echo = |src, dst, id| Ipv4Packet::icmp_echo_request(src, dst, id, 7, b"ping").build();
    let reply = |src, dst, id| Ipv4Packet::icmp_echo_reply(src, dst, id, 7, b"ping").build();
    let (u, xa) = mapping(&e, PROTO_ICMP, A, 0x1111);
    let ext = addr_of(u);
    // A pings the uplink's address from that identifier: the gateway answers it (the request
    // goes to its stack untouched), and A's filter now takes echoes from that address
    let mut p = echo(A, ext, 0x1111);
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    assert_eq!(p, echo(A, ext, 0x1111));
    // B pings A's external identifier: A gets it, from B's own external identifier...
    let mut p = echo(B, ext, xa);
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    let xb = read_u16(&p, 24);
    assert!((61000..=61063).contains(&xb) && xb != xa, "{xb}");
    assert_eq!(p, echo(ext, A, xb));
    // ...and A's answer goes back to B, with B's identifier
    let mut r = reply(A, ext, xb);
    assert_eq!(out(&e, &mut r), Verdict::Hairpin);
    assert_eq!(r, reply(ext, B, xa));
    // echoes no mapping takes are the gateway's: a ping of its address, the answer to its own
    let mut p = echo(C, ext, 0x2222);
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    assert_eq!(p, echo(C, ext, 0x2222));
    let mut r = reply(C, ext, 0x3333);
    assert_eq!(out(&e, &mut r), Verdict::Hairpin);
    assert_eq!(r, reply(C, ext, 0x3333));
    // A's filter takes only the address it pinged: C never pinged it, so B cannot reach C
    let (_, xc) = mapping(&e, PROTO_ICMP, C, 0x4444);
    let mut p = echo(B, ext, xc);
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    assert_eq!(p, echo(B, ext, xc), "to the gateway, untouched");
}

#[test]
fn an_error_about_a_hairpinned_packet_reaches_its_sender_with_the_outer_destination_translated() {
    let e = engine();
    let (ext, pa, pb) = udp_hairpin(&e);
    let from_a = udp(A, ext, 4000, pb, b"from A");
    let mut at_b = from_a.clone();
    assert_eq!(out(&e, &mut at_b), Verdict::Hairpin);
    // B's socket is gone: port unreachable, quoting what B got, back to the uplink's address
    let error = |src, dst, quote: &[u8]| {
        Ipv4Packet::icmp(
            src,
            dst,
            UNREACHABLE,
            PORT_UNREACHABLE,
            [0; 4],
            &quote[..28],
        )
        .build()
    };
    let mut p = error(B, ext, &at_b);
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    // A gets it from the uplink's address, quoting what A sent (RFC 5508 REQ-7a: the outer
    // destination is the quoted source)
    assert_eq!(p, error(ext, A, &from_a));
    assert_eq!(e.counters().drop_count(DropReason::ForgedIcmpError), 0);

    // an error about the gateway's own traffic from that address is the gateway's
    let own = udp(ext, B, 53, 5555, b"the gateway's");
    let mut p = error(B, ext, &own);
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    assert_eq!(p, error(B, ext, &own), "untouched");
    // one quoting a packet that did not come from that address is sent to the wrong end
    let mut p = error(B, ext, &udp(SERVER, B, pa, 5000, b"?"));
    assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::ForgedIcmpError));
    // one whose quoted sender has no flow back: the error has nobody to go to
    let unused = (61000..=61063).find(|p| ![pa, pb].contains(p)).unwrap();
    let mut p = error(B, ext, &udp(ext, B, unused, 5000, b"?"));
    e.outbound(
        now(),
        &mut udp(B, ext, 5000, unused, b"x"),
        &mut L4Checksum::Complete,
    );
    assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::HairpinNoFlow));
}

#[test]
fn nothing_from_an_uplink_may_name_an_uplinks_own_address_as_its_remote_end() {
    let e = engine();
    let (ext, pa, pb) = udp_hairpin(&e);
    let u = if ext == addr_of(0) { 0 } else { 1 };
    // what only a hairpinned packet has: from B's external endpoint to A's
    let mut p = udp(ext, ext, pb, pa, b"forged");
    assert_eq!(
        e.inbound(now(), u, &mut p, &mut L4Checksum::Complete),
        Verdict::Drop(DropReason::OwnAddressFromUplink)
    );
    // from the other uplink's address too
    let mut p = udp(addr_of(1 - u), ext, 53, pa, b"forged");
    assert_eq!(
        e.inbound(now(), u, &mut p, &mut L4Checksum::Complete),
        Verdict::Drop(DropReason::OwnAddressFromUplink)
    );
    // an error from a router, quoting a packet A sent to B's external endpoint
    let quote = udp(ext, ext, pa, pb, b"from A");
    let mut p =
        Ipv4Packet::icmp([198, 19, 9, 9], ext, UNREACHABLE, 1, [0; 4], &quote[..28]).build();
    assert_eq!(
        e.inbound(now(), u, &mut p, &mut L4Checksum::Complete),
        Verdict::Drop(DropReason::OwnAddressFromUplink)
    );
    assert_eq!(e.counters().drop_count(DropReason::OwnAddressFromUplink), 3);
}

#[test]
fn fragments_to_an_uplinks_address_are_left_to_the_gateways_stack() {
    let e = engine();
    let (ext, pa, _) = udp_hairpin(&e);
    let whole = Ipv4Packet::udp(B, ext, 5000, pa, &[7; 64])
        .dont_fragment(false)
        .build();
    // the first piece holds the UDP header and 16 bytes of data, the second the rest
    let mut first = whole[..44].to_vec();
    first[2..4].copy_from_slice(&44u16.to_be_bytes());
    first[6] = 0x20;
    wanlb_testkit::fix_ip_checksum(&mut first);
    let mut second = whole[..20].to_vec();
    second.extend_from_slice(&whole[44..]);
    let len = u16::try_from(second.len()).unwrap();
    second[2..4].copy_from_slice(&len.to_be_bytes());
    second[6..8].copy_from_slice(&3u16.to_be_bytes());
    wanlb_testkit::fix_ip_checksum(&mut second);
    for piece in [first, second] {
        let mut p = piece.clone();
        assert_eq!(out(&e, &mut p), Verdict::Hairpin);
        assert_eq!(p, piece, "untouched");
    }
    // from a source outside the LAN's networks, not even that
    let e = engine().with_lan_nets(vec![select::Prefix::new(ip([198, 18, 3, 0]), 24).unwrap()]);
    let mut p = whole[..44].to_vec();
    p[2..4].copy_from_slice(&44u16.to_be_bytes());
    p[6] = 0x20;
    p[12..16].copy_from_slice(&[198, 18, 9, 9]);
    wanlb_testkit::fix_ip_checksum(&mut p);
    assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::NotFromLan));
}

#[test]
fn a_host_out_of_echo_identifiers_can_still_ping_the_gateway() {
    let mut cfg = config((61000, 61063), vec![]);
    cfg.limits.max_ports_per_host = 1;
    let e = Engine::new(cfg);
    let (u, _) = mapping(&e, PROTO_ICMP, A, 0x1111);
    let ext = addr_of(u);
    // another identifier would need another mapping: the gateway answers it all the same
    let ping = Ipv4Packet::icmp_echo_request(A, ext, 0x2222, 1, b"ping").build();
    let mut p = ping.clone();
    assert_eq!(out(&e, &mut p), Verdict::Hairpin);
    assert_eq!(p, ping, "untouched");
    // while a datagram to a NAT port that needs a mapping the host cannot have is refused,
    // as any new flow's would be
    assert_eq!(
        out(&e, &mut udp(A, SERVER, 4000, 53, b"x")),
        Verdict::Uplink(u)
    );
    assert_eq!(
        out(&e, &mut udp(A, ext, 4001, 61000, b"x")),
        Verdict::Drop(DropReason::HostPortLimit)
    );
}
