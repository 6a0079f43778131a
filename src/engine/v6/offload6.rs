//! IPv6 flows and the kernel fast path, by the rules IPv4's follow ([`crate::engine::offload`]):
//! offered once steady, taken back when the session changes (SYN, FIN, RST) or the line
//! leaves or is renumbered, withdrawn when they end, their NAT66 port given back only once the
//! kernel let go of them. An NPTv6 flow holds no port, but the fast path still names it by
//! its translated address and its own port, both ways.

use super::outbound6::rewrite_for;
use super::translate6::Rewrite;
use super::{Line6, is_npt_flow};
use crate::engine::family::V6;
use crate::engine::flow::{Flow, Segment, SessionChange};
use crate::engine::offload::{Carried, FastFlow, FastPathDone, FastPathWork, Release};
use crate::engine::select::Prefix;
use crate::engine::wire::tcp;
use crate::engine::{Direction, Engine, lock, uplink_bit};

use std::sync::atomic::Ordering;

impl Engine {
    /// Hands steady IPv6 flows of hosts in `reaches` (the fast path's LAN links' IPv6
    /// prefixes) to the fast path as well; after [`Engine::with_fast_path`], without which
    /// it does nothing.
    pub fn with_fast_path6(mut self, reaches: Vec<Prefix<V6>>) -> Engine {
        if let Some(q) = &mut self.fast_path {
            q.reaches6 = reaches;
        }
        self
    }

    /// [`Engine::fast_path_done`] of IPv6 work.
    pub fn fast_path_done6(&self, done: &[FastPathDone<V6>]) {
        for d in done {
            match *d {
                FastPathDone::Released(r) => r.give_back(&mut lock(&self.v6.nat)),
                FastPathDone::TakenBack(f, bytes) => {
                    let mut shard = self.v6.shard(f.key.rem_addr);
                    if let Some(flow) = shard.flows.get_mut(&f.key).filter(|g| same6(g, &f)) {
                        flow.bytes += bytes;
                    }
                }
                FastPathDone::Refused(f) => {
                    let mut shard = self.v6.shard(f.key.rem_addr);
                    let held = shard.flows.get_mut(&f.key);
                    if let Some(flow) = held.filter(|g| g.on_fast_path && same6(g, &f)) {
                        // a later hand-over of it may be queued: this goes after it
                        if let Some(q) = &self.fast_path {
                            q.push(FastPathWork::Withdraw(f, None));
                        }
                        flow.on_fast_path = false;
                        flow.hits = 0;
                    }
                }
            }
        }
    }

    /// Counts a packet of `flow` and offers it to the fast path once steady, unless it is
    /// about to move or be reset: its line leaving, renumbered since it opened. Runs under
    /// the flow's shard lock; the line is read anew under it, so a renumbering's pass over
    /// the shard ([`Engine::set_uplink6`]) either finds the flow handed over or sees no
    /// hand-over of its old address after it.
    pub(super) fn consider_fast_path6(&self, flow: &mut Flow<V6>) {
        let Some(q) = &self.fast_path else { return };
        let Some(line) = self.v6.line(flow.uplink) else {
            return;
        };
        let leaving = self.v6.leaving.load(Ordering::Relaxed) & uplink_bit(flow.uplink.into());
        // a forwarded flow stays with the engine, which counts its forward's connections
        if flow.on_fast_path
            || flow.tcp.is_resetting()
            || leaving != 0
            || flow.epoch != line.epoch
            || self.forward_of6(flow).is_some()
        {
            return;
        }
        let Some(fast) = fast_flow6(flow, &line) else {
            return;
        };
        let reached = q.reaches6.iter().any(|n| n.contains(flow.key.int_addr));
        q.offer(flow, reached, |_| fast);
    }

    /// Brings `flow` back from the fast path (`line`: its line as it was handed over).
    pub(super) fn take_back6(&self, flow: &mut Flow<V6>, line: &Line6) {
        match (&self.fast_path, fast_flow6(flow, line)) {
            (Some(q), Some(fast)) => q.take_back(flow, fast),
            _ => (flow.on_fast_path, flow.hits) = (false, 0),
        }
    }

    /// Queues the withdrawal of `flow`, which ended, if the fast path holds it; its NAT66
    /// port (`release`) goes back once that is carried out. Returns the port to give back at
    /// once, if the fast path does not hold the flow.
    pub(super) fn withdraw6(
        &self,
        flow: &Flow<V6>,
        line: &Line6,
        release: Option<Release<V6>>,
    ) -> Option<Release<V6>> {
        match (&self.fast_path, fast_flow6(flow, line)) {
            (Some(q), Some(fast)) if flow.on_fast_path => {
                q.push(FastPathWork::Withdraw(fast, release));
                None
            }
            _ => release,
        }
    }

    /// Moves an IPv6 flow's session along by a packet sent `dir`, as IPv4's
    /// [`Engine::track`]: a reset of a flow the fast path carries is judged by the windows it
    /// last carried (`carried`), and a session that changes comes back from the fast path.
    pub(super) fn track6(
        &self,
        flow: &mut Flow<V6>,
        dir: Direction,
        seg: &Segment,
        carried: Option<&Carried>,
    ) {
        if let (true, Some(carried)) = (flow.on_fast_path, carried)
            && seg.flags & tcp::RST != 0
        {
            for dir in [Direction::Outbound, Direction::Inbound] {
                flow.tcp.refresh(dir, carried.acks[dir.index()]);
            }
        }
        if flow.tcp.update(dir, seg) != SessionChange::None && flow.on_fast_path {
            let line = self.v6.line_of(flow);
            self.take_back6(flow, &line);
        }
    }
}

/// An IPv6 flow as the fast path names it on `line`: the address its LAN end leaves from
/// (the line's, or the LAN address's by prefix) and the port (the pool's, or by prefix its
/// own: NPTv6 keeps ports and echo identifiers).
pub(super) fn fast_flow6(flow: &Flow<V6>, line: &Line6) -> Option<FastFlow<V6>> {
    let (ext_addr, ext_port) = match rewrite_for(line, flow.key.int_addr, flow.ext_port)? {
        Rewrite::Nat(addr, port) => (addr, port),
        Rewrite::Prefix(addr) => (addr, flow.key.int_port),
    };
    Some(FastFlow {
        key: flow.key,
        uplink: flow.uplink,
        ext_addr,
        ext_port,
    })
}

/// Whether `flow` is the one the fast path was told about as `f`.
fn same6(flow: &Flow<V6>, f: &FastFlow<V6>) -> bool {
    let port = if is_npt_flow(flow) {
        flow.key.int_port
    } else {
        flow.ext_port
    };
    flow.uplink == f.uplink && port == f.ext_port
}
