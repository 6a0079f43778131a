//! Packets and engines shared by the benches.

#![allow(dead_code)]

use wanlb::engine::checksum::{checksum, pseudo_header};
use wanlb::engine::flow::Timeouts;
use wanlb::engine::{Engine, EngineConfig, UplinkConfig};

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
    })
}

/// A UDP datagram in a 64-byte Ethernet frame (18 bytes of payload), checksums complete.
pub fn udp(src: u32, dst: u32, sport: u16, dport: u16) -> [u8; 46] {
    let mut p = [0u8; 46];
    p[..12].copy_from_slice(&[0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    p[12..16].copy_from_slice(&src.to_be_bytes());
    p[16..20].copy_from_slice(&dst.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&26u16.to_be_bytes());
    let c = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let c = checksum(&p[20..], pseudo_header(src, dst, 17, 26));
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}

/// The reply to a translated datagram: ends swapped, checksums recomputed.
pub fn reply(p: &[u8; 46]) -> [u8; 46] {
    let src = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
    let dst = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
    udp(
        src,
        dst,
        u16::from_be_bytes([p[22], p[23]]),
        u16::from_be_bytes([p[20], p[21]]),
    )
}
