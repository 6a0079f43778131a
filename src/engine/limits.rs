//! How far the tables may grow, and what happens as they fill: the engine's answer to a LAN
//! host or an internet host that opens flows faster than they end.
//!
//! - **The flow table** holds at most [`Limits::max_flows`] flows. From [`EARLY_DROP_PERCENT`]
//!   of that on, a new flow first ends one that never completed (a TCP connection before its
//!   handshake, a UDP or ping flow never answered), as conntrack's early_drop does; a full
//!   table with nothing of the kind to end refuses the new flow
//!   ([`super::DropReason::FlowTableFull`]). A completed flow is never ended early.
//! - **Adaptive timeouts**, as pf's: from [`ADAPTIVE_START_PERCENT`] of the limit on, the idle
//!   timeouts of flows that never completed and of TCP sessions opening or closing shrink in
//!   proportion, to a third of their value at the limit (pf's `adaptive.start` 60% and
//!   `adaptive.end` 120%: the timeout would reach zero at 120%, a fill this table never
//!   reaches). Established connections and answered flows keep theirs.
//! - **Per host** ([`super::hosts`]): flows and NAT ports one LAN address may hold, and what
//!   addresses that never proved themselves may hold together.
//! - **Per port forward**: connections that have not completed their handshake (embryonic)
//!   are at most [`Limits::max_embryonic_per_forward`]; the oldest gives way to a new one, so a
//!   flood of SYNs from made-up sources cannot keep a real client out, as long as its
//!   handshake completes before that many newer ones arrive.
//!   All its connections are at most [`Limits::max_flows_per_host`], and those from one
//!   source (a remote /24) at most [`Limits::max_flows_per_forward_source`]: a source at its
//!   share is refused ([`super::DropReason::ForwardSourceLimit`]) before anyone's connection
//!   gives way to it.
//! - **The destination bindings** (affinity) and the **fragment** tables are bounded in their
//!   own modules; the NAT mappings and the host table hold entries of live flows only (and,
//!   for hosts, a bounded number more).
//!
//! Every refusal is a counted drop; every flow ended before its time, and every binding not
//! kept, is a counted [`Eviction`].

use std::collections::VecDeque;
use std::sync::TryLockError;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::family::{Family, V4};
use super::flow::{FlowKey, FlowTable};
use super::port_forward::Full;
use super::{DropReason, Engine, SHARDS, Shard, Timestamp};

/// The limits a reload may change while flows run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Flows in the table, all kinds together.
    pub max_flows: u32,
    /// Flows one LAN host may have open (see [`super::hosts`]).
    pub max_flows_per_host: u32,
    /// NAT ports one LAN host may hold per uplink and protocol.
    pub max_ports_per_host: u32,
    /// Connections through one port forward that have not completed their handshake (UDP:
    /// flows the LAN host has not answered). Kept as [`super::SHARDS`] equal parts, by remote
    /// address, each rounded up.
    pub max_embryonic_per_forward: u32,
    /// Connections through one port forward from one source (a remote /24), all kinds
    /// together: one client, or one block of made-up sources, leaves the rest of the
    /// forward's connections to the others.
    pub max_flows_per_forward_source: u32,
}

impl Limits {
    /// No limit at all: for tests and benches that measure something else.
    pub const fn unlimited() -> Limits {
        Limits {
            max_flows: u32::MAX,
            max_flows_per_host: u32::MAX,
            max_ports_per_host: u32::MAX,
            max_embryonic_per_forward: u32::MAX,
            max_flows_per_forward_source: u32::MAX,
        }
    }
}

/// A forward's connections from one source are at most this fraction of its limit: the
/// default of [`Limits::max_flows_per_forward_source`].
pub const FORWARD_SOURCE_SHARE: u32 = 8;

/// Heap bytes one flow costs at most, with its share of the indexes, its NAT mapping and its
/// destination's binding (`cargo bench --bench memory`: 74 to 107 in practice), rounded up.
pub const BYTES_PER_FLOW: u64 = 256;
/// The default flow limit takes one flow per this many bytes of memory: at
/// [`BYTES_PER_FLOW`], a full table uses under 2% of the machine's memory.
pub const MEMORY_PER_FLOW: u64 = 16 * 1024;
/// Bounds of the default flow limit, whatever the memory.
pub const DEFAULT_FLOWS_RANGE: (u32, u32) = (16_384, 1_048_576);

/// The flow limit for a machine with `total_memory` bytes: one flow per [`MEMORY_PER_FLOW`],
/// within [`DEFAULT_FLOWS_RANGE`] (65,536 flows for 1 GiB, 262,144 for 4 GiB).
pub fn default_max_flows(total_memory: u64) -> u32 {
    let (least, most) = DEFAULT_FLOWS_RANGE;
    u32::try_from(total_memory / MEMORY_PER_FLOW)
        .unwrap_or(most)
        .clamp(least, most)
}

/// The default per-host flow limit: a sixteenth of the table, so that a few busy hosts
/// (and the addresses no host has proven, together) cannot fill it.
pub fn default_max_flows_per_host(max_flows: u32) -> u32 {
    (max_flows / 16).max(1)
}

/// From this fill of the flow table on, each new flow first ends one that never completed.
pub const EARLY_DROP_PERCENT: u64 = 95;
/// From this fill on, timeouts shrink (pf's `adaptive.start`).
pub const ADAPTIVE_START_PERCENT: u64 = 60;
/// The fill at which they would reach zero (pf's `adaptive.end`).
pub const ADAPTIVE_END_PERCENT: u64 = 120;

/// A factor on timeouts, in thousandths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale(u32);

impl Scale {
    pub const FULL: Scale = Scale(1000);

    /// The factor at a fill of `live` flows of at most `max`: 1 up to
    /// [`ADAPTIVE_START_PERCENT`], then falling in a straight line to 0 at
    /// [`ADAPTIVE_END_PERCENT`].
    pub fn at(live: u32, max: u32) -> Scale {
        let (live, max) = (u64::from(live) * 100, u64::from(max));
        if live <= max * ADAPTIVE_START_PERCENT {
            return Scale::FULL;
        }
        let left = (max * ADAPTIVE_END_PERCENT).saturating_sub(live);
        let span = max * (ADAPTIVE_END_PERCENT - ADAPTIVE_START_PERCENT);
        Scale(u32::try_from(left * 1000 / span).unwrap_or(1000))
    }

    pub fn is_full(self) -> bool {
        self.0 >= 1000
    }

    pub fn apply(self, ms: u64) -> u64 {
        ms * u64::from(self.0) / 1000
    }
}

/// Why a flow ended before its time, or a binding was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// A flow that never completed, ended to make room in a nearly full table.
    EarlyDrop,
    /// An embryonic connection through a port forward, ended for a newer one.
    ForwardEmbryonic,
    /// A flow ended by its timeout as pressure shortened it, before its full timeout.
    AdaptiveTimeout,
    /// A destination whose last flow ended, not kept bound to its uplink: its shard of the
    /// affinity table holds as many idle bindings as it may.
    AffinityFull,
}

impl Eviction {
    pub const ALL: [Eviction; 4] = [
        Eviction::EarlyDrop,
        Eviction::ForwardEmbryonic,
        Eviction::AdaptiveTimeout,
        Eviction::AffinityFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Eviction::EarlyDrop => "early_drop",
            Eviction::ForwardEmbryonic => "forward_embryonic",
            Eviction::AdaptiveTimeout => "adaptive_timeout",
            Eviction::AffinityFull => "affinity_full",
        }
    }
}

/// The flow table's fill against its limit, shared by the workers without a lock: one atomic
/// add per flow opened or ended, none per packet of a flow that exists.
#[derive(Debug)]
pub(super) struct Room {
    live: AtomicU32,
    max_flows: AtomicU32,
    /// Per shard and forward: [`Limits::max_embryonic_per_forward`] over the shards.
    embryonic_per_shard: AtomicU32,
    /// Per forward, all its connections: [`Limits::max_flows_per_host`].
    per_forward: AtomicU32,
    /// Per forward and source: [`Limits::max_flows_per_forward_source`].
    per_forward_source: AtomicU32,
    evictions: [AtomicU64; Eviction::ALL.len()],
}

impl Room {
    pub(super) fn new(limits: &Limits) -> Room {
        let room = Room {
            live: AtomicU32::new(0),
            max_flows: AtomicU32::new(0),
            embryonic_per_shard: AtomicU32::new(0),
            per_forward: AtomicU32::new(0),
            per_forward_source: AtomicU32::new(0),
            evictions: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        room.set(limits);
        room
    }

    pub(super) fn set(&self, limits: &Limits) {
        self.max_flows.store(limits.max_flows, Ordering::Relaxed);
        let shards = u32::try_from(super::SHARDS).expect("a few shards");
        self.embryonic_per_shard.store(
            limits.max_embryonic_per_forward.div_ceil(shards),
            Ordering::Relaxed,
        );
        self.per_forward
            .store(limits.max_flows_per_host, Ordering::Relaxed);
        self.per_forward_source
            .store(limits.max_flows_per_forward_source, Ordering::Relaxed);
    }

    pub(super) fn live(&self) -> u32 {
        self.live.load(Ordering::Relaxed)
    }

    pub(super) fn max_flows(&self) -> u32 {
        self.max_flows.load(Ordering::Relaxed)
    }

    /// A forward's connections at most, and those from one source at most.
    pub(super) fn per_forward(&self) -> (u32, u32) {
        (
            self.per_forward.load(Ordering::Relaxed),
            self.per_forward_source.load(Ordering::Relaxed),
        )
    }

    pub(super) fn embryonic_per_shard(&self) -> usize {
        self.embryonic_per_shard.load(Ordering::Relaxed) as usize
    }

    pub(super) fn added(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn removed(&self, n: u32) {
        self.live.fetch_sub(n, Ordering::Relaxed);
    }

    /// Whether a new flow must first end one that never completed.
    pub(super) fn wants_early_drop(&self) -> bool {
        u64::from(self.live()) * 100 >= u64::from(self.max_flows()) * EARLY_DROP_PERCENT
    }

    pub(super) fn is_full(&self) -> bool {
        self.live() >= self.max_flows()
    }

    /// The factor on the timeouts that pressure shortens, now.
    pub(super) fn scale(&self) -> Scale {
        Scale::at(self.live(), self.max_flows())
    }

    pub(super) fn count(&self, eviction: Eviction, n: u64) {
        if n > 0 {
            self.evictions[eviction as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn evictions(&self) -> [u64; Eviction::ALL.len()] {
        std::array::from_fn(|i| self.evictions[i].load(Ordering::Relaxed))
    }
}

/// Shards a new flow looks in for a flow to end, when the table is nearly full: its own and
/// the next ones that are not busy.
const EARLY_DROP_SHARDS: usize = 4;

/// What the engine does at its limits: the early drop, the forwards' embryonic connections.
impl Engine {
    /// A forwarded flow `key` completed its handshake (`Ok`), or opened or started over
    /// (`Err`): its forward's count of embryonic connections in `shard` follows.
    pub(super) fn embryonic_changed(
        &self,
        shard: &mut Shard,
        key: &FlowKey,
        change: Option<Result<usize, usize>>,
    ) {
        let Shard {
            flows, embryonic, ..
        } = shard;
        match change {
            None => {}
            Some(Ok(id)) => embryonic[id].ended(),
            Some(Err(id)) => {
                embryonic[id].opened(*key, |k| self.is_embryonic_of(flows, k, id));
            }
        }
    }

    /// Whether `key` is an embryonic connection through forward `id`.
    fn is_embryonic_of(&self, flows: &FlowTable, key: &FlowKey, id: usize) -> bool {
        flows
            .get(key)
            .is_some_and(|f| !f.tcp.is_completed() && self.forward_of(f) == Some(id))
    }

    /// Makes room for a new flow in a nearly full table (see [`limits`]): ends a flow that
    /// never completed, from `shard` (number `index`), else from one of the next few shards
    /// not busy now. Refuses the new flow only if the table is full and none was found.
    pub(super) fn make_room(
        &self,
        shard: &mut Shard,
        index: usize,
        now: Timestamp,
    ) -> Result<(), DropReason> {
        if !self.room.wants_early_drop() || self.drop_early_from(shard, now) {
            return Ok(());
        }
        // the caller holds its own shard: another is only tried, never waited for
        for next in 1..EARLY_DROP_SHARDS {
            let other = &self.shards[(index + next) % SHARDS];
            let mut other = match other.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            if self.drop_early_from(&mut other, now) {
                return Ok(());
            }
        }
        if self.room.is_full() {
            Err(DropReason::FlowTableFull)
        } else {
            Ok(())
        }
    }

    /// Ends the flow [`FlowTable::early_drop_candidate`] picks in `shard`, if any.
    fn drop_early_from(&self, shard: &mut Shard, now: Timestamp) -> bool {
        let (candidate, next) = shard.flows.early_drop_candidate(shard.early_drop_from, now);
        shard.early_drop_from = next;
        let Some(key) = candidate else {
            return false;
        };
        self.end_flow(shard, &key, now);
        self.room.count(Eviction::EarlyDrop, 1);
        true
    }

    /// Counts a new connection through forward `id` from `remote` (whose shard `shard` is),
    /// unless the forward has as many as one LAN host may have flows: its LAN host's service,
    /// however busy, must not take the table from the LAN (the internet can keep answered
    /// flows open without end: a UDP service answers any source, and a TCP client completes
    /// its handshakes). At that limit, the oldest of the forward's embryonic connections in
    /// `shard`, or else in one of the next few shards not busy now, gives way; without one, the
    /// new connection is refused. A source (a /24) that has its share of the forward's
    /// connections is refused at once: nobody else's connection gives way to it.
    pub(super) fn admit_forwarded(
        &self,
        shard: &mut Shard,
        remote: u32,
        id: usize,
        now: Timestamp,
    ) -> Result<(), DropReason> {
        let max = self.room.per_forward.load(Ordering::Relaxed);
        let per_source = self.room.per_forward_source.load(Ordering::Relaxed);
        match self.forwards.try_open(id, remote, max, per_source) {
            Ok(()) => return Ok(()),
            Err(Full::Source) => return Err(DropReason::ForwardSourceLimit),
            Err(Full::Forward) => {}
        }
        let index = super::shard_of(remote);
        let mut ended = self.end_oldest_embryonic(shard, id, now);
        // the caller holds its own shard: another is only tried, never waited for
        for next in 1..EARLY_DROP_SHARDS {
            if ended {
                break;
            }
            let other = &self.shards[(index + next) % SHARDS];
            let mut other = match other.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            ended = self.end_oldest_embryonic(&mut other, id, now);
        }
        match ended.then(|| self.forwards.try_open(id, remote, max, per_source)) {
            Some(Ok(())) => Ok(()),
            Some(Err(Full::Source)) => Err(DropReason::ForwardSourceLimit),
            _ => Err(DropReason::ForwardFlowLimit),
        }
    }

    /// Ends the oldest embryonic connection through forward `id` in `shard`, if any.
    fn end_oldest_embryonic(&self, shard: &mut Shard, id: usize, now: Timestamp) -> bool {
        let Shard {
            flows, embryonic, ..
        } = &mut *shard;
        let Some(oldest) = embryonic[id].oldest(|k| self.is_embryonic_of(flows, k, id)) else {
            return false;
        };
        self.end_flow(shard, &oldest, now);
        self.room.count(Eviction::ForwardEmbryonic, 1);
        true
    }

    /// Before a new connection through forward `id` from one of `shard`'s remote addresses:
    /// if the shard holds as many of the forward's embryonic connections as it may, the
    /// oldest gives way.
    pub(super) fn make_embryonic_room(&self, shard: &mut Shard, id: usize, now: Timestamp) {
        while shard.embryonic[id].live() >= self.room.embryonic_per_shard() {
            if !self.end_oldest_embryonic(shard, id, now) {
                return;
            }
        }
    }
}

/// Bindings without a live flow one shard of the affinity table keeps: together, as many as
/// the flow table holds flows.
pub(super) fn idle_bindings_per_shard(limits: &Limits) -> usize {
    (limits.max_flows as usize).div_ceil(super::SHARDS)
}

/// One forward's embryonic connections in one shard: how many there are, exactly, and their
/// keys, oldest first. Keys of connections that completed or ended since are left in place
/// and dropped when they come to the front, or when they outnumber the live ones.
#[derive(Debug)]
pub(super) struct Embryonic<F: Family = V4> {
    queue: VecDeque<FlowKey<F>>,
    live: usize,
}

impl<F: Family> Default for Embryonic<F> {
    fn default() -> Embryonic<F> {
        Embryonic {
            queue: VecDeque::new(),
            live: 0,
        }
    }
}

impl<F: Family> Embryonic<F> {
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// A connection `key` opened (or started over). `still` says whether a key in the queue
    /// is still an embryonic connection of this forward.
    pub(super) fn opened(&mut self, key: FlowKey<F>, still: impl Fn(&FlowKey<F>) -> bool) {
        self.live += 1;
        self.queue.push_back(key);
        if self.queue.len() > 2 * self.live.max(16) {
            self.queue.retain(still);
        }
    }

    /// One of them completed its handshake, or ended.
    pub(super) fn ended(&mut self) {
        debug_assert!(self.live > 0);
        self.live = self.live.saturating_sub(1);
    }

    /// The oldest one still embryonic, taken out of the queue.
    pub(super) fn oldest(&mut self, still: impl Fn(&FlowKey<F>) -> bool) -> Option<FlowKey<F>> {
        while let Some(key) = self.queue.pop_front() {
            if still(&key) {
                return Some(key);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_shrink_in_a_straight_line_from_60_percent_as_pf_does() {
        assert_eq!(Scale::at(0, 1000), Scale::FULL);
        assert_eq!(Scale::at(600, 1000), Scale::FULL);
        assert_eq!(Scale::at(900, 1000).0, 500);
        assert_eq!(Scale::at(1000, 1000).0, 333, "a third at the limit");
        assert_eq!(Scale::at(1200, 1000).0, 0);
        assert_eq!(Scale::at(5000, 1000).0, 0, "past the end: none left");
        assert_eq!(Scale::at(900, 1000).apply(300_000), 150_000);
        // the largest table there can be does not overflow
        assert_eq!(Scale::at(u32::MAX, u32::MAX).0, 333);
        assert!(Scale::at(10, u32::MAX).is_full());
    }

    #[test]
    fn the_default_limit_follows_the_memory_within_bounds() {
        const GIB: u64 = 1 << 30;
        assert_eq!(default_max_flows(GIB), 65_536);
        assert_eq!(default_max_flows(4 * GIB), 262_144);
        assert_eq!(default_max_flows(64 << 20), 16_384, "at least");
        assert_eq!(default_max_flows(1 << 50), 1_048_576, "at most");
        // what a full table costs stays a small part of the machine
        assert!(u64::from(default_max_flows(GIB)) * BYTES_PER_FLOW < GIB / 50);
        assert_eq!(default_max_flows_per_host(65_536), 4_096);
        assert_eq!(default_max_flows_per_host(3), 1);
    }

    #[test]
    fn the_room_counts_and_says_when_to_make_room() {
        let room = Room::new(&Limits {
            max_flows: 100,
            ..Limits::unlimited()
        });
        for _ in 0..94 {
            room.added();
        }
        assert!(!room.wants_early_drop());
        room.added();
        assert!(room.wants_early_drop() && !room.is_full());
        for _ in 0..5 {
            room.added();
        }
        assert!(room.is_full());
        room.removed(100);
        assert_eq!(room.live(), 0);
        room.count(Eviction::EarlyDrop, 2);
        room.count(Eviction::AffinityFull, 0);
        assert_eq!(room.evictions(), [2, 0, 0, 0]);
        // each of the 64 shards keeps its part of the forwards' embryonic limit, rounded up
        room.set(&Limits {
            max_embryonic_per_forward: 1000,
            ..Limits::unlimited()
        });
        assert_eq!(room.embryonic_per_shard(), 16);
    }
}
