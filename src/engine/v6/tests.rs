//! IPv6 through the engine. Packets are built here with their checksums summed from scratch
//! (a plain word-by-word sum, not the engine's code); the engine's output must equal, byte
//! for byte, the packet built from scratch with the translated fields, or for NPTv6 keep the
//! transport bytes as they were and still check.

use super::*;
use crate::engine::flow::Timeouts;
use crate::engine::limits::Limits;
use crate::engine::wire::tcp::{ACK, RST, SYN};
use crate::engine::wire::{PROTO_ICMPV6, PROTO_UDP};
use crate::engine::{DropReason, L4Checksum, UdpAffinity, UplinkConfig, Verdict};

const MIN: u64 = 60_000;
/// The LAN: fd00:1:2:5::/64; hosts ::a and ::b.
const LAN_NET: u128 = 0xfd00_0001_0002_0005_u128 << 64;
const HOST: u128 = LAN_NET | 0x0a;
const HOST_B: u128 = LAN_NET | 0x0b;
/// Line 0 (NAT66): its address 2001:2:0:1::2, its router 2001:2:0:1::1.
const LINE0_ADDR: u128 = 0x2001_0002_0000_0001_u128 << 64 | 2;
const LINE0_ROUTER: u128 = 0x2001_0002_0000_0001_u128 << 64 | 1;
/// Line 1 (NPTv6): the prefix it delegates, 2001:2:0:100::/56.
const LINE1_PREFIX: u128 = 0x2001_0002_0000_0100_u128 << 64;
/// Servers on the internet: 2001:2:ff::N.
fn server(n: u128) -> u128 {
    0x2001_0002_00ff_u128 << 80 | n
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn engine(ports: (u16, u16)) -> Engine {
    engine_without_lan_prefix(ports).with_lan_nets6(vec![Prefix::masked(LAN_NET, 64).unwrap()])
}

fn engine_without_lan_prefix(ports: (u16, u16)) -> Engine {
    engine_with_limits(ports, Limits::unlimited())
}

fn engine_with_limits(ports: (u16, u16), limits: Limits) -> Engine {
    let uplinks = [("isp1", 1u8, 2u32), ("isp2", 2, 1)]
        .iter()
        .map(|&(name, net, weight)| UplinkConfig {
            name: name.into(),
            addr: u32::from_be_bytes([198, 18, net, 1]),
            weight,
            tier: 1,
        })
        .collect();
    Engine::new(EngineConfig {
        uplinks,
        pins: vec![],
        affinity_timeout_ms: 10 * MIN,
        timeouts: Timeouts::default(),
        ports,
        seed: 42,
        reset_tcp_on_down: true,
        udp_affinity: UdpAffinity::Destination,
        limits,
    })
}

fn nat66_line(up: bool) -> Uplink6 {
    Uplink6 {
        addr: Some(LINE0_ADDR),
        prefix: None,
        up,
    }
}

fn npt_line(up: bool) -> Uplink6 {
    Uplink6 {
        addr: None,
        prefix: Some(Prefix::masked(LINE1_PREFIX, 56).unwrap()),
        up,
    }
}

/// Line 0 by NAT66 only, with one port per pool (so a flow's external port is 61000).
fn nat66_engine() -> Engine {
    let e = engine((61000, 61000));
    assert!(e.set_uplink6(0, nat66_line(true)).is_empty());
    e
}

/// Line 1 by NPTv6 only.
fn npt_engine() -> Engine {
    let e = engine((61000, 61000));
    assert!(e.set_uplink6(1, npt_line(true)).is_empty());
    e
}

/// The one's-complement sum of `data`, word by word, written independently of the engine's.
fn plain_sum(data: &[u8]) -> u32 {
    let mut s: u32 = 0;
    for pair in data.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).copied().map_or(0, u32::from);
        s += hi | lo;
    }
    s
}

fn plain_checksum(src: u128, dst: u128, proto: u8, l4: &[u8]) -> u16 {
    let mut s = plain_sum(&src.to_be_bytes()) + plain_sum(&dst.to_be_bytes());
    s += u32::try_from(l4.len()).unwrap() + u32::from(proto) + plain_sum(l4);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !u16::try_from(s).expect("folded")
}

/// Where the transport checksum is in a transport header.
fn checksum_at(proto: u8) -> usize {
    match proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => 2,
    }
}

/// An IPv6 packet from `src` to `dst` with `ext` (extension headers, first `first`) and the
/// transport `l4`, whose checksum is filled in here.
fn packet_with(src: u128, dst: u128, first: u8, ext: &[u8], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut l4 = l4.to_vec();
    let at = checksum_at(proto);
    l4[at..at + 2].fill(0);
    let c = plain_checksum(src, dst, proto, &l4);
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(ext.len() + l4.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&[first, 64]);
    p.extend_from_slice(&src.to_be_bytes());
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(ext);
    p.extend_from_slice(&l4);
    p
}

fn packet(src: u128, dst: u128, proto: u8, l4: &[u8]) -> Vec<u8> {
    packet_with(src, dst, proto, &[], proto, l4)
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&u16::try_from(8 + data.len()).unwrap().to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut s = answer_tcp(sport, dport, seq, ack, flags, data);
    s[14..16].copy_from_slice(&[0xff, 0xff]);
    s
}

/// A TCP segment as the engine writes its own: window 0.
fn answer_tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.extend_from_slice(&[0x50, flags, 0, 0, 0, 0, 0, 0]);
    s.extend_from_slice(data);
    s
}

fn echo(msg_type: u8, ident: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![msg_type, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"ping");
    m
}

/// An ICMPv6 error of `msg_type` from `src` to `dst` quoting `quoted`, with `rest` as the
/// four bytes after the checksum (a Packet Too Big's MTU).
fn error(src: u128, dst: u128, msg_type: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type, 0, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(quoted);
    packet(src, dst, PROTO_ICMPV6, &m)
}

fn out(e: &Engine, now: Timestamp, p: &mut [u8]) -> Verdict {
    e.outbound(now, p, &mut L4Checksum::Complete)
}

fn inb(e: &Engine, now: Timestamp, uplink: UplinkId, p: &mut [u8]) -> Verdict {
    e.inbound(now, uplink, p, &mut L4Checksum::Complete)
}

fn drops(e: &Engine, reason: DropReason) -> u64 {
    e.counters().drop_count(reason)
}

/// Whether the transport checksum of the IPv6 packet `p` (no extension headers) is right.
fn transport_ok(p: &[u8]) -> bool {
    let src = u128::from_be_bytes(p[8..24].try_into().unwrap());
    let dst = u128::from_be_bytes(p[24..40].try_into().unwrap());
    plain_checksum(src, dst, p[6], &p[40..]) == 0
}

mod forward6;
mod resets6;

#[test]
fn nat66_translates_a_udp_flow_both_ways_byte_for_byte() {
    let e = nat66_engine();
    let sent = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"query"));
    let mut p = sent.clone();
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let expected = packet(LINE0_ADDR, server(1), PROTO_UDP, &udp(61000, 53, b"query"));
    assert_eq!(p, expected);
    let mut reply = packet(server(1), LINE0_ADDR, PROTO_UDP, &udp(53, 61000, b"answer"));
    assert_eq!(inb(&e, t(1), 0, &mut reply), Verdict::Tun);
    let expected = packet(server(1), HOST, PROTO_UDP, &udp(53, 5353, b"answer"));
    assert_eq!(reply, expected);
    assert_eq!(e.flows6(), 1);
    let c = e.counters().uplinks[0];
    assert_eq!((c.outbound_packets, c.inbound_packets, c.flows), (1, 1, 1));
}

#[test]
fn nat66_translates_echo_both_ways() {
    let e = nat66_engine();
    let mut p = packet(HOST, server(2), PROTO_ICMPV6, &echo(128, 0x1234, 1));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let expected = packet(LINE0_ADDR, server(2), PROTO_ICMPV6, &echo(128, 61000, 1));
    assert_eq!(p, expected);
    let mut reply = packet(server(2), LINE0_ADDR, PROTO_ICMPV6, &echo(129, 61000, 1));
    assert_eq!(inb(&e, t(1), 0, &mut reply), Verdict::Tun);
    assert_eq!(
        reply,
        packet(server(2), HOST, PROTO_ICMPV6, &echo(129, 0x1234, 1))
    );
}

#[test]
fn a_partial_checksum_is_updated_by_the_addresses_only() {
    let e = nat66_engine();
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"x"));
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum
    let pseudo = |src: u128, dst: u128| {
        let mut s = plain_sum(&src.to_be_bytes()) + plain_sum(&dst.to_be_bytes()) + 9 + 17;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        u16::try_from(s).expect("folded")
    };
    p[46..48].copy_from_slice(&pseudo(HOST, server(1)).to_be_bytes());
    let mut csum = L4Checksum::Partial;
    assert_eq!(e.outbound(t(0), &mut p, &mut csum), Verdict::Uplink(0));
    assert_eq!(
        u16::from_be_bytes([p[46], p[47]]),
        pseudo(LINE0_ADDR, server(1))
    );
}

#[test]
fn nptv6_swaps_the_prefix_and_leaves_the_transport_bytes_as_they_were() {
    let e = npt_engine();
    let sent = packet(
        HOST,
        server(3),
        PROTO_TCP,
        &tcp(40000, 443, 1000, 0, SYN, &[]),
    );
    let mut p = sent.clone();
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(1));
    let src = u128::from_be_bytes(p[8..24].try_into().unwrap());
    // the LAN /64 (subnet 5) in the delegated /56, the interface identifier adjusted
    assert_eq!(src >> 64, LINE1_PREFIX >> 64 | 5);
    assert_ne!(src, HOST);
    assert_eq!(&p[24..], &sent[24..], "destination and transport untouched");
    assert!(
        transport_ok(&p),
        "checksum-neutral: still right, not recomputed"
    );
    // the answer comes back to the translated address, and goes to the host as it was
    let mut reply = packet(
        server(3),
        src,
        PROTO_TCP,
        &tcp(443, 40000, 5000, 1001, SYN | ACK, &[]),
    );
    let before = reply.clone();
    assert_eq!(inb(&e, t(1), 1, &mut reply), Verdict::Tun);
    assert_eq!(&reply[24..40], &HOST.to_be_bytes());
    assert_eq!(&reply[40..], &before[40..]);
    assert!(transport_ok(&reply));
}

#[test]
fn nothing_unsolicited_reaches_the_lan() {
    let e = nat66_engine();
    e.set_uplink6(1, npt_line(true));
    // to the line's address, at a port no flow holds
    let mut p = packet(server(1), LINE0_ADDR, PROTO_UDP, &udp(53, 61000, b"x"));
    assert_eq!(inb(&e, t(0), 0, &mut p), Verdict::Drop(DropReason::NoFlow));
    // to a translated address of the prefix: stateless translation, stateful filter
    let lan_host_outside = e.v6.line(1).unwrap().npt.unwrap().outbound(HOST).unwrap();
    let mut p = packet(
        server(1),
        lan_host_outside,
        PROTO_TCP,
        &tcp(443, 22, 1, 0, SYN, &[]),
    );
    assert_eq!(inb(&e, t(0), 1, &mut p), Verdict::Drop(DropReason::NoFlow));
    // an echo request to either
    let mut p = packet(server(1), lan_host_outside, PROTO_ICMPV6, &echo(128, 7, 1));
    assert_eq!(
        inb(&e, t(0), 1, &mut p),
        Verdict::Drop(DropReason::UnsupportedIcmp)
    );
    // to the LAN's own address: not the line's to deliver
    let mut p = packet(server(1), HOST, PROTO_UDP, &udp(53, 5353, b"x"));
    assert_eq!(
        inb(&e, t(0), 0, &mut p),
        Verdict::Drop(DropReason::NotForUplink)
    );
    // a LAN source from a line: forged
    let mut p = packet(HOST_B, LINE0_ADDR, PROTO_UDP, &udp(53, 61000, b"x"));
    assert_eq!(
        inb(&e, t(0), 0, &mut p),
        Verdict::Drop(DropReason::LanSourceFromUplink)
    );
    // a reply from the wrong line
    let mut o = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(0), &mut o), Verdict::Uplink(0));
    let mut p = packet(server(1), LINE0_ADDR, PROTO_UDP, &udp(53, 61000, b"x"));
    assert_eq!(
        inb(&e, t(0), 1, &mut p),
        Verdict::Drop(DropReason::NotForUplink)
    );
    assert_eq!(drops(&e, DropReason::NoFlow), 2);
}

#[test]
fn a_packet_too_big_reaches_the_host_from_the_router_with_its_quote_rewritten() {
    let e = nat66_engine();
    let sent = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, &[7; 40]));
    let mut p = sent.clone();
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    // the line's router says the packet as it left was too big: MTU 1280
    let mtu = 1280u32.to_be_bytes();
    let mut ptb = error(LINE0_ROUTER, LINE0_ADDR, 2, mtu, &p);
    assert_eq!(inb(&e, t(1), 0, &mut ptb), Verdict::Tun);
    // from the router still, to the host, quoting the packet exactly as the host sent it
    assert_eq!(ptb, error(LINE0_ROUTER, HOST, 2, mtu, &sent));
    assert!(transport_ok(&ptb));
}

#[test]
fn an_error_about_a_prefix_translated_flow_is_rewritten_too() {
    let e = npt_engine();
    let sent = packet(HOST, server(4), PROTO_UDP, &udp(5353, 53, b"big"));
    let mut p = sent.clone();
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(1));
    let outside = u128::from_be_bytes(p[8..24].try_into().unwrap());
    let router = LINE1_PREFIX | 1;
    let mut te = error(router, outside, 3, [0; 4], &p);
    assert_eq!(inb(&e, t(1), 1, &mut te), Verdict::Tun);
    assert_eq!(te, error(router, HOST, 3, [0; 4], &sent));
}

#[test]
fn errors_that_belong_to_no_flow_or_sum_wrong_are_dropped() {
    let e = nat66_engine();
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let mut other = p.clone();
    other[40..42].copy_from_slice(&61001u16.to_be_bytes());
    let mut e1 = error(LINE0_ROUTER, LINE0_ADDR, 1, [0; 4], &other);
    assert_eq!(inb(&e, t(1), 0, &mut e1), Verdict::Drop(DropReason::NoFlow));
    let mut e2 = error(LINE0_ROUTER, LINE0_ADDR, 1, [0; 4], &p);
    e2[42] ^= 1;
    assert_eq!(
        inb(&e, t(1), 0, &mut e2),
        Verdict::Drop(DropReason::BadIcmpChecksum)
    );
}

#[test]
fn an_error_from_the_lan_goes_back_for_a_flow_it_quotes() {
    let e = nat66_engine();
    let mut o = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(0), &mut o), Verdict::Uplink(0));
    let delivered = packet(server(1), HOST, PROTO_UDP, &udp(53, 5353, b"late"));
    let mut unreachable = error(HOST, server(1), 1, [0; 4], &delivered);
    assert_eq!(out(&e, t(1), &mut unreachable), Verdict::Uplink(0));
    let as_sent = packet(server(1), LINE0_ADDR, PROTO_UDP, &udp(53, 61000, b"late"));
    assert_eq!(
        unreachable,
        error(LINE0_ADDR, server(1), 1, [0; 4], &as_sent)
    );
    // one quoting a live flow's packet but sent elsewhere than that packet's sender
    let mut elsewhere = error(HOST, server(7), 1, [0; 4], &delivered);
    assert_eq!(
        out(&e, t(1), &mut elsewhere),
        Verdict::Drop(DropReason::ForgedIcmpError)
    );
    // one about no flow would leave from the line's address to anyone
    let stray = packet(server(9), HOST, PROTO_UDP, &udp(53, 5353, b"x"));
    let mut forged = error(HOST, server(9), 1, [0; 4], &stray);
    assert_eq!(
        out(&e, t(1), &mut forged),
        Verdict::Drop(DropReason::ForgedIcmpError)
    );
}

#[test]
fn extension_headers_are_walked_or_dropped_and_counted() {
    let e = nat66_engine();
    // destination options (PadN) before UDP
    let ext = [PROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
    let dst_opts = crate::engine::wire::ipv6::DEST_OPTIONS;
    let mut p = packet_with(
        HOST,
        server(1),
        dst_opts,
        &ext,
        PROTO_UDP,
        &udp(1, 53, b"o"),
    );
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let expected = packet_with(
        LINE0_ADDR,
        server(1),
        dst_opts,
        &ext,
        PROTO_UDP,
        &udp(61000, 53, b"o"),
    );
    assert_eq!(p, expected);
    // a routing header with a segment left
    let routing = crate::engine::wire::ipv6::ROUTING;
    let ext = [PROTO_UDP, 0, 4, 1, 0, 0, 0, 0];
    let mut p = packet_with(HOST, server(1), routing, &ext, PROTO_UDP, &udp(2, 53, b"r"));
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::Ipv6ExtensionHeader)
    );
    assert_eq!(drops(&e, DropReason::Ipv6ExtensionHeader), 1);
    // ESP
    let mut p = packet(HOST, server(1), 50, &[0; 16]);
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::Ipv6ExtensionHeader)
    );
    // the link's own: neighbour discovery from a link-local address, a listener report
    // from the unspecified one to a group
    let link_local = 0xfe80_u128 << 112 | 1;
    let mut p = packet(link_local, server(1), PROTO_UDP, &udp(1, 53, b"l"));
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::Ipv6LinkScope)
    );
    let mut p = packet(0, 0xff02_u128 << 112 | 0x16, PROTO_UDP, &udp(1, 53, b"m"));
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::Ipv6LinkScope)
    );
    let mut p = packet(HOST, 0xff05_u128 << 112 | 2, PROTO_UDP, &udp(1, 53, b"m"));
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::Ipv6LinkScope)
    );
    // a LAN packet from outside the LAN's prefixes
    let mut p = packet(server(5), server(1), PROTO_UDP, &udp(1, 53, b"s"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Drop(DropReason::NotFromLan));
}

#[test]
fn a_later_fragment_follows_its_first_or_is_dropped() {
    let e = nat66_engine();
    let frag = crate::engine::wire::ipv6::FRAGMENT;
    // the first piece: its UDP header with the whole datagram's checksum (data "abcdefgh"
    // then "ijklmnop" in the second piece)
    let whole = udp(5353, 53, b"abcdefghijklmnop");
    let c = plain_checksum(HOST, server(1), PROTO_UDP, &whole);
    let mut first_l4 = whole[..16].to_vec();
    first_l4[6..8].copy_from_slice(&c.to_be_bytes());
    let header = |off_more: u16| {
        let mut h = vec![PROTO_UDP, 0];
        h.extend_from_slice(&off_more.to_be_bytes());
        h.extend_from_slice(&0xabcd_u32.to_be_bytes());
        h
    };
    let raw = |src: u128, ext: &[u8], l4: &[u8]| {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&u16::try_from(ext.len() + l4.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[frag, 64]);
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&server(1).to_be_bytes());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    };
    let mut later = raw(HOST, &header(16), b"ijklmnop");
    assert_eq!(
        out(&e, t(0), &mut later),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    let mut first = raw(HOST, &header(1), &first_l4);
    assert_eq!(out(&e, t(1), &mut first), Verdict::Uplink(0));
    // translated as a whole datagram's first piece: its checksum right for the whole
    let mut whole_out = udp(61000, 53, b"abcdefghijklmnop");
    let c = plain_checksum(LINE0_ADDR, server(1), PROTO_UDP, &whole_out);
    whole_out[6..8].copy_from_slice(&c.to_be_bytes());
    assert_eq!(first, raw(LINE0_ADDR, &header(1), &whole_out[..16]));
    let mut later = raw(HOST, &header(16), b"ijklmnop");
    assert_eq!(out(&e, t(2), &mut later), Verdict::Uplink(0));
    assert_eq!(later, raw(LINE0_ADDR, &header(16), b"ijklmnop"));
    // after the datagram's time is up
    let mut late = raw(HOST, &header(16), b"ijklmnop");
    assert_eq!(
        out(&e, t(31_000), &mut late),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
}

#[test]
fn ipv6_flows_spread_by_weight_stay_by_destination_and_follow_pins() {
    let e = engine((61000, 61999));
    e.set_uplink6(0, nat66_line(true));
    e.set_uplink6(
        1,
        Uplink6 {
            addr: Some(LINE1_PREFIX | 2),
            prefix: None,
            up: true,
        },
    );
    let e = e.with_pins6(vec![Pin {
        prefix: Prefix::masked(server(0x900), 124).unwrap(),
        uplink: 1,
        strict: false,
    }]);
    let mut picks = Vec::new();
    for i in 0..9 {
        let mut p = packet(HOST, server(i + 1), PROTO_UDP, &udp(5000, 53, b"w"));
        let Verdict::Uplink(u) = out(&e, t(0), &mut p) else {
            panic!("not sent");
        };
        picks.push(u);
    }
    assert_eq!(picks, [0, 1, 0, 0, 1, 0, 0, 1, 0], "2:1 interleaved");
    // a new flow to a destination in use goes its way
    for i in 0..9 {
        let mut p = packet(HOST_B, server(i + 1), PROTO_UDP, &udp(6000, 53, b"s"));
        assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(picks[i as usize]));
    }
    // pinned, whatever the weights say
    for i in 0..4 {
        let mut p = packet(HOST, server(0x900 + i), PROTO_UDP, &udp(7000, 53, b"p"));
        assert_eq!(out(&e, t(2), &mut p), Verdict::Uplink(1));
    }
}

#[test]
fn a_line_whose_ipv6_is_down_takes_no_ipv6_flow_and_ipv4_goes_on() {
    let e = engine((61000, 61999));
    e.set_uplink6(0, nat66_line(true));
    e.set_uplink6(1, npt_line(true));
    assert_eq!(e.ipv6_up(), 0b11);
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5000, 53, b"a"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    e.set_uplink6(0, nat66_line(false));
    assert_eq!(e.ipv6_up(), 0b10);
    // the UDP flow moves at its next packet; a new one goes to line 1
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5000, 53, b"a"));
    assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(1));
    let mut p = packet(HOST, server(2), PROTO_UDP, &udp(5001, 53, b"b"));
    assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(1));
    assert_eq!(e.counters().moved, 1);
    // IPv4 still uses line 0
    let mut v4 = wanlb_testkit::Ipv4Packet::udp(
        std::net::Ipv4Addr::new(198, 18, 3, 10),
        std::net::Ipv4Addr::new(198, 19, 0, 1),
        5000,
        53,
        b"v4",
    )
    .build();
    assert_eq!(out(&e, t(1), &mut v4), Verdict::Uplink(0));
    // no line left for IPv6
    e.set_uplink6(1, npt_line(false));
    let mut p = packet(HOST, server(3), PROTO_UDP, &udp(5002, 53, b"c"));
    assert_eq!(
        out(&e, t(2), &mut p),
        Verdict::Drop(DropReason::NoIpv6Uplink)
    );
    // the host hears so at once, from the destination, quoting its packet
    let mut answer = [0u8; crate::engine::MAX_UNREACHABLE];
    let len = e
        .unreachable(t(2), DropReason::NoIpv6Uplink, &p, &mut answer)
        .expect("answered");
    assert_eq!(
        answer[..len],
        error(server(3), HOST, 1, [0; 4], &p)[..],
        "no route to destination"
    );
    assert_eq!(e.counters().unreachables, 1);
}

#[test]
fn a_tcp_connection_on_a_dead_line_is_reset_with_the_hosts_own_sequence_number() {
    let e = nat66_engine();
    e.set_uplink6(1, npt_line(true));
    let mut syn = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(40000, 443, 100, 0, SYN, &[]),
    );
    assert_eq!(out(&e, t(0), &mut syn), Verdict::Uplink(0));
    let as_sent = packet(
        LINE0_ADDR,
        server(1),
        PROTO_TCP,
        &tcp(61000, 443, 100, 0, SYN, &[]),
    );
    assert_eq!(syn, as_sent);
    let mut syn_ack = packet(
        server(1),
        LINE0_ADDR,
        PROTO_TCP,
        &tcp(443, 61000, 7000, 101, SYN | ACK, &[]),
    );
    assert_eq!(inb(&e, t(1), 0, &mut syn_ack), Verdict::Tun);
    let mut ack = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(40000, 443, 101, 7001, ACK, &[]),
    );
    assert_eq!(out(&e, t(2), &mut ack), Verdict::Uplink(0));
    let mut data = packet(
        server(1),
        LINE0_ADDR,
        PROTO_TCP,
        &tcp(443, 61000, 7001, 101, ACK, b"hello"),
    );
    assert_eq!(inb(&e, t(3), 0, &mut data), Verdict::Tun);
    // line 0's IPv6 dies: a probe asks the host where it is, far from what it last
    // acknowledged
    let probes = e.set_uplink6(0, nat66_line(false));
    assert_eq!(probes.len(), 1);
    let probe = probes[0];
    let expected = packet(
        server(1),
        HOST,
        PROTO_TCP,
        &answer_tcp(443, 40000, 7001u32.wrapping_add(1 << 31), 0, ACK, &[0]),
    );
    assert_eq!(probe.to_vec(), expected);
    // the host answers with a duplicate ACK: the reset carries its acknowledgement number
    let mut dup_ack = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(40000, 443, 101, 7006, ACK, &[]),
    );
    assert_eq!(out(&e, t(4), &mut dup_ack), Verdict::Tun);
    let reset = packet(
        server(1),
        HOST,
        PROTO_TCP,
        &answer_tcp(443, 40000, 7006, 101, RST | ACK, &[]),
    );
    assert_eq!(dup_ack[..60], reset[..]);
    assert_eq!(e.counters().resets, 1);
    assert_eq!(e.flows6(), 0);
}

#[test]
fn a_renumbered_line_ends_its_tcp_and_moves_the_rest_to_the_new_address() {
    let e = nat66_engine();
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let new_addr = LINE0_ADDR + 0x100;
    e.set_uplink6(
        0,
        Uplink6 {
            addr: Some(new_addr),
            ..nat66_line(true)
        },
    );
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(0));
    assert_eq!(&p[8..24], &new_addr.to_be_bytes());
    // a reply to the old address finds nothing
    let mut old = packet(server(1), LINE0_ADDR, PROTO_UDP, &udp(53, 61000, b"x"));
    assert_eq!(
        inb(&e, t(2), 0, &mut old),
        Verdict::Drop(DropReason::NotForUplink)
    );
}

#[test]
fn idle_ipv6_flows_expire_and_give_their_ports_back() {
    let e = nat66_engine();
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    // the one port is taken
    let mut q = packet(HOST_B, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(
        out(&e, t(1), &mut q),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    e.expire(
        t(Timeouts::default().udp + 1),
        &crate::engine::CarriedFlows::NONE,
    );
    assert_eq!(e.flows6(), 0);
    let mut q = packet(HOST_B, server(1), PROTO_UDP, &udp(5353, 53, b"q"));
    assert_eq!(
        out(&e, t(Timeouts::default().udp + 2), &mut q),
        Verdict::Uplink(0)
    );
}

#[test]
fn an_unreachable_quotes_the_start_of_a_long_packet_and_never_answers_an_error() {
    let e = engine((61000, 61000));
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5000, 53, &[9; 300]));
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::NoIpv6Uplink)
    );
    let mut answer = [0u8; crate::engine::MAX_UNREACHABLE];
    let len = e
        .unreachable(t(0), DropReason::NoIpv6Uplink, &p, &mut answer)
        .expect("answered");
    assert_eq!(len, 40 + 8 + answer6::UNREACHABLE6_QUOTE);
    assert_eq!(&answer[48..len], &p[..answer6::UNREACHABLE6_QUOTE]);
    assert!(transport_ok(&answer[..len]));
    let about = packet(server(1), HOST, PROTO_UDP, &udp(53, 5000, b"x"));
    let err = error(HOST, server(1), 1, [0; 4], &about);
    assert_eq!(
        e.unreachable(t(0), DropReason::NoIpv6Uplink, &err, &mut answer),
        None
    );
}

#[test]
fn a_fragmented_answer_from_a_line_reaches_the_host_piece_by_piece() {
    let e = nat66_engine();
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5353, 53, b"query"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let frag = crate::engine::wire::ipv6::FRAGMENT;
    let header = |off_more: u16| {
        let mut h = vec![PROTO_UDP, 0];
        h.extend_from_slice(&off_more.to_be_bytes());
        h.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
        h
    };
    let raw = |dst: u128, ext: &[u8], l4: &[u8]| {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&u16::try_from(ext.len() + l4.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[frag, 64]);
        p.extend_from_slice(&server(1).to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    };
    // the whole answer's UDP header and checksum, then its pieces
    let whole = |dst: u128, port: u16| {
        let mut u = udp(53, port, b"abcdefghijklmnop");
        let c = plain_checksum(server(1), dst, PROTO_UDP, &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
        u
    };
    let mut later = raw(LINE0_ADDR, &header(16), b"ijklmnop");
    assert_eq!(
        inb(&e, t(1), 0, &mut later),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    let mut first = raw(LINE0_ADDR, &header(1), &whole(LINE0_ADDR, 61000)[..16]);
    assert_eq!(inb(&e, t(2), 0, &mut first), Verdict::Tun);
    assert_eq!(first, raw(HOST, &header(1), &whole(HOST, 5353)[..16]));
    // a later piece on another line is no piece of it
    let mut elsewhere = raw(LINE0_ADDR, &header(16), b"ijklmnop");
    assert_eq!(
        inb(&e, t(3), 1, &mut elsewhere),
        Verdict::Drop(DropReason::FragmentWithoutFirst)
    );
    let mut later = raw(LINE0_ADDR, &header(16), b"ijklmnop");
    assert_eq!(inb(&e, t(3), 0, &mut later), Verdict::Tun);
    assert_eq!(later, raw(HOST, &header(16), b"ijklmnop"));
    // an unsolicited first piece opens nothing, and so its later pieces follow nothing
    let mut stray = raw(LINE0_ADDR, &header(1), &whole(LINE0_ADDR, 61001)[..16]);
    stray[44..48].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(
        inb(&e, t(4), 0, &mut stray),
        Verdict::Drop(DropReason::NoFlow)
    );
}

#[test]
fn a_line_off_for_its_cap_takes_no_ipv6_flow() {
    let e = engine((61000, 61999));
    e.set_uplink6(0, nat66_line(true));
    e.set_uplink6(1, npt_line(true));
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5000, 53, b"a"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let none = crate::engine::CarriedFlows::NONE;
    e.set_cap_effect(0, crate::metered::CapEffect::Off, &none);
    assert_eq!(e.ipv6_up(), 0b10);
    // its flow moves at its next packet, and new ones go elsewhere
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5000, 53, b"a"));
    assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(1));
    let mut p = packet(HOST, server(2), PROTO_UDP, &udp(5001, 53, b"b"));
    assert_eq!(out(&e, t(1), &mut p), Verdict::Uplink(1));
    e.set_cap_effect(0, crate::metered::CapEffect::None, &none);
    assert_eq!(e.ipv6_up(), 0b11);
}

#[test]
fn without_a_lan_prefix_ipv6_is_refused_and_answered() {
    let e = engine_without_lan_prefix((61000, 61000));
    e.set_uplink6(0, nat66_line(true));
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5000, 53, b"a"));
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::NoIpv6Uplink)
    );
    let mut answer = [0u8; crate::engine::MAX_UNREACHABLE];
    assert!(
        e.unreachable(t(0), DropReason::NoIpv6Uplink, &p, &mut answer)
            .is_some()
    );
}

/// A completed handshake verifies an IPv6 address as it does an IPv4 one: a busy host holds a
/// share of its own, and its neighbours on the same /64 keep theirs.
#[test]
fn a_handshake_verifies_an_ipv6_host_whose_flows_then_spare_its_neighbours() {
    let limits = Limits {
        max_flows_per_host: 4,
        ..Limits::unlimited()
    };
    let e = engine_with_limits((61000, 61999), limits)
        .with_lan_nets6(vec![Prefix::masked(LAN_NET, 64).unwrap()]);
    assert!(e.set_uplink6(0, nat66_line(true)).is_empty());
    // HOST completes a TCP handshake: SYN, SYN-ACK, ACK
    let mut p = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(40000, 443, 100, 0, SYN, &[]),
    );
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(0));
    let ext_port = u16::from_be_bytes([p[40], p[41]]);
    let answer = tcp(443, ext_port, 9000, 101, SYN | ACK, &[]);
    let mut p = packet(server(1), LINE0_ADDR, PROTO_TCP, &answer);
    assert_eq!(inb(&e, t(1), 0, &mut p), Verdict::Tun);
    let mut p = packet(
        HOST,
        server(1),
        PROTO_TCP,
        &tcp(40000, 443, 101, 9001, ACK, &[]),
    );
    assert_eq!(out(&e, t(2), &mut p), Verdict::Uplink(0));
    // three flows more: its own share, full
    for n in 0..3 {
        let mut p = packet(HOST, server(10 + n), PROTO_UDP, &udp(5000, 53, b"q"));
        assert_eq!(out(&e, t(3), &mut p), Verdict::Uplink(0));
    }
    let mut p = packet(HOST, server(20), PROTO_UDP, &udp(5000, 53, b"q"));
    assert_eq!(
        out(&e, t(3), &mut p),
        Verdict::Drop(DropReason::HostFlowLimit)
    );
    // HOST_B, on the same /64, still opens its flows from the LAN's unverified share
    let mut p = packet(
        HOST_B,
        server(50),
        PROTO_TCP,
        &tcp(40001, 443, 1, 0, SYN, &[]),
    );
    assert_eq!(out(&e, t(4), &mut p), Verdict::Uplink(0));
}

/// A source NPTv6 cannot translate (an all-ones interface identifier, whose adjusted word
/// would be 0xffff) is refused before it holds a flow or a port, not stored to fail later.
#[test]
fn a_source_no_line_can_translate_is_refused_before_it_holds_anything() {
    let e = npt_engine();
    let untranslatable = LAN_NET | u128::from(u64::MAX);
    let mut p = packet(untranslatable, server(1), PROTO_UDP, &udp(5000, 53, b"q"));
    assert_eq!(
        out(&e, t(0), &mut p),
        Verdict::Drop(DropReason::NoIpv6Uplink)
    );
    assert_eq!(e.flows6(), 0);
    // its neighbour is translated as ever
    let mut p = packet(HOST, server(1), PROTO_UDP, &udp(5000, 53, b"q"));
    assert_eq!(out(&e, t(0), &mut p), Verdict::Uplink(1));
    assert_eq!(e.flows6(), 1);
}
mod edges;
mod fast_path6;
