//! The kernel fast path, as the engine sees it: which flows it hands over (steady ones:
//! answered, past the TCP handshake, a few packets long), and when it takes them back.

use super::Engine;
use super::flow::{Acked, Flow};
use super::wire::PROTO_UDP;

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

/// Packets an answered flow (TCP past its handshake, UDP or ping with a reply) shows the
/// engine before it is offered to the fast path. Handing a flow over costs two map updates,
/// about what moving one packet through userspace costs, so anything but the briefest
/// exchange (a DNS query and its answer) is worth handing over early.
pub const HAND_OVER_AFTER: u8 = 4;
/// Packets of one-way UDP (a stream nobody answers, or not yet) before it is offered.
pub const HAND_OVER_ONE_WAY_AFTER: u8 = 64;

impl Engine {
    /// Hands steady flows (TCP, UDP, ICMP echo) to `fast_path` from now on.
    pub fn with_fast_path(mut self, fast_path: Box<dyn FastPath>) -> Engine {
        self.fast_path = Some(fast_path);
        self
    }

    /// Takes `flow` off the fast path, if it is there.
    pub(super) fn withdraw(&self, flow: &Flow) {
        if let (true, Some(fast)) = (flow.on_fast_path, &self.fast_path) {
            fast.withdraw(flow, self.ext_addr(flow));
        }
    }

    /// Brings `flow` back from the fast path: the engine sees its packets again, and it is
    /// offered again only once steady anew.
    pub(super) fn take_back(&self, flow: &mut Flow) {
        if let (true, Some(fast)) = (flow.on_fast_path, &self.fast_path) {
            flow.bytes += fast.bytes(flow, self.ext_addr(flow));
        }
        self.withdraw(flow);
        flow.on_fast_path = false;
        flow.hits = 0;
    }

    /// Counts a packet of `flow` and offers the flow to the fast path once it is steady. Runs
    /// under the flow's shard lock, as does withdrawing it, so the two never cross.
    pub(super) fn consider_fast_path(&self, flow: &mut Flow) {
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
}
