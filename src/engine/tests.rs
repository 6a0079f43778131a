//! Engine tests. The translation tests' packets are byte literals generated once by an
//! independent implementation (full checksum computation); the engine's incremental updates
//! must reproduce them exactly. The other tests build their packets with wanlb-testkit, whose
//! checksums are computed from scratch too.

use super::checksum::{fold, pseudo_header, sum};
use super::packet::{PROTO_UDP, TCP_SYN, read_u16, write_u16};
use super::select::{Pin, Prefix};
use super::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use wanlb_testkit::{Ipv4Packet, fix_checksums, reply_to};

const LAN: u32 = u32::from_be_bytes([198, 18, 3, 10]);
const UPLINK_1: u32 = u32::from_be_bytes([198, 18, 1, 1]);
const UPLINK_2: u32 = u32::from_be_bytes([198, 18, 2, 1]);
const MIN: u64 = 60_000;

fn config(ports: (u16, u16), pins: Vec<Pin>) -> EngineConfig {
    EngineConfig {
        uplinks: vec![
            UplinkConfig {
                name: "isp1".into(),
                addr: UPLINK_1,
                weight: 2,
                tier: 1,
            },
            UplinkConfig {
                name: "isp2".into(),
                addr: UPLINK_2,
                weight: 1,
                tier: 1,
            },
        ],
        pins,
        affinity_timeout_ms: 10 * MIN,
        timeouts: Timeouts::default(),
        ports,
        seed: 42,
        reset_tcp_on_down: true,
    }
}

/// One port per pool, so the external port of the first flow is known: 61000.
fn single_port_engine() -> Engine {
    Engine::new(config((61000, 61000), vec![]))
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn out(e: &mut Engine, now: Timestamp, pkt: &mut [u8]) -> Verdict {
    e.outbound(now, pkt, &mut L4Checksum::Complete)
}

fn inb(e: &mut Engine, now: Timestamp, uplink: UplinkId, pkt: &mut [u8]) -> Verdict {
    e.inbound(now, uplink, pkt, &mut L4Checksum::Complete)
}

const TCP_SYN_OUT: [u8; 40] = [
    0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0xab, 0x9e, 0xc6, 0x12, 0x03, 0x0a,
    0xc6, 0x13, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00,
    0x50, 0x02, 0xff, 0xff, 0x3f, 0xbb, 0x00, 0x00,
];
const TCP_SYN_OUT_NAT: [u8; 40] = [
    0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0xad, 0xa7, 0xc6, 0x12, 0x01, 0x01,
    0xc6, 0x13, 0x00, 0x01, 0xee, 0x48, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00,
    0x50, 0x02, 0xff, 0xff, 0xef, 0xbb, 0x00, 0x00,
];
const TCP_SYNACK_IN: [u8; 40] = [
    0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0xad, 0xa7, 0xc6, 0x13, 0x00, 0x01,
    0xc6, 0x12, 0x01, 0x01, 0x00, 0x50, 0xee, 0x48, 0x55, 0x66, 0x77, 0x88, 0x11, 0x22, 0x33, 0x45,
    0x50, 0x12, 0xff, 0xff, 0x22, 0xbc, 0x00, 0x00,
];
const TCP_SYNACK_IN_NAT: [u8; 40] = [
    0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0xab, 0x9e, 0xc6, 0x13, 0x00, 0x01,
    0xc6, 0x12, 0x03, 0x0a, 0x00, 0x50, 0x9c, 0x40, 0x55, 0x66, 0x77, 0x88, 0x11, 0x22, 0x33, 0x45,
    0x50, 0x12, 0xff, 0xff, 0x72, 0xbb, 0x00, 0x00,
];
const UDP_OUT: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xab, 0x9b, 0xc6, 0x12, 0x03, 0x0a,
    0xc6, 0x13, 0x00, 0x01, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x7c, 0xb6, 0x70, 0x69, 0x6e, 0x67,
];
const UDP_OUT_NAT: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xad, 0xa4, 0xc6, 0x12, 0x01, 0x01,
    0xc6, 0x13, 0x00, 0x01, 0xee, 0x48, 0x00, 0x35, 0x00, 0x0c, 0xa5, 0x5f, 0x70, 0x69, 0x6e, 0x67,
];
const UDP_IN: [u8; 33] = [
    0x45, 0x00, 0x00, 0x21, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xad, 0xa3, 0xc6, 0x13, 0x00, 0x01,
    0xc6, 0x12, 0x01, 0x01, 0x00, 0x35, 0xee, 0x48, 0x00, 0x0d, 0x84, 0x57, 0x70, 0x6f, 0x6e, 0x67,
    0x21,
];
const UDP_IN_NAT: [u8; 33] = [
    0x45, 0x00, 0x00, 0x21, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xab, 0x9a, 0xc6, 0x13, 0x00, 0x01,
    0xc6, 0x12, 0x03, 0x0a, 0x00, 0x35, 0x14, 0xe9, 0x00, 0x0d, 0x5b, 0xae, 0x70, 0x6f, 0x6e, 0x67,
    0x21,
];
const UDP_NOCSUM_OUT: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xab, 0x9b, 0xc6, 0x12, 0x03, 0x0a,
    0xc6, 0x13, 0x00, 0x01, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0x70, 0x69, 0x6e, 0x67,
];
const UDP_NOCSUM_OUT_NAT: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xad, 0xa4, 0xc6, 0x12, 0x01, 0x01,
    0xc6, 0x13, 0x00, 0x01, 0xee, 0x48, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0x70, 0x69, 0x6e, 0x67,
];
const ECHO_OUT: [u8; 36] = [
    0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xab, 0xa7, 0xc6, 0x12, 0x03, 0x0a,
    0xc6, 0x13, 0x00, 0x01, 0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68,
];
const ECHO_OUT_NAT: [u8; 36] = [
    0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xad, 0xb0, 0xc6, 0x12, 0x01, 0x01,
    0xc6, 0x13, 0x00, 0x01, 0x08, 0x00, 0x78, 0x20, 0xee, 0x48, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68,
];
const ECHO_IN: [u8; 36] = [
    0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xad, 0xb0, 0xc6, 0x13, 0x00, 0x01,
    0xc6, 0x12, 0x01, 0x01, 0x00, 0x00, 0x80, 0x20, 0xee, 0x48, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68,
];
const ECHO_IN_NAT: [u8; 36] = [
    0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xab, 0xa7, 0xc6, 0x13, 0x00, 0x01,
    0xc6, 0x12, 0x03, 0x0a, 0x00, 0x00, 0x5c, 0x35, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68,
];
const UNREACH_IN: [u8; 60] = [
    0x45, 0x00, 0x00, 0x3c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0x48, 0x99, 0xc6, 0x12, 0x65, 0x01,
    0xc6, 0x12, 0x01, 0x01, 0x03, 0x03, 0x8a, 0x42, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x20,
    0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xad, 0xa4, 0xc6, 0x12, 0x01, 0x01, 0xc6, 0x13, 0x00, 0x01,
    0xee, 0x48, 0x00, 0x35, 0x00, 0x0c, 0xa5, 0x5f, 0x70, 0x69, 0x6e, 0x67,
];
const UNREACH_IN_NAT: [u8; 60] = [
    0x45, 0x00, 0x00, 0x3c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0x46, 0x90, 0xc6, 0x12, 0x65, 0x01,
    0xc6, 0x12, 0x03, 0x0a, 0x03, 0x03, 0x8c, 0x4b, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x20,
    0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xab, 0x9b, 0xc6, 0x12, 0x03, 0x0a, 0xc6, 0x13, 0x00, 0x01,
    0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x7c, 0xb6, 0x70, 0x69, 0x6e, 0x67,
];
const UNREACH_OUT: [u8; 61] = [
    0x45, 0x00, 0x00, 0x3d, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xab, 0x8e, 0xc6, 0x12, 0x03, 0x0a,
    0xc6, 0x13, 0x00, 0x01, 0x03, 0x03, 0x8c, 0x4c, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x21,
    0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xab, 0x9a, 0xc6, 0x13, 0x00, 0x01, 0xc6, 0x12, 0x03, 0x0a,
    0x00, 0x35, 0x14, 0xe9, 0x00, 0x0d, 0x5b, 0xae, 0x70, 0x6f, 0x6e, 0x67, 0x21,
];
const UNREACH_OUT_NAT: [u8; 61] = [
    0x45, 0x00, 0x00, 0x3d, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0xad, 0x97, 0xc6, 0x12, 0x01, 0x01,
    0xc6, 0x13, 0x00, 0x01, 0x03, 0x03, 0x8a, 0x43, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x21,
    0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xad, 0xa3, 0xc6, 0x13, 0x00, 0x01, 0xc6, 0x12, 0x01, 0x01,
    0x00, 0x35, 0xee, 0x48, 0x00, 0x0d, 0x84, 0x57, 0x70, 0x6f, 0x6e, 0x67, 0x21,
];

#[test]
fn tcp_snat_and_reverse() {
    let mut e = single_port_engine();
    let mut p = TCP_SYN_OUT;
    assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(0));
    assert_eq!(p, TCP_SYN_OUT_NAT);
    let mut r = TCP_SYNACK_IN;
    assert_eq!(inb(&mut e, t(1), 0, &mut r), Verdict::Tun);
    assert_eq!(r, TCP_SYNACK_IN_NAT);
    let c = &e.counters().uplinks[0];
    assert_eq!(
        (c.outbound_packets, c.inbound_packets, c.outbound_bytes),
        (1, 1, 40)
    );
}

#[test]
fn udp_snat_and_reverse() {
    let mut e = single_port_engine();
    let mut p = UDP_OUT;
    assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(0));
    assert_eq!(p, UDP_OUT_NAT);
    let mut r = UDP_IN;
    assert_eq!(inb(&mut e, t(1), 0, &mut r), Verdict::Tun);
    assert_eq!(r, UDP_IN_NAT);
}

#[test]
fn udp_without_checksum_keeps_none() {
    let mut e = single_port_engine();
    let mut p = UDP_NOCSUM_OUT;
    assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(0));
    assert_eq!(p, UDP_NOCSUM_OUT_NAT);
}

#[test]
fn icmp_echo_snat_and_reverse() {
    let mut e = single_port_engine();
    let mut p = ECHO_OUT;
    assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(0));
    assert_eq!(p, ECHO_OUT_NAT);
    let mut r = ECHO_IN;
    assert_eq!(inb(&mut e, t(1), 0, &mut r), Verdict::Tun);
    assert_eq!(r, ECHO_IN_NAT);
}

#[test]
fn icmp_error_from_internet_is_translated_with_its_quote() {
    let mut e = single_port_engine();
    let mut p = UDP_OUT;
    out(&mut e, t(0), &mut p);
    let mut err = UNREACH_IN;
    let mut csum = L4Checksum::Complete;
    assert_eq!(e.inbound(t(1), 0, &mut err, &mut csum), Verdict::Tun);
    assert_eq!(err, UNREACH_IN_NAT);
}

#[test]
fn icmp_error_from_lan_about_a_reply_is_translated() {
    let mut e = single_port_engine();
    let mut p = UDP_OUT;
    out(&mut e, t(0), &mut p);
    let mut err = UNREACH_OUT;
    assert_eq!(out(&mut e, t(1), &mut err), Verdict::Uplink(0));
    assert_eq!(err, UNREACH_OUT_NAT);
}

#[test]
fn icmp_error_for_unknown_flow_is_dropped() {
    let mut e = single_port_engine();
    let mut err = UNREACH_IN;
    assert_eq!(
        inb(&mut e, t(0), 0, &mut err),
        Verdict::Drop(DropReason::NoFlow)
    );
    assert_eq!(err, UNREACH_IN, "a dropped packet is left as it was");
}

#[test]
fn partial_checksum_gets_the_pseudo_header_update_only() {
    let e = single_port_engine();
    let mut p = TCP_SYN_OUT;
    let dst = u32::from_be_bytes([198, 19, 0, 1]);
    write_u16(&mut p, 36, fold(pseudo_header(LAN, dst, 6, 20)));
    let mut csum = L4Checksum::Partial;
    assert_eq!(e.outbound(t(0), &mut p, &mut csum), Verdict::Uplink(0));
    assert_eq!(csum, L4Checksum::Partial);
    assert_eq!(read_u16(&p, 36), fold(pseudo_header(UPLINK_1, dst, 6, 20)));
    // completing it gives the checksum of the fully translated segment
    let completed = !fold(sum(&p[20..], 0));
    assert_eq!(completed, read_u16(&TCP_SYN_OUT_NAT, 36));
}

#[test]
fn replies_to_the_wrong_uplink_or_endpoint_are_dropped() {
    let mut e = single_port_engine();
    let mut p = UDP_OUT;
    out(&mut e, t(0), &mut p);
    let mut r = UDP_IN;
    assert_eq!(
        inb(&mut e, t(1), 1, &mut r),
        Verdict::Drop(DropReason::NotForUplink)
    );
    // same uplink, but from another remote port: filtered (address and port dependent)
    let mut r = UDP_IN;
    r[20] = 0x01;
    assert_eq!(
        inb(&mut e, t(1), 0, &mut r),
        Verdict::Drop(DropReason::NoFlow)
    );
    assert_eq!(e.counters().drop_count(DropReason::NoFlow), 1);
    assert_eq!(e.counters().drop_count(DropReason::NotForUplink), 1);
}

#[test]
fn unparseable_and_unsupported_packets_are_counted_by_reason() {
    let mut e = single_port_engine();
    let cases: [(&[u8], DropReason); 6] = [
        (&[], DropReason::Malformed),
        (&TCP_SYN_OUT[..30], DropReason::Malformed),
        (
            &[
                0x60, 0, 0, 0, 0, 8, 17, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            DropReason::NotIpv4,
        ),
        (
            // GRE
            &[
                0x45, 0, 0, 24, 0, 1, 0, 0, 64, 47, 0, 0, 198, 18, 3, 10, 198, 19, 0, 1, 0, 0, 8, 0,
            ],
            DropReason::UnsupportedProtocol,
        ),
        (
            // a non-first fragment of a UDP datagram
            &[
                0x45, 0, 0, 28, 0, 1, 0, 0x10, 64, 17, 0, 0, 198, 18, 3, 10, 198, 19, 0, 1, 1, 2,
                3, 4, 5, 6, 7, 8,
            ],
            DropReason::Fragment,
        ),
        (
            // ICMP timestamp request
            &[
                0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 198, 18, 3, 10, 198, 19, 0, 1, 13, 0, 0,
                0, 0, 0, 0, 0,
            ],
            DropReason::UnsupportedIcmp,
        ),
    ];
    for (bytes, reason) in cases {
        let mut p = bytes.to_vec();
        assert_eq!(
            out(&mut e, t(0), &mut p),
            Verdict::Drop(reason),
            "{bytes:02x?}"
        );
        assert_eq!(
            e.counters().drop_count(reason),
            if reason == DropReason::Malformed {
                1 + u64::from(bytes.len() == 30)
            } else {
                1
            }
        );
    }
    // a header claiming more bytes than arrived
    let mut p = TCP_SYN_OUT;
    p[3] = 0x29;
    assert_eq!(
        out(&mut e, t(0), &mut p),
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn pool_exhaustion_is_a_counted_drop() {
    let mut e = single_port_engine();
    let mut p = UDP_OUT;
    assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(0));
    // another LAN port on the same uplink: the one-port pool is taken
    let mut e2 = Engine::new(config((61000, 61000), vec![]));
    e2.set_uplink_up(1, false);
    let mut a = UDP_OUT;
    let mut b = UDP_OUT;
    b[21] ^= 1; // other source port (checksum no longer matters for the drop)
    assert_eq!(out(&mut e2, t(0), &mut a), Verdict::Uplink(0));
    assert_eq!(
        out(&mut e2, t(0), &mut b),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    assert_eq!(e2.counters().drop_count(DropReason::PortsExhausted), 1);
    // once the first flow expires its port is free again
    e2.expire(t(Timeouts::default().udp));
    let mut b = UDP_OUT;
    b[21] ^= 1;
    assert_eq!(
        out(&mut e2, t(Timeouts::default().udp), &mut b),
        Verdict::Uplink(0)
    );
}

#[test]
fn no_uplink_up_is_a_counted_drop() {
    let mut e = single_port_engine();
    e.set_uplink_up(0, false);
    e.set_uplink_up(1, false);
    let mut p = UDP_OUT;
    assert_eq!(
        out(&mut e, t(0), &mut p),
        Verdict::Drop(DropReason::NoUplink)
    );
    assert_eq!(e.counters().drop_count(DropReason::NoUplink), 1);
}

fn dst(i: u32) -> u32 {
    u32::from_be_bytes([198, 19, 0, 0]) + i
}

#[test]
fn weighted_shares_over_new_destinations_stay_within_one() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    let mut seen = [0i64; 2];
    for i in 1..=90 {
        let mut p = Ipv4Packet::udp(LAN, dst(i), 5000, 53, b"q").build();
        let Verdict::Uplink(u) = out(&mut e, t(0), &mut p) else {
            panic!("dropped")
        };
        seen[usize::from(u)] += 1;
        assert!(
            (3 * seen[0] - 2 * i64::from(i)).abs() <= 3,
            "after {i}: {seen:?}"
        );
    }
    assert_eq!(seen, [60, 30]);
    assert_eq!(e.counters().uplinks[0].destinations, 60);
    assert_eq!(e.counters().uplinks[1].destinations, 30);
}

#[test]
fn flows_to_one_destination_share_its_uplink() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    let mut first = None;
    for port in 0..20u16 {
        let mut p =
            Ipv4Packet::udp(LAN + u32::from(port % 3), dst(7), 1000 + port, 443, b"x").build();
        let v = out(&mut e, t(u64::from(port)), &mut p);
        assert_eq!(*first.get_or_insert(v), v);
    }
    assert_eq!(e.flow_count(), 20);
    assert_eq!(e.destination_count(), 1);
}

#[test]
fn lan_endpoint_keeps_its_external_port_across_destinations() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    let mut a = Ipv4Packet::udp(LAN, dst(1), 5000, 53, b"q").build();
    let mut b = Ipv4Packet::udp(LAN, dst(4), 5000, 53, b"q").build();
    // dst(1) -> uplink 0, dst(2) -> 1, dst(3) -> 0; dst(4) -> 0 again
    assert_eq!(out(&mut e, t(0), &mut a), Verdict::Uplink(0));
    for i in [2, 3] {
        out(
            &mut e,
            t(0),
            &mut Ipv4Packet::udp(LAN, dst(i), 9, 53, b"q").build(),
        );
    }
    assert_eq!(out(&mut e, t(0), &mut b), Verdict::Uplink(0));
    assert_eq!(read_u16(&a, 20), read_u16(&b, 20));
    // (LAN:5000, uplink 0), (LAN:9, uplink 1), (LAN:9, uplink 0)
    assert_eq!(e.mapping_count(), 3);
}

#[test]
fn pins_win_and_do_not_count_against_weights() {
    let pin = Pin {
        prefix: Prefix::new(dst(91), 32).unwrap(),
        uplink: 1,
        strict: false,
    };
    let mut e = Engine::new(config((61000, 65535), vec![pin]));
    for _ in 0..5 {
        let mut p = Ipv4Packet::udp(LAN, dst(91), 6667, 6667, b"irc").build();
        assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(1));
        // a new flow each time: a new LAN port
        e.expire(t(Timeouts::default().udp));
    }
    // the weighted sequence is untouched by the pinned flows: it starts at uplink 0
    let picks: Vec<_> = (1..=3)
        .map(|i| {
            out(
                &mut e,
                t(0),
                &mut Ipv4Packet::udp(LAN, dst(i), 5000, 53, b"q").build(),
            )
        })
        .collect();
    assert_eq!(
        picks,
        [Verdict::Uplink(0), Verdict::Uplink(1), Verdict::Uplink(0)]
    );
}

#[test]
fn pinned_destination_falls_back_when_its_uplink_is_down() {
    let pin = Pin {
        prefix: Prefix::new(dst(91), 32).unwrap(),
        uplink: 1,
        strict: false,
    };
    let mut e = Engine::new(config((61000, 65535), vec![pin]));
    e.set_uplink_up(1, false);
    let mut p = Ipv4Packet::udp(LAN, dst(91), 6667, 6667, b"irc").build();
    assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(0));
}

#[test]
fn affinity_holds_for_the_idle_timeout_after_the_last_flow() {
    let udp_timeout = Timeouts::default().udp;
    let mut e = Engine::new(config((61000, 65535), vec![]));
    // dst(1) takes uplink 0; the next weighted pick would be uplink 1
    assert_eq!(
        out(
            &mut e,
            t(0),
            &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    // last packet at 1 min; the flow expires 5 min later; the binding 10 min after the packet
    assert_eq!(
        out(
            &mut e,
            t(MIN),
            &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    e.expire(t(MIN + udp_timeout));
    assert_eq!(e.flow_count(), 0);
    assert_eq!(e.destination_count(), 1);
    let now = MIN + 10 * MIN - 1;
    e.expire(t(now));
    assert_eq!(
        out(
            &mut e,
            t(now),
            &mut Ipv4Packet::udp(LAN, dst(1), 2, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    // that new flow refreshed the binding; let it lapse fully this time
    let later = now + udp_timeout + 10 * MIN;
    e.expire(t(later));
    assert_eq!(e.destination_count(), 0);
    assert_eq!(
        out(
            &mut e,
            t(later),
            &mut Ipv4Packet::udp(LAN, dst(1), 3, 53, b"q").build()
        ),
        Verdict::Uplink(1)
    );
}

#[test]
fn expiry_returns_ports_and_keeps_live_flows() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    out(
        &mut e,
        t(0),
        &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build(),
    );
    out(
        &mut e,
        t(200_000),
        &mut Ipv4Packet::udp(LAN, dst(2), 2, 53, b"q").build(),
    );
    e.expire(t(Timeouts::default().udp));
    assert_eq!((e.flow_count(), e.mapping_count()), (1, 1));
}

/// Records what the engine asks of a fast path; `idle` is what it answers about every flow.
#[derive(Debug, Default)]
struct FakeFastPath {
    log: Mutex<Vec<String>>,
    idle: Mutex<Option<u64>>,
}

impl FastPath for std::sync::Arc<FakeFastPath> {
    fn hand_over(&self, f: &Flow, ext_addr: u32) -> bool {
        let k = f.key;
        self.log.lock().unwrap().push(format!(
            "hand over {} {}:{} -> {}:{} as {}:{}",
            k.proto,
            Ipv4Addr::from(k.int_addr),
            k.int_port,
            Ipv4Addr::from(k.rem_addr),
            k.rem_port,
            Ipv4Addr::from(ext_addr),
            f.ext_port
        ));
        true
    }
    fn idle_ms(&self, _: &Flow, _: u32) -> Option<u64> {
        *self.idle.lock().unwrap()
    }
    fn withdraw(&self, f: &Flow, _: u32) {
        let k = f.key;
        self.log
            .lock()
            .unwrap()
            .push(format!("withdraw {} {}", k.proto, k.int_port));
    }
}

#[test]
fn steady_flows_are_handed_over_once_and_withdrawn_when_they_end() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let mut e = single_port_engine().with_fast_path(Box::new(fake.clone()));
    let log = || fake.log.lock().unwrap().clone();
    let (tcp_out, tcp_in) = (
        Ipv4Packet::l4(PROTO_TCP, LAN, dst(1), 40000, 443, b"").build(),
        Ipv4Packet::l4(PROTO_TCP, dst(1), UPLINK_1, 443, 61000, b"").build(),
    );
    // a TCP flow seen one way only is never handed over, however long it goes on
    for i in 0..2 * u64::from(HAND_OVER_AFTER) {
        out(&mut e, t(i), &mut tcp_out.clone());
    }
    assert_eq!(log(), Vec::<String>::new());
    // its first reply makes it steady: handed over once, whatever follows
    inb(&mut e, t(100), 0, &mut tcp_in.clone());
    out(&mut e, t(101), &mut tcp_out.clone());
    assert_eq!(
        log(),
        ["hand over 6 198.18.3.10:40000 -> 198.19.0.1:443 as 198.18.1.1:61000"]
    );
    // a query and its answer stay in the engine, and so does a ping nobody answers
    out(
        &mut e,
        t(200),
        &mut Ipv4Packet::udp(LAN, dst(2), 53, 53, b"q").build(),
    );
    inb(
        &mut e,
        t(201),
        0,
        &mut Ipv4Packet::udp(dst(2), UPLINK_1, 53, 61000, b"a").build(),
    );
    for i in 0..2 * u64::from(HAND_OVER_ONE_WAY_AFTER) {
        out(
            &mut e,
            t(300 + i),
            &mut Ipv4Packet::l4(PROTO_ICMP, LAN, dst(2), 7, 0, b"").build(),
        );
    }
    assert_eq!(log().len(), 1);
    // a one-way UDP stream moves after more packets than an answered flow
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) - 1 {
        out(
            &mut e,
            t(500 + i),
            &mut Ipv4Packet::udp(LAN, dst(3), 5004, 5004, b"rtp").build(),
        );
    }
    assert_eq!(log().len(), 1);
    out(
        &mut e,
        t(600),
        &mut Ipv4Packet::udp(LAN, dst(3), 5004, 5004, b"rtp").build(),
    );
    assert_eq!(
        log()[1],
        "hand over 17 198.18.3.10:5004 -> 198.19.0.3:5004 as 198.18.1.1:61000"
    );

    // the fast path keeps the flows it carries alive past the engine's own timeouts...
    *fake.idle.lock().unwrap() = Some(1_000);
    let timeouts = Timeouts::default();
    e.expire(t(timeouts.tcp_established + 101));
    assert_eq!(
        e.flow_count(),
        2,
        "the DNS and ICMP flows expired, the handed-over ones did not"
    );
    // ...until it reports them idle too; then they are withdrawn before their ports return
    *fake.idle.lock().unwrap() = None;
    e.expire(t(2 * timeouts.tcp_established));
    assert_eq!(e.flow_count(), 0);
    assert_eq!(log()[2..], ["withdraw 6 40000", "withdraw 17 5004"]);
}

proptest! {
    /// Out through the engine, a reply built from what left, back through the engine: the LAN
    /// host gets exactly the reply to what it sent.
    #[test]
    fn translate_then_reverse_is_identity(
        proto in prop_oneof![Just(PROTO_ICMP), Just(PROTO_TCP), Just(PROTO_UDP)],
        src in any::<u32>(), d in any::<u32>(), sport in any::<u16>(), dport in 1u16..,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut e = Engine::new(config((61000, 65535), vec![]));
        let original = Ipv4Packet::l4(proto, src, d, sport, dport, &payload).build();
        let mut p = original.clone();
        let Verdict::Uplink(u) = out(&mut e, t(0), &mut p) else { panic!("dropped") };
        prop_assert_eq!(&p[16..20], &original[16..20], "destination untouched");
        let mut reply = reply_to(&p);
        prop_assert_eq!(inb(&mut e, t(1), u, &mut reply), Verdict::Tun);
        prop_assert_eq!(reply, reply_to(&original));
    }

    /// Every incremental update equals a full recomputation, for each protocol and end.
    #[test]
    fn incremental_checksums_equal_recomputation(
        proto in prop_oneof![Just(1u8), Just(6u8), Just(17u8)],
        options in 0usize..4,
        src in any::<u32>(), d in any::<u32>(),
        l4 in proptest::collection::vec(any::<u8>(), 20..80),
        new_addr in any::<u32>(), new_port in any::<u16>(), source_end in any::<bool>(),
    ) {
        let ihl = 20 + options * 4;
        // random transport bytes, made a valid header: TCP data offset 5, the UDP length,
        // an echo request
        let mut p = Ipv4Packet::raw(proto, src, d, &l4).options(&vec![0; options * 4]).build();
        if proto == 6 { p[ihl + 12] = 0x50; }
        if proto == 17 { write_u16(&mut p, ihl + 4, u16::try_from(l4.len()).unwrap()); }
        if proto == 1 { p[ihl] = 8; }
        fix_checksums(&mut p);
        let ip = Ipv4::parse(&p, 0).unwrap();
        let end = if source_end { End::Source } else { End::Destination };
        packet::rewrite(&mut p, &ip, end, new_addr, new_port, L4Checksum::Complete);
        let mut expected = p.clone();
        fix_checksums(&mut expected);
        let at = ip.l4_checksum_at();
        prop_assert_eq!(read_u16(&p, 10), read_u16(&expected, 10));
        // one's complement has two zeros; either is a valid TCP/ICMP checksum
        let (got, want) = (read_u16(&p, at), read_u16(&expected, at));
        prop_assert!(got == want || (proto != 17 && got ^ want == 0xffff && (got == 0 || want == 0)), "{got:04x} vs {want:04x}");
    }

    /// Nothing the LAN or an uplink sends can make the engine panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128), uplink in 0u8..3) {
        let mut e = Engine::new(config((61000, 61003), vec![]));
        let mut p = bytes.clone();
        let _ = out(&mut e, t(0), &mut p);
        let mut p = bytes;
        let _ = inb(&mut e, t(0), uplink, &mut p);
    }
}

#[test]
fn workers_sharing_the_engine_never_share_an_external_port() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let ports = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for worker in 0..4u32 {
            let (e, ports) = (&e, &ports);
            s.spawn(move || {
                for i in 0..500u32 {
                    // each worker its own LAN host, every flow a new LAN port and destination
                    let mut p = Ipv4Packet::udp(
                        LAN + worker,
                        dst(worker * 1000 + i),
                        10000 + u16::try_from(i).unwrap(),
                        53,
                        b"q",
                    )
                    .build();
                    let Verdict::Uplink(u) = e.outbound(t(0), &mut p, &mut L4Checksum::Complete)
                    else {
                        panic!("dropped")
                    };
                    ports.lock().unwrap().push((u, read_u16(&p, 20)));
                }
            });
        }
    });
    let mut ports = ports.into_inner().unwrap();
    ports.sort();
    let total = ports.len();
    ports.dedup();
    assert_eq!(
        ports.len(),
        total,
        "an external (uplink, port) was given twice"
    );
    assert_eq!(
        (e.flow_count(), e.mapping_count(), e.destination_count()),
        (2000, 2000, 2000)
    );
    let c = e.counters();
    assert_eq!(
        c.uplinks.iter().map(|u| u.outbound_packets).sum::<u64>(),
        2000
    );
    assert_eq!(
        c.uplinks.iter().map(|u| u.destinations).collect::<Vec<_>>(),
        [1333, 667],
        "2:1 even when picked from four threads"
    );
}

const ACK: u8 = 0x10;

/// An established connection LAN:40000 <-> dst(1):443 on uplink 0; the server's last
/// segment had sequence number 5000.
fn established(e: &mut Engine) {
    let syn = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(TCP_SYN)
        .seq(100)
        .build();
    assert_eq!(out(e, t(0), syn), Verdict::Uplink(0));
    let port = read_u16(syn, 20);
    let synack = &mut Ipv4Packet::tcp(dst(1), UPLINK_1, 443, port, b"")
        .flags(TCP_SYN | ACK)
        .seq(4999)
        .ack(101)
        .build();
    assert_eq!(inb(e, t(1), 0, synack), Verdict::Tun);
    let ack = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(e, t(2), ack), Verdict::Uplink(0));
    let data = &mut Ipv4Packet::tcp(dst(1), UPLINK_1, 443, port, b"")
        .flags(ACK)
        .seq(5000)
        .ack(101)
        .build();
    assert_eq!(inb(e, t(3), 0, data), Verdict::Tun);
}

#[test]
fn a_dead_lines_udp_flow_continues_from_the_other_line_at_its_next_packet() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    let first = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"a").build();
    assert_eq!(out(&mut e, t(0), first), Verdict::Uplink(0));
    let old_port = read_u16(first, 20);
    assert!(e.set_uplink_up(0, false).is_empty(), "no TCP to reset");
    let next = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"b").build();
    assert_eq!(out(&mut e, t(10), next), Verdict::Uplink(1));
    assert_eq!(
        packet::read_u32(next, 12),
        UPLINK_2,
        "from the other line's address"
    );
    assert_eq!(e.counters().moved, 1);
    assert_eq!(e.flow_count(), 1, "moved, not duplicated");
    assert_eq!(e.mapping_count(), 1, "the old port went back to its pool");
    // a late answer to the old mapping belongs to nothing now
    let late = &mut Ipv4Packet::udp(dst(1), UPLINK_1, 5000, old_port, b"late").build();
    assert_eq!(
        inb(&mut e, t(11), 0, late),
        Verdict::Drop(DropReason::NoFlow)
    );

    // the line returns: new destinations use it again, the moved flow stays where it is
    e.set_uplink_up(0, true);
    let again = &mut Ipv4Packet::udp(LAN, dst(1), 5000, 5000, b"c").build();
    assert_eq!(out(&mut e, t(20), again), Verdict::Uplink(1));
    let picks: Vec<_> = (2..=4)
        .map(|i| {
            out(
                &mut e,
                t(21),
                &mut Ipv4Packet::udp(LAN, dst(i), 1, 53, b"q").build(),
            )
        })
        .collect();
    assert!(picks.contains(&Verdict::Uplink(0)), "{picks:?}");
    assert_eq!(e.counters().moved, 1);
}

#[test]
fn a_dead_lines_destinations_are_placed_anew_and_stay_after_it_returns() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    assert_eq!(
        out(
            &mut e,
            t(0),
            &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build()
        ),
        Verdict::Uplink(0)
    );
    e.set_uplink_up(0, false);
    e.set_uplink_up(0, true);
    // released while the line was down: the next flow is placed by weight (uplink 1 is
    // next in the 2:1 sequence after one pick of uplink 0)...
    assert_eq!(
        out(
            &mut e,
            t(1),
            &mut Ipv4Packet::udp(LAN, dst(1), 2, 53, b"q").build()
        ),
        Verdict::Uplink(1)
    );
    // ...and the destination stays there
    assert_eq!(
        out(
            &mut e,
            t(2),
            &mut Ipv4Packet::udp(LAN, dst(1), 3, 53, b"q").build()
        ),
        Verdict::Uplink(1)
    );
}

#[test]
fn a_dead_lines_tcp_connections_are_reset_with_the_hosts_own_sequence_number() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    established(&mut e);
    let probes = e.set_uplink_up(0, false);
    assert_eq!(probes.len(), 1);
    let probe = &probes[0];
    // from the server to the host, one byte half the sequence space from the server's last
    assert_eq!(packet::read_u32(probe, 12), dst(1));
    assert_eq!(packet::read_u32(probe, 16), LAN);
    assert_eq!(read_u16(probe, 20), 443);
    assert_eq!(read_u16(probe, 22), 40000);
    assert_eq!(packet::read_u32(probe, 24), 5000u32.wrapping_add(1 << 31));
    assert_eq!(probe.len(), 41);
    let ip = Ipv4::parse(probe, 0).unwrap();
    assert_eq!(ip.tcp_flags(probe), ACK);

    // the host answers with a duplicate ACK: it becomes the reset, back to the host
    let dupack = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&mut e, t(10), dupack), Verdict::Tun);
    let expected = Ipv4Packet::tcp(dst(1), LAN, 443, 40000, b"")
        .id(0)
        .flags(TCP_RST | ACK)
        .seq(5000)
        .ack(101)
        .window(0)
        .build();
    assert_eq!(
        dupack[..40],
        expected[..],
        "seq = the host's ack, byte for byte"
    );
    assert_eq!(e.counters().resets, 1);
    assert_eq!(
        e.counters().uplinks[0].outbound_packets,
        2,
        "the answer left through no line"
    );
    // the connection is gone: the same four-tuple opens anew on the healthy line
    assert_eq!((e.flow_count(), e.mapping_count()), (0, 0));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(TCP_SYN)
        .seq(7)
        .build();
    assert_eq!(out(&mut e, t(20), syn), Verdict::Uplink(1));
}

#[test]
fn with_keep_a_dead_lines_tcp_connections_are_left_alone() {
    let mut cfg = config((61000, 65535), vec![]);
    cfg.reset_tcp_on_down = false;
    let mut e = Engine::new(cfg);
    established(&mut e);
    assert!(e.set_uplink_up(0, false).is_empty());
    let more = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&mut e, t(10), more), Verdict::Uplink(0));
    assert_eq!(e.counters().resets, 0);
}

#[test]
fn a_connection_not_yet_answered_is_reset_at_its_next_retransmission() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(TCP_SYN)
        .seq(100)
        .build();
    assert_eq!(out(&mut e, t(0), syn), Verdict::Uplink(0));
    assert!(e.set_uplink_up(0, false).is_empty(), "nothing to ask");
    let again = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(TCP_SYN)
        .seq(100)
        .build();
    assert_eq!(out(&mut e, t(1000), again), Verdict::Tun);
    let ip = Ipv4::parse(again, 0).unwrap();
    assert_eq!(ip.tcp_flags(again), TCP_RST | ACK);
    assert_eq!(ip.tcp_seq_ack(again), (0, 101), "acknowledges the SYN");
}

#[test]
fn a_backup_tier_carries_traffic_only_while_the_first_tier_is_down() {
    let mut cfg = config((61000, 65535), vec![]);
    cfg.uplinks[1].tier = 2;
    let mut e = Engine::new(cfg);
    for i in 1..=6 {
        let p = &mut Ipv4Packet::udp(LAN, dst(i), 1, 53, b"q").build();
        assert_eq!(out(&mut e, t(0), p), Verdict::Uplink(0));
    }
    e.set_uplink_up(0, false);
    let udp = &mut Ipv4Packet::udp(LAN, dst(10), 7, 7, b"u").build();
    assert_eq!(out(&mut e, t(1), udp), Verdict::Uplink(1));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(11), 40000, 443, b"")
        .flags(TCP_SYN)
        .seq(1)
        .build();
    assert_eq!(out(&mut e, t(1), syn), Verdict::Uplink(1));
    assert!(
        e.set_uplink_up(0, true).is_empty(),
        "the backup's TCP is left to finish"
    );
    // new destinations and the backup's UDP come back to tier 1; its TCP stays
    let udp = &mut Ipv4Packet::udp(LAN, dst(10), 7, 7, b"u").build();
    assert_eq!(out(&mut e, t(2), udp), Verdict::Uplink(0));
    let tcp = &mut Ipv4Packet::tcp(LAN, dst(11), 40000, 443, b"")
        .flags(ACK)
        .seq(2)
        .ack(1)
        .build();
    assert_eq!(out(&mut e, t(2), tcp), Verdict::Uplink(1));
    let fresh = &mut Ipv4Packet::udp(LAN, dst(12), 1, 53, b"q").build();
    assert_eq!(out(&mut e, t(2), fresh), Verdict::Uplink(0));
}

#[test]
fn a_strict_pin_refuses_while_its_line_is_down_and_the_host_is_told() {
    let pin = Pin {
        prefix: Prefix::new(dst(91), 32).unwrap(),
        uplink: 1,
        strict: true,
    };
    let mut e = Engine::new(config((61000, 65535), vec![pin]));
    e.set_uplink_up(1, false);
    let p = &mut Ipv4Packet::udp(LAN, dst(91), 6667, 6667, b"irc").build();
    let v = out(&mut e, t(0), p);
    assert_eq!(v, Verdict::Drop(DropReason::PinnedUplinkDown));
    assert!(DropReason::PinnedUplinkDown.is_unreachable());
    let mut answer = [0u8; MAX_UNREACHABLE];
    let n = e.unreachable(t(0), p, &mut answer).expect("answered");
    assert_eq!(answer[20..22], [3, 0]);
    assert_eq!(answer[28..n], p[..28]);
    // other destinations still go out
    let other = &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build();
    assert_eq!(out(&mut e, t(0), other), Verdict::Uplink(0));
}

#[test]
fn unreachables_are_rate_limited() {
    let e = Engine::new(config((61000, 65535), vec![]));
    let p = Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build();
    let mut answer = [0u8; MAX_UNREACHABLE];
    let sent = (0..200)
        .filter(|_| e.unreachable(t(0), &p, &mut answer).is_some())
        .count();
    assert_eq!(sent, 50, "a burst of 50");
    // a second later, 100 more at most
    let sent = (0..200)
        .filter(|_| e.unreachable(t(1000), &p, &mut answer).is_some())
        .count();
    assert_eq!(sent, 50, "refilled up to the burst");
    assert_eq!(e.counters().unreachables, 100);
}

#[test]
fn a_dead_lines_flows_come_back_from_the_fast_path() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let mut e = Engine::new(config((61000, 65535), vec![])).with_fast_path(Box::new(fake.clone()));
    established(&mut e);
    let udp = Ipv4Packet::udp(LAN, dst(1), 5004, 5004, b"rtp").build();
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) {
        out(&mut e, t(10 + i), &mut udp.clone());
    }
    let log = || fake.log.lock().unwrap().clone();
    assert_eq!(log().len(), 2, "{:?}", log());
    e.set_uplink_up(0, false);
    let log = log();
    assert_eq!(
        log[2..],
        ["withdraw 6 40000", "withdraw 17 5004"],
        "{log:?}"
    );
    // and they stay in the engine while they move or end
    out(&mut e, t(200), &mut udp.clone());
    for i in 0..u64::from(HAND_OVER_ONE_WAY_AFTER) - 2 {
        out(&mut e, t(300 + i), &mut udp.clone());
    }
    let dupack = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&mut e, t(400), dupack), Verdict::Tun);
    assert_eq!(
        fake.log.lock().unwrap().len(),
        4,
        "nothing handed over again"
    );
}
