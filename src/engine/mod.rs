//! The sans-IO core: flow table, NAT, uplink choice and ICMP translation over byte buffers.
//!
//! Nothing here reads a clock or makes a syscall: the caller passes `now` and the packet, and
//! the engine rewrites the packet in place and answers with a [`Verdict`] saying where it goes.

// The packet code: a cast that could cut a length, a port or an index short is a bug here, so
// each one is a conversion that cannot lose bits, or says why losing them is the point.
#![warn(clippy::cast_possible_truncation)]

pub mod affinity;
pub mod answer;
pub mod checksum;
pub mod flow;
pub mod forward;
pub mod fragment;
pub mod hairpin;
pub mod hosts;
pub mod icmp;
pub mod limits;
pub mod nat;
pub mod packet;
pub mod select;

use affinity::Affinity;
pub use flow::Flow;
use flow::{Acked, Change, Dir, FlowKey, FlowTable, ReplyKey, Segment, TcpState, Timeouts};
use forward::{Forward, ForwardCount, Forwards};
use hosts::{Network, Refusal};
use icmp::{Embedded, ErrorDirection};
use limits::{Embryonic, Eviction, Limits, Room, idle_bindings_per_shard};
use nat::{Endpoint, Nat};
use packet::{
    End, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Ipv4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK,
    TCP_FIN, TCP_RST, TCP_SYN,
};
use select::{Pin, Pins, Prefix, Selector};

pub use answer::{MAX_UNREACHABLE, SEQUENCE_PROBE};
pub use packet::L4Checksum;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// Milliseconds on a monotonic clock of the caller's choosing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn after_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0 + ms)
    }

    /// The compact form kept in table entries.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a stamp is the low 32 bits"
    )]
    pub fn stamp(self) -> Stamp {
        Stamp(self.0 as u32)
    }

    /// Milliseconds from `earlier` to `self`; correct for ages under 49 days, far beyond any
    /// timeout (expiry removes entries long before).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "compared in the low 32 bits, as stamps are kept"
    )]
    pub fn since_stamp(self, earlier: Stamp) -> u64 {
        u64::from((self.0 as u32).wrapping_sub(earlier.0))
    }
}

/// The low 32 bits of a [`Timestamp`]: 4 bytes per table entry instead of 8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp(u32);

impl Stamp {
    /// The later of two stamps less than 24 days apart.
    pub fn later(self, other: Stamp) -> Stamp {
        if (other.0.wrapping_sub(self.0) as i32) > 0 {
            other
        } else {
            self
        }
    }
}

/// Why a packet was not forwarded. Every drop is counted under one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Too short, or a length field that does not fit.
    Malformed,
    /// IPv6 or anything else that is not IPv4 (IPv6 support comes later).
    NotIpv4,
    /// A fragment that cannot be translated: one from an uplink (the packet sockets
    /// reassemble what arrives there, so none should get here), or an ICMP error quoting a
    /// non-first fragment (it quotes no ports). Outbound fragments have the reasons below.
    Fragment,
    /// An IP protocol other than TCP, UDP and ICMP.
    UnsupportedProtocol,
    /// An ICMP message that is neither echo nor an error about a known flow.
    UnsupportedIcmp,
    /// No uplink is up.
    NoUplink,
    /// A strict pin's uplink is down.
    PinnedUplinkDown,
    /// A packet from the LAN whose source is in no LAN network: spoofed or misconfigured.
    NotFromLan,
    /// A packet from an uplink whose source is in a LAN network: forged.
    LanSourceFromUplink,
    /// An ICMP error whose checksum is wrong (RFC 5508 REQ-3): the rewrite would repair it.
    BadIcmpChecksum,
    /// The uplink's port pool for the protocol is used up.
    PortsExhausted,
    /// The LAN host holds as many ports of the pool as one host may (--max-ports-per-host).
    HostPortLimit,
    /// A packet from an uplink that matches no flow and goes to no forwarded port (or a TCP
    /// reset opening one).
    NoFlow,
    /// A TCP segment to a forwarded port that belongs to no connection and is not a SYN (without
    /// ACK) opening one.
    ForwardNotSyn,
    /// A packet to a forwarded port from a remote end that the forward's LAN host already
    /// exchanges packets with, from the same port, through a flow it opened itself (with a port
    /// of the pool): one flow per LAN end and remote end.
    ForwardClash,
    /// A packet on an uplink not addressed to that uplink's address.
    NotForUplink,
    /// A later piece of a fragmented datagram whose first piece (the one with the transport
    /// header, hence the mapping) was not seen: it came first, or was dropped, or came more than
    /// 30 s ago.
    FragmentWithoutFirst,
    /// A fragment that overlaps bytes of its datagram already sent (a duplicate included): the
    /// far end would reassemble bytes wanlb never translated (RFC 1858).
    FragmentOverlap,
    /// A fragment that contradicts itself or its datagram: no data, a length not a multiple of 8
    /// before the last piece, past 64 KiB or past the datagram's end, a first piece too short
    /// to hold the whole transport header.
    FragmentMalformed,
    /// No room to remember a fragmented datagram: its shard's table of datagrams in flight is
    /// full (a first piece), or its pieces came in more separate runs than an entry tracks.
    FragmentTableFull,
    /// A fragment marked for checksum offload (CHECKSUM_PARTIAL): the device would sum this piece
    /// alone, so its transport checksum could never be right.
    FragmentPartialChecksum,
    /// An ICMP error from the LAN that answers no packet wanlb delivered: it quotes no packet
    /// of a live flow (one the remote end sent to the LAN host), or it is not addressed to
    /// that packet's sender. Translated, it would leave from an uplink's address to anyone.
    ForgedIcmpError,
    /// A LAN host's packet to a NAT port of an uplink's address (hairpinning) that the mapping
    /// there does not take, as if it came from outside: no mapping holds the port, or its LAN
    /// host has not sent to the sender's external address and port.
    HairpinNoFlow,
    /// A packet from an uplink that names one of the uplinks' own addresses as its remote end
    /// (its source, or the destination of the packet an ICMP error quotes): forged, since only
    /// hairpinned packets, which never leave the gateway, have such an end.
    OwnAddressFromUplink,
    /// The flow table holds as many flows as it may (--max-flows), and none that never
    /// completed was found to end for the new one (see [`limits`]).
    FlowTableFull,
    /// The LAN host has as many flows open as one host may (--max-flows-per-host).
    HostFlowLimit,
    /// The addresses of the LAN host's network that never completed a TCP handshake have as
    /// many flows open, together, as one host may: made-up sources share one host's share
    /// (see [`hosts`]).
    UnverifiedFlowLimit,
    /// Those addresses hold as many ports of the pool, together, as one host may
    /// (--max-ports-per-host).
    UnverifiedPortLimit,
    /// A port forward has as many connections as one LAN host may have flows
    /// (--max-flows-per-host), and none of them that never completed was found to end for the
    /// new one (see [`limits`]).
    ForwardFlowLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 29] = [
        DropReason::Malformed,
        DropReason::NotIpv4,
        DropReason::Fragment,
        DropReason::UnsupportedProtocol,
        DropReason::UnsupportedIcmp,
        DropReason::NoUplink,
        DropReason::PinnedUplinkDown,
        DropReason::NotFromLan,
        DropReason::LanSourceFromUplink,
        DropReason::BadIcmpChecksum,
        DropReason::PortsExhausted,
        DropReason::HostPortLimit,
        DropReason::NoFlow,
        DropReason::ForwardNotSyn,
        DropReason::ForwardClash,
        DropReason::NotForUplink,
        DropReason::FragmentWithoutFirst,
        DropReason::FragmentOverlap,
        DropReason::FragmentMalformed,
        DropReason::FragmentTableFull,
        DropReason::FragmentPartialChecksum,
        DropReason::ForgedIcmpError,
        DropReason::HairpinNoFlow,
        DropReason::OwnAddressFromUplink,
        DropReason::FlowTableFull,
        DropReason::HostFlowLimit,
        DropReason::UnverifiedFlowLimit,
        DropReason::UnverifiedPortLimit,
        DropReason::ForwardFlowLimit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::Fragment => "fragment",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::UnsupportedIcmp => "unsupported_icmp",
            DropReason::NoUplink => "no_uplink",
            DropReason::PinnedUplinkDown => "pinned_uplink_down",
            DropReason::NotFromLan => "not_from_lan",
            DropReason::LanSourceFromUplink => "lan_source_from_uplink",
            DropReason::BadIcmpChecksum => "bad_icmp_checksum",
            DropReason::PortsExhausted => "ports_exhausted",
            DropReason::HostPortLimit => "host_port_limit",
            DropReason::NoFlow => "no_flow",
            DropReason::ForwardNotSyn => "forward_not_syn",
            DropReason::ForwardClash => "forward_clash",
            DropReason::NotForUplink => "not_for_uplink",
            DropReason::FragmentWithoutFirst => "fragment_without_first",
            DropReason::FragmentOverlap => "fragment_overlap",
            DropReason::FragmentMalformed => "fragment_malformed",
            DropReason::FragmentTableFull => "fragment_table_full",
            DropReason::FragmentPartialChecksum => "fragment_partial_checksum",
            DropReason::ForgedIcmpError => "forged_icmp_error",
            DropReason::HairpinNoFlow => "hairpin_no_flow",
            DropReason::OwnAddressFromUplink => "own_address_from_uplink",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::HostFlowLimit => "host_flow_limit",
            DropReason::UnverifiedFlowLimit => "unverified_flow_limit",
            DropReason::UnverifiedPortLimit => "unverified_port_limit",
            DropReason::ForwardFlowLimit => "forward_flow_limit",
        }
    }

    /// Drops the LAN host is told about with ICMP destination unreachable, so its stack
    /// fails fast instead of waiting for a time-out.
    pub fn is_unreachable(self) -> bool {
        self.unreachable_code().is_some()
    }

    /// The ICMP destination-unreachable code a drop is answered with: "network unreachable"
    /// when no line can carry it, "administratively prohibited" when the ports, the table or
    /// the host's share run out (RFC 5508 REQ-8).
    fn unreachable_code(self) -> Option<u8> {
        match self {
            DropReason::NoUplink | DropReason::PinnedUplinkDown => Some(answer::NET_UNREACHABLE),
            DropReason::PortsExhausted
            | DropReason::HostPortLimit
            | DropReason::FlowTableFull
            | DropReason::HostFlowLimit
            | DropReason::UnverifiedFlowLimit
            | DropReason::UnverifiedPortLimit => Some(answer::ADMIN_PROHIBITED),
            _ => None,
        }
    }

    /// The drop for a host's share refused.
    fn of_refusal(refusal: Refusal) -> DropReason {
        match refusal {
            Refusal::HostFlows => DropReason::HostFlowLimit,
            Refusal::UnverifiedFlows => DropReason::UnverifiedFlowLimit,
            Refusal::HostPorts => DropReason::HostPortLimit,
            Refusal::UnverifiedPorts => DropReason::UnverifiedPortLimit,
        }
    }
}

/// What to do with a packet the engine has seen (and rewritten, unless dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it out on this uplink, to its gateway.
    Uplink(UplinkId),
    /// Write it to the TUN device, towards the LAN. From [`Engine::outbound`]: the packet
    /// was replaced, in place, by the engine's answer to its sender (a TCP reset for a
    /// connection whose line died), as long as its IPv4 total length says.
    Tun,
    /// From [`Engine::outbound`], for a LAN host's packet to an uplink's address: write it back
    /// to the TUN device as it now is, its offloads (GSO, a partial checksum) kept. Either it
    /// was hairpinned (translated to another LAN host's mapping, see [`hairpin`]), or it is
    /// left as it was for the gateway's own stack: an echo or an ICMP error that no mapping
    /// takes, which the kernel answers as it answers the internet.
    Hairpin,
    Drop(DropReason),
}

/// A data path outside the engine (wanlb's in-kernel one) that can carry a steady flow's
/// packets, translated as the engine would. The engine decides which flows to hand over and
/// when to take them back; the fast path only moves packets.
pub trait FastPath: Send + Sync + std::fmt::Debug {
    /// Starts carrying `flow`, translated to `ext_addr`; false if it cannot (full, say).
    fn hand_over(&self, flow: &Flow, ext_addr: u32) -> bool;
    /// Milliseconds since the fast path last carried a packet of `flow`; `None` if never.
    fn idle_ms(&self, flow: &Flow, ext_addr: u32) -> Option<u64>;
    /// Stops carrying `flow`: its port is about to be reused.
    fn withdraw(&self, flow: &Flow, ext_addr: u32);
    /// TCP: for each direction (outbound, inbound: the LAN host's segments, the remote's), the
    /// acknowledgement number and window of the last segment with ACK the fast path carried
    /// of `flow`, if any. It carries a flow's segments but its SYN, FIN and RST, so this is
    /// where each side's receive window is now. A fast path that does not record them says
    /// `None`, and the engine judges by what it saw itself.
    fn acks(&self, _flow: &Flow, _ext_addr: u32) -> [Option<Acked>; 2] {
        [None, None]
    }
    /// IP bytes of `flow` the fast path carried, both ways, since it was handed over.
    fn bytes(&self, _flow: &Flow, _ext_addr: u32) -> u64 {
        0
    }
}

/// A destination and what its live flows through one uplink carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyDestination {
    pub addr: u32,
    pub uplink: UplinkId,
    /// IP bytes both ways, fast path included.
    pub bytes: u64,
    pub flows: u64,
}

/// Packets an answered flow (TCP past its handshake, UDP or ping with a reply) shows the
/// engine before it is offered to the fast path. Handing a flow over costs two map updates,
/// about what moving one packet through userspace costs, so anything but the briefest
/// exchange (a DNS query and its answer) is worth handing over early.
pub const HAND_OVER_AFTER: u8 = 4;
/// Packets of one-way UDP (a stream nobody answers, or not yet) before it is offered.
pub const HAND_OVER_ONE_WAY_AFTER: u8 = 64;

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
    /// cannot survive a new address); otherwise leave them, for lines that come back fast.
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkCounters {
    pub outbound_packets: u64,
    pub outbound_bytes: u64,
    pub inbound_packets: u64,
    pub inbound_bytes: u64,
    /// Flows LAN hosts opened on this uplink (forwarded ones are counted per forward).
    pub flows: u64,
    /// Times a destination was bound to this uplink (pins included).
    pub destinations: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub drops: [u64; DropReason::ALL.len()],
    pub uplinks: Vec<UplinkCounters>,
    /// Flows moved to another uplink because theirs went down or was a backup no longer
    /// needed (UDP and ICMP: they continue from a new address).
    pub moved: u64,
    /// TCP connections on a dead uplink ended with a reset to the LAN host.
    pub resets: u64,
    /// ICMP "network unreachable" sent to LAN hosts.
    pub unreachables: u64,
    /// Flows ended before their time, and bindings not kept, by [`Eviction`].
    pub evictions: [u64; Eviction::ALL.len()],
}

impl UplinkCounters {
    fn add(&mut self, o: &UplinkCounters) {
        self.outbound_packets += o.outbound_packets;
        self.outbound_bytes += o.outbound_bytes;
        self.inbound_packets += o.inbound_packets;
        self.inbound_bytes += o.inbound_bytes;
        self.flows += o.flows;
        self.destinations += o.destinations;
    }
}

impl Shard {
    fn count_outbound(&mut self, uplink: UplinkId, bytes: usize) {
        let c = &mut self.uplinks[usize::from(uplink)];
        c.outbound_packets += 1;
        c.outbound_bytes += bytes as u64;
    }

    fn count_inbound(&mut self, uplink: UplinkId, bytes: usize) {
        let c = &mut self.uplinks[usize::from(uplink)];
        c.inbound_packets += 1;
        c.inbound_bytes += bytes as u64;
    }
}

impl Counters {
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn eviction_count(&self, eviction: Eviction) -> u64 {
        self.evictions[eviction as usize]
    }
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
    reset_tcp_on_down: AtomicBool,
    /// [`UdpAffinity::Endpoint`]; a reload may change it.
    udp_endpoint_affinity: AtomicBool,
    drops: [AtomicU64; DropReason::ALL.len()],
    moved: AtomicU64,
    resets: AtomicU64,
    unreachables: AtomicU64,
    unreachable_budget: Mutex<RateLimit>,
    fast_path: Option<Box<dyn FastPath>>,
    /// Sources translated; empty: all.
    lan_nets: Vec<Prefix>,
    forwards: Forwards,
    /// The flow table's fill, limit and evictions.
    room: Room,
}

/// ICMP errors the engine sends: at most 100 a second after a burst of 50 (RFC 1812 4.3.2.8
/// asks routers to limit them).
#[derive(Debug)]
struct RateLimit {
    tokens: u64,
    last_ms: u64,
}

impl RateLimit {
    const BURST: u64 = 50;
    const EVERY_MS: u64 = 10;

    fn take(&mut self, now: Timestamp) -> bool {
        let elapsed = now.as_millis().saturating_sub(self.last_ms);
        let earned = elapsed / Self::EVERY_MS;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(Self::BURST);
            self.last_ms += earned * Self::EVERY_MS;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// An outbound fragment, once [`Engine::outbound_fragment`] has looked at it.
enum Piece {
    /// The first piece: translate it by this view, then remember its mapping.
    First(Ipv4, fragment::Fragment),
    /// A later piece, translated and bound for this uplink.
    Sent(UplinkId),
    /// A piece of a datagram to an uplink's address: not hairpinned, but left to the gateway's
    /// own stack, which reassembles it.
    Local,
}

/// Why a new flow got its uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placed {
    Pinned,
    /// Its LAN endpoint (a UDP socket) talks through that uplink already.
    ByEndpoint,
    /// Its destination's uplink, or the weighted choice.
    Other,
    /// Hairpinned: on the uplink whose address it goes to, which it never leaves.
    Hairpin,
}

/// What an outbound packet's flow says should happen to it.
enum Found {
    /// Translate it for this uplink, external port and address.
    Forward(UplinkId, u16, u32),
    /// Its connection is being ended: answer it with a reset.
    Reset,
    /// Its uplink is leaving service: end the flow and open it anew elsewhere.
    Move,
    New,
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

    /// Hands steady flows (TCP, UDP, ICMP echo) to `fast_path` from now on.
    pub fn with_fast_path(mut self, fast_path: Box<dyn FastPath>) -> Engine {
        self.fast_path = Some(fast_path);
        self
    }

    /// Moves a flow's session along by a packet sent `dir` (UDP and ICMP too: they need to
    /// know when they are answered). The fast path shows the engine only the SYN, FIN and RST
    /// of a flow it carries, so a reset is judged by the receiver's window as the fast path
    /// last carried it ([`TcpState::refresh`]); and a flow whose session takes a reset or
    /// starts over comes back from the fast path: the engine must see whether the reset holds
    /// (its sender falls silent) or the new connection's handshake, before it hands the flow
    /// over again.
    ///
    /// Returns the forward of a forwarded flow that just completed its handshake (`Some(Ok)`)
    /// or started over (`Some(Err)`), for its count of embryonic connections.
    fn track(&self, flow: &mut Flow, dir: Dir, seg: &Segment) -> Option<Result<usize, usize>> {
        let completed = flow.tcp.is_completed();
        self.track_session(flow, dir, seg);
        if flow.tcp.is_completed() == completed {
            return None;
        }
        let id = self.forward_of(flow)?;
        Some(if completed { Err(id) } else { Ok(id) })
    }

    fn track_session(&self, flow: &mut Flow, dir: Dir, seg: &Segment) {
        let fast = self.fast_path.as_deref().filter(|_| flow.on_fast_path);
        if let Some(fast) = fast
            && seg.flags & TCP_RST != 0
        {
            // both sides: the receiver's window judges the reset, and if it is taken the
            // flow comes back to the engine, which then goes on from there
            let carried = fast.acks(flow, self.ext_addr(flow));
            for dir in [Dir::Out, Dir::In] {
                flow.tcp.refresh(dir, carried[dir.index()]);
            }
        }
        if flow.tcp.update(dir, seg) != Change::None && fast.is_some() {
            self.take_back(flow);
        }
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

    /// Takes `flow` off the fast path, if it is there.
    fn withdraw(&self, flow: &Flow) {
        if let (true, Some(fast)) = (flow.on_fast_path, &self.fast_path) {
            fast.withdraw(flow, self.ext_addr(flow));
        }
    }

    /// Brings `flow` back from the fast path: the engine sees its packets again, and it is
    /// offered again only once steady anew.
    fn take_back(&self, flow: &mut Flow) {
        if let (true, Some(fast)) = (flow.on_fast_path, &self.fast_path) {
            flow.bytes += fast.bytes(flow, self.ext_addr(flow));
        }
        self.withdraw(flow);
        flow.on_fast_path = false;
        flow.hits = 0;
    }

    /// Counts a packet of `flow` and offers the flow to the fast path once it is steady. Runs
    /// under the flow's shard lock, as does withdrawing it, so the two never cross.
    fn consider_fast_path(&self, flow: &mut Flow) {
        let Some(fast) = &self.fast_path else { return };
        // a flow about to move or be reset must keep passing through the engine (a forwarded
        // one never moves)
        if flow.on_fast_path
            || flow.tcp.is_resetting()
            || (self.is_leaving(flow.uplink) && self.forward_of(flow).is_none())
            || self.is_stale(flow)
        {
            return;
        }
        flow.hits = flow.hits.saturating_add(1);
        // both ways and, for TCP, no SYN, FIN or RST pending: nothing left for the engine to
        // watch; UDP may also be one-way (a media stream, say)
        let ready = if flow.tcp.is_steady() {
            flow.hits >= HAND_OVER_AFTER
        } else {
            flow.key.proto == PROTO_UDP && flow.hits >= HAND_OVER_ONE_WAY_AFTER
        };
        if ready {
            flow.on_fast_path = fast.hand_over(flow, self.ext_addr(flow));
            if !flow.on_fast_path {
                flow.hits = 0; // full: ask again after as many packets
            }
        }
    }

    fn shard(&self, remote: u32) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard_of(remote)])
    }

    fn is_leaving(&self, uplink: UplinkId) -> bool {
        self.leaving.load(Ordering::Relaxed) & uplink_bit(uplink.into()) != 0
    }

    /// Whether a UDP or ICMP flow on a leaving uplink must move: yes, unless a pin holds it
    /// to its uplink and that uplink is up (a pinned backup line is still the pinned line), or
    /// it is forwarded (its remote end knows that line's address only).
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

    /// A packet from the LAN (read from TUN). On `Verdict::Uplink` it has been translated to
    /// that uplink's address. `csum` says how the kernel left the transport checksum and is
    /// updated if the engine completes it.
    pub fn outbound(&self, now: Timestamp, pkt: &mut [u8], csum: &mut L4Checksum) -> Verdict {
        match self.translate_outbound(now, pkt, csum) {
            Ok(verdict) => verdict,
            Err(reason) => self.dropped(reason),
        }
    }

    /// A packet that arrived on `uplink`. On `Verdict::Tun` it has been translated back to the
    /// LAN endpoint.
    pub fn inbound(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Verdict {
        match self.translate_inbound(now, uplink, pkt, csum) {
            Ok(()) => Verdict::Tun,
            Err(reason) => self.dropped(reason),
        }
    }

    fn dropped(&self, reason: DropReason) -> Verdict {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
        Verdict::Drop(reason)
    }

    fn translate_outbound(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Result<Verdict, DropReason> {
        // a fragment: the first piece is translated below like any packet and its mapping kept;
        // a later piece follows that mapping and is done here
        let (ip, first_piece) = match Ipv4::parse(pkt, 0) {
            Err(DropReason::Fragment) => match self.outbound_fragment(now, pkt, *csum)? {
                Piece::First(ip, piece) => (ip, Some(piece)),
                Piece::Sent(uplink) => return Ok(Verdict::Uplink(uplink)),
                Piece::Local => return Ok(Verdict::Hairpin),
            },
            parsed => (parsed?, None),
        };
        if !self.is_from_lan(ip.src) {
            return Err(DropReason::NotFromLan);
        }
        if let Some(uplink) = self.uplink_at(ip.dst) {
            return self.hairpin(now, pkt, &ip, csum, uplink);
        }
        if ip.proto == PROTO_ICMP {
            match ip.icmp_type(pkt) {
                ICMP_ECHO_REQUEST => {}
                t if icmp::is_error(t) => {
                    return self.outbound_error(pkt, &ip, csum).map(Verdict::Uplink);
                }
                _ => return Err(DropReason::UnsupportedIcmp),
            }
        }
        let (int_port, rem_port) = ip.ports(pkt);
        let key = FlowKey {
            int_addr: ip.src,
            rem_addr: ip.dst,
            int_port,
            rem_port,
            proto: ip.proto,
        };
        let seg = Segment::parse(pkt, &ip);
        let flags = seg.flags;
        let mut shard = self.shard(key.rem_addr);
        let mut embryonic = None;
        let mut verifies = false;
        let found = match shard.flows.get_mut(&key) {
            // the host's own reset ends it anyway: never answer a reset with one
            Some(flow) if flow.tcp.is_resetting() && flags & TCP_RST == 0 => Found::Reset,
            Some(flow) if key.proto != PROTO_TCP && self.must_move(flow) => Found::Move,
            Some(flow) => {
                flow.last_seen = now.stamp();
                flow.bytes += pkt.len() as u64;
                // the host got the SYN-ACK sent to its address: a host, not a made-up source
                verifies = key.proto == PROTO_TCP
                    && flow.tcp.acknowledges_syn_ack(&seg)
                    && self.forward_of(flow).is_none();
                embryonic = self.track(flow, Dir::Out, &seg);
                self.consider_fast_path(flow);
                Found::Forward(flow.uplink, flow.ext_port, self.ext_addr(flow))
            }
            None => Found::New,
        };
        if verifies {
            lock(&self.nat).verify(key.int_addr);
        }
        self.embryonic_changed(&mut shard, &key, embryonic);
        let opened = |(uplink, port): (UplinkId, u16)| (uplink, port, self.addr_of(uplink).0);
        let (uplink, ext_port, addr) = match found {
            Found::Forward(uplink, port, addr) => (uplink, port, addr),
            Found::New => opened(self.open_flow(&mut shard, now, key, &seg, pkt.len(), None)?),
            Found::Move => {
                self.end_flow(&mut shard, &key, now);
                self.moved.fetch_add(1, Ordering::Relaxed);
                opened(self.open_flow(&mut shard, now, key, &seg, pkt.len(), None)?)
            }
            Found::Reset => {
                answer::reset_in_place(pkt, &ip);
                *csum = L4Checksum::Complete;
                self.resets.fetch_add(1, Ordering::Relaxed);
                // the connection is over: its port goes back, and the same four-tuple may
                // open anew on a healthy line
                self.end_flow(&mut shard, &key, now);
                return Ok(Verdict::Tun);
            }
        };
        if let Some(piece) = &first_piece {
            let id = shard.fragments.first(now, piece, uplink, addr)?;
            fragment::rewrite_id(pkt, id);
        }
        packet::rewrite(pkt, &ip, End::Source, addr, ext_port, *csum);
        shard.count_outbound(uplink, pkt.len());
        Ok(Verdict::Uplink(uplink))
    }

    /// A fragment from the LAN. The first piece comes back as the view to translate it by;
    /// a later one is translated here by its first piece's mapping: source address (and
    /// identification) and IP header checksum (see [`fragment`]).
    fn outbound_fragment(
        &self,
        now: Timestamp,
        pkt: &mut [u8],
        csum: L4Checksum,
    ) -> Result<Piece, DropReason> {
        let piece = fragment::Fragment::parse(pkt)?;
        if csum == L4Checksum::Partial {
            return Err(DropReason::FragmentPartialChecksum);
        }
        if self.uplink_at(piece.key.dst).is_some() {
            return if self.is_from_lan(piece.key.src) {
                Ok(Piece::Local)
            } else {
                Err(DropReason::NotFromLan)
            };
        }
        if piece.is_first() {
            return Ok(Piece::First(piece.first_view(pkt)?, piece));
        }
        let mut shard = self.shard(piece.key.dst);
        let to = shard.fragments.later(now, &piece)?;
        fragment::rewrite_later(pkt, &to);
        shard.count_outbound(to.uplink, pkt.len());
        Ok(Piece::Sent(to.uplink))
    }

    /// Takes a flow out of the table and gives back what it held: its place on the fast
    /// path, its destination's binding, its port (after the fast path let go of it), its
    /// host's share.
    fn end_flow(&self, shard: &mut Shard, key: &FlowKey, now: Timestamp) {
        let Some(flow) = shard.flows.remove(key) else {
            return;
        };
        self.room.removed(1);
        self.withdraw(&flow);
        // a forwarded flow held neither
        if let Some(id) = self.forward_of(&flow) {
            if !flow.tcp.is_completed() {
                shard.embryonic[id].ended();
            }
            self.forwards.closed(id);
            return;
        }
        if shard
            .affinity
            .detach(key.rem_addr, flow.uplink, flow.last_seen)
        {
            self.room.count(Eviction::AffinityFull, 1);
        }
        lock(&self.nat).release(endpoint_of(&flow), now);
    }

    /// Opens the flow of a LAN host's packet that matches none, on the uplink chosen for it, or,
    /// hairpinned, on `on`. The host's share is asked first, before an uplink, a port or a
    /// table entry is spent on it. Returns its uplink and external port.
    fn open_flow(
        &self,
        shard: &mut Shard,
        now: Timestamp,
        key: FlowKey,
        seg: &Segment,
        len: usize,
        on: Option<UplinkId>,
    ) -> Result<(UplinkId, u16), DropReason> {
        // a reset, or an answer to a SYN, opens nothing (conntrack takes neither as new): an
        // answer from a forward's host to a connection ended early must not open one anew
        let answers_syn = seg.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK;
        if key.proto == PROTO_TCP && (seg.flags & TCP_RST != 0 || answers_syn) {
            return Err(DropReason::NoFlow);
        }
        let network = Network::of(key.int_addr, &self.lan_nets);
        lock(&self.nat)
            .admit(key.int_addr, network)
            .map_err(DropReason::of_refusal)?;
        let placed = self.place_flow(shard, now, key, seg, len, on);
        if placed.is_err() {
            lock(&self.nat).unadmit(key.int_addr, now);
        }
        placed
    }

    /// Chooses the uplink and port of a new flow its host's share admitted, and puts it in the
    /// table (making room first if the table is nearly full).
    fn place_flow(
        &self,
        shard: &mut Shard,
        now: Timestamp,
        key: FlowKey,
        seg: &Segment,
        len: usize,
        on: Option<UplinkId>,
    ) -> Result<(UplinkId, u16), DropReason> {
        let (uplink, placed) = match on {
            Some(uplink) => (uplink, Placed::Hairpin),
            None => self.choose_uplink(shard, &key, now)?,
        };
        self.make_room(shard, shard_of(key.rem_addr), now)?;
        let endpoint = Endpoint {
            addr: key.int_addr,
            port: key.int_port,
            proto: key.proto,
            uplink,
        };
        let current = !matches!(placed, Placed::Pinned | Placed::Hairpin);
        let ext_port = lock(&self.nat)
            .acquire(endpoint, current)
            .map_err(|e| match e {
                nat::Exhausted::Pool => DropReason::PortsExhausted,
                nat::Exhausted::Host(refusal) => DropReason::of_refusal(refusal),
            })?;
        let counters = &mut shard.uplinks[usize::from(uplink)];
        counters.flows += 1;
        // a flow placed for its socket's sake does not take its destination from the line
        // the destination's other flows use (the destination sees the host from one address)
        let bound_elsewhere = placed == Placed::ByEndpoint
            && shard
                .affinity
                .lookup(key.rem_addr, now)
                .is_some_and(|u| u != uplink);
        // an uplink's own address is no destination to bind
        if placed != Placed::Hairpin
            && !bound_elsewhere
            && shard.affinity.attach(key.rem_addr, uplink, now)
        {
            counters.destinations += 1;
        }
        shard.flows.insert(Flow {
            key,
            last_seen: now.stamp(),
            ext_port,
            uplink,
            tcp: TcpState::opened(seg),
            hits: 1,
            on_fast_path: false,
            bytes: len as u64,
            epoch: self.addr_of(uplink).1,
        });
        self.room.added();
        Ok((uplink, ext_port))
    }

    /// Pin (if its uplink is up; refused if it is down and the pin strict), else for UDP the
    /// uplink where the LAN endpoint already has a mapping (with endpoint affinity, if new
    /// flows may use it), else the destination's current uplink (likewise), else the next
    /// weighted pick among the active tier.
    fn choose_uplink(
        &self,
        shard: &Shard,
        key: &FlowKey,
        now: Timestamp,
    ) -> Result<(UplinkId, Placed), DropReason> {
        let dst = key.rem_addr;
        match self.pins.load().lookup(dst) {
            Some(pin) if self.is_up(pin.uplink) => return Ok((pin.uplink, Placed::Pinned)),
            Some(pin) if pin.strict => return Err(DropReason::PinnedUplinkDown),
            _ => {}
        }
        if key.proto == PROTO_UDP && self.udp_endpoint_affinity.load(Ordering::Relaxed) {
            let eligible = first_uplinks(self.addrs.len()) & !self.leaving.load(Ordering::Relaxed);
            let newest =
                lock(&self.nat).newest_uplink_of(key.int_addr, key.int_port, key.proto, eligible);
            if let Some(u) = newest {
                return Ok((u, Placed::ByEndpoint));
            }
        }
        let mut select = lock(&self.select);
        match shard.affinity.lookup(dst, now) {
            Some(u) if select.is_eligible(u) => Ok((u, Placed::Other)),
            _ => select
                .weighted()
                .map(|u| (u, Placed::Other))
                .ok_or(DropReason::NoUplink),
        }
    }

    fn translate_inbound(
        &self,
        now: Timestamp,
        uplink: UplinkId,
        pkt: &mut [u8],
        csum: &mut L4Checksum,
    ) -> Result<(), DropReason> {
        let ip = Ipv4::parse(pkt, 0)?;
        // an uplink has no business sending a LAN source: forged (an error that would seem
        // to come from a LAN neighbour, say)
        if !self.lan_nets.is_empty() && self.is_from_lan(ip.src) {
            return Err(DropReason::LanSourceFromUplink);
        }
        if self.uplink_at(ip.src).is_some() {
            return Err(DropReason::OwnAddressFromUplink);
        }
        if usize::from(uplink) >= self.addrs.len() || ip.dst != self.addr_of(uplink).0 {
            return Err(DropReason::NotForUplink);
        }
        let (src_port, dst_port) = ip.ports(pkt);
        let reply = if ip.proto == PROTO_ICMP {
            match ip.icmp_type(pkt) {
                ICMP_ECHO_REPLY => {}
                t if icmp::is_error(t) => return self.inbound_error(uplink, pkt, &ip, csum),
                _ => return Err(DropReason::UnsupportedIcmp),
            }
            ReplyKey {
                rem_addr: ip.src,
                rem_port: 0,
                ext_port: src_port,
                proto: PROTO_ICMP,
                uplink,
            }
        } else {
            ReplyKey {
                rem_addr: ip.src,
                rem_port: src_port,
                ext_port: dst_port,
                proto: ip.proto,
                uplink,
            }
        };
        let seg = Segment::parse(pkt, &ip);
        let mut shard = self.shard(reply.rem_addr);
        let (addr, port) = match shard.flows.get_reply_mut(&reply) {
            Some(flow) => {
                flow.last_seen = now.stamp();
                flow.bytes += pkt.len() as u64;
                let embryonic = self.track(flow, Dir::In, &seg);
                self.consider_fast_path(flow);
                let key = flow.key;
                self.embryonic_changed(&mut shard, &key, embryonic);
                (key.int_addr, key.int_port)
            }
            None => self.open_forwarded(&mut shard, now, &reply, &seg, pkt.len())?,
        };
        packet::rewrite(pkt, &ip, End::Destination, addr, port, *csum);
        shard.count_inbound(uplink, pkt.len());
        Ok(())
    }

    /// Opens the flow a packet from an uplink that matches none opens, if it goes to a
    /// forwarded port (for TCP, if it is a SYN): on the forward's uplink for life, to its LAN
    /// host. Returns that LAN end.
    fn open_forwarded(
        &self,
        shard: &mut Shard,
        now: Timestamp,
        reply: &ReplyKey,
        seg: &Segment,
        len: usize,
    ) -> Result<(u32, u16), DropReason> {
        let id = self
            .forwards
            .find(reply.proto, reply.uplink, reply.ext_port)
            .ok_or(DropReason::NoFlow)?;
        if reply.proto == PROTO_TCP
            && seg.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN
        {
            return Err(DropReason::ForwardNotSyn);
        }
        let forward = self.forwards.get(id);
        let key = FlowKey {
            int_addr: forward.host,
            rem_addr: reply.rem_addr,
            int_port: forward.host_port,
            rem_port: reply.rem_port,
            proto: reply.proto,
        };
        if shard.flows.get(&key).is_some() {
            return Err(DropReason::ForwardClash);
        }
        self.admit_forwarded(shard, shard_of(key.rem_addr), id, now)?;
        if let Err(reason) = self.make_room(shard, shard_of(key.rem_addr), now) {
            self.forwards.closed(id);
            return Err(reason);
        }
        self.make_embryonic_room(shard, id, now);
        shard.flows.insert(Flow {
            key,
            last_seen: now.stamp(),
            ext_port: reply.ext_port,
            uplink: reply.uplink,
            tcp: TcpState::opened_by_remote(seg),
            hits: 1,
            on_fast_path: false,
            bytes: len as u64,
            epoch: self.addr_of(reply.uplink).1,
        });
        self.room.added();
        self.embryonic_changed(shard, &key, Some(Err(id)));
        self.forwards.count_opened(id);
        Ok((forward.host, forward.host_port))
    }

    /// An ICMP error from the internet about a packet that left through `uplink`. Errors do
    /// not refresh the flow: they are not traffic of it.
    fn inbound_error(
        &self,
        uplink: UplinkId,
        pkt: &mut [u8],
        ip: &Ipv4,
        csum: &mut L4Checksum,
    ) -> Result<(), DropReason> {
        if !icmp::checksum_ok(pkt, ip, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let emb = Embedded::parse(pkt, ip)?;
        if emb.src != ip.dst {
            return Err(DropReason::NoFlow);
        }
        if self.uplink_at(emb.dst).is_some() {
            return Err(DropReason::OwnAddressFromUplink);
        }
        let reply = ReplyKey {
            rem_addr: emb.dst,
            rem_port: emb.dst_port,
            ext_port: emb.src_port,
            proto: emb.proto,
            uplink,
        };
        let mut shard = self.shard(reply.rem_addr);
        let flow = shard
            .flows
            .get_reply_mut(&reply)
            .ok_or(DropReason::NoFlow)?;
        let (addr, port) = (flow.key.int_addr, flow.key.int_port);
        icmp::translate(pkt, ip, &emb, ErrorDirection::Inbound, addr, port);
        *csum = L4Checksum::Complete;
        shard.count_inbound(uplink, pkt.len());
        Ok(())
    }

    /// An ICMP error from the LAN about a packet wanlb delivered there (a port unreachable for
    /// a closed UDP socket, say): it must quote that packet, of a live flow, as the remote end
    /// sent it to the LAN host, and go back to its sender; anything else would leave from an
    /// uplink's address to whomever the LAN host chose. Its source may be any LAN address (a
    /// router in front of the host, RFC 5508 REQ-5c).
    fn outbound_error(
        &self,
        pkt: &mut [u8],
        ip: &Ipv4,
        csum: &mut L4Checksum,
    ) -> Result<UplinkId, DropReason> {
        if !icmp::checksum_ok(pkt, ip, *csum) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let emb = Embedded::parse(pkt, ip)?;
        if emb.proto == PROTO_ICMP {
            return Err(DropReason::UnsupportedIcmp);
        }
        if ip.dst != emb.src {
            return Err(DropReason::ForgedIcmpError);
        }
        let key = FlowKey {
            int_addr: emb.dst,
            rem_addr: emb.src,
            int_port: emb.dst_port,
            rem_port: emb.src_port,
            proto: emb.proto,
        };
        let mut shard = self.shard(key.rem_addr);
        let flow = shard
            .flows
            .get_mut(&key)
            .ok_or(DropReason::ForgedIcmpError)?;
        let (uplink, ext_port) = (flow.uplink, flow.ext_port);
        let addr = self.ext_addr(flow);
        icmp::translate(pkt, ip, &emb, ErrorDirection::Outbound, addr, ext_port);
        *csum = L4Checksum::Complete;
        shard.count_outbound(uplink, pkt.len());
        Ok(uplink)
    }

    /// Removes idle flows, returns their ports to the pools and lets idle destination
    /// bindings lapse. As the flow table fills, the timeouts of flows that never completed
    /// and of TCP sessions opening or closing shrink ([`limits`]).
    pub fn expire(&self, now: Timestamp) {
        let fast = self.fast_path.as_deref();
        let timeouts = *lock(&self.timeouts);
        let scale = self.room.scale();
        let mut ended = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.fragments.expire(now);
            let Shard {
                flows,
                affinity,
                embryonic,
                ..
            } = &mut *shard;
            let idle_elsewhere = |f: &Flow| fast?.idle_ms(f, self.ext_addr(f));
            let (mut removed, mut early, mut unbound) = (0, 0, 0);
            flows.expire(now, &timeouts, scale, idle_elsewhere, |f, shortened| {
                removed += 1;
                early += u64::from(shortened);
                self.withdraw(f);
                if let Some(id) = self.forward_of(f) {
                    if !f.tcp.is_completed() {
                        embryonic[id].ended();
                    }
                    self.forwards.closed(id);
                    return;
                }
                unbound += u64::from(affinity.detach(f.key.rem_addr, f.uplink, f.last_seen));
                ended.push(endpoint_of(f));
            });
            affinity.expire(now);
            self.room.removed(removed);
            self.room.count(Eviction::AdaptiveTimeout, early);
            self.room.count(Eviction::AffinityFull, unbound);
            // Ports return to the pools only now, after the fast path has let go of their
            // flows, and the pools are not held while it is asked (syscalls, for the kernel's).
            if !ended.is_empty() {
                let mut nat = lock(&self.nat);
                for endpoint in ended.drain(..) {
                    nat.release(endpoint, now);
                }
            }
        }
        lock(&self.nat).expire_hosts(now);
    }

    /// Applies a health verdict. Uplinks that leave service (this one going down, or a
    /// backup once a better tier is back) lose their destination bindings, so the next flow
    /// to each is placed anew, and their UDP and ICMP flows come back from the fast path, to
    /// move at their next packet. An uplink that went down also has its TCP connections ended
    /// (unless configured to keep them): the returned packets, to be written towards the LAN,
    /// ask each host for the sequence number its reset must carry.
    pub fn set_uplink_up(&self, uplink: UplinkId, up: bool) -> Vec<[u8; SEQUENCE_PROBE]> {
        self.reselect(|select| select.set_up(uplink, up))
    }

    /// Applies what a reload may change while flows run: weights, tiers, pins, the
    /// affinity and idle timeouts, and what a dead line does to TCP. The uplinks, their
    /// addresses and the port pool of `config` are those the engine was made with. Flows
    /// keep their uplink and mapping, and destinations their binding, except on uplinks
    /// that leave service (a line made a backup while a better tier is up): those are
    /// released as when a line leaves on health.
    pub fn reconfigure(&self, config: &EngineConfig) {
        self.pins.store(Arc::new(Pins::new(config.pins.clone())));
        *lock(&self.timeouts) = config.timeouts;
        self.room.set(&config.limits);
        lock(&self.nat).set_limits(&config.limits);
        self.reset_tcp_on_down
            .store(config.reset_tcp_on_down, Ordering::Relaxed);
        self.udp_endpoint_affinity.store(
            config.udp_affinity == UdpAffinity::Endpoint,
            Ordering::Relaxed,
        );
        for shard in self.shards.iter() {
            let affinity = &mut lock(shard).affinity;
            affinity.set_idle_timeout(config.affinity_timeout_ms);
            affinity.set_max_idle(idle_bindings_per_shard(&config.limits));
        }
        let weights = config.uplinks.iter().map(|u| u.weight).collect();
        let tiers = config.uplinks.iter().map(|u| u.tier).collect();
        let probes = self.reselect(|select| select.set_policy(weights, tiers));
        debug_assert!(probes.is_empty(), "a reload takes no line down");
    }

    /// Changes the selector with `change`, then releases what now leaves service.
    fn reselect(&self, change: impl FnOnce(&mut Selector)) -> Vec<[u8; SEQUENCE_PROBE]> {
        // one pass at a time (the monitor's verdicts, a reload), each over the flows its own
        // change affected
        let _one_at_a_time = lock(&self.reselecting);
        let (newly_down, newly_leaving) = {
            let mut select = lock(&self.select);
            let (down_before, leaving_before) = (select.down(), select.leaving());
            change(&mut select);
            let (down, leaving) = (select.down(), select.leaving());
            self.down.store(down, Ordering::Relaxed);
            self.leaving.store(leaving, Ordering::Relaxed);
            (down & !down_before, leaving & !leaving_before)
        };
        let reset = self.reset_tcp_on_down.load(Ordering::Relaxed);
        self.release(newly_down | newly_leaving, true, None, |f| {
            reset && newly_down & uplink_bit(f.uplink.into()) != 0
        })
    }

    /// A new address for `uplink` (a DHCP renewal, a PPPoE reconnect): new flows use it at
    /// once. Flows on the old one cannot follow it: UDP and ICMP move at their next packet
    /// (to the same line, since their destinations keep their binding), TCP is reset towards
    /// the LAN host whatever `reset_tcp_on_down` says (the returned probes ask for the
    /// sequence numbers).
    pub fn set_uplink_addr(&self, uplink: UplinkId, addr: u32) -> Vec<[u8; SEQUENCE_PROBE]> {
        let _one_at_a_time = lock(&self.reselecting);
        let (old, epoch) = self.addr_of(uplink);
        if old == addr {
            return Vec::new();
        }
        let i = usize::from(uplink);
        self.previous_addrs[i].store(old, Ordering::Relaxed);
        let epoch = epoch.wrapping_add(1);
        // released after the previous address: whoever sees the new epoch sees it too
        self.addrs[i].store(u64::from(epoch) << 32 | u64::from(addr), Ordering::Release);
        self.release(uplink_bit(uplink.into()), false, Some(epoch), |_| true)
    }

    /// Releases what the uplinks in `affected` (one bit each) hold: with `unbind`, their
    /// destinations' bindings; their UDP and ICMP flows, which come back from the fast path to
    /// move at their next packet; and the TCP connections `reset_tcp` picks, which come back
    /// too and are reset towards the LAN host (the returned probes ask each host for the
    /// sequence number its reset must carry). Other TCP connections are left to finish, and
    /// forwarded flows stay, unless the address changed (`renewed`, the new epoch): then they
    /// come back from the fast path and go on from the new address.
    fn release(
        &self,
        affected: u32,
        unbind: bool,
        renewed: Option<u8>,
        reset_tcp: impl Fn(&Flow) -> bool,
    ) -> Vec<[u8; SEQUENCE_PROBE]> {
        let mut probes = Vec::new();
        if affected == 0 {
            return probes;
        }
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            for u in 0..self.addrs.len() {
                if unbind && affected & uplink_bit(u) != 0 {
                    shard.affinity.release(uplink_id(u));
                }
            }
            shard.flows.for_each_mut(|f| {
                if affected & uplink_bit(f.uplink.into()) == 0 {
                    return;
                }
                // a hairpinned flow never crosses its line: only the address it names matters
                if renewed.is_none() && self.is_hairpin(f) {
                    return;
                }
                let reset =
                    f.key.proto == PROTO_TCP && !f.tcp.is_reset_or_resetting() && reset_tcp(f);
                // TCP left to finish, and forwarded flows, which never move, stay on the fast
                // path; everything else comes back
                // (on an address change, a forwarded flow comes back too, and goes on from the
                // new address: the forwarded port is the same there)
                let forwarded = self.forward_of(f).is_some();
                let stays = f.key.proto == PROTO_TCP || (forwarded && renewed.is_none());
                if !stays || reset {
                    // the host's receive point as the fast path last carried it: the probe
                    // must land far from its window
                    if let (true, true, Some(fast)) = (reset, f.on_fast_path, &self.fast_path) {
                        f.tcp
                            .refresh(Dir::Out, fast.acks(f, self.ext_addr(f))[Dir::Out.index()]);
                    }
                    self.take_back(f);
                    if let (true, Some(epoch)) = (forwarded, renewed) {
                        f.epoch = epoch;
                    }
                }
                if reset {
                    f.tcp.set_resetting();
                    // a connection not answered yet is reset at its next retransmission;
                    // one closed both ways has nobody left to tell
                    if f.tcp.is_answered()
                        && !f.tcp.is_closed()
                        && let Some(host_expects) = f.tcp.receive_point(Dir::Out)
                    {
                        let mut probe = [0u8; SEQUENCE_PROBE];
                        answer::sequence_probe(
                            &mut probe,
                            (f.key.rem_addr, f.key.rem_port),
                            (f.key.int_addr, f.key.int_port),
                            host_expects,
                        );
                        probes.push(probe);
                    }
                }
            });
        }
        probes
    }

    /// Writes into `out` (at least [`MAX_UNREACHABLE`] bytes) the ICMP destination
    /// unreachable answering `pkt`, a packet `outbound` dropped for `reason`; `None` if the
    /// reason is not answered ([`DropReason::is_unreachable`]), the packet must not be, or
    /// the rate limit says no. Returns the answer's length.
    pub fn unreachable(
        &self,
        now: Timestamp,
        reason: DropReason,
        pkt: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let code = reason.unreachable_code()?;
        let ip = match Ipv4::parse(pkt, 0) {
            // of a fragmented datagram, only the first piece is answered (RFC 1812 4.3.2.7)
            Err(DropReason::Fragment) => fragment::Fragment::parse(pkt)
                .ok()
                .filter(fragment::Fragment::is_first)?
                .first_view(pkt)
                .ok()?,
            parsed => parsed.ok()?,
        };
        if !answer::may_answer(pkt, &ip) || !lock(&self.unreachable_budget).take(now) {
            return None;
        }
        self.unreachables.fetch_add(1, Ordering::Relaxed);
        Some(answer::unreachable(pkt, &ip, code, out))
    }

    /// Totals so far, summed over the shards.
    pub fn counters(&self) -> Counters {
        let mut c = Counters {
            drops: std::array::from_fn(|i| self.drops[i].load(Ordering::Relaxed)),
            uplinks: vec![UplinkCounters::default(); self.addrs.len()],
            moved: self.moved.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            unreachables: self.unreachables.load(Ordering::Relaxed),
            evictions: self.room.evictions(),
        };
        for shard in self.shards.iter() {
            for (total, part) in c.uplinks.iter_mut().zip(&lock(shard).uplinks) {
                total.add(part);
            }
        }
        c
    }

    pub fn flow_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).flows.len()).sum()
    }

    /// The most flows the table holds (--max-flows).
    pub fn flow_limit(&self) -> u32 {
        self.room.max_flows()
    }

    /// LAN addresses known: verified ones (a TCP handshake completed from them; with flows, or
    /// lately), unverified ones with flows. See [`hosts`].
    pub fn host_counts(&self) -> (usize, usize) {
        lock(&self.nat).hosts().counts()
    }

    /// Live flows: TCP, UDP, ICMP.
    pub fn flows_by_proto(&self) -> [u64; 3] {
        let mut counts = [0u64; 3];
        for shard in self.shards.iter() {
            lock(shard).flows.for_each_mut(|f| match f.key.proto {
                PROTO_TCP => counts[0] += 1,
                PROTO_UDP => counts[1] += 1,
                _ => counts[2] += 1,
            });
        }
        counts
    }

    /// The `n` destinations whose live flows carried the most bytes, busiest first (one
    /// entry per destination and uplink). Walks every flow, and asks the fast path about
    /// those it carries outside the shard locks: for the status, not for every scrape.
    pub fn busiest_destinations(&self, n: usize) -> Vec<BusyDestination> {
        let mut totals: ahash::AHashMap<(u32, UplinkId), (u64, u64)> = ahash::AHashMap::new();
        let mut carried: Vec<Flow> = Vec::new();
        for shard in self.shards.iter() {
            lock(shard).flows.for_each_mut(|f| {
                let t = totals.entry((f.key.rem_addr, f.uplink)).or_default();
                t.0 += f.bytes;
                t.1 += 1;
                if f.on_fast_path {
                    carried.push(*f);
                }
            });
        }
        if let Some(fast) = &self.fast_path {
            for f in &carried {
                if let Some(t) = totals.get_mut(&(f.key.rem_addr, f.uplink)) {
                    t.0 += fast.bytes(f, self.ext_addr(f));
                }
            }
        }
        let mut busiest: Vec<BusyDestination> = totals
            .into_iter()
            .map(|((addr, uplink), (bytes, flows))| BusyDestination {
                addr,
                uplink,
                bytes,
                flows,
            })
            .collect();
        busiest.sort_unstable_by_key(|d| (std::cmp::Reverse(d.bytes), d.addr));
        busiest.truncate(n);
        busiest
    }

    /// The forwards, in the order given.
    pub fn forwards(&self) -> &[Forward] {
        self.forwards.list()
    }

    /// How busy each forward is, in the order given.
    pub fn forward_counts(&self) -> Vec<ForwardCount> {
        self.forwards.counts().collect()
    }

    /// NAT ports in use on `uplink`: TCP, UDP, ICMP identifiers.
    pub fn ports_in_use(&self, uplink: UplinkId) -> [u64; 3] {
        lock(&self.nat).in_use(uplink)
    }

    pub fn mapping_count(&self) -> usize {
        lock(&self.nat).len()
    }

    pub fn destination_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).affinity.len()).sum()
    }
}

#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod front_door_tests;
#[cfg(test)]
mod hairpin_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
