//! Packets and engines shared by the benches.

#![allow(dead_code)]

use wanlb::engine::flow::Timeouts;
use wanlb::engine::limits::Limits;
use wanlb::engine::{Engine, EngineConfig, UdpAffinity, UplinkConfig};
use wanlb_testkit::{Ipv4Packet, reply_to};

pub const LAN_BASE: u32 = u32::from_be_bytes([198, 18, 3, 0]);
pub const INTERNET_BASE: u32 = u32::from_be_bytes([198, 19, 0, 0]);

pub fn engine() -> Engine {
    Engine::new(EngineConfig {
        uplinks: vec![
            UplinkConfig {
                name: "isp1".into(),
                addr: u32::from_be_bytes([198, 18, 1, 1]),
                weight: 2,
                tier: 1,
            },
            UplinkConfig {
                name: "isp2".into(),
                addr: u32::from_be_bytes([198, 18, 2, 1]),
                weight: 1,
                tier: 1,
            },
        ],
        pins: vec![],
        affinity_timeout_ms: 600_000,
        timeouts: Timeouts::default(),
        ports: (61000, 65535),
        seed: 7,
        reset_tcp_on_down: true,
        udp_affinity: UdpAffinity::Endpoint,
        // limits on, as wanlb runs, but above what the benches open: their checks are
        // measured, not their refusals
        limits: Limits {
            max_flows: 16 << 20,
            max_flows_per_host: 16 << 20,
            max_ports_per_host: 65_536,
            max_embryonic_per_forward: 1_024,
            max_flows_per_forward_source: 4 << 20,
        },
    })
}

/// A UDP datagram in a 64-byte Ethernet frame (18 bytes of payload), checksums complete.
pub fn udp(src: u32, dst: u32, sport: u16, dport: u16) -> [u8; 46] {
    let p = Ipv4Packet::udp(src, dst, sport, dport, &[0; 18]).build();
    p.try_into().expect("20 + 8 + 18 bytes")
}

/// The reply to a translated datagram: ends swapped, checksums recomputed.
pub fn reply(p: &[u8; 46]) -> [u8; 46] {
    reply_to(p).try_into().expect("as long as the datagram")
}
