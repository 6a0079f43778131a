//! The kernel fast path, as the engine sees it: which flows it hands over (steady ones:
//! answered, past the TCP handshake, a few packets long), and when it takes them back.
//!
//! The engine makes no syscall, and holds no handle to the fast path. It decides under its
//! shard locks, and queues what it decided as [`FastPathWork`], in the order decided; the
//! fast path's owner (the workers after each batch, and whoever else called the engine)
//! carries the work out, in that order, outside every engine lock, and reports back what
//! came of it ([`Engine::fast_path_done`]). What the engine must know of the kernel's side
//! (when a flow was last carried, how many bytes, where each side's window is) it is given
//! ([`CarriedFlows`], read in one batch before an expiry, or the one flow's [`Carried`] with a
//! TCP reset).
//!
//! Because the queue keeps the order of the decisions, a flow taken back while its hand-over
//! is still queued is taken back after it, and a hand-over that follows a withdrawal follows
//! it in the kernel too. A port is never reused while the kernel may still carry the flow that
//! held it: a flow that ends while on the fast path gives its port back only once its
//! withdrawal has been carried out ([`FastPathDone::Released`]). A hand-over the kernel
//! refuses (its maps full) is taken back again, in case a later hand-over of the same flow is
//! already queued, and tried anew after as many packets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::family::{Family, V4, V6};
use super::flow::{Acked, Flow, FlowKey};
use super::nat::{Endpoint, Nat};
use super::select::Prefix;
use super::wire::PROTO_UDP;
use super::{Engine, Timestamp, UplinkId, lock};

/// Packets an answered flow (TCP past its handshake, UDP or ping with a reply) shows the
/// engine before it is offered to the fast path. Handing a flow over costs two map updates,
/// about what moving one packet through userspace costs, so anything but the briefest
/// exchange (a DNS query and its answer) is worth handing over early.
pub const HAND_OVER_AFTER: u8 = 4;
/// Packets of one-way UDP (a stream nobody answers, or not yet) before it is offered.
pub const HAND_OVER_ONE_WAY_AFTER: u8 = 64;
/// Hand-overs queued and not carried out yet, at most; a flow that would be one more is
/// offered again after as many packets (counted in [`super::Counters::hand_overs_deferred`]).
/// The owner carries the queue out after every batch, so this is reached only if it stalls.
/// Withdrawals are never refused: there is at most one per flow handed over.
pub const MAX_QUEUED_HAND_OVERS: usize = 65_536;

/// A flow as the fast path names it: what both of its map entries are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastFlow<F: Family = V4> {
    pub key: FlowKey<F>,
    pub uplink: UplinkId,
    /// The address it is translated to (its uplink's, or the one before for a flow opened
    /// before the address changed).
    pub ext_addr: F::Addr,
    pub ext_port: u16,
}

/// A port to give back to its pool, once the kernel has let go of the flow that held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release<F: Family = V4> {
    endpoint: Endpoint<F>,
    /// When the flow ended.
    at: Timestamp,
}

impl<F: Family> Release<F> {
    /// The port of `endpoint`'s mapping, whose flow ended `at`.
    pub(super) fn new(endpoint: Endpoint<F>, at: Timestamp) -> Release<F> {
        Release { endpoint, at }
    }

    pub(super) fn give_back(self, nat: &mut Nat<F>) {
        nat.release(self.endpoint, self.at);
    }
}

/// What the engine asks of the fast path, to be carried out in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPathWork<F: Family = V4> {
    /// Start carrying this flow.
    HandOver(FastFlow<F>),
    /// Stop carrying it: it came back to the engine, which counts what the fast path carried
    /// of it ([`FastPathDone::TakenBack`]).
    TakeBack(FastFlow<F>),
    /// Stop carrying it: it ended. Then its port goes back ([`FastPathDone::Released`]), if
    /// it held one of the pools.
    Withdraw(FastFlow<F>, Option<Release<F>>),
}

/// What came of the work, for [`Engine::fast_path_done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPathDone<F: Family = V4> {
    /// The fast path could not take this flow (its maps full).
    Refused(FastFlow<F>),
    /// It let go of this flow, having carried so many IP bytes of it, both ways.
    TakenBack(FastFlow<F>, u64),
    /// It let go of an ended flow: the port can be reused.
    Released(Release<F>),
}

/// What the fast path carried of one flow since it was handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// Milliseconds since it last carried a packet of the flow; `None` if never.
    pub idle_ms: Option<u64>,
    /// IP bytes, both ways.
    pub bytes: u64,
    /// TCP: per [`super::Direction`] (the LAN host's segments, the remote's), the
    /// acknowledgement number and window of the last segment with ACK it carried. It carries
    /// a flow's segments but its SYN, FIN and RST, so this is where each side's receive window
    /// is now.
    pub acks: [Option<Acked>; 2],
}

impl Carried {
    /// What both of a flow's map entries (one per direction) say together: idle since the
    /// later of the two, bytes added, each direction's acknowledgement from its own entry.
    pub fn merge(self, other: Carried) -> Carried {
        let idle_ms = match (self.idle_ms, other.idle_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Carried {
            idle_ms,
            bytes: self.bytes + other.bytes,
            acks: [0, 1].map(|d| self.acks[d].or(other.acks[d])),
        }
    }
}

/// What the fast path carried of each flow it holds, read at once, by flow, of both families.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CarriedFlows {
    /// Sorted by key, one entry per key.
    flows: Vec<(FlowKey<V4>, Carried)>,
    flows6: Vec<(FlowKey<V6>, Carried)>,
}

impl CarriedFlows {
    /// Nothing carried: what a gateway without a fast path has to say.
    pub const NONE: CarriedFlows = CarriedFlows {
        flows: Vec::new(),
        flows6: Vec::new(),
    };

    /// From what each IPv4 map entry says, by the flow it is of (each direction of a flow
    /// has one: see [`Carried::merge`]).
    pub fn from_entries(entries: Vec<(FlowKey<V4>, Carried)>) -> CarriedFlows {
        CarriedFlows {
            flows: by_flow(entries),
            flows6: Vec::new(),
        }
    }

    /// With what each IPv6 map entry says, as [`CarriedFlows::from_entries`].
    pub fn with_entries6(mut self, entries: Vec<(FlowKey<V6>, Carried)>) -> CarriedFlows {
        self.flows6 = by_flow(entries);
        self
    }

    /// What was carried of the IPv4 flow `key`, if the fast path holds it.
    pub fn get(&self, key: &FlowKey<V4>) -> Option<&Carried> {
        find(&self.flows, key)
    }

    /// What was carried of the IPv6 flow `key`, if the fast path holds it.
    pub fn get6(&self, key: &FlowKey<V6>) -> Option<&Carried> {
        find(&self.flows6, key)
    }

    /// Flows of both families.
    pub fn len(&self) -> usize {
        self.flows.len() + self.flows6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One entry per flow, sorted, each direction's entries merged.
fn by_flow<F: Family>(mut entries: Vec<(FlowKey<F>, Carried)>) -> Vec<(FlowKey<F>, Carried)> {
    entries.sort_unstable_by_key(|(k, _)| sort_key(k));
    let mut flows: Vec<(FlowKey<F>, Carried)> = Vec::with_capacity(entries.len() / 2 + 1);
    for (key, c) in entries {
        match flows.last_mut() {
            Some((last, both)) if *last == key => *both = both.merge(c),
            _ => flows.push((key, c)),
        }
    }
    flows
}

/// The order entries are kept in: by remote end first, as the shards are.
fn sort_key<F: Family>(k: &FlowKey<F>) -> (F::Addr, F::Addr, u16, u16, u8) {
    (k.rem_addr, k.int_addr, k.int_port, k.rem_port, k.proto)
}

fn find<'a, F: Family>(
    flows: &'a [(FlowKey<F>, Carried)],
    key: &FlowKey<F>,
) -> Option<&'a Carried> {
    let i = flows
        .binary_search_by_key(&sort_key(key), |(k, _)| sort_key(k))
        .ok()?;
    Some(&flows[i].1)
}

/// The fast path's queue of work, and what the engine needs to know to fill it.
#[derive(Debug)]
pub(super) struct FastPathQueue {
    /// The LAN networks whose hosts the fast path reaches (its LAN links' subnets): a host
    /// behind another router is not handed over.
    reaches: Vec<Prefix>,
    /// The same of IPv6 (its LAN links' IPv6 prefixes).
    pub(super) reaches6: Vec<Prefix<V6>>,
    work: Mutex<Queued>,
    /// Whether `work` holds anything: looked at without its lock after every batch.
    pending: AtomicBool,
    /// [`MAX_QUEUED_HAND_OVERS`], but in tests.
    max_hand_overs: usize,
    deferred: AtomicU64,
}

/// The work of both families: each in the order decided (the two never touch the same map).
/// Two lists rather than one of either kind, so each family's work reaches the fast path's
/// owner as the type its maps take, and IPv4's work stays as small as it was.
#[derive(Debug, Default)]
pub(super) struct Queued {
    work: Vec<FastPathWork>,
    work6: Vec<FastPathWork<V6>>,
    hand_overs: usize,
}

/// A family the fast path carries: where its work is queued.
pub(super) trait Offloaded: Family {
    fn queue(q: &mut Queued) -> &mut Vec<FastPathWork<Self>>;
}

impl Offloaded for V4 {
    fn queue(q: &mut Queued) -> &mut Vec<FastPathWork<V4>> {
        &mut q.work
    }
}

impl Offloaded for V6 {
    fn queue(q: &mut Queued) -> &mut Vec<FastPathWork<V6>> {
        &mut q.work6
    }
}

impl FastPathQueue {
    pub(super) fn new(reaches: Vec<Prefix>, max_hand_overs: usize) -> FastPathQueue {
        FastPathQueue {
            reaches,
            reaches6: Vec::new(),
            work: Mutex::new(Queued::default()),
            pending: AtomicBool::new(false),
            max_hand_overs,
            deferred: AtomicU64::new(0),
        }
    }

    /// Queues `work` after what is queued; false for a hand-over past the limit.
    pub(super) fn push<F: Offloaded>(&self, work: FastPathWork<F>) -> bool {
        let mut queued = lock(&self.work);
        if let FastPathWork::HandOver(_) = work {
            if queued.hand_overs >= self.max_hand_overs {
                self.deferred.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            queued.hand_overs += 1;
        }
        F::queue(&mut queued).push(work);
        self.pending.store(true, Ordering::Release);
        true
    }

    pub(super) fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }

    /// Offers `flow`, of a packet just seen, once it is steady: answered, and for TCP no SYN,
    /// FIN or RST pending (nothing left for the engine to watch), after [`HAND_OVER_AFTER`]
    /// packets; one-way UDP (a media stream, say) after [`HAND_OVER_ONE_WAY_AFTER`]. `reached`:
    /// whether the fast path reaches its LAN host; `fast`: the flow as the fast path names it.
    /// A flow refused is asked again after as many packets.
    pub(super) fn offer<F: Offloaded>(
        &self,
        flow: &mut Flow<F>,
        reached: bool,
        fast: impl FnOnce(&Flow<F>) -> FastFlow<F>,
    ) {
        flow.hits = flow.hits.saturating_add(1);
        let ready = if flow.tcp.is_steady() {
            flow.hits >= HAND_OVER_AFTER
        } else {
            flow.key.proto == PROTO_UDP && flow.hits >= HAND_OVER_ONE_WAY_AFTER
        };
        if !ready {
            return;
        }
        flow.on_fast_path = reached && self.push(FastPathWork::HandOver(fast(flow)));
        if !flow.on_fast_path {
            flow.hits = 0;
        }
    }

    /// Queues `flow`'s coming back (`fast`: as the fast path was told of it) if it is on the
    /// fast path; it is offered again only once steady anew.
    pub(super) fn take_back<F: Offloaded>(&self, flow: &mut Flow<F>, fast: FastFlow<F>) {
        if flow.on_fast_path {
            self.push(FastPathWork::TakeBack(fast));
        }
        flow.on_fast_path = false;
        flow.hits = 0;
    }
}

impl Engine {
    /// Hands steady flows (TCP, UDP, ICMP echo) of hosts in `reaches` (the fast path's LAN
    /// links' subnets) to a fast path from now on, through [`Engine::take_fast_path_work`].
    pub fn with_fast_path(self, reaches: Vec<Prefix>) -> Engine {
        self.with_fast_path_queue(reaches, MAX_QUEUED_HAND_OVERS)
    }

    /// [`Engine::with_fast_path`], with room for `max_hand_overs` in its queue.
    pub(super) fn with_fast_path_queue(mut self, reaches: Vec<Prefix>, max: usize) -> Engine {
        self.fast_path = Some(FastPathQueue::new(reaches, max));
        self
    }

    /// Whether work for the fast path is queued: cheap, for a look after every batch.
    pub fn has_fast_path_work(&self) -> bool {
        self.fast_path
            .as_ref()
            .is_some_and(|q| q.pending.load(Ordering::Acquire))
    }

    /// Moves the fast path's queued work into `into`, in the order it was decided. The caller
    /// carries it out in that order, before it takes more, and reports with
    /// [`Engine::fast_path_done`].
    pub fn take_fast_path_work(
        &self,
        into: &mut Vec<FastPathWork>,
        into6: &mut Vec<FastPathWork<V6>>,
    ) {
        let Some(q) = &self.fast_path else { return };
        let mut queued = lock(&q.work);
        into.append(&mut queued.work);
        into6.append(&mut queued.work6);
        queued.hand_overs = 0;
        q.pending.store(false, Ordering::Release);
    }

    /// What came of the work taken: ports of ended flows go back to their pools, a flow
    /// taken back counts what the fast path carried of it, and a flow the fast path refused
    /// comes back to the engine, to be offered again after as many packets.
    pub fn fast_path_done(&self, done: &[FastPathDone]) {
        for d in done {
            match *d {
                FastPathDone::Released(r) => r.give_back(&mut lock(&self.nat)),
                FastPathDone::TakenBack(f, bytes) => {
                    let mut shard = self.shard(f.key.rem_addr);
                    if let Some(flow) = shard.flows.get_mut(&f.key).filter(|g| same(g, &f)) {
                        flow.bytes += bytes;
                    }
                }
                FastPathDone::Refused(f) => {
                    let mut shard = self.shard(f.key.rem_addr);
                    let held = shard.flows.get_mut(&f.key);
                    if let Some(flow) = held.filter(|g| g.on_fast_path && same(g, &f)) {
                        // a later hand-over of it may be queued: this goes after it
                        self.withdraw(flow, None);
                        flow.on_fast_path = false;
                        flow.hits = 0;
                    }
                }
            }
        }
    }

    /// The flow as the fast path names it.
    pub(super) fn fast_flow(&self, flow: &Flow) -> FastFlow {
        FastFlow {
            key: flow.key,
            uplink: flow.uplink,
            ext_addr: self.ext_addr(flow),
            ext_port: flow.ext_port,
        }
    }

    /// Queues the withdrawal of `flow`, which ended, if it is on the fast path; its port
    /// (`release`) goes back once that is carried out. Returns the port to give back at once,
    /// if the fast path does not hold the flow.
    pub(super) fn withdraw(&self, flow: &Flow, release: Option<Release>) -> Option<Release> {
        match &self.fast_path {
            Some(q) if flow.on_fast_path => {
                q.push(FastPathWork::Withdraw(self.fast_flow(flow), release));
                None
            }
            _ => release,
        }
    }

    /// Brings `flow` back from the fast path: the engine sees its packets again, and it is
    /// offered again only once steady anew.
    pub(super) fn take_back(&self, flow: &mut Flow) {
        match &self.fast_path {
            Some(q) => q.take_back(flow, self.fast_flow(flow)),
            None => (flow.on_fast_path, flow.hits) = (false, 0),
        }
    }

    /// Counts a packet of `flow` and offers the flow to the fast path once it is steady. Runs
    /// under the flow's shard lock, as does taking it back, so their work is queued in the
    /// order they happened.
    pub(super) fn consider_fast_path(&self, flow: &mut Flow) {
        let Some(q) = &self.fast_path else { return };
        // a flow about to move or be reset must keep passing through the engine (a forwarded
        // one never moves)
        if flow.on_fast_path
            || flow.tcp.is_resetting()
            || (self.is_leaving(flow.uplink) && self.forward_of(flow).is_none())
            || self.is_stale(flow)
        {
            return;
        }
        let reached = q.reaches.iter().any(|n| n.contains(flow.key.int_addr));
        q.offer(flow, reached, |f| self.fast_flow(f));
    }
}

/// Whether `flow` is the one the fast path was told about as `f`.
fn same(flow: &Flow, f: &FastFlow) -> bool {
    flow.uplink == f.uplink && flow.ext_port == f.ext_port
}
