//! The sans-IO core: flow table, NAT, uplink choice and ICMP translation over byte buffers.
//!
//! Nothing here reads a clock or makes a syscall: the caller passes `now` and the packet, and
//! the engine rewrites the packet in place and answers with a [`Verdict`] saying where it goes.
//!
//! Where things are:
//!
//! - a packet's walk: [`outbound`](Engine::outbound) (from the LAN; fragments, ICMP errors and
//!   hairpinning branch off it, in [`fragment`] and `hairpin.rs`) and
//!   [`inbound`](Engine::inbound) (from an uplink; port forwards open there), each one file
//!   read top to bottom, on [`wire`]'s typed views of the bytes and [`translate`]'s rewrites;
//! - a flow's life (opened, moved along, ended, expired): `lifecycle.rs`, on [`flow`]'s table
//!   and session state machine, [`nat`]'s port pools, [`affinity`] and [`select`], all of them
//!   generic over the address [`family`];
//! - what the kernel fast path is handed and when it is taken back: `offload.rs`, as work
//!   queued for the fast path's owner to carry out (the engine makes no syscall);
//! - what a change to an uplink does to its flows (health, a new address, a reload):
//!   `uplinks.rs`; what a data cap, failback and balance by bytes do: `metered.rs`, on
//!   [`failback`]'s pure state machine;
//! - the limits at every table ([`limits`], [`hosts`]), the packets the engine writes itself
//!   ([`answer`]), and what it reports (`report.rs`).

// The packet code: a cast that could cut a length, a port or an index short is a bug here, so
// each one is a conversion that cannot lose bits, or says why losing them is the point.
#![warn(clippy::cast_possible_truncation)]

pub mod affinity;
pub mod answer;
pub mod checksum;
pub mod failback;
pub mod family;
pub mod flow;
pub mod fragment;
pub mod hosts;
pub mod limits;
pub mod nat;
pub mod offload;
pub mod port_forward;
pub mod select;
pub mod time;
pub mod translate;
pub mod verdict;
pub mod wire;

mod hairpin;
mod inbound;
mod lifecycle;
mod metered;
mod outbound;
mod report;
pub mod segments;
mod uplinks;

use affinity::Affinity;
use answer::RateLimit;
use failback::{Failback, FailbackPolicy};
use flow::{FlowTable, Timeouts};
use limits::{Embryonic, Limits, Room, idle_bindings_per_shard};
use nat::{Endpoint, Nat};
use port_forward::{Forward, Forwards};
use select::{Pin, Pins, Prefix, Selector};

pub use answer::{MAX_UNREACHABLE, SEQUENCE_PROBE};
pub use flow::Flow;
pub use offload::{
    Carried, CarriedFlows, FastFlow, FastPathDone, FastPathWork, HAND_OVER_AFTER,
    HAND_OVER_ONE_WAY_AFTER,
};
pub use report::{BusyDestination, Counters, UplinkCounters};
pub use time::{Stamp, Timestamp};
pub use verdict::{DropReason, Verdict};
pub use wire::L4Checksum;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use arc_swap::ArcSwap;

/// Index of an uplink in the configured order.
pub type UplinkId = u8;

/// The most uplinks there may be: sets of them are `u32` masks, one bit each.
pub const MAX_UPLINKS: usize = 32;

/// The id of the uplink at index `i` of the configuration (which holds at most
/// [`MAX_UPLINKS`]).
fn uplink_id(i: usize) -> UplinkId {
    debug_assert!(i < MAX_UPLINKS);
    UplinkId::try_from(i).expect("at most 32 uplinks")
}

/// The bit of uplink `i` in a set of uplinks.
fn uplink_bit(i: usize) -> u32 {
    debug_assert!(i < MAX_UPLINKS);
    1u32 << i
}

/// The set of the first `n` uplinks (all of them, with `n` uplinks): no bit past the 32nd.
fn first_uplinks(n: usize) -> u32 {
    debug_assert!(n <= MAX_UPLINKS);
    u32::MAX
        .checked_shr(u32::try_from(MAX_UPLINKS - n).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// Which way a packet goes: from the LAN to an uplink (sent by the LAN host), or from an
/// uplink to the LAN (sent by the remote end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Outbound = 0,
    Inbound = 1,
}

impl Direction {
    /// Its place in a pair kept per direction.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn other(self) -> Direction {
        match self {
            Direction::Outbound => Direction::Inbound,
            Direction::Inbound => Direction::Outbound,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkConfig {
    pub name: String,
    /// The address the uplink's traffic is translated to.
    pub addr: u32,
    pub weight: u32,
    /// New flows use the healthy uplinks of the lowest tier that has one.
    pub tier: u8,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub uplinks: Vec<UplinkConfig>,
    pub pins: Vec<Pin>,
    pub affinity_timeout_ms: u64,
    pub timeouts: Timeouts,
    /// Inclusive range of external ports (and ICMP identifiers) per uplink and protocol.
    pub ports: (u16, u16),
    /// The secret of where port searches start: random (from the operating system's random
    /// source), or the external ports are predictable.
    pub seed: u64,
    /// When an uplink goes down, end its TCP connections with a reset to the LAN host (they
    /// cannot survive a new address); otherwise leave them, for uplinks that come back fast.
    pub reset_tcp_on_down: bool,
    pub udp_affinity: UdpAffinity,
    /// How far the tables may grow (see [`limits`]).
    pub limits: Limits,
}

/// Where a new UDP flow goes when its LAN endpoint (address and port: one socket) already
/// has a live mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UdpAffinity {
    /// On that mapping's uplink, so every destination sees the socket at one public address
    /// and port (RFC 4787 REQ-1 across the uplinks: STUN, WebRTC, VoIP, games).
    #[default]
    Endpoint,
    /// Like any flow: the destination's uplink, else by weight.
    Destination,
}

/// Shards of the flow table: a power of two, many more than workers, so two workers rarely
/// want the same one at once.
const SHARDS: usize = 64;

/// The LAN endpoint a (translated) flow holds its port for.
fn endpoint_of(flow: &Flow) -> Endpoint {
    Endpoint {
        addr: flow.key.int_addr,
        port: flow.key.int_port,
        proto: flow.key.proto,
        uplink: flow.uplink,
    }
}

/// One partition of the tables, by remote address: a flow and its destination's binding live
/// in the shard of the remote end, which both directions of the flow name.
#[derive(Debug)]
struct Shard {
    flows: FlowTable,
    affinity: Affinity,
    uplinks: Vec<UplinkCounters>,
    /// Fragmented datagrams in flight to this shard's remote addresses: their later pieces
    /// follow the first one's mapping.
    fragments: fragment::Fragments,
    /// Where the next look for a flow to end early starts ([`FlowTable::early_drop_candidate`]).
    early_drop_from: usize,
    /// Per forward, its embryonic connections from this shard's remote addresses.
    embryonic: Vec<Embryonic>,
}

fn shard_of(remote: u32) -> usize {
    // Fibonacci hashing: the top bits of the product spread neighbouring addresses.
    (remote.wrapping_mul(0x9e37_79b9) >> (32 - SHARDS.trailing_zeros())) as usize
}

/// The engine is shared by the workers: each packet locks only the shard of its remote
/// address. Opening or ending a flow also takes the port pools (and, for a weighted pick, the
/// selector), always after the shard, never both at once.
#[derive(Debug)]
pub struct Engine {
    /// Each uplink's address (low 32 bits) and how many times it changed (high 32 bits), read
    /// on every packet; weights and tiers are the selector's.
    addrs: Vec<AtomicU64>,
    /// Each uplink's address before its last change: flows opened before it still name it in
    /// the fast path's keys until they are taken back.
    previous_addrs: Vec<AtomicU32>,
    /// Read once per expiry round; a reload replaces it.
    timeouts: Mutex<Timeouts>,
    shards: Box<[Mutex<Shard>]>,
    nat: Mutex<Nat>,
    /// Read on every new flow without a lock; a reload swaps in new ones.
    pins: ArcSwap<Pins>,
    select: Mutex<Selector>,
    /// Held through a change of the selector and the pass over the flows it calls for.
    reselecting: Mutex<()>,
    /// The selector's [`Selector::leaving`] and [`Selector::down`], readable without its
    /// lock on every packet.
    leaving: AtomicU32,
    down: AtomicU32,
    /// Uplinks new flows may not use ([`Selector::ineligible`]), for a UDP socket's new
    /// destinations.
    ineligible: AtomicU32,
    /// When TCP connections leave a backup uplink for a better one that is back.
    failback: Mutex<Failback>,
    reset_tcp_on_down: AtomicBool,
    /// [`UdpAffinity::Endpoint`]; a reload may change it.
    udp_endpoint_affinity: AtomicBool,
    drops: [AtomicU64; DropReason::ALL.len()],
    moved: AtomicU64,
    resets: AtomicU64,
    unreachables: AtomicU64,
    unreachable_budget: Mutex<RateLimit>,
    /// The fast path's queue of hand-overs and withdrawals, if there is one.
    fast_path: Option<offload::FastPathQueue>,
    /// Sources translated; empty: all.
    lan_nets: Vec<Prefix>,
    forwards: Forwards,
    /// The flow table's fill, limit and evictions.
    room: Room,
    /// Per uplink, outbound and inbound, what GSO super-packets carry beyond their own
    /// length ([`segments`]).
    segments: Vec<[segments::SegmentCounts; 2]>,
}

/// A panic while a lock was held leaves the tables consistent (no update spans a panic
/// point), so a poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let weights = config.uplinks.iter().map(|u| u.weight).collect();
        let tiers = config.uplinks.iter().map(|u| u.tier).collect();
        let n = config.uplinks.len();
        let select = Selector::new(weights, tiers);
        let shards = (0..SHARDS)
            .map(|_| {
                let mut affinity = Affinity::new(config.affinity_timeout_ms);
                affinity.set_max_idle(idle_bindings_per_shard(&config.limits));
                Mutex::new(Shard {
                    flows: FlowTable::default(),
                    affinity,
                    uplinks: vec![UplinkCounters::default(); n],
                    fragments: fragment::Fragments::default(),
                    early_drop_from: 0,
                    embryonic: Vec::new(),
                })
            })
            .collect();
        let mut nat = Nat::new(n, config.ports, config.seed);
        nat.set_limits(&config.limits);
        Engine {
            timeouts: Mutex::new(config.timeouts),
            shards,
            nat: Mutex::new(nat),
            pins: ArcSwap::from_pointee(Pins::new(config.pins)),
            leaving: AtomicU32::new(select.leaving()),
            down: AtomicU32::new(select.down()),
            ineligible: AtomicU32::new(select.ineligible()),
            failback: Mutex::new(Failback::new(vec![FailbackPolicy::default(); n])),
            select: Mutex::new(select),
            reselecting: Mutex::new(()),
            reset_tcp_on_down: AtomicBool::new(config.reset_tcp_on_down),
            udp_endpoint_affinity: AtomicBool::new(config.udp_affinity == UdpAffinity::Endpoint),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            moved: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            unreachables: AtomicU64::new(0),
            unreachable_budget: Mutex::new(RateLimit {
                tokens: RateLimit::BURST,
                last_ms: 0,
            }),
            addrs: config
                .uplinks
                .iter()
                .map(|u| AtomicU64::new(u64::from(u.addr)))
                .collect(),
            previous_addrs: config
                .uplinks
                .iter()
                .map(|u| AtomicU32::new(u.addr))
                .collect(),
            fast_path: None,
            lan_nets: Vec::new(),
            forwards: Forwards::default(),
            room: Room::new(&config.limits),
            segments: (0..n).map(|_| Default::default()).collect(),
        }
    }

    /// Translates only packets from these networks (the LAN interfaces' subnets, and routed
    /// LANs behind them); the rest are dropped as [`DropReason::NotFromLan`]. Without any,
    /// every source is taken.
    pub fn with_lan_nets(mut self, nets: Vec<Prefix>) -> Engine {
        self.lan_nets = nets;
        self
    }

    fn is_from_lan(&self, src: u32) -> bool {
        self.lan_nets.is_empty() || self.lan_nets.iter().any(|n| n.contains(src))
    }

    /// Sends what arrives for these ports of the uplinks' addresses on to LAN hosts; the NAT
    /// pools keep the ports aside on every uplink.
    pub fn with_forwards(mut self, forwards: Vec<Forward>) -> Engine {
        {
            let mut nat = lock(&self.nat);
            for f in &forwards {
                nat.reserve(f.proto, f.port);
            }
        }
        for shard in self.shards.iter() {
            lock(shard)
                .embryonic
                .resize_with(forwards.len(), Embryonic::default);
        }
        self.forwards = Forwards::new(forwards);
        self
    }

    /// The forward `flow` came in through, if it is a forwarded flow: one whose external
    /// port is a forwarded port of its uplink (the pools never hand those out).
    fn forward_of(&self, flow: &Flow) -> Option<usize> {
        self.forwards
            .find(flow.key.proto, flow.uplink, flow.ext_port)
    }

    /// The address `flow` leaves from.
    /// `uplink`'s address now, and its epoch (how many times it changed, modulo 256).
    fn addr_of(&self, uplink: UplinkId) -> (u32, u8) {
        let b = self.addrs[usize::from(uplink)]
            .load(Ordering::Acquire)
            .to_le_bytes();
        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), b[4])
    }

    /// The address `flow` is translated to: its uplink's, or, for a flow opened before the
    /// uplink's address changed, the one before.
    fn ext_addr(&self, flow: &Flow) -> u32 {
        match self.addr_of(flow.uplink) {
            (addr, epoch) if epoch == flow.epoch => addr,
            _ => self.previous_addrs[usize::from(flow.uplink)].load(Ordering::Relaxed),
        }
    }

    /// Whether `flow` was opened before its uplink's address last changed.
    fn is_stale(&self, flow: &Flow) -> bool {
        self.addr_of(flow.uplink).1 != flow.epoch
    }

    fn shard(&self, remote: u32) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard_of(remote)])
    }

    fn is_leaving(&self, uplink: UplinkId) -> bool {
        self.leaving.load(Ordering::Relaxed) & uplink_bit(uplink.into()) != 0
    }

    /// Whether a UDP or ICMP flow on a leaving uplink must move: yes, unless a pin holds it
    /// to its uplink and that uplink is up (a pinned backup uplink is still the pinned uplink), or
    /// it is forwarded (its remote end knows that uplink's address only).
    fn must_move(&self, flow: &Flow) -> bool {
        // two atomic loads decide for nearly every packet; the forwards are asked only then
        let stale = self.is_stale(flow);
        if !stale && !self.is_leaving(flow.uplink) {
            return false;
        }
        // a forwarded flow never moves: its client knows only its uplink's address
        if self.forward_of(flow).is_some() {
            return false;
        }
        if stale {
            return true;
        }
        let pinned_here = self
            .pins
            .load()
            .lookup(flow.key.rem_addr)
            .is_some_and(|p| p.uplink == flow.uplink);
        !(pinned_here && self.is_up(flow.uplink))
    }

    fn is_up(&self, uplink: UplinkId) -> bool {
        self.down.load(Ordering::Relaxed) & uplink_bit(uplink.into()) == 0
    }
}

#[cfg(test)]
mod tests;
