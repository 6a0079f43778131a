//! Untrusted IPv6 bytes: the extension-header walk and the quote of an ICMPv6 error on their
//! own, then the engine both ways with one line by NAT66 and one by NPTv6, its lines changing
//! under it, a port forwarded on each. Nothing may panic, and whatever the engine forwards
//! must still parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wanlb::engine::family::V6;
use wanlb::engine::flow::Timeouts;
use wanlb::engine::limits::Limits;
use wanlb::engine::port_forward::Forward;
use wanlb::engine::select::Prefix;
use wanlb::engine::wire::icmpv6::QuotedPacket6;
use wanlb::engine::wire::{Ipv6Packet, ipv6};
use wanlb::engine::{
    CarriedFlows, Engine, EngineConfig, L4Checksum, Timestamp, UdpAffinity, Uplink6,
    UplinkConfig, Verdict,
};

const LINE0: u128 = 0x2001_0002_0000_0001_u128 << 64 | 2;
const LINE1_PREFIX: u128 = 0x2001_0002_0000_0100_u128 << 64;

fn prefix(addr: u128, len: u8) -> Prefix<V6> {
    Prefix::masked(addr, len).expect("a valid length")
}

fn line(n: u8, up: bool) -> Uplink6 {
    match n % 3 {
        0 => Uplink6 { addr: Some(LINE0), prefix: None, up },
        1 => Uplink6 { addr: None, prefix: Some(prefix(LINE1_PREFIX, 56)), up },
        _ => Uplink6 { addr: Some(LINE0 + 1), prefix: Some(prefix(LINE1_PREFIX, 64)), up },
    }
}

fn engine() -> Engine {
    let e = Engine::new(EngineConfig {
        uplinks: vec![
            UplinkConfig { name: "a".into(), addr: u32::from_be_bytes([198, 18, 1, 1]), weight: 2, tier: 1 },
            UplinkConfig { name: "b".into(), addr: u32::from_be_bytes([198, 18, 2, 1]), weight: 1, tier: 1 },
        ],
        pins: vec![],
        affinity_timeout_ms: 600_000,
        timeouts: Timeouts::default(),
        ports: (61000, 61007),
        seed: 1,
        reset_tcp_on_down: true,
        udp_affinity: UdpAffinity::Endpoint,
        limits: Limits {
            max_flows: 6,
            max_flows_per_host: 3,
            max_ports_per_host: 2,
            max_embryonic_per_forward: 64,
            max_flows_per_forward_source: 2,
        },
    })
    // one byte of the source to guess: fd00::/8
    .with_lan_nets6(vec![prefix(0xfd_u128 << 120, 8)])
    // a TCP port of line 0's address (in the pool: kept aside), a UDP port of line 1 whose
    // host keeps it (reached at the host's translated address too)
    .with_forwards6(vec![
        Forward { proto: 6, port: 61003, uplink: 0, host: 0xfd_u128 << 120 | 0xa, host_port: 80 },
        Forward { proto: 17, port: 53, uplink: 1, host: 0xfd_u128 << 120 | 0xb, host_port: 53 },
    ]);
    e.set_uplink6(0, line(0, true));
    e.set_uplink6(1, line(1, true));
    e
}

fn addr_at(p: &[u8], at: usize) -> u128 {
    u128::from_be_bytes(p[at..at + 16].try_into().expect("16 bytes"))
}

fuzz_target!(|data: &[u8]| {
    let _ = ipv6::walk(data, data.first().copied().unwrap_or(0));
    let _ = QuotedPacket6::new_checked(data).map(|q| (q.src_port(), q.dst_port(), q.transport_checksum()));
    let Some((&control, rest)) = data.split_first() else { return };
    let e = engine();
    // several packets, each after a length byte and a byte of its own control
    let mut input = rest;
    let mut now = 0;
    // the ends of the last packet sent out, so that an answer can be made of the next
    let mut last_out: Option<(u128, u128)> = None;
    while let Some((&len, tail)) = input.split_first() {
        let Some((&each, tail)) = tail.split_first() else { return };
        let len = usize::from(len).min(tail.len());
        let mut pkt = tail[..len].to_vec();
        input = &tail[len..];
        now += 1000;
        let mut csum = if each & 1 == 0 { L4Checksum::Complete } else { L4Checksum::Partial };
        let verdict = if each & 2 == 0 {
            e.outbound(Timestamp::from_millis(now), &mut pkt, &mut csum)
        } else {
            if each & 4 != 0 && pkt.len() >= ipv6::HEADER_LEN && let Some((src, dst)) = last_out {
                pkt[8..24].copy_from_slice(&dst.to_be_bytes());
                pkt[24..40].copy_from_slice(&src.to_be_bytes());
            }
            e.inbound(Timestamp::from_millis(now), (each >> 3) % 3, &mut pkt, &mut csum)
        };
        match verdict {
            Verdict::Uplink(_) | Verdict::Tun => {
                let ip = Ipv6Packet::new_checked(&pkt[..]);
                if let Ok(ip) = ip {
                    let h = ip.headers().expect("forwarded a packet whose headers no longer parse");
                    if matches!(verdict, Verdict::Uplink(_)) {
                        last_out = Some((addr_at(&pkt, 8), addr_at(&pkt, 24)));
                    }
                    let _ = h;
                } else {
                    // an IPv4 packet the fuzzer sent, or a reset written in place
                    assert!(pkt[0] >> 4 == 4 || pkt[0] >> 4 == 6, "forwarded a packet of no version");
                }
            }
            _ => {}
        }
        if each & 0x40 != 0 {
            let probes = e.set_uplink6(each >> 7, line(control.wrapping_add(each), each & 0x20 != 0));
            for p in probes {
                let ip = Ipv6Packet::new_checked(&p[..]).expect("a probe parses");
                assert!(ip.headers().is_ok());
            }
        }
        if control & 0x80 != 0 {
            e.expire(Timestamp::from_millis(now + 400_000), &CarriedFlows::NONE);
        }
    }
});
