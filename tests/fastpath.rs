//! The kernel fast path against the engine. Once the engine has handed a flow over, the eBPF
//! programs must produce, byte for byte, the packet the engine produces, less the one TTL the
//! kernel's forwarding takes off on the userspace path; and they must leave alone everything
//! that is the engine's to see. The programs run in the kernel through BPF_PROG_TEST_RUN,
//! which sends nothing, inside the gateway namespace of a testbed of the test's own: root and
//! Linux 6.6 or later are needed (CI has both).

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::Testbed;
use wanlb_testkit::checksum::checksum;
use wanlb_testkit::{Ipv4Packet, decrement_ttl, fix_ip_checksum};

use wanlb::engine::Direction;
use wanlb::engine::flow::{Acked, FlowKey, Timeouts};
use wanlb::engine::port_forward::Forward;
use wanlb::engine::{
    Engine, EngineConfig, L4Checksum, Timestamp, UdpAffinity, UplinkConfig, Verdict,
};
use wanlb::io::fastpath::{LanLink, TC_NEXT, TC_REDIRECT, TcFastPath, UplinkLink};
use wanlb::io::filters::{Filter, SocketFilters};
use wanlb::uplink::{LinkKind, NextHop};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

const LAN_HOST: u32 = u32::from_be_bytes([198, 18, 3, 10]);
const UPLINK_ADDRS: [u32; 2] = [
    u32::from_be_bytes([198, 18, 1, 1]),
    u32::from_be_bytes([198, 18, 2, 1]),
];
const UPLINK_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]];
const GATEWAY_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 0xfe], [2, 0, 0, 0, 2, 0xfe]];
/// Test frames go "to" the loopback device's all-zero address, so the kernel classifies them
/// as sent to this host, as frames addressed to the gateway are.
const HOST_MAC: [u8; 6] = [0; 6];
const LAN_HOST_MAC: [u8; 6] = [2, 0, 0, 0, 3, 10];

/// Set in the copy of the test that runs inside the namespace.
const INSIDE: &str = "WANLB_FASTPATH_NETNS";

/// Interface indexes of the gateway's devices (veth, MTU 1500) in the testbed.
struct Links {
    lan: u32,
    uplinks: [u32; 2],
}

fn ifindex(name: &str) -> u32 {
    wanlb::io::iface::find(name)
        .expect("listing interfaces")
        .unwrap_or_else(|| panic!("no {name} in the gateway namespace"))
        .index
}

/// Runs `body` in the gateway namespace of a testbed of its own (LAN eth0, uplinks eth1 and
/// eth2), by running test `name` again inside it; the testbed is removed afterwards.
fn in_own_netns(name: &str, body: impl FnOnce(&Links)) {
    if std::env::var_os(INSIDE).is_some() {
        let links = Links {
            lan: ifindex("eth0"),
            uplinks: [ifindex("eth1"), ifindex("eth2")],
        };
        return body(&links);
    }
    let tb = Testbed::up();
    let exe = std::env::current_exe().expect("test binary");
    let exe = exe.to_str().expect("test binary path");
    let inside = format!("{INSIDE}=1");
    let out = tb.run(
        "gw",
        &[
            "env",
            &inside,
            exe,
            "--exact",
            name,
            "--nocapture",
            "--test-threads",
            "1",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name} inside its namespace:\n{text}"
    );
}

fn fast_path(links: &Links) -> Arc<TcFastPath> {
    let lan = LanLink {
        ifindex: links.lan,
        addr: Ipv4Addr::new(198, 18, 3, 100),
        prefix_len: 24,
    };
    let uplinks = UPLINK_MACS
        .iter()
        .zip(links.uplinks)
        .map(|(&mac, ifindex)| UplinkLink {
            ifindex,
            link: LinkKind::Ethernet,
            mac,
        })
        .collect();
    let fast = TcFastPath::load(vec![lan], uplinks).unwrap_or_else(|e| {
        panic!("loading the fast path needs root and Linux 6.6 or later (CI has both): {e}")
    });
    for (i, mac) in GATEWAY_MACS.iter().enumerate() {
        fast.set_next_hop(i as u8, Some(NextHop::Gateway(*mac)))
            .expect("uplink map");
    }
    Arc::new(fast)
}

/// The engine and the fast path, called as a worker calls them: a TCP reset is judged by what
/// the fast path carried of its flow, the engine's work for the fast path is carried out after
/// each call, and an expiry goes by what the fast path recorded, read in one batch.
struct Gateway {
    engine: Engine,
    fast: Arc<TcFastPath>,
}

impl std::ops::Deref for Gateway {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl Gateway {
    fn outbound(&self, now: Timestamp, p: &mut [u8], csum: &mut L4Checksum) -> Verdict {
        let carried = self.fast.carried_of_reset(Direction::Outbound, 0, p);
        let verdict = self.engine.outbound_carried(now, p, csum, carried.as_ref());
        self.fast.carry_out(&self.engine);
        verdict
    }

    fn inbound(&self, now: Timestamp, uplink: u8, p: &mut [u8], csum: &mut L4Checksum) -> Verdict {
        let carried = self.fast.carried_of_reset(Direction::Inbound, uplink, p);
        let verdict = (self.engine).inbound_carried(now, uplink, p, csum, carried.as_ref());
        self.fast.carry_out(&self.engine);
        verdict
    }

    fn expire(&self, now: Timestamp) {
        let carried = self.fast.carried().expect("reading the flow maps");
        self.engine.expire(now, &carried);
        self.fast.carry_out(&self.engine);
    }
}

fn engine(fast: &Arc<TcFastPath>) -> Gateway {
    forwarding(fast, vec![])
}

/// The engine of [`engine`], with port forwards.
fn forwarding(fast: &Arc<TcFastPath>, forwards: Vec<Forward>) -> Gateway {
    let engine = Engine::new(EngineConfig {
        uplinks: UPLINK_ADDRS
            .iter()
            .enumerate()
            .map(|(i, &addr)| UplinkConfig {
                name: format!("isp{}", i + 1),
                addr,
                weight: 1,
                tier: 1,
            })
            .collect(),
        pins: vec![],
        affinity_timeout_ms: 600_000,
        timeouts: Timeouts::default(),
        ports: (61000, 65535),
        seed: 7,
        reset_tcp_on_down: true,
        udp_affinity: UdpAffinity::Endpoint,
        limits: wanlb::engine::limits::Limits::unlimited(),
    })
    .with_forwards(forwards)
    .with_fast_path(fast.reaches());
    Gateway {
        engine,
        fast: fast.clone(),
    }
}

/// An IPv4 packet with correct checksums: TCP (with `flags`), UDP (checksum 0 if `flags` is
/// 1: none) or an ICMP echo request/reply (`sport` the identifier, `flags` the type).
fn packet(proto: u8, src: u32, dst: u32, ports: (u16, u16), flags: u8, payload: &[u8]) -> Vec<u8> {
    let p = match proto {
        TCP => Ipv4Packet::tcp(src, dst, ports.0, ports.1, payload)
            .flags(flags)
            .seq(0x1000)
            .ack(0x2000),
        UDP if flags == 1 => Ipv4Packet::udp(src, dst, ports.0, ports.1, payload).no_udp_checksum(),
        UDP => Ipv4Packet::udp(src, dst, ports.0, ports.1, payload),
        _ => {
            let [hi, lo] = ports.0.to_be_bytes();
            Ipv4Packet::icmp(src, dst, flags, 0, [hi, lo, 0, 1], payload)
        }
    };
    p.id(0x1234).build()
}

fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = HOST_MAC.to_vec();
    f.extend_from_slice(&LAN_HOST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(ip);
    f
}

/// What the userspace path delivers: the engine's translation, one TTL less (the header
/// checksum updated as a router does, so a wrong one stays wrong).
fn forwarded(mut translated: Vec<u8>) -> Vec<u8> {
    decrement_ttl(&mut translated);
    translated
}

/// Small xorshift: varied ports and payload lengths (odd ones included), the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A flow the engine has handed to the fast path: the uplink, its external port, and where
/// the engine's clock is.
struct HandedOver {
    proto: u8,
    remote: u32,
    lan_port: u16,
    remote_port: u16,
    uplink: usize,
    ext_port: u16,
    now: u64,
}

/// Runs a flow through the engine until it is handed over: a TCP handshake and one data
/// segment, or two exchanges of UDP or ping.
fn open(engine: &Gateway, proto: u8, remote: u32, lan_port: u16, remote_port: u16) -> HandedOver {
    let mut now = 0;
    let mut out_and_back = |out_flags: u8, in_flags: u8, reply: bool| {
        now += 1;
        let (out_type, in_type) = if proto == ICMP {
            (8, 0)
        } else {
            (out_flags, in_flags)
        };
        let mut p = packet(
            proto,
            LAN_HOST,
            remote,
            (lan_port, remote_port),
            out_type,
            b"x",
        );
        let Verdict::Uplink(u) = engine.outbound(
            Timestamp::from_millis(now),
            &mut p,
            &mut L4Checksum::Complete,
        ) else {
            panic!("the engine dropped an outbound packet");
        };
        let ext_port = u16::from_be_bytes([p[20], p[21]]);
        let ext_port = if proto == ICMP {
            u16::from_be_bytes([p[24], p[25]])
        } else {
            ext_port
        };
        if reply {
            let ports = if proto == ICMP {
                (ext_port, 0)
            } else {
                (remote_port, ext_port)
            };
            let mut r = packet(
                proto,
                remote,
                UPLINK_ADDRS[usize::from(u)],
                ports,
                in_type,
                b"y",
            );
            let verdict = engine.inbound(
                Timestamp::from_millis(now),
                u,
                &mut r,
                &mut L4Checksum::Complete,
            );
            assert_eq!(verdict, Verdict::Tun);
        }
        (usize::from(u), ext_port)
    };
    let (uplink, ext_port) = if proto == TCP {
        out_and_back(SYN, SYN | ACK, true);
        out_and_back(ACK, 0, false);
        out_and_back(ACK, 0, false);
        out_and_back(ACK, ACK, true)
    } else {
        out_and_back(0, 0, true);
        out_and_back(0, 0, true)
    };
    HandedOver {
        proto,
        remote,
        lan_port,
        remote_port,
        uplink,
        ext_port,
        now,
    }
}

impl HandedOver {
    fn outbound(&self, flags: u8, payload: &[u8]) -> Vec<u8> {
        let flags = if self.proto == ICMP { 8 } else { flags };
        let ports = (self.lan_port, self.remote_port);
        packet(self.proto, LAN_HOST, self.remote, ports, flags, payload)
    }

    fn inbound(&self, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (flags, ports) = if self.proto == ICMP {
            (0, (self.ext_port, 0))
        } else {
            (flags, (self.remote_port, self.ext_port))
        };
        let dst = UPLINK_ADDRS[self.uplink];
        packet(self.proto, self.remote, dst, ports, flags, payload)
    }

    /// The engine's translation of `p` (which must go out on this flow's uplink).
    fn engine_out(&self, engine: &Gateway, p: &[u8]) -> Vec<u8> {
        let mut e = p.to_vec();
        let v = engine.outbound(
            Timestamp::from_millis(self.now),
            &mut e,
            &mut L4Checksum::Complete,
        );
        assert_eq!(v, Verdict::Uplink(self.uplink as u8));
        e
    }

    fn engine_in(&self, engine: &Gateway, p: &[u8]) -> Vec<u8> {
        let mut e = p.to_vec();
        let v = engine.inbound(
            Timestamp::from_millis(self.now),
            self.uplink as u8,
            &mut e,
            &mut L4Checksum::Complete,
        );
        assert_eq!(v, Verdict::Tun);
        e
    }
}

fn assert_passed(
    fast: &TcFastPath,
    direction: Direction,
    frame: &[u8],
    arrived_on: u32,
    what: &str,
) {
    let (verdict, out) = fast
        .test_run(direction, frame, arrived_on)
        .expect("test run");
    assert_eq!(
        verdict, TC_NEXT,
        "{what}: the fast path should leave it to the engine"
    );
    assert_eq!(out, frame, "{what}: passed on, but changed");
}

#[test]
fn the_fast_path_translates_byte_for_byte_as_the_engine_does() {
    in_own_netns(
        "the_fast_path_translates_byte_for_byte_as_the_engine_does",
        translates_as_the_engine,
    );
}

fn translates_as_the_engine(links: &Links) {
    let fast = fast_path(links);
    let engine = engine(&fast);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..60u32 {
        let proto = [TCP, UDP, ICMP][case as usize % 3];
        let remote = u32::from_be_bytes([198, 19, 0, 0]) + case;
        let lan_port = 1024 + (rng.next() % 60000) as u16;
        let remote_port = 1 + (rng.next() % 65000) as u16;
        let flow = open(&engine, proto, remote, lan_port, remote_port);
        // UDP without a checksum (0) in every other UDP case: it must stay 0
        let flags = if proto == UDP {
            (case / 3 % 2) as u8
        } else {
            ACK
        };
        let what = format!("case {case}: proto {proto}");
        assert_carried_as_the_engine(&fast, &engine, links, &flow, flags, &mut rng, &what);
    }
}

/// Packets of `flow` with `flags` and payloads of three sizes, up to what fills the MTU (1500)
/// exactly, both ways: the kernel carries each, byte for byte as the engine translates it.
fn assert_carried_as_the_engine(
    fast: &TcFastPath,
    engine: &Gateway,
    links: &Links,
    flow: &HandedOver,
    flags: u8,
    rng: &mut Rng,
    what: &str,
) {
    let proto = flow.proto;
    let from_uplink = links.uplinks[flow.uplink];
    let room = if proto == TCP { 1460 } else { 1472 };
    for size in [rng.next() % room, rng.next() % room, room] {
        let payload: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
        let what = format!("{what}, {size} payload bytes");

        let out = flow.outbound(flags, &payload);
        let (verdict, sent) = fast
            .test_run(Direction::Outbound, &frame(&out), links.lan)
            .expect("test run");
        assert_eq!(verdict, TC_REDIRECT, "{what}: outbound not carried");
        assert_eq!(
            sent[..6],
            GATEWAY_MACS[flow.uplink],
            "{what}: to the uplink's gateway"
        );
        assert_eq!(
            sent[6..12],
            UPLINK_MACS[flow.uplink],
            "{what}: from the uplink"
        );
        assert_eq!(sent[12..14], [0x08, 0x00], "{what}");
        assert_bytes(
            &sent[14..],
            &forwarded(flow.engine_out(engine, &out)),
            &what,
        );

        let back = flow.inbound(flags, &payload);
        let (verdict, delivered) = fast
            .test_run(Direction::Inbound, &frame(&back), from_uplink)
            .expect("test run");
        assert_eq!(verdict, TC_REDIRECT, "{what}: inbound not carried");
        assert_bytes(
            &delivered[14..],
            &forwarded(flow.engine_in(engine, &back)),
            &what,
        );
    }
}

#[test]
fn a_forwarded_connection_is_carried_as_the_engine_translates_it() {
    in_own_netns(
        "a_forwarded_connection_is_carried_as_the_engine_translates_it",
        carries_forwarded_connections_as_the_engine,
    );
}

/// A connection from outside to tcp:8080 of isp2, forwarded to the LAN host's port 80: the
/// engine hands it over like any other, keyed by the LAN host's port outbound and the
/// forwarded port inbound, and the kernel translates it as the engine does.
fn carries_forwarded_connections_as_the_engine(links: &Links) {
    let fast = fast_path(links);
    let web = Forward {
        proto: TCP,
        port: 8080,
        uplink: 1,
        host: LAN_HOST,
        host_port: 80,
    };
    let engine = forwarding(&fast, vec![web]);
    let remote = u32::from_be_bytes([198, 19, 7, 7]);
    let flow = HandedOver {
        proto: TCP,
        remote,
        lan_port: 80,
        remote_port: 50000,
        uplink: 1,
        ext_port: 8080,
        now: 1,
    };
    // the remote's SYN, the server's SYN-ACK, the remote's ACK, the server's first data: on
    // the fast path from then on
    flow.engine_in(&engine, &flow.inbound(SYN, b""));
    flow.engine_out(&engine, &flow.outbound(SYN | ACK, b""));
    flow.engine_in(&engine, &flow.inbound(ACK, b""));
    flow.engine_out(&engine, &flow.outbound(ACK, b"x"));
    assert_eq!(fast.flow_counts().0, 1, "handed over");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    assert_carried_as_the_engine(&fast, &engine, links, &flow, ACK, &mut rng, "forwarded");
}

#[test]
fn to_a_point_to_point_uplink_the_packet_goes_without_a_mac() {
    in_own_netns(
        "to_a_point_to_point_uplink_the_packet_goes_without_a_mac",
        carries_to_a_point_to_point_uplink,
    );
}

/// The outbound program, to uplinks that are point-to-point links (PPP, TUN, WireGuard): the
/// kernel takes the Ethernet header off on the way there, so none is written. (A test run
/// hands over Ethernet frames only: the inbound program for such uplinks, whose packets have
/// no link-layer header, runs on real packets in tests/point_to_point.rs.)
fn carries_to_a_point_to_point_uplink(links: &Links) {
    let fast = fast_path(links);
    let engine = engine(&fast);
    for uplink in 0..2 {
        fast.set_next_hop(uplink, Some(NextHop::Peer))
            .expect("uplink map");
    }
    for (case, proto) in [TCP, UDP, ICMP].into_iter().enumerate() {
        let remote = u32::from_be_bytes([198, 19, 0, 100 + case as u8]);
        let flow = open(&engine, proto, remote, 40000, 443);
        let out = flow.outbound(ACK, b"over the line");
        let f = frame(&out);
        let (verdict, sent) = fast
            .test_run(Direction::Outbound, &f, links.lan)
            .expect("test run");
        let what = format!("proto {proto}");
        assert_eq!(verdict, TC_REDIRECT, "{what}: not carried");
        assert_eq!(sent[..14], f[..14], "{what}: no MAC written");
        assert_bytes(
            &sent[14..],
            &forwarded(flow.engine_out(&engine, &out)),
            &what,
        );
    }
}

/// Equal bytes; on a difference, the first differing offset and the headers of both.
fn assert_bytes(kernel: &[u8], engine: &[u8], what: &str) {
    if kernel != engine {
        let at = kernel.iter().zip(engine).position(|(a, b)| a != b);
        panic!(
            "{what}: the kernel's packet differs from the engine's at byte {at:?} \
             (lengths {} and {})\nkernel: {:02x?}\nengine: {:02x?}",
            kernel.len(),
            engine.len(),
            &kernel[..kernel.len().min(40)],
            &engine[..engine.len().min(40)]
        );
    }
}

#[test]
fn what_the_engine_must_see_passes_the_fast_path_untouched() {
    in_own_netns(
        "what_the_engine_must_see_passes_the_fast_path_untouched",
        passes_what_the_engine_must_see,
    );
}

fn passes_what_the_engine_must_see(links: &Links) {
    let fast = fast_path(links);
    let engine = engine(&fast);
    let tcp = open(
        &engine,
        TCP,
        u32::from_be_bytes([198, 19, 1, 1]),
        40000,
        443,
    );
    let udp = open(&engine, UDP, u32::from_be_bytes([198, 19, 1, 2]), 40001, 53);
    let (lan, tcp_uplink) = (links.lan, links.uplinks[tcp.uplink]);
    let out =
        |p: &[u8], what: &str| assert_passed(&fast, Direction::Outbound, &frame(p), lan, what);

    // connection state changes, both ways
    for flags in [SYN, SYN | ACK, FIN | ACK, RST] {
        let what = format!("TCP flags {flags:#04x}");
        out(&tcp.outbound(flags, b""), &what);
        let back = frame(&tcp.inbound(flags, b""));
        assert_passed(&fast, Direction::Inbound, &back, tcp_uplink, &what);
    }
    // a reply arriving on the other uplink (two uplinks may share an address)
    let back = frame(&tcp.inbound(ACK, b"wrong link"));
    let other = links.uplinks[1 - tcp.uplink];
    assert_passed(
        &fast,
        Direction::Inbound,
        &back,
        other,
        "a reply on the other uplink",
    );
    // TTL 1: the kernel answers with time exceeded
    let mut p = udp.outbound(0, b"ttl");
    p[8] = 1;
    fix_ip_checksum(&mut p);
    out(&p, "TTL 1");
    // IP options (IHL 6), a fragment, a total length beyond what arrived
    let mut p = udp.outbound(0, b"opts");
    p.splice(20..20, [1, 1, 1, 0]);
    p[0] = 0x46;
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    fix_ip_checksum(&mut p);
    out(&p, "IP options");
    let mut p = udp.outbound(0, b"frag");
    p[6] = 0x20; // more fragments
    fix_ip_checksum(&mut p);
    out(&p, "a first fragment");
    let mut p = udp.outbound(0, b"short");
    p[3] += 1;
    fix_ip_checksum(&mut p);
    out(&p, "a truncated packet");
    // a header whose checksum is wrong: the kernel drops it, the fast path must not forward it
    let mut p = udp.outbound(0, b"bad sum");
    p[10] ^= 0x5a;
    out(&p, "a wrong IPv4 header checksum");
    // one byte more than the uplink's MTU (1500), not a GSO packet: the kernel answers with
    // "fragmentation needed"
    out(
        &udp.outbound(0, &[7u8; 1500 - 28 + 1]),
        "one byte over the MTU",
    );
    // a frame for another host on the link
    let mut f = frame(&udp.outbound(0, b"other"));
    f[..6].copy_from_slice(&[2, 0, 0, 0, 9, 9]);
    assert_passed(
        &fast,
        Direction::Outbound,
        &f,
        lan,
        "a frame for another MAC address",
    );
    // flows the engine has not handed over: another port, ICMP errors
    let mut unknown = udp.outbound(0, b"?");
    unknown[20..22].copy_from_slice(&40999u16.to_be_bytes());
    out(&unknown, "an unknown flow");
    let remote = u32::from_be_bytes([198, 19, 1, 2]);
    let error = packet(ICMP, remote, UPLINK_ADDRS[udp.uplink], (0, 0), 3, &[0; 28]);
    let udp_uplink = links.uplinks[udp.uplink];
    assert_passed(
        &fast,
        Direction::Inbound,
        &frame(&error),
        udp_uplink,
        "an ICMP error",
    );
    // an unanswered ping never leaves the engine
    let ping = packet(ICMP, LAN_HOST, remote, (77, 0), 8, b"");
    for now in 0..10 {
        let mut p = ping.clone();
        engine.outbound(
            Timestamp::from_millis(now),
            &mut p,
            &mut L4Checksum::Complete,
        );
    }
    out(&ping, "an unanswered ping");

    // IPv6 of a flow the engine never handed over (its IPv4 twin was), both ways: the
    // engine's alone
    let v6 = |ports: [u8; 4]| {
        let mut f = HOST_MAC.to_vec();
        f.extend_from_slice(&LAN_HOST_MAC);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 12, 17, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        f.extend_from_slice(&[0x20, 1, 0, 2, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ports);
        f.extend_from_slice(&[0, 12, 0, 0, b'v', b'6', b'!', b'!']);
        f
    };
    // the ports of a flow the engine handed over, and a packet of its length
    let [a, b] = 40001u16.to_be_bytes();
    let ipv6 = v6([a, b, 0, 53]);
    assert_passed(&fast, Direction::Outbound, &ipv6, lan, "IPv6 from the LAN");
    assert_passed(
        &fast,
        Direction::Inbound,
        &v6([0, 53, a, b]),
        udp_uplink,
        "IPv6 from an uplink",
    );

    // and what was handed over is still carried, up to exactly the MTU
    let full = frame(&udp.outbound(0, &[7u8; 1500 - 28]));
    let (verdict, _) = fast
        .test_run(Direction::Outbound, &full, lan)
        .expect("test run");
    assert_eq!(verdict, TC_REDIRECT, "a packet of exactly the MTU");
}

#[test]
fn any_frame_is_left_alone_or_translated_as_the_engine_would() {
    in_own_netns(
        "any_frame_is_left_alone_or_translated_as_the_engine_would",
        never_disagrees_with_the_engine,
    );
}

/// Packets of handed-over flows with random header bytes changed, and some cut short: whatever
/// the fast path does with one must be passing it on untouched, or what the engine (and
/// the kernel's forwarding) would have made of it.
fn never_disagrees_with_the_engine(links: &Links) {
    let fast = fast_path(links);
    let engine = engine(&fast);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let flows: Vec<HandedOver> = [TCP, UDP, ICMP]
        .iter()
        .enumerate()
        .map(|(i, &proto)| {
            let remote = u32::from_be_bytes([198, 19, 2, i as u8]);
            open(&engine, proto, remote, 30000 + i as u16, 8000)
        })
        .collect();
    let (mut carried, mut passed) = (0, 0);
    for round in 0..3000 {
        let flow = &flows[round % 3];
        let inbound = round % 2 == 1;
        let payload: Vec<u8> = (0..rng.next() % 64).map(|_| rng.next() as u8).collect();
        let mut p = if inbound {
            flow.inbound(ACK, &payload)
        } else {
            flow.outbound(ACK, &payload)
        };
        // change up to three bytes of the headers, keeping the addresses, and sometimes
        // cut the packet short
        for _ in 0..1 + rng.next() % 3 {
            let at = (rng.next() % 48) as usize;
            if at < p.len() && !(12..20).contains(&at) {
                p[at] = rng.next() as u8;
            }
        }
        // mostly with a header checksum that fits the change, so that the mutation reaches
        // the checks after that one
        if !rng.next().is_multiple_of(8) {
            // over the 20 bytes the program checks, whatever the mutated version and length
            p[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&p[..20], 0);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        if rng.next().is_multiple_of(8) {
            p.truncate(p.len() - (rng.next() as usize % p.len().min(8)));
        }
        let (direction, arrived_on) = if inbound {
            (Direction::Inbound, links.uplinks[flow.uplink])
        } else {
            (Direction::Outbound, links.lan)
        };
        let f = frame(&p);
        let (verdict, out) = fast.test_run(direction, &f, arrived_on).expect("test run");
        let what = format!("round {round}: {:02x?}", &p[..p.len().min(48)]);
        if verdict == TC_NEXT {
            assert_eq!(out, f, "{what}: passed on, but changed");
            passed += 1;
            continue;
        }
        assert_eq!(verdict, TC_REDIRECT, "{what}");
        let mut e = p.clone();
        let now = Timestamp::from_millis(flow.now);
        let v = if inbound {
            engine.inbound(now, flow.uplink as u8, &mut e, &mut L4Checksum::Complete)
        } else {
            engine.outbound(now, &mut e, &mut L4Checksum::Complete)
        };
        let expected = if inbound {
            Verdict::Tun
        } else {
            Verdict::Uplink(flow.uplink as u8)
        };
        assert_eq!(
            v, expected,
            "{what}: the fast path carried what the engine would not"
        );
        assert_bytes(&out[14..], &forwarded(e), &what);
        carried += 1;
    }
    // both outcomes were exercised
    assert!(
        carried > 300 && passed > 300,
        "carried {carried}, passed {passed}"
    );
}

#[test]
fn socket_filters_keep_only_what_is_wanlbs() {
    in_own_netns(
        "socket_filters_keep_only_what_is_wanlbs",
        filters_keep_only_what_is_wanlbs,
    );
}

/// `packet` behind an Ethernet header of `ethertype`.
fn ethernet(ethertype: u16, packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

fn filters_keep_only_what_is_wanlbs(_: &Links) {
    let me = [198, 18, 1, 1];
    let there = [198, 19, 0, 1];
    // tcp:8080 and udp:5060 forwarded to LAN hosts
    let forwarded = [(TCP, 8080), (UDP, 5060)];
    let filters = SocketFilters::load(
        me.into(),
        LinkKind::Ethernet,
        (61000, 65535),
        &forwarded,
        22348,
    )
    .expect("filters load");
    let keeps = |filter, f: &[u8]| filters.keeps(filter, f).expect("test run");
    let port = |proto, dst: [u8; 4], port: u16| {
        let p = match proto {
            TCP => Ipv4Packet::tcp(there, dst, 443, port, b""),
            UDP => Ipv4Packet::udp(there, dst, 53, port, b""),
            _ => Ipv4Packet::raw(proto, there, dst, &[0, 0, 0xee, 0x48, 0, 0, 0, 0]),
        };
        ethernet(0x0800, &p.build())
    };
    let icmp = |dst: [u8; 4], icmp_type: u8, id: u16| {
        let [hi, lo] = id.to_be_bytes();
        let p = Ipv4Packet::icmp(there, dst, icmp_type, 0, [hi, lo, 0, 1], b"");
        ethernet(0x0800, &p.build())
    };
    use Filter::{Forwards, Probes, Replies};
    // the NAT pool's ports, both ends of it, for TCP and UDP
    assert!(keeps(Replies, &port(TCP, me, 61000)));
    assert!(keeps(Replies, &port(UDP, me, 65535)));
    // the gateway's own services and ephemeral ports stay with the kernel
    assert!(!keeps(Replies, &port(TCP, me, 80)));
    assert!(!keeps(Replies, &port(UDP, me, 60999)));
    // the forwarded ports come to wanlb through sockets of their own, each for its own
    // protocol, and their neighbours not
    assert!(keeps(Forwards, &port(TCP, me, 8080)));
    assert!(keeps(Forwards, &port(UDP, me, 5060)));
    assert!(!keeps(Replies, &port(TCP, me, 8080)));
    assert!(!keeps(Replies, &port(UDP, me, 5060)));
    for (proto, p) in [
        (UDP, 8080),
        (TCP, 5060),
        (TCP, 8079),
        (TCP, 8081),
        (UDP, 5061),
    ] {
        assert!(!keeps(Replies, &port(proto, me, p)), "{proto} {p}");
        assert!(!keeps(Forwards, &port(proto, me, p)), "{proto} {p}");
    }
    // nothing of the pool, of ICMP or of another address goes to the forwards' sockets
    assert!(!keeps(Forwards, &port(TCP, me, 61000)));
    assert!(!keeps(Forwards, &icmp(me, 3, 0)));
    assert!(!keeps(Replies, &port(TCP, [198, 18, 1, 2], 8080)));
    assert!(!keeps(Forwards, &port(TCP, [198, 18, 1, 2], 8080)));
    assert!(!keeps(Probes, &port(TCP, me, 8080)));
    // other addresses, protocols and ethertypes
    assert!(!keeps(Replies, &port(TCP, [198, 18, 1, 2], 61000)));
    assert!(!keeps(Replies, &port(47, me, 61000)));
    let arp = ethernet(0x0806, &Ipv4Packet::udp(there, me, 53, 61000, b"").build());
    assert!(!keeps(Replies, &arp));
    // IP options move the ports
    let with_options = Ipv4Packet::udp(there, me, 53, 62000, b"").options(&[1, 1, 1, 0]);
    assert!(keeps(Replies, &ethernet(0x0800, &with_options.build())));
    // a frame too short to hold its ports
    assert!(!keeps(Replies, &port(UDP, me, 61000)[..36]));
    // ICMP: a LAN host's ping translated into the pool is the data path's; the health
    // probes' answers are the probe socket's alone; errors go to the data path
    assert!(keeps(Replies, &icmp(me, 0, 61000)));
    assert!(!keeps(Probes, &icmp(me, 0, 61000)));
    assert!(!keeps(Replies, &icmp(me, 0, 22348)));
    assert!(keeps(Probes, &icmp(me, 0, 22348)));
    assert!(keeps(Replies, &icmp(me, 3, 0)));
    assert!(keeps(Replies, &icmp(me, 11, 0)));
    assert!(!keeps(Probes, &icmp(me, 3, 22348)));
    assert!(!keeps(Probes, &icmp([198, 18, 1, 2], 0, 22348)));
    assert!(!keeps(Probes, &port(UDP, me, 22348)));

    // on a point-to-point link the same, its packets seen from the IP header on
    let bare = SocketFilters::load(
        me.into(),
        LinkKind::PointToPoint,
        (61000, 65535),
        &forwarded,
        22348,
    )
    .expect("filters load");
    let bare_keeps = |filter, f: &[u8]| bare.keeps(filter, &f[14..]).expect("test run");
    assert!(bare_keeps(Replies, &port(TCP, me, 61000)));
    assert!(bare_keeps(Replies, &port(UDP, me, 65535)));
    assert!(bare_keeps(Forwards, &port(TCP, me, 8080)));
    assert!(!bare_keeps(Replies, &port(TCP, me, 8080)));
    assert!(!bare_keeps(Replies, &port(UDP, me, 60999)));
    assert!(!bare_keeps(Replies, &port(UDP, [198, 18, 1, 2], 61000)));
    assert!(bare_keeps(Replies, &icmp(me, 3, 0)));
    assert!(!bare_keeps(Replies, &icmp(me, 0, 22348)));
    assert!(bare_keeps(Probes, &icmp(me, 0, 22348)));
    assert!(!bare_keeps(Probes, &icmp(me, 0, 61000)));
}

#[test]
fn a_reset_is_judged_by_the_window_the_fast_path_carried() {
    in_own_netns(
        "a_reset_is_judged_by_the_window_the_fast_path_carried",
        judges_resets_by_what_was_carried,
    );
}

/// The engine sees a carried flow's SYN, FIN and RST only; the programs record what the
/// segments they carry acknowledge, both ways, so that a reset is judged by the receiver's
/// window as it is now, not as it was at the hand-over.
fn judges_resets_by_what_was_carried(links: &Links) {
    let fast = fast_path(links);
    let engine = engine(&fast);
    let reset_after = Timeouts::default().tcp_reset;
    let segment = |src: u32, dst: u32, ports: (u16, u16), flags: u8, seq: u32, ack: u32| {
        Ipv4Packet::tcp(src, dst, ports.0, ports.1, b"")
            .flags(flags)
            .seq(seq)
            .ack(ack)
            .window(1000)
            .build()
    };
    for (i, from_lan) in [true, false].into_iter().enumerate() {
        let remote = u32::from_be_bytes([198, 19, 3, i as u8]);
        // every segment of the handshake acknowledges 0x2000 (see `packet`)...
        let flow = open(&engine, TCP, remote, 41000 + i as u16, 443);
        let ext = UPLINK_ADDRS[flow.uplink];
        let (lan_ports, remote_ports) = (
            (flow.lan_port, flow.remote_port),
            (flow.remote_port, flow.ext_port),
        );
        // ...then a megabyte goes by, through the kernel only: the receiver of the reset
        // below now expects 1,000,000 bytes further
        let far = 0x2000 + 1_000_000;
        let carried = if from_lan {
            // the LAN host's acknowledgements pass outbound
            let f = frame(&segment(LAN_HOST, remote, lan_ports, ACK, 0x1000, far));
            fast.test_run(Direction::Outbound, &f, links.lan)
        } else {
            let f = frame(&segment(remote, ext, remote_ports, ACK, 0x1000, far));
            fast.test_run(Direction::Inbound, &f, links.uplinks[flow.uplink])
        };
        assert_eq!(carried.expect("test run").0, TC_REDIRECT);
        let rst = |seq| {
            let (mut p, v) = if from_lan {
                (
                    segment(remote, ext, remote_ports, RST, seq, 0),
                    Verdict::Tun,
                )
            } else {
                let p = segment(LAN_HOST, remote, lan_ports, RST | ACK, seq, 0x1000);
                (p, Verdict::Uplink(flow.uplink as u8))
            };
            let now = Timestamp::from_millis(flow.now);
            let got = if from_lan {
                engine.inbound(now, flow.uplink as u8, &mut p, &mut L4Checksum::Complete)
            } else {
                engine.outbound(now, &mut p, &mut L4Checksum::Complete)
            };
            assert_eq!(got, v, "a reset is always forwarded");
        };
        let withdrawn = fast.flow_counts().1;
        // where the window was when the engine last saw it: stale, nothing changes
        rst(0x2000);
        engine.expire(Timestamp::from_millis(flow.now + reset_after));
        assert_eq!(
            engine.flow_count(),
            1,
            "from_lan {from_lan}: a stale reset taken"
        );
        assert_eq!(fast.flow_counts().1, withdrawn);
        // where it is now: taken; the flow comes back to the engine and ends after the
        // reset timeout
        rst(far + 999);
        assert_eq!(fast.flow_counts().1, withdrawn + 1);
        engine.expire(Timestamp::from_millis(flow.now + reset_after));
        assert_eq!(
            engine.flow_count(),
            0,
            "from_lan {from_lan}: the reset not taken"
        );
    }
}

#[test]
fn what_the_fast_path_carried_is_read_back_in_one_batch() {
    in_own_netns(
        "what_the_fast_path_carried_is_read_back_in_one_batch",
        reads_back_what_was_carried,
    );
}

/// The engine's view of a handed-over flow's key.
fn flow_key(f: &HandedOver) -> FlowKey {
    FlowKey {
        int_addr: LAN_HOST,
        rem_addr: f.remote,
        int_port: f.lan_port,
        rem_port: if f.proto == ICMP { 0 } else { f.remote_port },
        proto: f.proto,
    }
}

/// Expiry, a dead uplink's resets and the busiest destinations go by what the programs
/// recorded of each flow, read from both maps at once: each flow's bytes both ways, when it
/// was last carried, each side's last acknowledgement. More flows than one batch of the read
/// holds, so that it goes on from batch to batch; a TCP reset's flow is found from either side.
fn reads_back_what_was_carried(links: &Links) {
    let fast = fast_path(links);
    let engine = engine(&fast);
    let flows: Vec<HandedOver> = (0..5000u32)
        .map(|i| {
            let remote = u32::from_be_bytes([198, 19, 0, 0]) + 256 + i;
            open(&engine, [UDP, ICMP][i as usize % 2], remote, 20000, 53)
        })
        .collect();
    let tcp = open(
        &engine,
        TCP,
        u32::from_be_bytes([198, 19, 100, 1]),
        41000,
        443,
    );
    assert_eq!(fast.flow_counts().0, 5001, "handed over");
    // the programs carry a datagram each way of the first flow, and a segment of the TCP
    // one from the LAN host, acknowledging 0x2000 with a window of 1000
    let first = &flows[0];
    let (out, back) = (first.outbound(0, b"12345"), first.inbound(0, b"678"));
    let carry = |direction, p: &[u8], on| {
        let (verdict, _) = fast.test_run(direction, &frame(p), on).expect("test run");
        assert_eq!(verdict, TC_REDIRECT);
    };
    carry(Direction::Outbound, &out, links.lan);
    carry(Direction::Inbound, &back, links.uplinks[first.uplink]);
    let ack = Ipv4Packet::tcp(LAN_HOST, tcp.remote, tcp.lan_port, tcp.remote_port, b"")
        .flags(ACK)
        .seq(0x1000)
        .ack(0x2000)
        .window(1000)
        .build();
    carry(Direction::Outbound, &ack, links.lan);

    let carried = fast.carried().expect("reading the flow maps");
    assert_eq!(carried.len(), 5001);
    let of = |f: &HandedOver| *carried.get(&flow_key(f)).expect("a flow handed over");
    let c = of(first);
    assert_eq!(
        c.bytes,
        (out.len() + back.len()) as u64,
        "both ways, IP bytes"
    );
    assert!(c.idle_ms.is_some_and(|ms| ms < 60_000), "{c:?}");
    assert_eq!(c.acks, [None, None], "no TCP");
    for f in &flows[1..] {
        assert_eq!((of(f).bytes, of(f).idle_ms), (0, None), "never carried");
    }
    let acked = Some(Acked {
        ack: 0x2000,
        window: 1000,
    });
    assert_eq!(of(&tcp).acks, [acked, None]);
    assert_eq!(of(&tcp).bytes, ack.len() as u64);

    // a reset of the TCP flow: its flow is found from the LAN host's side and from the
    // remote's, with what both sides recorded
    let ports = (tcp.lan_port, tcp.remote_port);
    let rst_out = packet(TCP, LAN_HOST, tcp.remote, ports, RST, b"");
    let found = fast.carried_of_reset(Direction::Outbound, 0, &rst_out);
    assert_eq!(found.map(|c| (c.acks, c.bytes)), Some(([acked, None], 40)));
    let to_us = (tcp.remote_port, tcp.ext_port);
    let ext = UPLINK_ADDRS[tcp.uplink];
    let rst_in = packet(TCP, tcp.remote, ext, to_us, RST | ACK, b"");
    let uplink = tcp.uplink as u8;
    let found = fast.carried_of_reset(Direction::Inbound, uplink, &rst_in);
    assert_eq!(found.map(|c| (c.acks, c.bytes)), Some(([acked, None], 40)));
    // nothing is looked up for what is no reset, and a reset of no flow finds none
    let data = packet(TCP, LAN_HOST, tcp.remote, ports, ACK, b"");
    assert_eq!(fast.carried_of_reset(Direction::Outbound, 0, &data), None);
    let stranger = packet(TCP, LAN_HOST, tcp.remote, (41001, 443), RST, b"");
    assert_eq!(
        fast.carried_of_reset(Direction::Outbound, 0, &stranger),
        None
    );
    assert_eq!(
        fast.carried_of_reset(Direction::Inbound, 1 - uplink, &rst_in),
        None,
        "on the other uplink"
    );
}

#[test]
fn an_uplinks_flows_follow_its_interface_when_it_comes_back_as_a_new_one() {
    in_own_netns(
        "an_uplinks_flows_follow_its_interface_when_it_comes_back_as_a_new_one",
        follows_a_new_interface,
    );
}

fn follows_a_new_interface(links: &Links) {
    let fast = fast_path(links);
    let engine = engine(&fast);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let flow = open(&engine, UDP, u32::from_be_bytes([198, 19, 0, 1]), 40000, 53);
    assert_carried_as_the_engine(&fast, &engine, links, &flow, 0, &mut rng, "before");

    // the uplink's interface comes back as a new one (pppd's redial): here another veth
    let made = std::process::Command::new("ip")
        .args([
            "link", "add", "new1", "type", "veth", "peer", "name", "new1p",
        ])
        .status()
        .expect("running ip");
    assert!(made.success(), "ip link add new1");
    let new = ifindex("new1");
    let uplink = flow.uplink as u8;
    fast.reattach_uplink(uplink, new, UPLINK_MACS[flow.uplink])
        .expect("attaching to the new interface");
    fast.set_next_hop(uplink, Some(NextHop::Gateway(GATEWAY_MACS[flow.uplink])))
        .expect("uplink map");
    let mut moved = Links {
        lan: links.lan,
        uplinks: links.uplinks,
    };
    moved.uplinks[flow.uplink] = new;
    // the flow handed over before goes on from the new interface, and a new one is carried
    assert_carried_as_the_engine(&fast, &engine, &moved, &flow, 0, &mut rng, "moved");
    let reply = frame(&flow.inbound(0, b"late"));
    assert_passed(
        &fast,
        Direction::Inbound,
        &reply,
        links.uplinks[flow.uplink],
        "from the old interface",
    );
    // a new flow on the same uplink (the same LAN socket keeps its uplink)
    let later = open(&engine, UDP, u32::from_be_bytes([198, 19, 0, 2]), 40000, 53);
    assert_eq!(later.uplink, flow.uplink);
    assert_carried_as_the_engine(&fast, &engine, &moved, &later, 0, &mut rng, "new");
}
