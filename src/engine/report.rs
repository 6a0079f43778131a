//! What the engine reports: counters, table sizes, the busiest destinations, the forwards'
//! load. Each walks the shards; none is on the data path.

use super::limits::Eviction;
use super::offload::CarriedFlows;
use super::port_forward::{Forward, ForwardCount};
use super::wire::{PROTO_TCP, PROTO_UDP};
use super::{DropReason, Engine, Shard, UplinkId, lock};

use std::sync::atomic::Ordering;

/// A destination and what its live flows through one uplink carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyDestination {
    pub addr: u32,
    pub uplink: UplinkId,
    /// IP bytes both ways, fast path included.
    pub bytes: u64,
    pub flows: u64,
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
    /// Flows not handed to the fast path when they were ready, its queue of work being full
    /// (see [`super::offload::MAX_QUEUED_HAND_OVERS`]): offered again later.
    pub hand_overs_deferred: u64,
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
    pub(super) fn count_outbound(&mut self, uplink: UplinkId, bytes: usize) {
        let c = &mut self.uplinks[usize::from(uplink)];
        c.outbound_packets += 1;
        c.outbound_bytes += bytes as u64;
    }

    pub(super) fn count_inbound(&mut self, uplink: UplinkId, bytes: usize) {
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

impl Engine {
    /// Totals so far, summed over the shards.
    pub fn counters(&self) -> Counters {
        let mut c = Counters {
            drops: std::array::from_fn(|i| self.drops[i].load(Ordering::Relaxed)),
            uplinks: vec![UplinkCounters::default(); self.addrs.len()],
            moved: self.moved.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            unreachables: self.unreachables.load(Ordering::Relaxed),
            evictions: self.room.evictions(),
            hand_overs_deferred: self.fast_path.as_ref().map_or(0, |q| q.deferred()),
        };
        for shard in self.shards.iter() {
            for (total, part) in c.uplinks.iter_mut().zip(&lock(shard).uplinks) {
                total.add(part);
            }
        }
        // the segments of GSO super-packets, each with its own headers, as the line carries
        // them
        for (total, [out, back]) in c.uplinks.iter_mut().zip(&self.segments) {
            let ((out_packets, out_bytes), (in_packets, in_bytes)) = (out.read(), back.read());
            total.outbound_packets += out_packets;
            total.outbound_bytes += out_bytes;
            total.inbound_packets += in_packets;
            total.inbound_bytes += in_bytes;
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
    /// lately), unverified ones with flows. See [`super::hosts`].
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
    /// entry per destination and uplink), what the fast path carried of them included
    /// (`carried`, read just before). Walks every flow: for the status, not for every scrape.
    pub fn busiest_destinations(&self, n: usize, carried: &CarriedFlows) -> Vec<BusyDestination> {
        let mut totals: ahash::AHashMap<(u32, UplinkId), (u64, u64)> = ahash::AHashMap::new();
        for shard in self.shards.iter() {
            lock(shard).flows.for_each_mut(|f| {
                let t = totals.entry((f.key.rem_addr, f.uplink)).or_default();
                t.0 += f.bytes;
                t.1 += 1;
                if let (true, Some(c)) = (f.on_fast_path, carried.get(&f.key)) {
                    t.0 += c.bytes;
                }
            });
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
