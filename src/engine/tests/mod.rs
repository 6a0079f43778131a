//! Engine tests, by subject. The translation tests' packets are byte literals generated once
//! by an independent implementation (full checksum computation); the engine's incremental
//! updates must reproduce them exactly. The other tests build their packets with
//! wanlb-testkit, whose checksums are computed from scratch too.

mod failover;
mod fast_path;
mod fragments;
mod front_door;
mod hairpin;
mod limits;
mod placement;
mod port_forward;
mod reload;
mod tcp;
mod translation;
mod udp_affinity;

use super::checksum::{fold, pseudo_header, sum};
use super::flow::Timeouts;
use super::limits::{Eviction, Limits};
use super::select::{Pin, Prefix};
use super::wire::tcp::{self as tcp_flags, ACK};
use super::wire::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use super::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use wanlb_testkit::{Ipv4Packet, fix_checksums, reply_to};

/// The big-endian 16 bits at byte `at` of `buf`: the tests read fields where the RFCs put
/// them.
fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// The TCP segment in the IPv4 packet `p`.
fn tcp_of(p: &[u8]) -> wire::TcpSegment<&[u8]> {
    let ip = wire::Ipv4Packet::new_checked(p).expect("an IPv4 packet");
    wire::TcpSegment::new_checked(ip.into_payload()).expect("a TCP segment")
}

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

fn dst(i: u32) -> u32 {
    u32::from_be_bytes([198, 19, 0, 0]) + i
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

/// An established connection LAN:40000 <-> dst(1):443 on uplink 0; the server's last
/// segment had sequence number 5000.
fn established(e: &mut Engine) {
    let syn = &mut Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(tcp_flags::SYN)
        .seq(100)
        .build();
    assert_eq!(out(e, t(0), syn), Verdict::Uplink(0));
    let port = read_u16(syn, 20);
    let synack = &mut Ipv4Packet::tcp(dst(1), UPLINK_1, 443, port, b"")
        .flags(tcp_flags::SYN | ACK)
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
