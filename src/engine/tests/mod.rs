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
mod metered;
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

fn out(e: &impl Gateway, now: Timestamp, pkt: &mut [u8]) -> Verdict {
    e.send_out(now, pkt, &mut L4Checksum::Complete)
}

fn inb(e: &impl Gateway, now: Timestamp, uplink: UplinkId, pkt: &mut [u8]) -> Verdict {
    e.send_in(now, uplink, pkt, &mut L4Checksum::Complete)
}

fn dst(i: u32) -> u32 {
    u32::from_be_bytes([198, 19, 0, 0]) + i
}

/// A fast path for the tests: it carries out the engine's work as the kernel's does, logs it
/// ("hand over ..." and "withdraw ..."), and says it carried, of every flow it holds, `bytes`
/// and (from the LAN host) `lan_acked`, the last packet `idle` ms ago.
#[derive(Debug, Default)]
pub(super) struct FakeFastPath {
    pub(super) log: Mutex<Vec<String>>,
    /// Logs the LAN port only.
    terse: bool,
    held: Mutex<Vec<FastFlow>>,
    pub(super) idle: Mutex<Option<u64>>,
    pub(super) bytes: Mutex<u64>,
    pub(super) lan_acked: Mutex<Option<flow::Acked>>,
    /// Refuses hand-overs, as a full map does.
    pub(super) full: Mutex<bool>,
}

impl FakeFastPath {
    /// One that logs "hand over 40000" and "withdraw 40000".
    pub(super) fn terse() -> FakeFastPath {
        FakeFastPath {
            terse: true,
            ..FakeFastPath::default()
        }
    }

    fn carried_of(&self) -> Carried {
        Carried {
            idle_ms: *self.idle.lock().unwrap(),
            bytes: *self.bytes.lock().unwrap(),
            acks: [*self.lan_acked.lock().unwrap(), None],
        }
    }

    /// Carries out what the engine queued, in order, and tells it what came of it.
    pub(super) fn carry_out(&self, e: &Engine) {
        let mut work = Vec::new();
        e.take_fast_path_work(&mut work, &mut Vec::new());
        self.carry_out_taken(e, work);
    }

    /// Carries out `work`, taken from `e` before, and tells it what came of it.
    pub(super) fn carry_out_taken(&self, e: &Engine, work: Vec<FastPathWork>) {
        let mut done = Vec::new();
        let mut held = self.held.lock().unwrap();
        for w in work {
            let k = match w {
                FastPathWork::HandOver(f) if *self.full.lock().unwrap() => {
                    self.log
                        .lock()
                        .unwrap()
                        .push(format!("refuse {}", { f.key.int_port }));
                    done.push(FastPathDone::Refused(f));
                    continue;
                }
                FastPathWork::HandOver(f) => {
                    let k = f.key;
                    self.log.lock().unwrap().push(if self.terse {
                        format!("hand over {}", { k.int_port })
                    } else {
                        format!(
                            "hand over {} {}:{} -> {}:{} as {}:{}",
                            k.proto,
                            Ipv4Addr::from(k.int_addr),
                            { k.int_port },
                            Ipv4Addr::from(k.rem_addr),
                            { k.rem_port },
                            Ipv4Addr::from(f.ext_addr),
                            f.ext_port
                        )
                    });
                    held.push(f);
                    continue;
                }
                FastPathWork::TakeBack(f) => {
                    done.push(FastPathDone::TakenBack(f, *self.bytes.lock().unwrap()));
                    f.key
                }
                FastPathWork::Withdraw(f, release) => {
                    done.extend(release.map(FastPathDone::Released));
                    f.key
                }
            };
            held.retain(|h| h.key != k);
            self.log.lock().unwrap().push(if self.terse {
                format!("withdraw {}", { k.int_port })
            } else {
                format!("withdraw {} {}", k.proto, { k.int_port })
            });
        }
        e.fast_path_done(&done);
    }

    /// The LAN ports of the flows it holds.
    pub(super) fn held(&self) -> Vec<u16> {
        let held = self.held.lock().unwrap();
        held.iter().map(|f| f.key.int_port).collect()
    }

    /// What it carried of the flows it holds.
    pub(super) fn carried(&self, e: &Engine) -> CarriedFlows {
        self.carry_out(e);
        let held = self.held.lock().unwrap();
        CarriedFlows::from_entries(held.iter().map(|f| (f.key, self.carried_of())).collect())
    }

    /// What it carried of the flow of `p` (a TCP reset, sent `dir` on `uplink`), if it holds
    /// that flow.
    fn carried_of_reset(&self, dir: Direction, uplink: UplinkId, p: &[u8]) -> Option<Carried> {
        let ip = wire::Ipv4Packet::new_checked(p).ok()?;
        let t = wire::TcpSegment::new_checked(ip.payload()).ok()?;
        if ip.protocol() != PROTO_TCP || t.flags() & tcp_flags::RST == 0 {
            return None;
        }
        let held = self.held.lock().unwrap();
        let ends = (ip.src_addr(), t.src_port(), ip.dst_addr(), t.dst_port());
        held.iter()
            .any(|f| match dir {
                Direction::Outbound => {
                    ends == (
                        f.key.int_addr,
                        f.key.int_port,
                        f.key.rem_addr,
                        f.key.rem_port,
                    )
                }
                Direction::Inbound => {
                    f.uplink == uplink
                        && ends == (f.key.rem_addr, f.key.rem_port, f.ext_addr, f.ext_port)
                }
            })
            .then(|| self.carried_of())
    }
}

/// An engine with a [`FakeFastPath`], called as the gateway calls it: what the fast path
/// recorded is read before a TCP reset, an expiry, an uplink's change and the busiest
/// destinations, and the engine's work is carried out after every call.
pub(super) struct WithFastPath {
    engine: Engine,
    fast: std::sync::Arc<FakeFastPath>,
}

impl std::ops::Deref for WithFastPath {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl WithFastPath {
    /// `engine`, handing steady flows of every LAN host to `fast`.
    pub(super) fn new(engine: Engine, fast: std::sync::Arc<FakeFastPath>) -> WithFastPath {
        let every_host = Prefix::new(0, 0).unwrap();
        WithFastPath {
            engine: engine.with_fast_path(vec![every_host]),
            fast,
        }
    }

    pub(super) fn outbound(&self, now: Timestamp, p: &mut [u8], csum: &mut L4Checksum) -> Verdict {
        let carried = self.fast.carried_of_reset(Direction::Outbound, 0, p);
        let v = (self.engine).outbound_carried(now, p, csum, carried.as_ref());
        self.fast.carry_out(&self.engine);
        v
    }

    pub(super) fn inbound(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        p: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Verdict {
        let carried = self.fast.carried_of_reset(Direction::Inbound, uplink, p);
        let v = (self.engine).inbound_carried(now, uplink, p, csum, carried.as_ref());
        self.fast.carry_out(&self.engine);
        v
    }

    pub(super) fn expire(&self, now: Timestamp) {
        let carried = self.fast.carried(&self.engine);
        self.engine.expire(now, &carried);
        self.fast.carry_out(&self.engine);
    }

    pub(super) fn set_uplink_up(&self, uplink: UplinkId, up: bool) -> Vec<[u8; SEQUENCE_PROBE]> {
        let carried = self.fast.carried(&self.engine);
        let probes = self.engine.set_uplink_up(uplink, up, &carried);
        self.fast.carry_out(&self.engine);
        probes
    }

    pub(super) fn set_uplink_addr(&self, uplink: UplinkId, addr: u32) -> Vec<[u8; SEQUENCE_PROBE]> {
        let carried = self.fast.carried(&self.engine);
        let probes = self.engine.set_uplink_addr(uplink, addr, &carried);
        self.fast.carry_out(&self.engine);
        probes
    }

    pub(super) fn reconfigure(&self, config: &EngineConfig) {
        self.engine.reconfigure(config);
        self.fast.carry_out(&self.engine);
    }

    pub(super) fn busiest_destinations(&self, n: usize) -> Vec<BusyDestination> {
        let carried = self.fast.carried(&self.engine);
        self.engine.busiest_destinations(n, &carried)
    }
}

/// What the test helpers send packets through: an engine alone, or one with a fast path.
pub(super) trait Gateway {
    fn send_out(&self, now: Timestamp, p: &mut [u8], csum: &mut L4Checksum) -> Verdict;
    fn send_in(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        p: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Verdict;
}

impl Gateway for Engine {
    fn send_out(&self, now: Timestamp, p: &mut [u8], csum: &mut L4Checksum) -> Verdict {
        self.outbound(now, p, csum)
    }
    fn send_in(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        p: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Verdict {
        self.inbound(now, uplink, p, csum)
    }
}

impl Gateway for WithFastPath {
    fn send_out(&self, now: Timestamp, p: &mut [u8], csum: &mut L4Checksum) -> Verdict {
        self.outbound(now, p, csum)
    }
    fn send_in(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        p: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Verdict {
        self.inbound(now, uplink, p, csum)
    }
}

/// An established connection LAN:40000 <-> dst(1):443 on uplink 0; the server's last
/// segment had sequence number 5000.
fn established(e: &impl Gateway) {
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
