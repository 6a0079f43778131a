//! Engine tests. The translation tests' packets are byte literals generated once by an
//! independent implementation (full checksum computation); the engine's incremental updates
//! must reproduce them exactly. The other tests build their packets with wanlb-testkit, whose
//! checksums are computed from scratch too.

use super::checksum::{fold, pseudo_header, sum};
use super::packet::{PROTO_UDP, TCP_SYN, read_u16, read_u32, write_u16};
use super::select::{Pin, Prefix};
use super::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use wanlb_testkit::{Ipv4Packet, fix_checksums, reply_to};

const LAN: u32 = u32::from_be_bytes([198, 18, 3, 10]);
const UPLINK_1: u32 = u32::from_be_bytes([198, 18, 1, 1]);
const UPLINK_2: u32 = u32::from_be_bytes([198, 18, 2, 1]);
const MIN: u64 = 60_000;

pub(super) fn config(ports: (u16, u16), pins: Vec<Pin>) -> EngineConfig {
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
        udp_affinity: UdpAffinity::Endpoint,
        limits: Limits::unlimited(),
    }
}

/// One port per pool, so the external port of the first flow is known: 61000.
/// `cfg` with every UDP destination placed on its own (by weight), as tests of the weighted
/// choice that send from one socket need.
fn by_destination(mut cfg: EngineConfig) -> EngineConfig {
    cfg.udp_affinity = UdpAffinity::Destination;
    cfg
}

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
            // a non-first fragment of a UDP datagram whose first fragment was never seen
            &[
                0x45, 0, 0, 28, 0, 1, 0, 0x10, 64, 17, 0, 0, 198, 18, 3, 10, 198, 19, 0, 1, 1, 2,
                3, 4, 5, 6, 7, 8,
            ],
            DropReason::FragmentWithoutFirst,
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
    let mut e = Engine::new(by_destination(config((61000, 65535), vec![])));
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
    let mut e = Engine::new(by_destination(config((61000, 65535), vec![])));
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
    let mut e = Engine::new(by_destination(config((61000, 65535), vec![pin])));
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
pub(super) struct FakeFastPath {
    pub(super) log: Mutex<Vec<String>>,
    idle: Mutex<Option<u64>>,
    /// What it says it carried of every flow.
    bytes: Mutex<u64>,
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
    fn bytes(&self, _: &Flow, _: u32) -> u64 {
        *self.bytes.lock().unwrap()
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
    // (a socket each: one socket would keep the line its first datagram took)
    let picks: Vec<_> = (2..=4u16)
        .map(|i| {
            out(
                &mut e,
                t(21),
                &mut Ipv4Packet::udp(LAN, dst(i.into()), i, 53, b"q").build(),
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
    let n = e
        .unreachable(t(0), DropReason::PinnedUplinkDown, p, &mut answer)
        .expect("answered");
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
        .filter(|_| {
            e.unreachable(t(0), DropReason::NoUplink, &p, &mut answer)
                .is_some()
        })
        .count();
    assert_eq!(sent, 50, "a burst of 50");
    // a second later, 100 more at most
    let sent = (0..200)
        .filter(|_| {
            e.unreachable(t(1000), DropReason::NoUplink, &p, &mut answer)
                .is_some()
        })
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

// Outbound IP fragments (src/engine/fragment.rs): the first piece is translated like any
// packet, the later ones follow its mapping.

/// The pieces of `whole` (an IPv4 packet without options) with `per_piece` bytes of data each
/// (a multiple of 8), as a host's stack cuts it: the first carries the transport header. Each
/// is built by wanlb-testkit, its header checksum computed from scratch.
fn pieces_of(whole: &[u8], per_piece: usize) -> Vec<Vec<u8>> {
    let (src, dst) = (packet::read_u32(whole, 12), packet::read_u32(whole, 16));
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
    for proto in [PROTO_UDP, packet::PROTO_TCP, packet::PROTO_ICMP] {
        let mut e = single_port_engine();
        let (sport, dport) = (40000, 443);
        if proto == packet::PROTO_TCP {
            // a connection past its handshake, as TCP only sends data on one
            let syn = &mut Ipv4Packet::tcp(LAN, server, sport, dport, b"")
                .flags(TCP_SYN)
                .seq(100)
                .build();
            assert_eq!(out(&mut e, t(0), syn), Verdict::Uplink(0));
            let synack = &mut Ipv4Packet::tcp(server, UPLINK_1, dport, 61000, b"")
                .flags(TCP_SYN | ACK)
                .seq(4999)
                .ack(101)
                .build();
            assert_eq!(inb(&mut e, t(1), 0, synack), Verdict::Tun);
        }
        let build = |src: u32, port: u16| {
            let p = match proto {
                packet::PROTO_TCP => Ipv4Packet::tcp(src, server, port, dport, &payload)
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
            assert_eq!(out(&mut e, t(10), p), Verdict::Uplink(0), "proto {proto}");
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
            3 + u64::from(proto == packet::PROTO_TCP)
        );
        assert!(c.drops.iter().all(|d| *d == 0), "{:?}", c.drops);
        // complete: its entry is gone
        assert_eq!(fragments_in_flight(&e), 0);
        // the answer, reassembled by the packet sockets, comes back whole
        let mut reply = reply_to(&reassemble(&sent));
        assert_eq!(inb(&mut e, t(11), 0, &mut reply), Verdict::Tun);
        assert_eq!(reply, reply_to(&whole), "proto {proto}");
    }
}

#[test]
fn a_later_fragment_before_its_first_is_dropped_and_counted() {
    let mut e = single_port_engine();
    let whole = Ipv4Packet::udp(LAN, dst(1), 5000, 53, &big_payload())
        .dont_fragment(false)
        .id(9)
        .build();
    let pieces = pieces_of(&whole, 1480);
    let mut last = pieces[2].clone();
    assert_eq!(
        out(&mut e, t(0), &mut last),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    assert_eq!(last, pieces[2], "a dropped piece is left as it was");
    assert_eq!(fragments_in_flight(&e), 0, "nothing is held");
    // once the first has gone, the others go in any order
    for i in [0, 2, 1] {
        let mut p = pieces[i].clone();
        assert_eq!(out(&mut e, t(1), &mut p), Verdict::Uplink(0), "piece {i}");
    }
    assert_eq!(e.counters().drop_count(DropReason::FragmentWithoutFirst), 1);
    assert_eq!(fragments_in_flight(&e), 0, "complete");
}

#[test]
fn overlapping_and_malformed_fragments_are_dropped_and_counted() {
    let mut e = single_port_engine();
    let server = dst(1);
    let whole = Ipv4Packet::udp(LAN, server, 5000, 53, &big_payload())
        .dont_fragment(false)
        .id(9)
        .build();
    let pieces = pieces_of(&whole, 1480);
    let mut first = pieces[0].clone();
    assert_eq!(out(&mut e, t(0), &mut first), Verdict::Uplink(0));
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
            Ipv4Packet::raw(
                packet::PROTO_TCP,
                LAN,
                server,
                &[0x9c, 0x40, 0, 80, 0, 0, 0, 1],
            )
            .id(10)
            .dont_fragment(false)
            .more_fragments(true)
            .build(),
            DropReason::FragmentMalformed,
        ),
        // a first piece of something that is not an echo request
        (
            Ipv4Packet::raw(packet::PROTO_ICMP, LAN, server, &[13, 0, 0, 0, 0, 0, 0, 0])
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
        assert_eq!(
            out(&mut e, t(1), &mut p),
            Verdict::Drop(reason),
            "{reason:?}"
        );
        assert_eq!(p, bytes, "a dropped piece is left as it was");
    }
    let c = e.counters();
    assert_eq!(c.drop_count(DropReason::FragmentOverlap), 2);
    assert_eq!(c.drop_count(DropReason::FragmentMalformed), 4);
    // what was refused changed nothing: the datagram still completes
    for p in &pieces[1..] {
        assert_eq!(out(&mut e, t(2), &mut p.clone()), Verdict::Uplink(0));
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
    let mut e = single_port_engine();
    let datagram = |id: u16| {
        let whole = Ipv4Packet::udp(LAN, dst(1), 5000, 53, &big_payload())
            .dont_fragment(false)
            .id(id)
            .build();
        pieces_of(&whole, 1480)
    };
    let (a, b) = (datagram(1), datagram(2));
    assert_eq!(out(&mut e, t(0), &mut a[0].clone()), Verdict::Uplink(0));
    assert_eq!(out(&mut e, t(0), &mut b[0].clone()), Verdict::Uplink(0));
    assert_eq!(fragments_in_flight(&e), 2);
    // just in time, and then too late
    assert_eq!(
        out(&mut e, t(fragment::TIMEOUT_MS - 1), &mut a[1].clone()),
        Verdict::Uplink(0)
    );
    assert_eq!(
        out(&mut e, t(fragment::TIMEOUT_MS), &mut a[2].clone()),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    // expiry forgets the other one
    e.expire(t(fragment::TIMEOUT_MS - 1));
    assert_eq!(fragments_in_flight(&e), 1);
    e.expire(t(fragment::TIMEOUT_MS));
    assert_eq!(fragments_in_flight(&e), 0);
    assert_eq!(
        out(&mut e, t(fragment::TIMEOUT_MS), &mut b[1].clone()),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    assert_eq!(e.counters().drop_count(DropReason::FragmentWithoutFirst), 2);
}

#[test]
fn the_fragment_table_is_bounded_and_a_full_one_is_counted() {
    let mut e = single_port_engine();
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
            out(&mut e, t(0), &mut datagram(id)[0].clone()),
            Verdict::Uplink(0)
        );
    }
    assert_eq!(fragments_in_flight(&e), fragment::MAX_DATAGRAMS);
    let refused = datagram(max);
    let mut p = refused[0].clone();
    assert_eq!(
        out(&mut e, t(1), &mut p),
        Verdict::Drop(DropReason::FragmentTableFull)
    );
    assert_eq!(p, refused[0], "a dropped piece is left as it was");
    assert_eq!(fragments_in_flight(&e), fragment::MAX_DATAGRAMS);
    assert_eq!(e.counters().drop_count(DropReason::FragmentTableFull), 1);
    // the datagrams in the table still go out, and each that completes makes room
    let known = datagram(0);
    for p in &known[1..] {
        assert_eq!(out(&mut e, t(2), &mut p.clone()), Verdict::Uplink(0));
    }
    assert_eq!(out(&mut e, t(3), &mut p.clone()), Verdict::Uplink(0));
    // other shards have their own room
    let elsewhere = Ipv4Packet::udp(LAN, dst(2), 5000, 53, &big_payload())
        .dont_fragment(false)
        .build();
    let mut p = pieces_of(&elsewhere, 1480)[0].clone();
    assert!(matches!(out(&mut e, t(3), &mut p), Verdict::Uplink(_)));
    // once they are 30 s old, the full table takes new datagrams again
    let mut p = datagram(max + 1)[0].clone();
    assert_eq!(
        out(&mut e, t(4), &mut p.clone()),
        Verdict::Drop(DropReason::FragmentTableFull)
    );
    assert_eq!(
        out(&mut e, t(fragment::TIMEOUT_MS), &mut p),
        Verdict::Uplink(0)
    );
    assert_eq!(fragments_in_flight(&e), 3, "the last three firsts");
}

#[test]
fn two_hosts_fragmenting_to_one_server_with_one_id_are_kept_apart() {
    // translated to one address, two datagrams with one identification would be put together
    // at the far end: the second gets the next free identification, on all its pieces
    let mut e = Engine::new(config((61000, 61001), vec![]));
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
        assert_eq!(out(&mut e, t(0), pa), Verdict::Uplink(0));
        assert_eq!(out(&mut e, t(0), pb), Verdict::Uplink(0));
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
    assert_eq!(out(&mut e, t(1), &mut next), Verdict::Uplink(0));
    assert_eq!(read_u16(&next, 4), 7);
}

#[test]
fn only_the_first_fragment_is_answered_with_an_unreachable() {
    let mut e = single_port_engine();
    e.set_uplink_up(0, false);
    e.set_uplink_up(1, false);
    let whole = Ipv4Packet::udp(LAN, dst(1), 5000, 53, &big_payload())
        .dont_fragment(false)
        .build();
    let pieces = pieces_of(&whole, 1480);
    let mut first = pieces[0].clone();
    assert_eq!(
        out(&mut e, t(0), &mut first),
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
        out(&mut e, t(0), &mut later),
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
        proto in prop_oneof![Just(packet::PROTO_ICMP), Just(PROTO_UDP)],
        len in 9usize..5000, per_piece in 1usize..186, id in any::<u16>(),
        seed in any::<u8>(),
    ) {
        let mut e = single_port_engine();
        let payload: Vec<u8> = (0..len).map(|i| u8::try_from(i % 256).unwrap().wrapping_mul(seed | 1)).collect();
        let build = |src: u32, port: u16| {
            Ipv4Packet::l4(proto, src, dst(1), port, 53, &payload).dont_fragment(false).id(id).build()
        };
        let pieces = pieces_of(&build(LAN, 5000), per_piece * 8);
        prop_assume!(pieces.len() > 1);
        let mut sent = pieces.clone();
        for p in &mut sent {
            prop_assert_eq!(out(&mut e, t(0), p), Verdict::Uplink(0));
            prop_assert_eq!(packet::read_u32(p, 12), UPLINK_1);
            let mut fixed = p.clone();
            wanlb_testkit::fix_ip_checksum(&mut fixed);
            prop_assert_eq!(&fixed, p);
        }
        prop_assert_eq!(reassemble(&sent), build(UPLINK_1, 61000));
        prop_assert_eq!(fragments_in_flight(&e), 0);
    }
}

// TCP sessions: the state machine of RFC 5382 and RFC 7857 2.2, through the engine.

const FIN: u8 = packet::TCP_FIN;

/// Timeouts far apart, so that each test shows which one applies.
fn tcp_timeouts() -> Timeouts {
    Timeouts {
        tcp_established: 100 * MIN,
        tcp_transitory: 4 * MIN,
        tcp_reset: MIN,
        udp: 5 * MIN,
        icmp: MIN,
    }
}

fn tcp_engine() -> Engine {
    let mut c = config((61000, 65535), vec![]);
    c.timeouts = tcp_timeouts();
    Engine::new(c)
}

/// A segment of LAN:40000 -> dst(1):443, window 65535 (no window scaling).
fn seg_out(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .build()
}

/// A segment of the remote end back to external port `port` of uplink 0.
fn seg_in(port: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    Ipv4Packet::tcp(dst(1), UPLINK_1, 443, port, b"")
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .build()
}

/// Opens LAN:40000 -> dst(1):443 on uplink 0 as `established` does (the LAN host's ISS 100,
/// the server's 4999), at t(0) to t(3); returns the external port.
fn open_tcp(e: &mut Engine) -> u16 {
    let syn = &mut seg_out(TCP_SYN, 100, 0);
    assert_eq!(out(e, t(0), syn), Verdict::Uplink(0));
    let port = read_u16(syn, 20);
    assert_eq!(
        inb(e, t(1), 0, &mut seg_in(port, TCP_SYN | ACK, 4999, 101)),
        Verdict::Tun
    );
    assert_eq!(
        out(e, t(2), &mut seg_out(ACK, 101, 5000)),
        Verdict::Uplink(0)
    );
    assert_eq!(
        inb(e, t(3), 0, &mut seg_in(port, ACK, 5000, 101)),
        Verdict::Tun
    );
    port
}

/// Whether the flow is still there at `at` (after expiring what is idle by then).
fn alive_at(e: &Engine, at: u64) -> bool {
    e.expire(t(at));
    e.flow_count() == 1
}

#[test]
fn a_tcp_session_lives_as_long_as_its_phase_says() {
    let to = tcp_timeouts();
    // a SYN nobody answers: the transitory timeout
    let mut e = tcp_engine();
    out(&mut e, t(0), &mut seg_out(TCP_SYN, 100, 0));
    assert!(alive_at(&e, to.tcp_transitory - 1));
    assert!(!alive_at(&e, to.tcp_transitory));
    assert_eq!(e.mapping_count(), 0, "its port went back");
    // open: the established one
    let mut e = tcp_engine();
    open_tcp(&mut e);
    assert!(alive_at(&e, 3 + to.tcp_established - 1));
    assert!(!alive_at(&e, 3 + to.tcp_established));
    // closed one way (half closed, RFC 5382 section 5): still the established one
    let mut e = tcp_engine();
    let port = open_tcp(&mut e);
    out(&mut e, t(10), &mut seg_out(ACK | FIN, 101, 5000));
    assert!(alive_at(&e, 10 + to.tcp_transitory));
    // both ways: the transitory one again
    inb(&mut e, t(20), 0, &mut seg_in(port, ACK | FIN, 5000, 102));
    assert!(alive_at(&e, 20 + to.tcp_transitory - 1));
    assert!(!alive_at(&e, 20 + to.tcp_transitory));
}

#[test]
fn a_reset_outside_the_window_is_forwarded_and_changes_nothing() {
    let to = tcp_timeouts();
    let mut e = tcp_engine();
    let port = open_tcp(&mut e);
    // the LAN host expects 5000 next, in a window of 65,535 bytes
    for seq in [4999, 5000 + 65_535, 5000 + (1 << 31)] {
        let rst = &mut seg_in(port, TCP_RST, seq, 0);
        assert_eq!(
            inb(&mut e, t(10), 0, rst),
            Verdict::Tun,
            "the endpoint decides"
        );
        assert_eq!(read_u16(rst, 22), 40000, "translated");
    }
    assert!(alive_at(&e, 10 + to.tcp_reset), "still established");
    // in the window: the session is kept for the reset timeout (RFC 7857 2.2), then ends
    let rst = &mut seg_in(port, TCP_RST, 5000 + 65_534, 0);
    assert_eq!(inb(&mut e, t(20), 0, rst), Verdict::Tun);
    assert!(alive_at(&e, 20 + to.tcp_reset - 1));
    assert!(!alive_at(&e, 20 + to.tcp_reset));
    assert_eq!(e.mapping_count(), 0);
    // from the LAN host, checked against the remote end's window (it expects 101)
    let mut e = tcp_engine();
    open_tcp(&mut e);
    let rst = &mut seg_out(TCP_RST | ACK, 100, 5000);
    assert_eq!(out(&mut e, t(10), rst), Verdict::Uplink(0));
    assert!(alive_at(&e, 10 + to.tcp_reset), "one before the window");
    out(&mut e, t(20), &mut seg_out(TCP_RST | ACK, 101, 5000));
    assert!(!alive_at(&e, 20 + to.tcp_reset));
}

#[test]
fn a_reset_answering_a_syn_must_acknowledge_it() {
    let to = tcp_timeouts();
    let mut e = tcp_engine();
    let syn = &mut seg_out(TCP_SYN, 100, 0);
    out(&mut e, t(0), syn);
    let port = read_u16(syn, 20);
    // a blind reset does not know the SYN's sequence number
    inb(&mut e, t(1), 0, &mut seg_in(port, TCP_RST | ACK, 0, 7));
    inb(&mut e, t(1), 0, &mut seg_in(port, TCP_RST, 0, 0));
    e.expire(t(1 + to.tcp_reset));
    assert_eq!(e.flow_count(), 1);
    // the closed port's answer does (RFC 9293 3.10.7.3)
    inb(&mut e, t(2), 0, &mut seg_in(port, TCP_RST | ACK, 0, 101));
    assert!(!alive_at(&e, 2 + to.tcp_reset));
}

#[test]
fn a_new_syn_on_a_closed_session_starts_it_over_with_the_same_mapping() {
    let to = tcp_timeouts();
    let mut e = tcp_engine();
    let port = open_tcp(&mut e);
    out(&mut e, t(10), &mut seg_out(ACK | FIN, 101, 5000));
    inb(&mut e, t(11), 0, &mut seg_in(port, ACK | FIN, 5000, 102));
    out(&mut e, t(12), &mut seg_out(ACK, 102, 5001));
    // the same four-tuple opens again (a client reusing its port)
    let syn = &mut seg_out(TCP_SYN, 90_000, 0);
    assert_eq!(out(&mut e, t(20), syn), Verdict::Uplink(0));
    assert_eq!(read_u16(syn, 20), port, "the same mapping");
    let synack = &mut seg_in(port, TCP_SYN | ACK, 70_000, 90_001);
    assert_eq!(inb(&mut e, t(21), 0, synack), Verdict::Tun);
    out(&mut e, t(22), &mut seg_out(ACK, 90_001, 70_001));
    // established again: it outlives the transitory timeout that held it while closing
    assert!(alive_at(&e, 22 + to.tcp_transitory));
    assert!(!alive_at(&e, 22 + to.tcp_established));
    // and after a reset too
    let mut e = tcp_engine();
    let port = open_tcp(&mut e);
    inb(&mut e, t(10), 0, &mut seg_in(port, TCP_RST, 5000, 0));
    let syn = &mut seg_out(TCP_SYN, 90_000, 0);
    assert_eq!(out(&mut e, t(20), syn), Verdict::Uplink(0));
    assert_eq!(read_u16(syn, 20), port);
    inb(
        &mut e,
        t(21),
        0,
        &mut seg_in(port, TCP_SYN | ACK, 70_000, 90_001),
    );
    out(&mut e, t(22), &mut seg_out(ACK, 90_001, 70_001));
    assert!(alive_at(&e, 22 + to.tcp_transitory));
}

#[test]
fn a_simultaneous_open_goes_through_and_is_established() {
    let to = tcp_timeouts();
    let mut e = tcp_engine();
    let syn = &mut seg_out(TCP_SYN, 100, 0);
    assert_eq!(out(&mut e, t(0), syn), Verdict::Uplink(0));
    let port = read_u16(syn, 20);
    // the remote end's own SYN crosses ours: it reaches the LAN host (RFC 5382 REQ-2)
    let their_syn = &mut seg_in(port, TCP_SYN, 5000, 0);
    assert_eq!(inb(&mut e, t(1), 0, their_syn), Verdict::Tun);
    assert_eq!(read_u16(their_syn, 22), 40000);
    let synack = &mut seg_out(TCP_SYN | ACK, 100, 5001);
    assert_eq!(out(&mut e, t(2), synack), Verdict::Uplink(0));
    let back = &mut seg_in(port, TCP_SYN | ACK, 5000, 101);
    assert_eq!(inb(&mut e, t(3), 0, back), Verdict::Tun);
    assert!(alive_at(&e, 3 + to.tcp_transitory));
}

/// A fast path that takes every flow, and says the LAN host's segments it carried
/// acknowledged `lan_acked` (none if `None`).
#[derive(Debug, Default)]
struct CarryingFastPath {
    log: Mutex<Vec<String>>,
    lan_acked: Mutex<Option<flow::Acked>>,
}

impl FastPath for std::sync::Arc<CarryingFastPath> {
    fn hand_over(&self, f: &Flow, _: u32) -> bool {
        let port = f.key.int_port;
        self.log.lock().unwrap().push(format!("hand over {port}"));
        true
    }
    fn idle_ms(&self, _: &Flow, _: u32) -> Option<u64> {
        None
    }
    fn withdraw(&self, f: &Flow, _: u32) {
        let port = f.key.int_port;
        self.log.lock().unwrap().push(format!("withdraw {port}"));
    }
    fn acks(&self, _: &Flow, _: u32) -> [Option<flow::Acked>; 2] {
        [*self.lan_acked.lock().unwrap(), None]
    }
}

#[test]
fn a_reset_on_a_flow_the_fast_path_carries_is_judged_by_the_window_it_carried() {
    use std::sync::Arc;
    let to = tcp_timeouts();
    let fast = Arc::new(CarryingFastPath::default());
    let mut e = tcp_engine().with_fast_path(Box::new(fast.clone()));
    let log = || fast.log.lock().unwrap().clone();
    let port = open_tcp(&mut e);
    assert_eq!(log(), ["hand over 40000"]);
    // the fast path carried a megabyte since: the host expects 1,005,000 now. A reset at the
    // window the engine saw last is stale: forwarded, nothing changes, the flow stays there
    *fast.lan_acked.lock().unwrap() = Some(flow::Acked {
        ack: 1_005_000,
        window: 1000,
    });
    assert_eq!(
        inb(&mut e, t(10), 0, &mut seg_in(port, TCP_RST, 5000, 0)),
        Verdict::Tun
    );
    assert_eq!(log().len(), 1);
    assert!(alive_at(&e, 10 + to.tcp_reset));
    // in the window it carried: taken, and the flow comes back to the engine, which must see
    // whether the sender goes on (a reset the host did not take) or falls silent
    let rst = &mut seg_in(port, TCP_RST, 1_005_000 + 999, 0);
    assert_eq!(inb(&mut e, t(20), 0, rst), Verdict::Tun);
    assert_eq!(log()[1..], ["withdraw 40000"]);
    // the server goes on: the reset did not hold, the session is established again and goes
    // back to the fast path after a few more packets
    for i in 0..u64::from(HAND_OVER_AFTER) {
        let data = &mut seg_in(port, ACK, 1_005_000, 101);
        assert_eq!(inb(&mut e, t(30 + i), 0, data), Verdict::Tun);
    }
    assert_eq!(log()[2..], ["hand over 40000"]);
    assert!(alive_at(&e, 30 + to.tcp_reset + 10));
}

#[test]
fn a_session_starting_over_comes_back_from_the_fast_path_for_its_handshake() {
    use std::sync::Arc;
    let fast = Arc::new(CarryingFastPath::default());
    let mut e = tcp_engine().with_fast_path(Box::new(fast.clone()));
    let log = || fast.log.lock().unwrap().clone();
    let port = open_tcp(&mut e);
    out(&mut e, t(10), &mut seg_out(ACK | FIN, 101, 5000));
    inb(&mut e, t(11), 0, &mut seg_in(port, ACK | FIN, 5000, 102));
    assert_eq!(log(), ["hand over 40000"], "a closing flow may stay there");
    out(&mut e, t(20), &mut seg_out(TCP_SYN, 90_000, 0));
    assert_eq!(log()[1..], ["withdraw 40000"]);
    inb(
        &mut e,
        t(21),
        0,
        &mut seg_in(port, TCP_SYN | ACK, 70_000, 90_001),
    );
    out(&mut e, t(22), &mut seg_out(ACK, 90_001, 70_001));
    assert_eq!(
        log().len(),
        2,
        "not before it is established and a few packets long"
    );
    inb(&mut e, t(23), 0, &mut seg_in(port, ACK, 70_001, 90_001));
    assert_eq!(log()[2..], ["hand over 40000"]);
}

#[test]
fn a_dead_lines_probe_misses_the_window_the_fast_path_carried() {
    use std::sync::Arc;
    let fast = Arc::new(CarryingFastPath::default());
    let mut e = tcp_engine().with_fast_path(Box::new(fast.clone()));
    open_tcp(&mut e);
    // the engine last saw the host expect 5000; since, the fast path carried 3 GB, so that
    // 5000 + 2^31 would now be inside the host's window
    let now = 5000u32.wrapping_add(3 << 30);
    *fast.lan_acked.lock().unwrap() = Some(flow::Acked {
        ack: now,
        window: 65535,
    });
    let probes = e.set_uplink_up(0, false);
    assert_eq!(probes.len(), 1);
    assert_eq!(packet::read_u32(&probes[0], 24), now.wrapping_add(1 << 31));
    assert_eq!(fast.log.lock().unwrap()[1..], ["withdraw 40000"]);
}

#[test]
fn a_reload_changes_the_split_of_new_destinations_and_keeps_every_flow() {
    let mut e = Engine::new(by_destination(config((61000, 65535), vec![])));
    let mut before = Vec::new();
    for i in 1..=30u16 {
        let mut p = Ipv4Packet::udp(LAN, dst(i.into()), 5000 + i, 53, b"q").build();
        let v = out(&mut e, t(0), &mut p);
        before.push((v, read_u16(&p, 20)));
    }
    let mut cfg = config((61000, 65535), vec![]);
    cfg.uplinks[0].weight = 1;
    e.reconfigure(&by_destination(cfg.clone()));
    // every flow keeps its uplink and external port
    for i in 1..=30u16 {
        let mut p = Ipv4Packet::udp(LAN, dst(i.into()), 5000 + i, 53, b"q").build();
        let v = out(&mut e, t(1), &mut p);
        assert_eq!(
            (v, read_u16(&p, 20)),
            before[usize::from(i) - 1],
            "flow {i}"
        );
    }
    assert_eq!(e.flow_count(), 30);
    // new destinations split 1:1, alternating
    let mut seen = [0u32; 2];
    for i in 101..=140 {
        let mut p = Ipv4Packet::udp(LAN, dst(i), 7000, 53, b"q").build();
        let Verdict::Uplink(u) = out(&mut e, t(2), &mut p) else {
            panic!("dropped")
        };
        seen[usize::from(u)] += 1;
    }
    assert_eq!(seen, [20, 20]);
    assert_eq!(e.counters().drops.iter().sum::<u64>(), 0);
}

#[test]
fn a_reloaded_pin_takes_new_flows_and_leaves_running_ones() {
    let mut e = Engine::new(by_destination(config((61000, 65535), vec![])));
    // dst(1) goes to uplink 0 by weight
    let mut running = Ipv4Packet::udp(LAN, dst(1), 6667, 6667, b"irc").build();
    assert_eq!(out(&mut e, t(0), &mut running), Verdict::Uplink(0));
    let pin = Pin {
        prefix: Prefix::new(dst(0), 24).unwrap(),
        uplink: 1,
        strict: false,
    };
    e.reconfigure(&by_destination(config((61000, 65535), vec![pin])));
    let mut running = Ipv4Packet::udp(LAN, dst(1), 6667, 6667, b"irc").build();
    assert_eq!(out(&mut e, t(1), &mut running), Verdict::Uplink(0));
    for i in 2..=5 {
        let mut p = Ipv4Packet::udp(LAN, dst(i), 6667, 6667, b"irc").build();
        assert_eq!(out(&mut e, t(1), &mut p), Verdict::Uplink(1), "dst({i})");
    }
    // and a pin removed by the next reload no longer holds
    e.reconfigure(&by_destination(config((61000, 65535), vec![])));
    let picks: Vec<_> = (10..=12)
        .map(|i| {
            out(
                &mut e,
                t(2),
                &mut Ipv4Packet::udp(LAN, dst(i), 1, 53, b"q").build(),
            )
        })
        .collect();
    assert!(picks.contains(&Verdict::Uplink(0)), "{picks:?}");
}

#[test]
fn a_line_reloaded_into_a_backup_tier_gives_up_its_udp_but_not_its_tcp() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    // dst(1) -> uplink 0, dst(2) -> uplink 1
    out(
        &mut e,
        t(0),
        &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build(),
    );
    let udp = &mut Ipv4Packet::udp(LAN, dst(2), 7, 7, b"u").build();
    assert_eq!(out(&mut e, t(0), udp), Verdict::Uplink(1));
    let syn = &mut Ipv4Packet::tcp(LAN, dst(2), 40000, 443, b"")
        .flags(TCP_SYN)
        .seq(1)
        .build();
    assert_eq!(out(&mut e, t(0), syn), Verdict::Uplink(1));
    let mut cfg = config((61000, 65535), vec![]);
    cfg.uplinks[1].tier = 2;
    e.reconfigure(&cfg);
    let udp = &mut Ipv4Packet::udp(LAN, dst(2), 7, 7, b"u").build();
    assert_eq!(out(&mut e, t(1), udp), Verdict::Uplink(0), "moves");
    let tcp = &mut Ipv4Packet::tcp(LAN, dst(2), 40000, 443, b"")
        .flags(ACK)
        .seq(2)
        .ack(1)
        .build();
    assert_eq!(out(&mut e, t(1), tcp), Verdict::Uplink(1), "left to finish");
    assert_eq!(e.counters().resets, 0);
}

#[test]
fn reloaded_timeouts_apply_at_the_next_expiry() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    out(
        &mut e,
        t(0),
        &mut Ipv4Packet::udp(LAN, dst(1), 1, 53, b"q").build(),
    );
    let mut cfg = config((61000, 65535), vec![]);
    cfg.timeouts.udp = 2 * MIN;
    cfg.affinity_timeout_ms = MIN;
    e.reconfigure(&cfg);
    e.expire(t(2 * MIN));
    assert_eq!(e.flow_count(), 0, "the new UDP timeout");
    e.expire(t(3 * MIN));
    assert_eq!(e.destination_count(), 0, "the new affinity timeout");
}

#[test]
fn the_busiest_destinations_count_both_ways_and_what_the_fast_path_carried() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let mut e = Engine::new(config((61000, 65535), vec![])).with_fast_path(Box::new(fake.clone()));
    // dst(1): 3 UDP flows of one 100-byte datagram each way (128 IP bytes a datagram)
    for port in 1..=3 {
        let mut p = Ipv4Packet::udp(LAN, dst(1), port, 53, &[0; 100]).build();
        assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(0));
        let ext = read_u16(&p, 20);
        let mut r = Ipv4Packet::udp(dst(1), UPLINK_1, 53, ext, &[0; 100]).build();
        assert_eq!(inb(&mut e, t(1), 0, &mut r), Verdict::Tun);
    }
    // dst(2): one small datagram out
    let mut p = Ipv4Packet::udp(LAN, dst(2), 9, 53, b"q").build();
    assert_eq!(out(&mut e, t(0), &mut p), Verdict::Uplink(1));
    let busiest = e.busiest_destinations(10);
    let seen: Vec<_> = busiest
        .iter()
        .map(|d| (d.addr, d.uplink, d.bytes, d.flows))
        .collect();
    assert_eq!(seen, [(dst(1), 0, 6 * 128, 3), (dst(2), 1, 29, 1)]);
    assert_eq!(e.busiest_destinations(1).len(), 1);

    // a steady TCP flow to dst(3), handed over; the fast path says it carried 1 MB
    *fake.bytes.lock().unwrap() = 1_000_000;
    let syn = &mut Ipv4Packet::tcp(LAN, dst(3), 40000, 443, b"")
        .flags(TCP_SYN)
        .seq(1)
        .build();
    let Verdict::Uplink(u) = out(&mut e, t(2), syn) else {
        panic!("dropped")
    };
    let ext = read_u16(syn, 20);
    let addr = [UPLINK_1, UPLINK_2][usize::from(u)];
    inb(
        &mut e,
        t(3),
        u,
        &mut Ipv4Packet::tcp(dst(3), addr, 443, ext, b"")
            .flags(TCP_SYN | ACK)
            .seq(100)
            .ack(2)
            .build(),
    );
    for i in 0..u64::from(HAND_OVER_AFTER) {
        out(
            &mut e,
            t(4 + i),
            &mut Ipv4Packet::tcp(LAN, dst(3), 40000, 443, b"")
                .flags(ACK)
                .seq(2)
                .ack(101)
                .build(),
        );
    }
    assert!(
        fake.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("hand over 6"))
    );
    let top = e.busiest_destinations(1)[0];
    assert_eq!((top.addr, top.flows), (dst(3), 1));
    assert!(top.bytes > 1_000_000, "{top:?}");
    // taken back (the host resets it): what the fast path carried stays with the flow
    out(
        &mut e,
        t(10),
        &mut Ipv4Packet::tcp(LAN, dst(3), 40000, 443, b"")
            .flags(TCP_RST)
            .seq(2)
            .ack(101)
            .build(),
    );
    assert!(
        fake.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("withdraw 6"))
    );
    *fake.bytes.lock().unwrap() = 0;
    let top = e.busiest_destinations(1)[0];
    assert!(top.bytes > 1_000_000, "{top:?}");
}

#[test]
fn a_new_address_takes_new_flows_and_ends_those_of_the_old_one() {
    use std::sync::Arc;
    let fake = Arc::new(FakeFastPath::default());
    let mut e = Engine::new(config((61000, 65535), vec![])).with_fast_path(Box::new(fake.clone()));
    established(&mut e);
    // a UDP flow, answered and steady: on the fast path
    let mut query = Ipv4Packet::udp(LAN, dst(1), 5000, 53, b"q").build();
    assert_eq!(out(&mut e, t(4), &mut query), Verdict::Uplink(0));
    let port = read_u16(&query, 20);
    for i in 0..u64::from(HAND_OVER_AFTER) {
        let mut reply = Ipv4Packet::udp(dst(1), UPLINK_1, 53, port, b"a").build();
        assert_eq!(inb(&mut e, t(5 + i), 0, &mut reply), Verdict::Tun);
    }
    assert!(
        fake.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("hand over 17"))
    );
    let renewed = u32::from_be_bytes([198, 18, 1, 2]);
    let probes = e.set_uplink_addr(0, renewed);
    assert_eq!(
        probes.len(),
        1,
        "the TCP connection cannot follow: it is reset"
    );
    // both came back from the fast path, under the keys they were handed over with
    let log = fake.log.lock().unwrap().clone();
    assert!(log.contains(&"withdraw 17 5000".to_string()), "{log:?}");
    // the UDP flow continues from the new address at its next packet
    let mut next = Ipv4Packet::udp(LAN, dst(1), 5000, 53, b"q").build();
    assert_eq!(out(&mut e, t(20), &mut next), Verdict::Uplink(0));
    assert_eq!(read_u32(&next, 12), renewed);
    assert_eq!(e.counters().moved, 1);
    // the TCP connection's next segment from the host is answered with the reset
    let ack = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"x")
        .flags(ACK)
        .seq(101)
        .ack(5000)
        .build();
    assert_eq!(out(&mut e, t(21), ack), Verdict::Tun);
    assert_eq!(e.counters().resets, 1);
    // replies to the old address are not the uplink's any more
    let mut late = Ipv4Packet::udp(dst(1), UPLINK_1, 53, port, b"a").build();
    assert_eq!(
        inb(&mut e, t(22), 0, &mut late),
        Verdict::Drop(DropReason::NotForUplink)
    );
    // new flows leave from the new address, and the same address again changes nothing
    let mut fresh = Ipv4Packet::udp(LAN, dst(9), 7, 53, b"q").build();
    out(&mut e, t(23), &mut fresh);
    assert!([renewed, UPLINK_2].contains(&read_u32(&fresh, 12)));
    assert!(e.set_uplink_addr(0, renewed).is_empty());
}

/// `(uplink, external port)` of a UDP datagram from `LAN:port` to `to`, as it left.
fn udp_from(e: &mut Engine, port: u16, to: u32) -> (Verdict, u16) {
    let mut p = Ipv4Packet::udp(LAN, to, port, 3478, b"stun").build();
    let v = out(e, t(0), &mut p);
    (v, read_u16(&p, 20))
}

#[test]
fn one_udp_socket_keeps_one_uplink_and_port_for_every_destination() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    // by weight alone these six would go 0, 1, 0, 0, 1, 0
    let first = udp_from(&mut e, 5000, dst(1));
    for i in 2..=6 {
        assert_eq!(udp_from(&mut e, 5000, dst(i)), first, "dst({i})");
    }
    assert_eq!(e.mapping_count(), 1);
    // with destination affinity they spread as before, each uplink with its own mapping
    let mut cfg = config((61000, 65535), vec![]);
    cfg.udp_affinity = UdpAffinity::Destination;
    let mut e = Engine::new(cfg);
    let picks: Vec<Verdict> = (1..=6).map(|i| udp_from(&mut e, 5000, dst(i)).0).collect();
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
    let mut e = Engine::new(config((61000, 65535), vec![pin]));
    // a socket per query: 2:1, interleaved
    let mut seen = [0u32; 2];
    for i in 1..=30u16 {
        let Verdict::Uplink(u) = udp_from(&mut e, 6000 + i, dst(i.into())).0 else {
            panic!("dropped")
        };
        seen[usize::from(u)] += 1;
    }
    assert_eq!(seen, [20, 10]);
    // socket 6001 lives on uplink 0; its datagram to the pinned server takes the pin, with
    // the pinned uplink's mapping, and its other destinations stay on uplink 0
    assert_eq!(udp_from(&mut e, 6001, dst(91)).0, Verdict::Uplink(1));
    assert_eq!(udp_from(&mut e, 6001, dst(50)).0, Verdict::Uplink(0));
}

#[test]
fn a_udp_socket_whose_uplink_dies_follows_the_failover_rules() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    let (first, _) = udp_from(&mut e, 5000, dst(1));
    assert_eq!(first, Verdict::Uplink(0));
    e.set_uplink_up(0, false);
    // its flow moves at its next packet, and its new destinations go where the flow went
    assert_eq!(udp_from(&mut e, 5000, dst(1)).0, Verdict::Uplink(1));
    let moved = udp_from(&mut e, 5000, dst(2));
    assert_eq!(moved.0, Verdict::Uplink(1));
    assert_eq!(udp_from(&mut e, 5000, dst(3)), moved);
    // back up: the socket keeps its line (both ends would see a new address otherwise)
    e.set_uplink_up(0, true);
    assert_eq!(udp_from(&mut e, 5000, dst(4)), moved);
}

#[test]
fn a_socket_placed_by_its_endpoint_leaves_its_destinations_other_flows_where_they_are() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    // the socket on uplink 0 (dst(1)); a TCP connection to dst(2) by weight on uplink 1
    assert_eq!(udp_from(&mut e, 5000, dst(1)).0, Verdict::Uplink(0));
    let syn = |port| {
        Ipv4Packet::tcp(LAN, dst(2), port, 443, b"")
            .flags(TCP_SYN)
            .seq(1)
            .build()
    };
    assert_eq!(out(&mut e, t(0), &mut syn(40000)), Verdict::Uplink(1));
    // the socket's datagram to dst(2) keeps the socket's line...
    assert_eq!(udp_from(&mut e, 5000, dst(2)).0, Verdict::Uplink(0));
    // ...and dst(2)'s next connection still takes dst(2)'s
    assert_eq!(out(&mut e, t(1), &mut syn(40001)), Verdict::Uplink(1));
}

#[test]
fn after_a_failback_a_socket_keeps_the_line_its_flows_moved_to() {
    let mut e = Engine::new(config((61000, 65535), vec![]));
    assert_eq!(udp_from(&mut e, 5000, dst(1)).0, Verdict::Uplink(0));
    assert_eq!(udp_from(&mut e, 5000, dst(2)).0, Verdict::Uplink(0));
    e.set_uplink_up(0, false);
    // dst(1)'s flow moves; dst(2)'s, idle, still holds the mapping on uplink 0
    let moved = udp_from(&mut e, 5000, dst(1));
    assert_eq!(moved.0, Verdict::Uplink(1));
    e.set_uplink_up(0, true);
    // a new destination goes where the socket talks now, at the same address and port
    assert_eq!(udp_from(&mut e, 5000, dst(3)), moved);
}
