//! The kernel fast path against the engine, for IPv6: once the engine has handed over a flow
//! of a NAT66 line or of an NPTv6 line, the eBPF programs must produce, byte for byte, the
//! packet the engine produces, less the one hop the kernel's forwarding takes off on the
//! userspace path; and they must leave alone everything that is the engine's to see. As in
//! tests/fastpath.rs, the programs run through BPF_PROG_TEST_RUN inside the gateway namespace
//! of a testbed of the test's own (root and Linux 6.6 or later).

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::Testbed;
use wanlb_testkit::checksum::{checksum, sum};

use wanlb::engine::family::V6;
use wanlb::engine::flow::{FlowKey, Timeouts};
use wanlb::engine::select::Prefix;
use wanlb::engine::{
    Direction, Engine, EngineConfig, L4Checksum, Timestamp, UdpAffinity, Uplink6, UplinkConfig,
    Verdict,
};
use wanlb::io::fastpath::{LanLink, LanLink6, TC_NEXT, TC_REDIRECT, TcFastPath, UplinkLink};
use wanlb::uplink::{LinkKind, NextHop};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// The LAN, fd00:3::/64, and its host ::10.
const LAN_NET: u128 = 0xfd00_0003_u128 << 96;
const LAN_HOST: u128 = LAN_NET | 0x10;
/// Line 0 translates to its address (NAT66), line 1 by its prefix (NPTv6).
const LINE0_ADDR: u128 = 0x2001_0002_0000_0001_u128 << 64 | 2;
const LINE1_PREFIX: u128 = 0x2001_0002_0000_0100_u128 << 64;
const UPLINK_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]];
const GATEWAY_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 0xfe], [2, 0, 0, 0, 2, 0xfe]];
/// The lines' IPv6 routers: not their IPv4 gateways.
const ROUTER_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 0x66], [2, 0, 0, 0, 2, 0x66]];
const HOST_MAC: [u8; 6] = [0; 6];
const LAN_HOST_MAC: [u8; 6] = [2, 0, 0, 0, 3, 10];

const INSIDE: &str = "WANLB_FASTPATH6_NETNS";

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

/// Runs `body` in the gateway namespace of a testbed of its own, by running test `name`
/// again inside it; the testbed is removed afterwards.
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
    let args = [
        "env",
        &inside,
        exe,
        "--exact",
        name,
        "--nocapture",
        "--test-threads",
        "1",
    ];
    let out = tb.run("gw", &args);
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
    let mut fast = TcFastPath::load(vec![lan], uplinks).unwrap_or_else(|e| {
        panic!("loading the fast path needs root and Linux 6.6 or later (CI has both): {e}")
    });
    fast.set_lans6(vec![LanLink6 {
        ifindex: links.lan,
        prefix: Prefix::masked(LAN_NET, 64).unwrap(),
    }]);
    for i in 0..2 {
        fast.set_next_hop(i, Some(NextHop::Gateway(GATEWAY_MACS[usize::from(i)])))
            .expect("uplink map");
        fast.set_next_hop6(i, Some(NextHop::Gateway(ROUTER_MACS[usize::from(i)])))
            .expect("uplink map");
    }
    Arc::new(fast)
}

/// The engine and the fast path, called as a worker calls them.
struct Gateway {
    engine: Engine,
    fast: Arc<TcFastPath>,
}

impl Gateway {
    fn new(fast: &Arc<TcFastPath>) -> Gateway {
        let uplinks = (1..=2)
            .map(|i| UplinkConfig {
                name: format!("isp{i}"),
                addr: u32::from_be_bytes([198, 18, i, 1]),
                weight: 1,
                tier: 1,
            })
            .collect();
        let engine = Engine::new(EngineConfig {
            uplinks,
            pins: vec![],
            affinity_timeout_ms: 600_000,
            timeouts: Timeouts::default(),
            ports: (61000, 65535),
            seed: 7,
            reset_tcp_on_down: true,
            udp_affinity: UdpAffinity::Destination,
            limits: wanlb::engine::limits::Limits::unlimited(),
        })
        .with_lan_nets6(vec![Prefix::masked(LAN_NET, 64).unwrap()])
        .with_fast_path(fast.reaches())
        .with_fast_path6(fast.reaches6());
        let nat66 = Uplink6 {
            addr: Some(LINE0_ADDR),
            prefix: None,
            up: true,
        };
        let npt = Uplink6 {
            addr: None,
            prefix: Prefix::masked(LINE1_PREFIX, 56),
            up: true,
        };
        engine.set_uplink6(0, nat66);
        engine.set_uplink6(1, npt);
        Gateway {
            engine,
            fast: fast.clone(),
        }
    }

    fn outbound(&self, now: u64, p: &mut [u8]) -> Verdict {
        let carried = self.fast.carried_of_reset(Direction::Outbound, 0, p);
        let now = Timestamp::from_millis(now);
        let csum = &mut L4Checksum::Complete;
        let verdict = (self.engine).outbound_carried(now, p, csum, carried.as_ref());
        self.fast.carry_out(&self.engine);
        verdict
    }

    fn inbound(&self, now: u64, uplink: u8, p: &mut [u8]) -> Verdict {
        let carried = self.fast.carried_of_reset(Direction::Inbound, uplink, p);
        let now = Timestamp::from_millis(now);
        let csum = &mut L4Checksum::Complete;
        let verdict = (self.engine).inbound_carried(now, uplink, p, csum, carried.as_ref());
        self.fast.carry_out(&self.engine);
        verdict
    }
}

/// An IPv6 packet with a right transport checksum (UDP's 0, none, if `flags` is 1): TCP with
/// `flags`, UDP, or an ICMPv6 echo (`ports.0` its identifier, `flags` its type).
fn packet(proto: u8, src: u128, dst: u128, ports: (u16, u16), flags: u8, data: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    let at = match proto {
        TCP => {
            l4.extend_from_slice(&ports.0.to_be_bytes());
            l4.extend_from_slice(&ports.1.to_be_bytes());
            l4.extend_from_slice(&0x1000u32.to_be_bytes());
            l4.extend_from_slice(&0x2000u32.to_be_bytes());
            l4.extend_from_slice(&[0x50, flags, 0x72, 0x10, 0, 0, 0, 0]);
            16
        }
        UDP => {
            l4.extend_from_slice(&ports.0.to_be_bytes());
            l4.extend_from_slice(&ports.1.to_be_bytes());
            l4.extend_from_slice(&(8 + data.len() as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            6
        }
        _ => {
            l4.extend_from_slice(&[flags, 0, 0, 0]);
            l4.extend_from_slice(&ports.0.to_be_bytes());
            l4.extend_from_slice(&[0, 1]);
            2
        }
    };
    l4.extend_from_slice(data);
    let pseudo = sum(&src.to_be_bytes(), 0)
        + sum(&dst.to_be_bytes(), 0)
        + l4.len() as u64
        + u64::from(proto);
    if !(proto == UDP && flags == 1) {
        let c = checksum(&l4, pseudo);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = vec![0x60, 0x01, 0x23, 0x45];
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(&[proto, 64]);
    p.extend_from_slice(&src.to_be_bytes());
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(&l4);
    p
}

/// Gives the TCP segment of the IPv6 packet `p` the sequence number `seq`, its checksum
/// updated.
fn set_seq(p: &mut [u8], seq: u32) {
    p[44..48].copy_from_slice(&seq.to_be_bytes());
    p[56..58].fill(0);
    let pseudo = sum(&p[8..40], 0) + (p.len() - 40) as u64 + u64::from(TCP);
    let c = checksum(&p[40..], pseudo);
    p[56..58].copy_from_slice(&c.to_be_bytes());
}

fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = HOST_MAC.to_vec();
    f.extend_from_slice(&LAN_HOST_MAC);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(ip);
    f
}

/// What the userspace path delivers: the engine's translation, one hop less.
fn forwarded(mut translated: Vec<u8>) -> Vec<u8> {
    translated[7] -= 1;
    translated
}

fn addr_at(p: &[u8], at: usize) -> u128 {
    u128::from_be_bytes(p[at..at + 16].try_into().unwrap())
}

/// Small xorshift: varied ports and payload lengths, the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A flow the engine has handed to the fast path: its line, the address and port the remote
/// end sees, and where the engine's clock is.
struct HandedOver {
    proto: u8,
    remote: u128,
    lan_port: u16,
    remote_port: u16,
    uplink: u8,
    ext: (u128, u16),
    now: u64,
}

/// Runs a flow through the engine until it is handed over: a TCP handshake and data, or two
/// exchanges of UDP or ping.
fn open(gw: &Gateway, proto: u8, remote: u128, lan_port: u16, remote_port: u16) -> HandedOver {
    let mut now = 0;
    let mut out_and_back = |out_flags: u8, in_flags: u8, reply: bool| {
        now += 1;
        let (out_flags, in_flags) = if proto == ICMPV6 {
            (128, 129)
        } else {
            (out_flags, in_flags)
        };
        let ports = (lan_port, remote_port);
        let mut p = packet(proto, LAN_HOST, remote, ports, out_flags, b"x");
        let Verdict::Uplink(u) = gw.outbound(now, &mut p) else {
            panic!("the engine dropped an outbound packet");
        };
        let port_at = if proto == ICMPV6 { 44 } else { 40 };
        let ext = (
            addr_at(&p, 8),
            u16::from_be_bytes([p[port_at], p[port_at + 1]]),
        );
        if reply {
            let ports = if proto == ICMPV6 {
                (ext.1, 0)
            } else {
                (remote_port, ext.1)
            };
            let mut r = packet(proto, remote, ext.0, ports, in_flags, b"y");
            assert_eq!(gw.inbound(now, u, &mut r), Verdict::Tun);
        }
        (u, ext)
    };
    let (uplink, ext) = if proto == TCP {
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
        ext,
        now,
    }
}

impl HandedOver {
    fn outbound(&self, flags: u8, data: &[u8]) -> Vec<u8> {
        let flags = if self.proto == ICMPV6 { 128 } else { flags };
        let ports = (self.lan_port, self.remote_port);
        packet(self.proto, LAN_HOST, self.remote, ports, flags, data)
    }

    fn inbound(&self, flags: u8, data: &[u8]) -> Vec<u8> {
        let (flags, ports) = if self.proto == ICMPV6 {
            (129, (self.ext.1, 0))
        } else {
            (flags, (self.remote_port, self.ext.1))
        };
        packet(self.proto, self.remote, self.ext.0, ports, flags, data)
    }

    fn engine_out(&self, gw: &Gateway, p: &[u8]) -> Vec<u8> {
        let mut e = p.to_vec();
        assert_eq!(gw.outbound(self.now, &mut e), Verdict::Uplink(self.uplink));
        e
    }

    fn engine_in(&self, gw: &Gateway, p: &[u8]) -> Vec<u8> {
        let mut e = p.to_vec();
        assert_eq!(gw.inbound(self.now, self.uplink, &mut e), Verdict::Tun);
        e
    }

    fn key(&self) -> FlowKey<V6> {
        FlowKey {
            int_addr: LAN_HOST,
            rem_addr: self.remote,
            int_port: self.lan_port,
            rem_port: self.remote_port,
            proto: self.proto,
        }
    }
}

fn assert_bytes(kernel: &[u8], engine: &[u8], what: &str) {
    if kernel != engine {
        let at = kernel.iter().zip(engine).position(|(a, b)| a != b);
        panic!(
            "{what}: the kernel's packet differs from the engine's at byte {at:?} \
             (lengths {} and {})\nkernel: {:02x?}\nengine: {:02x?}",
            kernel.len(),
            engine.len(),
            &kernel[..kernel.len().min(64)],
            &engine[..engine.len().min(64)]
        );
    }
}

fn assert_passed(fast: &TcFastPath, dir: Direction, frame: &[u8], arrived_on: u32, what: &str) {
    let (verdict, out) = fast.test_run(dir, frame, arrived_on).expect("test run");
    assert_eq!(
        verdict, TC_NEXT,
        "{what}: the fast path should leave it to the engine"
    );
    assert_eq!(out, frame, "{what}: passed on, but changed");
}

/// Packets of `flow` with `flags` and payloads of three sizes, up to what fills the MTU (1500)
/// exactly, both ways: the kernel carries each byte for byte as the engine translates it.
fn assert_carried_as_the_engine(
    gw: &Gateway,
    links: &Links,
    flow: &HandedOver,
    flags: u8,
    rng: &mut Rng,
    what: &str,
) {
    let u = usize::from(flow.uplink);
    let room = 1500 - 40 - if flow.proto == TCP { 20 } else { 8 };
    for size in [rng.next() % room, rng.next() % room, room] {
        let data: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
        let what = format!("{what}, {size} payload bytes");
        let out = flow.outbound(flags, &data);
        let (verdict, sent) = (gw.fast)
            .test_run(Direction::Outbound, &frame(&out), links.lan)
            .expect("test run");
        assert_eq!(verdict, TC_REDIRECT, "{what}: outbound not carried");
        assert_eq!(
            sent[..6],
            ROUTER_MACS[u],
            "{what}: to the line's IPv6 router"
        );
        assert_eq!(sent[6..12], UPLINK_MACS[u], "{what}: from the uplink");
        assert_eq!(sent[12..14], [0x86, 0xdd], "{what}");
        assert_bytes(&sent[14..], &forwarded(flow.engine_out(gw, &out)), &what);

        let back = flow.inbound(flags, &data);
        let (verdict, delivered) = (gw.fast)
            .test_run(Direction::Inbound, &frame(&back), links.uplinks[u])
            .expect("test run");
        assert_eq!(verdict, TC_REDIRECT, "{what}: inbound not carried");
        assert_bytes(
            &delivered[14..],
            &forwarded(flow.engine_in(gw, &back)),
            &what,
        );
    }
}

fn remote(n: u32) -> u128 {
    0x2001_0002_00ff_u128 << 80 | u128::from(n)
}

#[test]
fn the_fast_path_translates_ipv6_byte_for_byte_as_the_engine_does() {
    in_own_netns(
        "the_fast_path_translates_ipv6_byte_for_byte_as_the_engine_does",
        translates_as_the_engine,
    );
}

fn translates_as_the_engine(links: &Links) {
    let fast = fast_path(links);
    let gw = Gateway::new(&fast);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut lines = [0; 2];
    for case in 0..36u32 {
        let proto = [TCP, UDP, ICMPV6][case as usize % 3];
        let lan_port = 1024 + (rng.next() % 60000) as u16;
        let remote_port = 1 + (rng.next() % 65000) as u16;
        let flow = open(&gw, proto, remote(case), lan_port, remote_port);
        lines[usize::from(flow.uplink)] += 1;
        let what = format!("case {case}: proto {proto} on line {}", flow.uplink);
        assert_carried_as_the_engine(&gw, links, &flow, ACK, &mut rng, &what);
    }
    assert!(
        lines.iter().all(|&n| n >= 6),
        "NAT66 and NPTv6 lines both: {lines:?}"
    );
    assert_eq!(fast.flow_counts().0, 36, "every flow handed over");
}

#[test]
fn what_the_engine_must_see_passes_the_ipv6_fast_path_untouched() {
    in_own_netns(
        "what_the_engine_must_see_passes_the_ipv6_fast_path_untouched",
        passes_what_the_engine_must_see,
    );
}

fn passes_what_the_engine_must_see(links: &Links) {
    let fast = fast_path(links);
    let gw = Gateway::new(&fast);
    let tcp = open(&gw, TCP, remote(1), 40000, 443);
    let udp = open(&gw, UDP, remote(2), 40001, 53);
    let ping = open(&gw, ICMPV6, remote(3), 0x4242, 0);
    let lan = links.lan;
    let out =
        |p: &[u8], what: &str| assert_passed(&fast, Direction::Outbound, &frame(p), lan, what);
    let back = |f: &HandedOver, p: &[u8], what: &str| {
        let on = links.uplinks[usize::from(f.uplink)];
        assert_passed(&fast, Direction::Inbound, &frame(p), on, what)
    };

    for flags in [SYN, SYN | ACK, FIN | ACK, RST] {
        let what = format!("TCP flags {flags:#04x}");
        out(&tcp.outbound(flags, b""), &what);
        back(&tcp, &tcp.inbound(flags, b""), &what);
    }
    // hop limit 1: the kernel answers with time exceeded
    let mut p = udp.outbound(0, b"hop");
    p[7] = 1;
    out(&p, "hop limit 1");
    let mut p = udp.inbound(0, b"hop");
    p[7] = 1;
    back(&udp, &p, "hop limit 1 inbound");
    // an extension header (destination options, one option to skip) before UDP, and a
    // fragment header: the fast path parses the fixed header only. The flow's ports are the
    // first bytes of the destination options (and what would be UDP's checksum is not 0),
    // so a program that took them for UDP's would find it.
    let ext_flow = open(&gw, UDP, remote(4), 0x1100, 0x1e04);
    for (next, ext) in [
        (60u8, [UDP, 0, 0x1e, 4, 0xab, 0xcd, 0xef, 0x01]),
        (44, [UDP, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]),
    ] {
        let mut p = ext_flow.outbound(0, b"ext");
        p.splice(40..40, ext);
        p[6] = next;
        let len = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        out(&p, &format!("extension header {next}"));
    }
    // ICMPv6 other than echo: a reply going out, a request and an error coming in
    let mut p = ping.outbound(0, b"");
    p[40] = 129;
    out(&p, "an echo reply from the LAN");
    let mut p = ping.inbound(0, b"");
    p[40] = 128;
    back(&ping, &p, "an echo request from outside");
    let error = packet(ICMPV6, udp.remote, udp.ext.0, (0, 0), 2, &[0; 48]);
    back(&udp, &error, "a Packet Too Big");
    // UDP without a checksum, which IPv6 does not allow: the engine's to drop
    out(
        &packet(UDP, LAN_HOST, udp.remote, (40001, 53), 1, b"none"),
        "UDP checksum 0",
    );
    // one byte more than the uplink's MTU: the kernel answers with Packet Too Big
    out(
        &udp.outbound(0, &[7u8; 1500 - 48 + 1]),
        "one byte over the MTU",
    );
    // a payload length beyond what arrived
    let mut p = udp.outbound(0, b"short");
    p[5] += 1;
    out(&p, "a truncated packet");
    // an unknown flow: another port
    out(
        &packet(UDP, LAN_HOST, udp.remote, (40999, 53), 0, b"?"),
        "an unknown flow",
    );
    // a reply arriving on the other uplink
    let other = links.uplinks[1 - usize::from(udp.uplink)];
    let p = frame(&udp.inbound(0, b"wrong link"));
    assert_passed(
        &fast,
        Direction::Inbound,
        &p,
        other,
        "a reply on the other uplink",
    );

    // and what was handed over is still carried, up to exactly the MTU
    let full = frame(&udp.outbound(0, &[7u8; 1500 - 48]));
    let (verdict, _) = (fast.test_run(Direction::Outbound, &full, lan)).expect("test run");
    assert_eq!(verdict, TC_REDIRECT, "a packet of exactly the MTU");
}

#[test]
fn what_the_ipv6_fast_path_carried_is_read_back() {
    in_own_netns(
        "what_the_ipv6_fast_path_carried_is_read_back",
        reads_back_what_was_carried,
    );
}

fn reads_back_what_was_carried(links: &Links) {
    let fast = fast_path(links);
    let gw = Gateway::new(&fast);
    let tcp = open(&gw, TCP, remote(1), 40000, 443);
    let udp = open(&gw, UDP, remote(2), 40001, 53);
    let before = fast.totals().expect("counters");
    let mut sent = [0u64; 2];
    for (flow, n) in [(&tcp, 3), (&udp, 2)] {
        for _ in 0..n {
            let p = frame(&flow.outbound(ACK, &[1; 100]));
            let (v, _) = fast.test_run(Direction::Outbound, &p, links.lan).unwrap();
            assert_eq!(v, TC_REDIRECT);
            sent[usize::from(flow.uplink)] += (p.len() - 14) as u64;
        }
        let p = frame(&flow.inbound(ACK, &[2; 10]));
        let on = links.uplinks[usize::from(flow.uplink)];
        assert_eq!(
            fast.test_run(Direction::Inbound, &p, on).unwrap().0,
            TC_REDIRECT
        );
    }
    let carried = fast.carried().expect("reading the flow maps");
    assert_eq!(carried.len(), 2, "one per flow, both directions merged");
    let c = carried.get6(&tcp.key()).expect("the TCP flow");
    assert_eq!(c.bytes, 3 * (40 + 20 + 100) + (40 + 20 + 10));
    assert!(c.idle_ms.is_some_and(|ms| ms < 60_000), "{c:?}");
    let acks = c.acks.map(|a| a.map(|a| a.ack));
    assert_eq!(acks, [Some(0x2000), Some(0x2000)], "each side's last ACK");
    let c = carried.get6(&udp.key()).expect("the UDP flow");
    assert_eq!(c.bytes, 2 * (40 + 8 + 100) + (40 + 8 + 10));
    // the per-line counters the caps go by
    let after = fast.totals().expect("counters");
    for u in 0..2 {
        let out = after[u].outbound_bytes - before[u].outbound_bytes;
        assert_eq!(out, sent[u], "line {u}'s outbound bytes");
    }
    // a reset the engine takes (in the window the remote acknowledged): the flow comes
    // back, and its entries go
    let mut rst = tcp.outbound(RST, b"");
    set_seq(&mut rst, 0x2000);
    assert_eq!(
        gw.outbound(tcp.now + 1, &mut rst),
        Verdict::Uplink(tcp.uplink)
    );
    let carried = fast.carried().expect("reading the flow maps");
    assert_eq!(carried.get6(&tcp.key()), None, "withdrawn");
    assert!(carried.get6(&udp.key()).is_some());
}

#[test]
fn to_a_point_to_point_uplink_ipv6_goes_without_a_mac() {
    in_own_netns(
        "to_a_point_to_point_uplink_ipv6_goes_without_a_mac",
        carries_to_a_point_to_point_uplink,
    );
}

/// The outbound program, to point-to-point uplinks (PPP, TUN, WireGuard): no MAC is written,
/// IPv6 as IPv4. (The inbound program for such uplinks runs on real packets only; a test run
/// hands over Ethernet frames.)
fn carries_to_a_point_to_point_uplink(links: &Links) {
    let fast = fast_path(links);
    let gw = Gateway::new(&fast);
    for uplink in 0..2 {
        fast.set_next_hop6(uplink, Some(NextHop::Peer))
            .expect("uplink map");
    }
    for (case, proto) in [TCP, UDP, ICMPV6].into_iter().enumerate() {
        let flow = open(&gw, proto, remote(100 + case as u32), 40000, 443);
        let out = flow.outbound(ACK, b"over the line");
        let f = frame(&out);
        let (verdict, sent) =
            (fast.test_run(Direction::Outbound, &f, links.lan)).expect("test run");
        let what = format!("proto {proto}");
        assert_eq!(verdict, TC_REDIRECT, "{what}: not carried");
        assert_eq!(sent[..14], f[..14], "{what}: no MAC written");
        assert_bytes(&sent[14..], &forwarded(flow.engine_out(&gw, &out)), &what);
    }
}
