//! A flow's life in the engine: opened for a LAN host's packet (its host's share asked
//! first, then an uplink chosen and a port taken), moved along by each packet, ended (its
//! port, binding and share given back), expired when idle.

use super::flow::{Flow, FlowKey, Segment, SessionChange, TcpState};
use super::hosts::{HostId, Network};
use super::limits::Eviction;
use super::nat::{self, Endpoint};
use super::offload::{Carried, CarriedFlows, Release};
use super::wire::{PROTO_TCP, PROTO_UDP, tcp};
use super::{
    Direction, DropReason, Engine, Shard, Timestamp, UplinkId, endpoint_of, first_uplinks, lock,
    shard_of,
};

use std::net::IpAddr;
use std::sync::atomic::Ordering;

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

impl Engine {
    /// Moves a flow's session along by a packet sent `dir` (UDP and ICMP too: they need to
    /// know when they are answered). The fast path shows the engine only the SYN, FIN and RST
    /// of a flow it carries, so a reset is judged by the receiver's window as the fast path
    /// last carried it (`carried`, read by the caller; [`TcpState::refresh`]); and a flow whose
    /// session takes a reset or starts over comes back from the fast path: the engine must see
    /// whether the reset holds (its sender falls silent) or the new connection's handshake,
    /// before it hands the flow over again.
    ///
    /// Returns the forward of a forwarded flow that just completed its handshake (`Some(Ok)`)
    /// or started over (`Some(Err)`), for its count of embryonic connections.
    pub(super) fn track(
        &self,
        flow: &mut Flow,
        dir: Direction,
        seg: &Segment,
        carried: Option<&Carried>,
    ) -> Option<Result<usize, usize>> {
        let completed = flow.tcp.is_completed();
        self.track_session(flow, dir, seg, carried);
        if flow.tcp.is_completed() == completed {
            return None;
        }
        let id = self.forward_of(flow)?;
        Some(if completed { Err(id) } else { Ok(id) })
    }

    fn track_session(
        &self,
        flow: &mut Flow,
        dir: Direction,
        seg: &Segment,
        carried: Option<&Carried>,
    ) {
        if let (true, Some(carried)) = (flow.on_fast_path, carried)
            && seg.flags & tcp::RST != 0
        {
            // both sides: the receiver's window judges the reset, and if it is taken the
            // flow comes back to the engine, which then goes on from there
            for dir in [Direction::Outbound, Direction::Inbound] {
                flow.tcp.refresh(dir, carried.acks[dir.index()]);
            }
        }
        if flow.tcp.update(dir, seg) != SessionChange::None && flow.on_fast_path {
            self.take_back(flow);
        }
    }

    /// Opens the flow of a LAN host's packet that matches none, on the uplink chosen for it, or,
    /// hairpinned, on `on`. The host's share is asked first, before an uplink, a port or a
    /// table entry is spent on it. Returns its uplink and external port.
    pub(super) fn open_flow(
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
        let answers_syn = seg.flags & (tcp::SYN | tcp::ACK) == tcp::SYN | tcp::ACK;
        if key.proto == PROTO_TCP && (seg.flags & tcp::RST != 0 || answers_syn) {
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
        // a flow placed for its socket's sake does not take its destination from the uplink
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
            let eligible =
                first_uplinks(self.addrs.len()) & !self.ineligible.load(Ordering::Relaxed);
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

    /// Takes a flow out of the table and gives back what it held: its place on the fast
    /// path, its destination's binding, its port (once the fast path let go of it), its
    /// host's share.
    pub(super) fn end_flow(&self, shard: &mut Shard, key: &FlowKey, now: Timestamp) {
        let Some(flow) = shard.flows.remove(key) else {
            return;
        };
        self.room.removed(1);
        // a forwarded flow held neither a binding nor a port of the pools
        if let Some(id) = self.forward_of(&flow) {
            self.withdraw(&flow, None);
            if !flow.tcp.is_completed() {
                shard.embryonic[id].ended();
            }
            self.forwards.closed(id, key.rem_addr);
            return;
        }
        if shard
            .affinity
            .detach(key.rem_addr, flow.uplink, flow.last_seen)
        {
            self.room.count(Eviction::AffinityFull, 1);
        }
        let port = Release::new(endpoint_of(&flow), now);
        if let Some(port) = self.withdraw(&flow, Some(port)) {
            port.give_back(&mut lock(&self.nat));
        }
    }

    /// Removes idle flows, returns their ports to the pools (those of flows on the fast path
    /// once it let go of them) and lets idle destination bindings lapse. A flow on the fast
    /// path lives as long as the fast path carries it (`carried`, read just before). As the
    /// flow table fills, the timeouts of flows that never completed and of TCP sessions
    /// opening or closing shrink ([`super::limits`]).
    pub fn expire(&self, now: Timestamp, carried: &CarriedFlows) {
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
            let idle_elsewhere = |f: &Flow| carried.get(&f.key)?.idle_ms;
            let (mut removed, mut early, mut unbound) = (0, 0, 0);
            flows.expire(now, &timeouts, scale, idle_elsewhere, |f, shortened| {
                removed += 1;
                early += u64::from(shortened);
                if let Some(id) = self.forward_of(f) {
                    self.withdraw(f, None);
                    if !f.tcp.is_completed() {
                        embryonic[id].ended();
                    }
                    self.forwards.closed(id, f.key.rem_addr);
                    return;
                }
                unbound += u64::from(affinity.detach(f.key.rem_addr, f.uplink, f.last_seen));
                ended.extend(self.withdraw(f, Some(Release::new(endpoint_of(f), now))));
            });
            affinity.expire(now);
            self.room.removed(removed);
            self.room.count(Eviction::AdaptiveTimeout, early);
            self.room.count(Eviction::AffinityFull, unbound);
            // the pools are locked once per shard, not once per flow
            if !ended.is_empty() {
                let mut nat = lock(&self.nat);
                for port in ended.drain(..) {
                    port.give_back(&mut nat);
                }
            }
        }
        lock(&self.nat).expire_hosts(now);
        self.expire6(now, carried);
    }

    /// What the kernel's neighbour table says of LAN address `addr`: the link and MAC it
    /// answers at, or none (no entry, or a failed one). Verified addresses of one identity
    /// are one host (see [`super::hosts`]). False if the identity could not be kept (the
    /// table of them is full: the address stays a host of its own).
    pub fn set_host_identity(&self, addr: IpAddr, id: Option<HostId>) -> bool {
        match addr {
            IpAddr::V4(a) => lock(&self.nat).set_host_identity(u32::from(a), id),
            IpAddr::V6(a) => self.nat6().set_host_identity(u128::from(a), id),
        }
    }

    /// Every identity the neighbour table holds, in place of those known (after some of its
    /// changes were lost).
    pub fn set_host_identities(&self, all: &[(IpAddr, HostId)]) {
        let v4 = all.iter().filter_map(|&(a, id)| match a {
            IpAddr::V4(a) => Some((u32::from(a), id)),
            IpAddr::V6(_) => None,
        });
        lock(&self.nat).set_host_identities(v4);
        let v6 = all.iter().filter_map(|&(a, id)| match a {
            IpAddr::V6(a) => Some((u128::from(a), id)),
            IpAddr::V4(_) => None,
        });
        self.nat6().set_host_identities(v6);
    }

    /// LAN addresses whose identity is known, and identities not kept (the table full).
    pub fn host_identity_counts(&self) -> (usize, u64) {
        let (v4, refused4) = lock(&self.nat).hosts().identity_counts();
        let (v6, refused6) = self.nat6().hosts().identity_counts();
        (v4 + v6, refused4 + refused6)
    }
}
