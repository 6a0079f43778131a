//! IPv6 port forwards: connections from the internet to a forwarded port of a line, sent on to
//! an IPv6 LAN host, as IPv4's are (see [`crate::engine::port_forward`]).
//!
//! Where a forward answers on its line:
//! - at the line's own address (NAT66), `PORT` goes to the host's `HOST_PORT`; the line's
//!   NAT66 pool keeps `PORT` aside, so the port alone tells a forwarded flow there;
//! - at the host's translated address, when the line's prefix maps it (NPTv6), if the host's
//!   port is the forwarded port (the translation keeps ports). Stateless translation alone
//!   would let anything in; the stateful filter (RFC 6092) lets in only what a forward opens:
//!   that port, to that host. Such a flow is an NPTv6 flow like the host's own (external port
//!   0); it is the forward's if its host, port and line are the forward's, whoever opened it,
//!   so a connection the host opens itself from that port there counts toward the forward too.
//!
//! The limits are IPv4's: connections per forward, per source (a remote /48), and the oldest
//! embryonic connection of a shard gives way to a new one past the shard's share.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::inbound6::Arrived;
use super::{Shard6, is_npt_flow};
use crate::engine::family::V6;
use crate::engine::flow::{Flow, FlowKey, Segment, TcpState};
use crate::engine::hosts::Network;
use crate::engine::limits::Eviction;
use crate::engine::port_forward::{Forward, ForwardCount, Forwards, Full};
use crate::engine::wire::{PROTO_TCP, tcp};
use crate::engine::{DropReason, Engine, Timestamp, UplinkId, lock, uplink_bit};

/// One forward's embryonic connections in one shard, oldest first: keys of those that
/// completed or ended since are dropped when the queue is next looked at.
pub(super) type Embryonic6 = VecDeque<FlowKey<V6>>;

/// A connection to a forwarded port as it arrived: from where, to which port.
#[derive(Clone, Copy, Debug)]
pub(super) struct Knock {
    pub(super) uplink: UplinkId,
    pub(super) arrived: Arrived,
    pub(super) proto: u8,
    pub(super) rem_addr: u128,
    pub(super) rem_port: u16,
    pub(super) port: u16,
}

impl Engine {
    /// Sends what arrives for these ports of the lines' IPv6 (see the module's notes) on to
    /// IPv6 LAN hosts; each line's NAT66 pool keeps the ports aside.
    pub fn with_forwards6(mut self, forwards: Vec<Forward<V6>>) -> Engine {
        {
            let mut nat = lock(&self.v6.nat);
            for f in &forwards {
                nat.reserve(f.proto, f.port);
            }
        }
        for shard in self.v6.shards.iter() {
            lock(shard).embryonic = vec![Embryonic6::new(); forwards.len()];
        }
        self.v6.forwards = Forwards::new(forwards);
        self
    }

    /// The IPv6 forwards, in the order given.
    pub fn forwards6(&self) -> &[Forward<V6>] {
        self.v6.forwards.list()
    }

    /// How busy each IPv6 forward is, in the order given.
    pub fn forward_counts6(&self) -> Vec<ForwardCount> {
        self.v6.forwards.counts().collect()
    }

    /// The forward `flow` belongs to, if any (see the module's notes).
    pub(super) fn forward_of6(&self, flow: &Flow<V6>) -> Option<usize> {
        let port = if is_npt_flow(flow) {
            flow.key.int_port
        } else {
            flow.ext_port
        };
        let id = self.v6.forwards.find(flow.key.proto, flow.uplink, port)?;
        let f = self.v6.forwards.get(id);
        (f.host == flow.key.int_addr && f.host_port == flow.key.int_port).then_some(id)
    }

    /// The forward a new NPTv6 flow of the LAN host's own belongs to (it leaves from a
    /// forwarded port of its line), counted in; such a flow binds no destination.
    pub(super) fn own_forwarded6(&self, flow: &Flow<V6>) -> bool {
        let Some(id) = self.forward_of6(flow) else {
            return false;
        };
        self.v6.forwards.count_in(id, flow.key.rem_addr);
        true
    }

    /// Opens the flow a packet from a line that matches none opens, if it knocks at a
    /// forwarded port (for TCP, with a SYN). Returns the LAN end.
    pub(super) fn open_forwarded6(
        &self,
        shard: &mut Shard6,
        now: Timestamp,
        knock: &Knock,
        seg: &Segment,
        len: usize,
        epoch: u8,
    ) -> Result<(u128, u16), DropReason> {
        let id = (self.v6.forwards)
            .find(knock.proto, knock.uplink, knock.port)
            .ok_or(DropReason::NoFlow)?;
        let forward = self.v6.forwards.get(id);
        let by_prefix = match knock.arrived {
            Arrived::Nat => false,
            Arrived::Prefix(host) if host == forward.host && forward.host_port == knock.port => {
                true
            }
            Arrived::Prefix(_) => return Err(DropReason::NoFlow),
        };
        if self.off_for_cap.load(Ordering::Relaxed) & uplink_bit(knock.uplink.into()) != 0 {
            return Err(DropReason::ForwardUplinkOff);
        }
        if knock.proto == PROTO_TCP
            && seg.flags & (tcp::SYN | tcp::ACK | tcp::RST | tcp::FIN) != tcp::SYN
        {
            return Err(DropReason::ForwardNotSyn);
        }
        let key = FlowKey {
            int_addr: forward.host,
            rem_addr: knock.rem_addr,
            int_port: forward.host_port,
            rem_port: knock.rem_port,
            proto: knock.proto,
        };
        if shard.flows.get(&key).is_some() {
            return Err(DropReason::ForwardClash);
        }
        if self.room.is_full() {
            return Err(DropReason::FlowTableFull);
        }
        self.admit_forwarded6(shard, id, knock.rem_addr, now)?;
        if by_prefix {
            // an NPTv6 flow counts toward its host's flows as the host's own do
            let network = Network::of(forward.host, &self.v6.lan_nets);
            if let Err(refusal) = lock(&self.v6.nat).admit(forward.host, network) {
                self.v6.forwards.closed(id, knock.rem_addr);
                return Err(DropReason::of_refusal(refusal));
            }
        }
        self.make_embryonic_room6(shard, id, now);
        shard.flows.insert(Flow {
            key,
            last_seen: now.stamp(),
            ext_port: if by_prefix { 0 } else { knock.port },
            uplink: knock.uplink,
            tcp: TcpState::opened_by_remote(seg),
            hits: 1,
            on_fast_path: false,
            bytes: len as u64,
            epoch,
        });
        self.room.added();
        shard.embryonic[id].push_back(key);
        shard.uplinks[usize::from(knock.uplink)].flows += 1;
        self.v6.forwards.count_opened(id);
        Ok((forward.host, forward.host_port))
    }

    /// Counts a new connection through forward `id` from `remote` in, unless a limit says
    /// no; a full forward first ends its oldest embryonic connection in `shard`.
    fn admit_forwarded6(
        &self,
        shard: &mut Shard6,
        id: usize,
        remote: u128,
        now: Timestamp,
    ) -> Result<(), DropReason> {
        let (max, per_source) = self.room.per_forward();
        let forwards = &self.v6.forwards;
        match forwards.try_open(id, remote, max, per_source) {
            Ok(()) => Ok(()),
            Err(Full::Source) => Err(DropReason::ForwardSourceLimit),
            Err(Full::Forward) if self.end_oldest_embryonic6(shard, id, now) => {
                match forwards.try_open(id, remote, max, per_source) {
                    Ok(()) => Ok(()),
                    Err(Full::Source) => Err(DropReason::ForwardSourceLimit),
                    Err(Full::Forward) => Err(DropReason::ForwardFlowLimit),
                }
            }
            Err(Full::Forward) => Err(DropReason::ForwardFlowLimit),
        }
    }

    /// Past the shard's share of forward `id`'s embryonic connections, the oldest give way.
    fn make_embryonic_room6(&self, shard: &mut Shard6, id: usize, now: Timestamp) {
        self.prune_embryonic6(shard, id);
        while shard.embryonic[id].len() >= self.room.embryonic_per_shard() {
            if !self.end_oldest_embryonic6(shard, id, now) {
                return;
            }
        }
    }

    /// Ends the oldest embryonic connection through forward `id` in `shard`, if any.
    fn end_oldest_embryonic6(&self, shard: &mut Shard6, id: usize, now: Timestamp) -> bool {
        self.prune_embryonic6(shard, id);
        let Some(oldest) = shard.embryonic[id].pop_front() else {
            return false;
        };
        self.end_flow6(shard, &oldest, now);
        self.room.count(Eviction::ForwardEmbryonic, 1);
        true
    }

    /// Drops from forward `id`'s queue the keys of connections that completed or ended.
    fn prune_embryonic6(&self, shard: &mut Shard6, id: usize) {
        let Shard6 {
            flows, embryonic, ..
        } = shard;
        embryonic[id].retain(|k| {
            flows
                .get(k)
                .is_some_and(|f| !f.tcp.is_completed() && self.forward_of6(f) == Some(id))
        });
    }
}
