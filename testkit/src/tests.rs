//! The builder against packets written out byte by byte (the engine tests' vectors, made once
//! by an independent implementation), and against the checksum from scratch.

use super::*;

const HOST: [u8; 4] = [198, 18, 3, 10];
const SERVER: [u8; 4] = [198, 19, 0, 1];

/// True when every checksum of `p` verifies: the IP header's, and the transport's.
fn checksums_hold(p: &[u8]) -> bool {
    let ihl = header_len(p);
    let l4 = &p[ihl..];
    let pseudo = match p[9] {
        PROTO_ICMP => 0,
        proto => pseudo_header(
            u32::from(read_addr(p, 12)),
            u32::from(read_addr(p, 16)),
            proto,
            u16::try_from(l4.len()).unwrap(),
        ),
    };
    checksum(&p[..ihl], 0) == 0 && checksum(l4, pseudo) == 0
}

#[test]
fn a_tcp_syn_matches_the_written_out_vector() {
    const TCP_SYN_OUT: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0xab, 0x9e, 0xc6, 0x12, 0x03,
        0x0a, 0xc6, 0x13, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00,
        0x00, 0x00, 0x50, 0x02, 0xff, 0xff, 0x3f, 0xbb, 0x00, 0x00,
    ];
    let syn = Ipv4Packet::tcp(HOST, SERVER, 40000, 80, b"")
        .flags(TCP_SYN)
        .seq(0x1122_3344)
        .build();
    assert_eq!(syn, TCP_SYN_OUT);
}

#[test]
fn a_udp_datagram_matches_the_written_out_vector() {
    const UDP_OUT: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xab, 0x9b, 0xc6, 0x12, 0x03,
        0x0a, 0xc6, 0x13, 0x00, 0x01, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x7c, 0xb6, 0x70, 0x69,
        0x6e, 0x67,
    ];
    let udp = Ipv4Packet::udp(HOST, SERVER, 5353, 53, b"ping");
    assert_eq!(udp.build(), UDP_OUT);
    assert_eq!(
        udp.build_l4(),
        UDP_OUT[20..],
        "the same, less the IP header"
    );
    let mut none = UDP_OUT;
    none[26..28].copy_from_slice(&[0, 0]);
    assert_eq!(udp.no_udp_checksum().build(), none);
}

#[test]
fn an_echo_request_matches_the_written_out_vector() {
    const ECHO_OUT: [u8; 36] = [
        0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xab, 0xa7, 0xc6, 0x12, 0x03,
        0x0a, 0xc6, 0x13, 0x00, 0x01, 0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62,
        0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    ];
    let ping = Ipv4Packet::icmp_echo_request(HOST, SERVER, 0x1234, 1, b"abcdefgh").build();
    assert_eq!(ping, ECHO_OUT);
    let pong = Ipv4Packet::icmp_echo_reply(SERVER, HOST, 0x1234, 1, b"abcdefgh").build();
    assert_eq!(pong, reply_to(&ping));
    assert_eq!(
        Ipv4Packet::l4(PROTO_ICMP, HOST, SERVER, 0x1234, 9, b"abcdefgh").build(),
        ping
    );
}

#[test]
fn an_icmp_error_quoting_a_datagram_matches_the_written_out_vector() {
    const UNREACH_IN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0x48, 0x99, 0xc6, 0x12, 0x65,
        0x01, 0xc6, 0x12, 0x01, 0x01, 0x03, 0x03, 0x8a, 0x42, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00,
        0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xad, 0xa4, 0xc6, 0x12, 0x01, 0x01, 0xc6,
        0x13, 0x00, 0x01, 0xee, 0x48, 0x00, 0x35, 0x00, 0x0c, 0xa5, 0x5f, 0x70, 0x69, 0x6e, 0x67,
    ];
    let uplink = [198, 18, 1, 1];
    let quoted = Ipv4Packet::udp(uplink, SERVER, 61000, 53, b"ping").build();
    let error = Ipv4Packet::icmp(
        [198, 18, 101, 1],
        uplink,
        ICMP_DEST_UNREACHABLE,
        3,
        [0; 4],
        &quoted,
    );
    assert_eq!(error.build(), UNREACH_IN);
}

#[test]
fn every_field_lands_where_it_belongs() {
    let p = Ipv4Packet::tcp(
        Ipv4Addr::from(HOST),
        u32::from_be_bytes(SERVER),
        1,
        2,
        b"xyz",
    )
    .tos(0xb8)
    .id(0x1234)
    .ttl(3)
    .dont_fragment(false)
    .more_fragments(true)
    .fragment_offset(0x123)
    .options(&[1, 1, 1, 0])
    .flags(TCP_SYN | TCP_ACK)
    .seq(0x0102_0304)
    .ack(0x0506_0708)
    .window(0x090a)
    .build();
    assert_eq!(p.len(), 24 + 20 + 3);
    assert_eq!(p[..10], [0x46, 0xb8, 0, 47, 0x12, 0x34, 0x21, 0x23, 3, 6]);
    assert_eq!(p[12..20], [198, 18, 3, 10, 198, 19, 0, 1]);
    assert_eq!(p[20..24], [1, 1, 1, 0]);
    assert_eq!(p[24..28], [0, 1, 0, 2]);
    assert_eq!(p[28..36], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(p[36..40], [0x50, 0x12, 9, 10]);
    assert_eq!(p[44..], *b"xyz");
    assert!(checksums_hold(&p));
}

#[test]
fn checksums_hold_for_every_protocol_and_size_up_to_an_mtu() {
    for size in [0, 1, 2, 17, 18, 1000, 1460, 1472] {
        let payload: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
        for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
            let p = Ipv4Packet::l4(proto, HOST, SERVER, 40000, 443, &payload).build();
            assert!(checksums_hold(&p), "proto {proto}, {size} bytes");
            let with_options = Ipv4Packet::l4(proto, HOST, SERVER, 40000, 443, &payload)
                .options(&[0x94, 4, 0, 0])
                .build();
            assert!(checksums_hold(&with_options), "proto {proto}, {size} bytes");
        }
    }
    let full = Ipv4Packet::udp(HOST, SERVER, 1, 2, &[7; 1472]).build();
    assert_eq!(full.len(), 1500);
}

#[test]
fn overrides_are_written_as_given() {
    let p = Ipv4Packet::udp(HOST, SERVER, 1, 2, b"ab")
        .total_len(31)
        .ip_checksum(0xdead)
        .l4_checksum(0xbeef)
        .build();
    assert_eq!((p.len(), read_u16(&p, 2)), (30, 31));
    assert_eq!((read_u16(&p, 10), read_u16(&p, 26)), (0xdead, 0xbeef));
    let gre = Ipv4Packet::raw(47, HOST, SERVER, &[0, 0, 8, 0]).build();
    assert_eq!((gre[9], &gre[20..]), (47, &[0u8, 0, 8, 0][..]));
    assert_eq!(checksum(&gre[..20], 0), 0);
}

#[test]
fn fix_checksums_repairs_a_changed_packet_and_keeps_no_checksum() {
    let reference = Ipv4Packet::tcp(HOST, SERVER, 40000, 443, b"data")
        .flags(TCP_RST)
        .build();
    let mut p = Ipv4Packet::tcp(HOST, SERVER, 40000, 443, b"data").build();
    p[33] = TCP_RST;
    fix_checksums(&mut p);
    assert_eq!(p, reference);

    let mut none = Ipv4Packet::udp(HOST, SERVER, 1, 2, b"x")
        .no_udp_checksum()
        .build();
    none[8] = 1;
    fix_checksums(&mut none);
    assert_eq!(read_u16(&none, 26), 0, "none stays none");
    assert_eq!(
        none,
        Ipv4Packet::udp(HOST, SERVER, 1, 2, b"x")
            .ttl(1)
            .no_udp_checksum()
            .build()
    );
}

#[test]
fn a_reply_swaps_the_ends() {
    let out = Ipv4Packet::udp(HOST, SERVER, 5000, 53, b"q").build();
    assert_eq!(
        reply_to(&out),
        Ipv4Packet::udp(SERVER, HOST, 53, 5000, b"q").build()
    );
    let syn = Ipv4Packet::tcp(HOST, SERVER, 40000, 443, b"").flags(TCP_SYN);
    assert_eq!(
        reply_to(&syn.build()),
        Ipv4Packet::tcp(SERVER, HOST, 443, 40000, b"")
            .flags(TCP_SYN)
            .build()
    );
}

#[test]
fn a_forwarded_packet_has_one_ttl_less_and_a_checksum_as_right_or_wrong_as_before() {
    for ttl in [1, 2, 64, 255] {
        let mut p = Ipv4Packet::udp(HOST, SERVER, 1, 2, b"x").ttl(ttl).build();
        decrement_ttl(&mut p);
        assert_eq!(
            p,
            Ipv4Packet::udp(HOST, SERVER, 1, 2, b"x")
                .ttl(ttl - 1)
                .build()
        );
    }
    let mut wrong = Ipv4Packet::udp(HOST, SERVER, 1, 2, b"x")
        .ip_checksum(0x1234)
        .build();
    decrement_ttl(&mut wrong);
    assert_ne!(checksum(&wrong[..20], 0), 0);
    assert_eq!(wrong[8], 63);
}

#[test]
#[should_panic(expected = "flags() on a UDP datagram")]
fn tcp_fields_are_for_tcp_only() {
    let _ = Ipv4Packet::udp(HOST, SERVER, 1, 2, b"").flags(TCP_SYN);
}
