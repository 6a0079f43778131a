//! Outbound IP fragments (src/engine/fragment.rs): the first piece is translated like any
//! packet, the later ones follow its mapping.

use super::*;

/// The pieces of `whole` (an IPv4 packet without options) with `per_piece` bytes of data each
/// (a multiple of 8), as a host's stack cuts it: the first carries the transport header. Each
/// is built by wanlb-testkit, its header checksum computed from scratch.
fn pieces_of(whole: &[u8], per_piece: usize) -> Vec<Vec<u8>> {
    let (src, dst) = (read_u32(whole, 12), read_u32(whole, 16));
    let data = &whole[20..];
    data.chunks(per_piece)
        .enumerate()
        .map(|(i, chunk)| {
            let offset = i * per_piece;
            Ipv4Packet::raw(whole[9], src, dst, chunk)
                .id(read_u16(whole, 4))
                .dont_fragment(false)
                .more_fragments(offset + chunk.len() < data.len())
                .fragment_offset(u16::try_from(offset / 8).unwrap())
                .build()
        })
        .collect()
}

/// The datagram `pieces` (in order, without options) make once reassembled.
fn reassemble(pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut whole = pieces[0][..20].to_vec();
    for p in pieces {
        whole.extend_from_slice(&p[20..]);
    }
    let len = u16::try_from(whole.len()).unwrap();
    write_u16(&mut whole, 2, len);
    write_u16(&mut whole, 6, 0);
    wanlb_testkit::fix_ip_checksum(&mut whole);
    whole
}

/// `p` from `addr`, its header checksum computed from scratch: what a later piece becomes.
fn from_addr(p: &[u8], addr: u32) -> Vec<u8> {
    let mut q = p.to_vec();
    q[12..16].copy_from_slice(&addr.to_be_bytes());
    wanlb_testkit::fix_ip_checksum(&mut q);
    q
}

fn fragments_in_flight(e: &Engine) -> usize {
    e.shards.iter().map(|s| lock(s).fragments.len()).sum()
}

/// 3000 bytes, not a pattern a checksum could miss a shifted word in.
fn big_payload() -> Vec<u8> {
    (0..3000u32)
        .map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap())
        .collect()
}

#[test]
fn fragmented_udp_tcp_and_echo_datagrams_are_translated_piece_by_piece() {
    let server = dst(1);
    let payload = big_payload();
    for proto in [PROTO_UDP, PROTO_TCP, PROTO_ICMP] {
        let e = single_port_engine();
        let (sport, dport) = (40000, 443);
        if proto == PROTO_TCP {
            // a connection past its handshake, as TCP only sends data on one
            let syn = &mut Ipv4Packet::tcp(LAN, server, sport, dport, b"")
                .flags(tcp_flags::SYN)
                .seq(100)
                .build();
            assert_eq!(out(&e, t(0), syn), Verdict::Uplink(0));
            let synack = &mut Ipv4Packet::tcp(server, UPLINK_1, dport, 61000, b"")
                .flags(tcp_flags::SYN | ACK)
                .seq(4999)
                .ack(101)
                .build();
            assert_eq!(inb(&e, t(1), 0, synack), Verdict::Tun);
        }
        let build = |src: u32, port: u16| {
            let p = match proto {
                PROTO_TCP => Ipv4Packet::tcp(src, server, port, dport, &payload)
                    .seq(101)
                    .ack(5000),
                _ => Ipv4Packet::l4(proto, src, server, port, dport, &payload),
            };
            p.dont_fragment(false).id(0x1234).build()
        };
        let whole = build(LAN, sport);
        let pieces = pieces_of(&whole, 1480);
        assert_eq!(pieces.len(), 3);
        let mut sent = pieces.clone();
        for p in &mut sent {
            assert_eq!(out(&e, t(10), p), Verdict::Uplink(0), "proto {proto}");
        }
        // the later pieces: the source address and the header checksum, nothing else
        for (got, original) in sent.iter().zip(&pieces).skip(1) {
            assert_eq!(*got, from_addr(original, UPLINK_1), "proto {proto}");
        }
        // the first: header checksum from scratch equal to the incremental one...
        let mut first = sent[0].clone();
        wanlb_testkit::fix_ip_checksum(&mut first);
        assert_eq!(first, sent[0], "proto {proto}");
        // ...and the datagram the far end reassembles is the translated datagram, transport
        // checksum over all 3000 bytes included
        assert_eq!(
            reassemble(&sent),
            build(UPLINK_1, 61000),
            "proto {proto}: reassembled after translation"
        );
        let c = e.counters();
        assert_eq!(
            c.uplinks[0].outbound_packets,
            3 + u64::from(proto == PROTO_TCP)
        );
        assert!(c.drops.iter().all(|d| *d == 0), "{:?}", c.drops);
        // complete: its entry is gone
        assert_eq!(fragments_in_flight(&e), 0);
        // the answer, reassembled by the packet sockets, comes back whole
        let mut reply = reply_to(&reassemble(&sent));
        assert_eq!(inb(&e, t(11), 0, &mut reply), Verdict::Tun);
        assert_eq!(reply, reply_to(&whole), "proto {proto}");
    }
}

#[test]
fn a_later_fragment_before_its_first_is_dropped_and_counted() {
    let e = single_port_engine();
    let whole = Ipv4Packet::udp(LAN, dst(1), 5000, 53, &big_payload())
        .dont_fragment(false)
        .id(9)
        .build();
    let pieces = pieces_of(&whole, 1480);
    let mut last = pieces[2].clone();
    assert_eq!(
        out(&e, t(0), &mut last),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    assert_eq!(last, pieces[2], "a dropped piece is left as it was");
    assert_eq!(fragments_in_flight(&e), 0, "nothing is held");
    // once the first has gone, the others go in any order
    for i in [0, 2, 1] {
        let mut p = pieces[i].clone();
        assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(0), "piece {i}");
    }
    assert_eq!(e.counters().drop_count(DropReason::FragmentWithoutFirst), 1);
    assert_eq!(fragments_in_flight(&e), 0, "complete");
}

#[test]
fn overlapping_and_malformed_fragments_are_dropped_and_counted() {
    let e = single_port_engine();
    let server = dst(1);
    let whole = Ipv4Packet::udp(LAN, server, 5000, 53, &big_payload())
        .dont_fragment(false)
        .id(9)
        .build();
    let pieces = pieces_of(&whole, 1480);
    let mut first = pieces[0].clone();
    assert_eq!(out(&e, t(0), &mut first), Verdict::Uplink(0));
    let piece = |data: &[u8], offset: u16, more: bool| {
        Ipv4Packet::raw(PROTO_UDP, LAN, server, data)
            .id(9)
            .dont_fragment(false)
            .more_fragments(more)
            .fragment_offset(offset)
            .build()
    };
    let cases: [(Vec<u8>, DropReason); 8] = [
        // RFC 1858: offset 8 bytes, over the transport header the first piece carried
        (piece(&[0; 16], 1, true), DropReason::FragmentOverlap),
        // the last 8 bytes of the first piece again: a duplicate
        (piece(&[0; 8], 184, true), DropReason::FragmentOverlap),
        // not the last, and not a multiple of 8 bytes
        (piece(&[0; 12], 185, true), DropReason::FragmentMalformed),
        // reaching past 64 KiB (the ping of death)
        (piece(&[0; 16], 8190, false), DropReason::FragmentMalformed),
        // a last piece ending inside bytes already sent
        (piece(&[0; 8], 100, false), DropReason::FragmentMalformed),
        // a first piece with 8 bytes of a TCP header (RFC 1858's tiny fragment)
        (
            Ipv4Packet::raw(PROTO_TCP, LAN, server, &[0x9c, 0x40, 0, 80, 0, 0, 0, 1])
                .id(10)
                .dont_fragment(false)
                .more_fragments(true)
                .build(),
            DropReason::FragmentMalformed,
        ),
        // a first piece of something that is not an echo request
        (
            Ipv4Packet::raw(PROTO_ICMP, LAN, server, &[13, 0, 0, 0, 0, 0, 0, 0])
                .id(11)
                .dont_fragment(false)
                .more_fragments(true)
                .build(),
            DropReason::UnsupportedIcmp,
        ),
        // GRE, in pieces or not
        (
            Ipv4Packet::raw(47, LAN, server, &[0; 8])
                .id(12)
                .dont_fragment(false)
                .more_fragments(true)
                .build(),
            DropReason::UnsupportedProtocol,
        ),
    ];
    for (bytes, reason) in cases {
        let mut p = bytes.clone();
        assert_eq!(out(&e, t(1), &mut p), Verdict::Drop(reason), "{reason:?}");
        assert_eq!(p, bytes, "a dropped piece is left as it was");
    }
    let c = e.counters();
    assert_eq!(c.drop_count(DropReason::FragmentOverlap), 2);
    assert_eq!(c.drop_count(DropReason::FragmentMalformed), 4);
    // what was refused changed nothing: the datagram still completes
    for p in &pieces[1..] {
        assert_eq!(out(&e, t(2), &mut p.clone()), Verdict::Uplink(0));
    }
    assert_eq!(fragments_in_flight(&e), 0);
}

#[test]
fn a_fragment_with_a_partial_checksum_is_dropped_and_counted() {
    // the device would sum this piece alone: the checksum of the datagram cannot be made
    // right, and the kernel never hands one over (it completes checksums before fragmenting)
    let e = single_port_engine();
    let whole = Ipv4Packet::udp(LAN, dst(1), 5000, 53, &big_payload())
        .dont_fragment(false)
        .build();
    for piece in pieces_of(&whole, 1480) {
        let mut p = piece.clone();
        let mut csum = L4Checksum::Partial;
        assert_eq!(
            e.outbound(t(0), &mut p, &mut csum),
            Verdict::Drop(DropReason::FragmentPartialChecksum)
        );
        assert_eq!(p, piece);
    }
    assert_eq!(
        e.counters().drop_count(DropReason::FragmentPartialChecksum),
        3
    );
    assert_eq!(
        e.flow_count(),
        0,
        "no flow for a datagram that cannot leave"
    );
}

#[test]
fn fragment_mappings_last_30_seconds_from_the_first_piece() {
    let e = single_port_engine();
    let datagram = |id: u16| {
        let whole = Ipv4Packet::udp(LAN, dst(1), 5000, 53, &big_payload())
            .dont_fragment(false)
            .id(id)
            .build();
        pieces_of(&whole, 1480)
    };
    let (a, b) = (datagram(1), datagram(2));
    assert_eq!(out(&e, t(0), &mut a[0].clone()), Verdict::Uplink(0));
    assert_eq!(out(&e, t(0), &mut b[0].clone()), Verdict::Uplink(0));
    assert_eq!(fragments_in_flight(&e), 2);
    // just in time, and then too late
    assert_eq!(
        out(&e, t(fragment::TIMEOUT_MS - 1), &mut a[1].clone()),
        Verdict::Uplink(0)
    );
    assert_eq!(
        out(&e, t(fragment::TIMEOUT_MS), &mut a[2].clone()),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    // expiry forgets the other one
    e.expire(t(fragment::TIMEOUT_MS - 1), &CarriedFlows::NONE);
    assert_eq!(fragments_in_flight(&e), 1);
    e.expire(t(fragment::TIMEOUT_MS), &CarriedFlows::NONE);
    assert_eq!(fragments_in_flight(&e), 0);
    assert_eq!(
        out(&e, t(fragment::TIMEOUT_MS), &mut b[1].clone()),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    assert_eq!(e.counters().drop_count(DropReason::FragmentWithoutFirst), 2);
}

#[test]
fn the_fragment_table_is_bounded_and_a_full_one_is_counted() {
    let e = single_port_engine();
    let server = dst(1);
    let datagram = |id: u16| {
        let whole = Ipv4Packet::udp(LAN, server, 5000, 53, &big_payload())
            .dont_fragment(false)
            .id(id)
            .build();
        pieces_of(&whole, 1480)
    };
    // first pieces that never complete, all to one remote address (one shard)
    let max = u16::try_from(fragment::MAX_DATAGRAMS).unwrap();
    for id in 0..max {
        assert_eq!(
            out(&e, t(0), &mut datagram(id)[0].clone()),
            Verdict::Uplink(0)
        );
    }
    assert_eq!(fragments_in_flight(&e), fragment::MAX_DATAGRAMS);
    let refused = datagram(max);
    let mut p = refused[0].clone();
    assert_eq!(
        out(&e, t(1), &mut p),
        Verdict::Drop(DropReason::FragmentTableFull)
    );
    assert_eq!(p, refused[0], "a dropped piece is left as it was");
    assert_eq!(fragments_in_flight(&e), fragment::MAX_DATAGRAMS);
    assert_eq!(e.counters().drop_count(DropReason::FragmentTableFull), 1);
    // the datagrams in the table still go out, and each that completes makes room
    let known = datagram(0);
    for p in &known[1..] {
        assert_eq!(out(&e, t(2), &mut p.clone()), Verdict::Uplink(0));
    }
    assert_eq!(out(&e, t(3), &mut p.clone()), Verdict::Uplink(0));
    // other shards have their own room
    let elsewhere = Ipv4Packet::udp(LAN, dst(2), 5000, 53, &big_payload())
        .dont_fragment(false)
        .build();
    let mut p = pieces_of(&elsewhere, 1480)[0].clone();
    assert!(matches!(out(&e, t(3), &mut p), Verdict::Uplink(_)));
    // once they are 30 s old, the full table takes new datagrams again
    let mut p = datagram(max + 1)[0].clone();
    assert_eq!(
        out(&e, t(4), &mut p.clone()),
        Verdict::Drop(DropReason::FragmentTableFull)
    );
    assert_eq!(out(&e, t(fragment::TIMEOUT_MS), &mut p), Verdict::Uplink(0));
    assert_eq!(fragments_in_flight(&e), 3, "the last three firsts");
}

#[test]
fn two_hosts_fragmenting_to_one_server_with_one_id_are_kept_apart() {
    // translated to one address, two datagrams with one identification would be put together
    // at the far end: the second gets the next free identification, on all its pieces
    let e = Engine::new(config((61000, 61001), vec![]));
    let host_b = u32::from_be_bytes([198, 18, 3, 11]);
    let server = dst(1);
    let payload = big_payload();
    let whole = |src: u32, id: u16| {
        Ipv4Packet::udp(src, server, 5000, 53, &payload)
            .dont_fragment(false)
            .id(id)
            .build()
    };
    let (mut a, mut b) = (
        pieces_of(&whole(LAN, 7), 1480),
        pieces_of(&whole(host_b, 7), 1480),
    );
    // interleaved, as two hosts sending at once
    for (pa, pb) in a.iter_mut().zip(&mut b) {
        assert_eq!(out(&e, t(0), pa), Verdict::Uplink(0));
        assert_eq!(out(&e, t(0), pb), Verdict::Uplink(0));
    }
    for (sent, id) in [(&a, 7), (&b, 8)] {
        for p in sent.iter() {
            assert_eq!(read_u16(p, 4), id);
            let mut fixed = p.clone();
            wanlb_testkit::fix_ip_checksum(&mut fixed);
            assert_eq!(fixed, *p, "header checksum");
        }
        let port = read_u16(&sent[0], 20);
        let translated = Ipv4Packet::udp(UPLINK_1, server, port, 53, &payload)
            .dont_fragment(false)
            .id(id)
            .build();
        assert_eq!(reassemble(sent), translated);
    }
    assert_ne!(read_u16(&a[0], 20), read_u16(&b[0], 20));
    // both complete: the next datagram keeps its host's identification
    let mut next = pieces_of(&whole(host_b, 7), 1480)[0].clone();
    assert_eq!(out(&e, t(1), &mut next), Verdict::Uplink(0));
    assert_eq!(read_u16(&next, 4), 7);
}

#[test]
fn only_the_first_fragment_is_answered_with_an_unreachable() {
    let e = single_port_engine();
    e.set_uplink_up(0, false, &CarriedFlows::NONE);
    e.set_uplink_up(1, false, &CarriedFlows::NONE);
    let whole = Ipv4Packet::udp(LAN, dst(1), 5000, 53, &big_payload())
        .dont_fragment(false)
        .build();
    let pieces = pieces_of(&whole, 1480);
    let mut first = pieces[0].clone();
    assert_eq!(
        out(&e, t(0), &mut first),
        Verdict::Drop(DropReason::NoUplink)
    );
    let mut answer = [0u8; MAX_UNREACHABLE];
    let len = e
        .unreachable(t(0), DropReason::NoUplink, &first, &mut answer)
        .expect("answered");
    // it quotes the first piece's header and the start of its transport header
    assert_eq!(answer[20], 3);
    assert_eq!(answer[28..len], pieces[0][..len - 28]);
    let mut later = pieces[1].clone();
    assert_eq!(
        out(&e, t(0), &mut later),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    assert_eq!(
        e.unreachable(t(0), DropReason::NoUplink, &later, &mut answer),
        None
    );
}

proptest! {
    /// Any datagram, cut anywhere a stack may cut it, comes out as its translation: every
    /// piece from the uplink's address with its header checksum right, the reassembled
    /// datagram equal to the datagram built translated from scratch.
    #[test]
    fn any_fragmented_datagram_reassembles_to_its_translation(
        proto in prop_oneof![Just(PROTO_ICMP), Just(PROTO_UDP)],
        len in 9usize..5000, per_piece in 1usize..186, id in any::<u16>(),
        seed in any::<u8>(),
    ) {
        let e = single_port_engine();
        let payload: Vec<u8> = (0..len).map(|i| u8::try_from(i % 256).unwrap().wrapping_mul(seed | 1)).collect();
        let build = |src: u32, port: u16| {
            Ipv4Packet::l4(proto, src, dst(1), port, 53, &payload).dont_fragment(false).id(id).build()
        };
        let pieces = pieces_of(&build(LAN, 5000), per_piece * 8);
        prop_assume!(pieces.len() > 1);
        let mut sent = pieces.clone();
        for p in &mut sent {
            prop_assert_eq!(out(&e, t(0), p), Verdict::Uplink(0));
            prop_assert_eq!(read_u32(p, 12), UPLINK_1);
            let mut fixed = p.clone();
            wanlb_testkit::fix_ip_checksum(&mut fixed);
            prop_assert_eq!(&fixed, p);
        }
        prop_assert_eq!(reassemble(&sent), build(UPLINK_1, 61000));
        prop_assert_eq!(fragments_in_flight(&e), 0);
    }
}
