//! IPv6 through the lines: each line translates the LAN's IPv6 either by prefix (NPTv6, when
//! it delegates a prefix: [`super::nptv6`]) or to its own address with a port pool (NAT66,
//! endpoint-independent like IPv4's NAT). Either way the filter in front of the LAN stays
//! stateful (RFC 6092): a packet from a line reaches the LAN only for a flow a LAN host
//! opened, or as an ICMPv6 error about one.
//!
//! The IPv6 tables sit beside the IPv4 ones (an IPv4 flow keeps its 48 bytes) and use the
//! same code: the flow table and session state machine, the port pools and host shares, the
//! destination bindings, pins and the weighted choice, over [`V6`] addresses. A line's IPv6
//! has a health of its own ([`Uplink6::up`]): a line whose IPv6 is dead while its IPv4 works
//! stops taking IPv6 flows only. Steady IPv6 flows are handed to the kernel fast path as
//! IPv4's are ([`offload6`]), forwarded ones aside. Ports are forwarded to IPv6 LAN hosts as
//! IPv4's are ([`forward6`]).
//!
//! A line with a prefix translates only the LAN prefix it maps (see [`Nptv6::for_lan`], with
//! the first LAN prefix given); sources outside it are placed on lines that can take them
//! (NAT66, or another prefix that maps them).

mod answer6;
mod forward6;
mod fragments6;
mod inbound6;
mod offload6;
mod outbound6;
mod translate6;

pub use answer6::{MAX_UNREACHABLE6, SEQUENCE_PROBE6};

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use arc_swap::ArcSwap;

use super::affinity::Affinity;
use super::family::V6;
use super::flow::{Flow, FlowKey, FlowTable};
use super::limits::idle_bindings_per_shard;
use super::nat::{Endpoint, Nat};
use super::nptv6::Nptv6;
use super::offload::{CarriedFlows, Release};
use super::port_forward::Forwards;
use super::select::{Pin, Pins, Prefix, Selector};
use super::wire::PROTO_TCP;
use super::{
    Direction, Engine, EngineConfig, SHARDS, Timestamp, UplinkCounters, UplinkId, lock, uplink_bit,
};

/// What the engine needs to know of one line's IPv6 (the monitor's to give, through
/// [`Engine::set_uplink6`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uplink6 {
    /// The line's own global address (`src6=`, else a stable one it has): NAT66 translates
    /// to it. `None`: no NAT66 on this line.
    pub addr: Option<u128>,
    /// The prefix the line delegates to the gateway (`prefix6=`): NPTv6 from the first LAN
    /// prefix ([`Engine::with_lan_nets6`]) to it.
    pub prefix: Option<Prefix<V6>>,
    /// Whether IPv6 through the line works (its IPv6 health; with only IPv4 targets, what the
    /// caller decides that means).
    pub up: bool,
}

/// A line's IPv6 as the packet path reads it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Line6 {
    facts: Uplink6,
    npt: Option<Nptv6>,
    /// How many times its address or prefix changed (modulo 256): a flow of an earlier
    /// epoch names an address the line no longer has.
    epoch: u8,
    /// Its address and prefix before the last change (epoch - 1): flows of that epoch still
    /// on the fast path are named by them until they are taken back.
    before: Option<(Option<u128>, Option<Nptv6>)>,
}

impl Line6 {
    /// The line as flows of `epoch` were translated (and handed to the fast path) on it:
    /// now, or before its last renumbering.
    fn as_of(&self, epoch: u8) -> Option<Line6> {
        if epoch == self.epoch {
            return Some(*self);
        }
        let (addr, npt) = self.before?;
        let facts = Uplink6 { addr, ..self.facts };
        (epoch == self.epoch.wrapping_sub(1)).then_some(Line6 {
            facts,
            npt,
            epoch,
            before: None,
        })
    }
}

impl Line6 {
    /// Whether new flows from `src` may use this line (its health aside): it can translate
    /// the source.
    fn serves(&self, src: u128) -> bool {
        self.ext_of(src).is_some()
    }

    /// The address `src` leaves this line from, and whether by prefix (its port kept).
    fn ext_of(&self, src: u128) -> Option<(u128, bool)> {
        if let Some(npt) = &self.npt
            && npt.internal().contains(src)
        {
            return npt.outbound(src).map(|a| (a, true));
        }
        self.facts.addr.map(|a| (a, false))
    }
}

/// One partition of the IPv6 tables, by remote address, as [`super::Shard`] is of IPv4's.
#[derive(Debug)]
pub(super) struct Shard6 {
    flows: FlowTable<V6>,
    affinity: Affinity<V6>,
    fragments: fragments6::Fragments6,
    uplinks: Vec<UplinkCounters>,
    /// Per IPv6 forward, its embryonic connections from this shard's remote addresses.
    embryonic: Vec<forward6::Embryonic6>,
}

/// The engine's IPv6 state.
#[derive(Debug)]
pub(super) struct State6 {
    lines: ArcSwap<Vec<Line6>>,
    shards: Box<[Mutex<Shard6>]>,
    nat: Mutex<Nat<V6>>,
    /// Weights, tiers, caps and balance as IPv4's; up: the lines whose IPv6 is up and usable.
    pub(super) select: Mutex<Selector>,
    /// The selector's [`Selector::leaving`], readable without its lock on every packet.
    leaving: AtomicU32,
    pins: ArcSwap<Pins<V6>>,
    lan_nets: Vec<Prefix<V6>>,
    forwards: Forwards<V6>,
}

/// The shard of an IPv6 remote address: its four 32-bit words folded into one, then spread
/// as an IPv4 address is.
fn shard_of6(remote: u128) -> usize {
    let b = remote.to_be_bytes();
    let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    super::shard_of(word(0) ^ word(4) ^ word(8) ^ word(12))
}

impl State6 {
    pub(super) fn new(config: &EngineConfig) -> State6 {
        let n = config.uplinks.len();
        let weights = config.uplinks.iter().map(|u| u.weight).collect();
        let tiers = config.uplinks.iter().map(|u| u.tier).collect();
        let mut select = Selector::new(weights, tiers);
        for u in 0..n {
            select.set_up(super::uplink_id(u), false);
        }
        let mut nat = Nat::new(n, config.ports, config.seed.rotate_left(17));
        nat.set_limits(&config.limits);
        State6 {
            lines: ArcSwap::from_pointee(vec![Line6::default(); n]),
            shards: (0..SHARDS)
                .map(|_| {
                    let mut affinity = Affinity::new(config.affinity_timeout_ms);
                    affinity.set_max_idle(idle_bindings_per_shard(&config.limits));
                    Mutex::new(Shard6 {
                        flows: FlowTable::default(),
                        affinity,
                        fragments: fragments6::Fragments6::default(),
                        uplinks: vec![UplinkCounters::default(); n],
                        embryonic: Vec::new(),
                    })
                })
                .collect(),
            nat: Mutex::new(nat),
            leaving: AtomicU32::new(select.leaving()),
            select: Mutex::new(select),
            pins: ArcSwap::from_pointee(Pins::default()),
            lan_nets: Vec::new(),
            forwards: Forwards::default(),
        }
    }

    fn shard(&self, remote: u128) -> std::sync::MutexGuard<'_, Shard6> {
        lock(&self.shards[shard_of6(remote)])
    }

    fn is_from_lan(&self, src: u128) -> bool {
        self.lan_nets.iter().any(|n| n.contains(src))
    }

    fn line(&self, uplink: UplinkId) -> Option<Line6> {
        self.lines.load().get(usize::from(uplink)).copied()
    }

    /// The line as `flow` was translated on it (see [`Line6::as_of`]); a default one, which
    /// names nothing, for a flow older than that.
    fn line_of(&self, flow: &Flow<V6>) -> Line6 {
        self.line(flow.uplink)
            .and_then(|l| l.as_of(flow.epoch))
            .unwrap_or_default()
    }

    /// Applies what a reload may change: weights, tiers, timeouts. Returns the lines that
    /// left service by it (a tier changed), to release.
    pub(super) fn reconfigure(&self, config: &EngineConfig) -> u32 {
        let weights = config.uplinks.iter().map(|u| u.weight).collect();
        let tiers = config.uplinks.iter().map(|u| u.tier).collect();
        let mut select = lock(&self.select);
        let leaving_before = select.leaving();
        select.set_policy(weights, tiers);
        let leaving = select.leaving();
        self.leaving.store(leaving, Ordering::Relaxed);
        drop(select);
        lock(&self.nat).set_limits(&config.limits);
        for shard in self.shards.iter() {
            let affinity = &mut lock(shard).affinity;
            affinity.set_idle_timeout(config.affinity_timeout_ms);
            affinity.set_max_idle(idle_bindings_per_shard(&config.limits));
        }
        leaving & !leaving_before
    }

    /// Adds each shard's IPv6 traffic to `into`, one entry per uplink.
    pub(super) fn add_counters(&self, into: &mut [UplinkCounters]) {
        for shard in self.shards.iter() {
            for (total, c) in into.iter_mut().zip(&lock(shard).uplinks) {
                total.outbound_packets += c.outbound_packets;
                total.outbound_bytes += c.outbound_bytes;
                total.inbound_packets += c.inbound_packets;
                total.inbound_bytes += c.inbound_bytes;
                total.flows += c.flows;
                total.destinations += c.destinations;
            }
        }
    }

    /// IPv6 flows live.
    pub(super) fn flows(&self) -> usize {
        self.shards.iter().map(|s| lock(s).flows.len()).sum()
    }
}

impl Engine {
    /// The LAN's IPv6 prefixes (those on the LAN interfaces, global or ULA, and IPv6
    /// `--lan-net`s): only packets from them are translated, and packets from a line with a
    /// source in them are forged. The first is the one NPTv6 maps to each line's prefix. Call
    /// once, before any [`Engine::set_uplink6`]. Without any, no IPv6 is translated
    /// (dropped as [`super::DropReason::NoIpv6Uplink`] and answered, so hosts fall back to IPv4).
    pub fn with_lan_nets6(mut self, nets: Vec<Prefix<V6>>) -> Engine {
        self.v6.lan_nets = nets;
        self
    }

    /// The IPv6 pins (`--pin`/`pin` with an IPv6 prefix), as [`Engine::with_pins6`] and on
    /// reload: a pinned destination's new flows take its uplink while that line's IPv6 is up.
    pub fn set_pins6(&self, pins: Vec<Pin<V6>>) {
        self.v6.pins.store(std::sync::Arc::new(Pins::new(pins)));
    }

    /// [`Engine::set_pins6`] at construction.
    pub fn with_pins6(self, pins: Vec<Pin<V6>>) -> Engine {
        self.set_pins6(pins);
        self
    }

    /// A line's IPv6 facts, whenever any of them changes (its address or prefix appears,
    /// changes or goes; its IPv6 health changes): from io/monitor/apply.rs, as
    /// [`Engine::set_uplink_addr`] and [`Engine::set_uplink_up`] are for IPv4. A line whose
    /// IPv6 went down or that lost its address or prefix stops taking new IPv6 flows; its UDP
    /// and ICMPv6 flows move at their next packet; its TCP connections are ended towards the
    /// LAN host when it went down (if the engine resets TCP on a dead line) or when its address
    /// or prefix changed (always): the returned packets are IPv6 sequence probes
    /// ([`SEQUENCE_PROBE6`] bytes each) to write to the TUN device, as IPv4's are.
    pub fn set_uplink6(&self, uplink: UplinkId, facts: Uplink6) -> Vec<[u8; SEQUENCE_PROBE6]> {
        let _one_at_a_time = lock(&self.reselecting);
        let i = usize::from(uplink);
        let mut lines = Vec::clone(&self.v6.lines.load());
        let Some(before) = lines.get(i).copied() else {
            return Vec::new();
        };
        let npt = match (facts.prefix, self.v6.lan_nets.first()) {
            (Some(delegated), Some(lan)) => Nptv6::for_lan(*lan, delegated),
            _ => None,
        };
        let renumbered = facts.addr != before.facts.addr || npt != before.npt;
        let epoch = before.epoch.wrapping_add(u8::from(renumbered));
        let was = match renumbered {
            true => Some((before.facts.addr, before.npt)),
            false => before.before,
        };
        lines[i] = Line6 {
            facts,
            npt,
            epoch,
            before: was,
        };
        self.v6.lines.store(std::sync::Arc::new(lines));
        let usable = facts.up && (facts.addr.is_some() || npt.is_some());
        let went_down = before.facts.up && !usable;
        let newly_leaving = {
            let mut select = lock(&self.v6.select);
            let leaving_before = select.leaving();
            select.set_up(uplink, usable);
            let leaving = select.leaving();
            self.v6.leaving.store(leaving, Ordering::Relaxed);
            leaving & !leaving_before & !uplink_bit(i)
        };
        // other lines this one outranks again (a backup tier when the primary's IPv6 came
        // back): their flows come back from the fast path and move at their next packet
        self.release6_leaving(newly_leaving);
        if !renumbered && !went_down {
            return Vec::new();
        }
        let reset = renumbered || self.reset_tcp_on_down.load(Ordering::Relaxed);
        self.release6(uplink, |_| reset, &CarriedFlows::NONE)
    }

    /// Releases the lines in `leaving`, which left service, without resetting anything.
    pub(super) fn release6_leaving(&self, leaving: u32) {
        for i in 0..self.addrs.len() {
            if leaving & uplink_bit(i) != 0 {
                self.release6(super::uplink_id(i), |_| false, &CarriedFlows::NONE);
            }
        }
    }

    /// Ends the TCP connections on `uplink` that `reset` names by asking each host for its
    /// sequence number, and unbinds the line's destinations; UDP and ICMPv6 flows come back
    /// from the fast path and move at their next packet, and so do flows of an address or
    /// prefix the line no longer has. A forwarded flow never moves: one of an earlier address
    /// takes the line's new one, which its forward is at now.
    ///
    /// A reset connection's sequence probe is built from the host's receive point as the fast
    /// path last carried it (`carried`), so that it lands far from the host's window.
    fn release6(
        &self,
        uplink: UplinkId,
        reset: impl Fn(&Flow<V6>) -> bool,
        carried: &CarriedFlows,
    ) -> Vec<[u8; SEQUENCE_PROBE6]> {
        let mut probes = Vec::new();
        let now = self.v6.line(uplink).unwrap_or_default();
        for shard in self.v6.shards.iter() {
            let mut shard = lock(shard);
            shard.affinity.release(uplink);
            shard.flows.for_each_mut(|f| {
                if f.uplink != uplink {
                    return;
                }
                let resets = f.key.proto == PROTO_TCP && !f.tcp.is_reset_or_resetting() && reset(f);
                if let (true, true, Some(c)) = (resets, f.on_fast_path, carried.get6(&f.key)) {
                    let out = Direction::Outbound;
                    f.tcp.refresh(out, c.acks[out.index()]);
                }
                if f.key.proto != PROTO_TCP || resets || f.epoch != now.epoch {
                    // named by the line as the fast path was told of it
                    self.take_back6(f, &now.as_of(f.epoch).unwrap_or_default());
                }
                if f.epoch != now.epoch && f.key.proto != PROTO_TCP && self.forward_of6(f).is_some()
                {
                    f.epoch = now.epoch;
                }
                if !resets {
                    return;
                }
                f.tcp.set_resetting();
                if f.tcp.is_answered()
                    && !f.tcp.is_closed()
                    && let Some(host_expects) = f.tcp.receive_point(Direction::Outbound)
                {
                    let mut probe = [0u8; SEQUENCE_PROBE6];
                    answer6::sequence_probe6(
                        &mut probe,
                        (f.key.rem_addr, f.key.rem_port),
                        (f.key.int_addr, f.key.int_port),
                        host_expects,
                    );
                    probes.push(probe);
                }
            });
        }
        probes
    }

    /// A line's data cap, as [`Engine::set_cap_effect`] gives it, for IPv6: new IPv6 flows
    /// rank the line as IPv4's do, and if it leaves service its UDP and ICMPv6 flows move.
    /// A line out of service for its cap is as if down: its IPv6 TCP connections are reset as
    /// `reset_tcp_on_down` says (the returned probes ask for their sequence numbers).
    pub(super) fn set_cap_effect6(
        &self,
        uplink: UplinkId,
        effect: crate::metered::CapEffect,
        carried: &CarriedFlows,
    ) -> Vec<[u8; SEQUENCE_PROBE6]> {
        let _one_at_a_time = lock(&self.reselecting);
        let (newly_down, newly_leaving) = {
            let mut select = lock(&self.v6.select);
            let (down_before, leaving_before) = (select.down(), select.leaving());
            select.set_cap(uplink, effect);
            let (down, leaving) = (select.down(), select.leaving());
            self.v6.leaving.store(leaving, Ordering::Relaxed);
            (down & !down_before, leaving & !leaving_before)
        };
        let reset = self.reset_tcp_on_down.load(Ordering::Relaxed);
        let mut probes = Vec::new();
        for i in 0..self.addrs.len() {
            if (newly_down | newly_leaving) & uplink_bit(i) != 0 {
                let down = newly_down & uplink_bit(i) != 0;
                let resets = |_: &Flow<V6>| reset && down;
                probes.extend(self.release6(super::uplink_id(i), resets, carried));
            }
        }
        probes
    }

    /// [`Engine::fail_back`] for IPv6: the TCP connections on the lines in `due` whose IPv6
    /// is still outranked (not down) are reset, but for those pinned to their line and
    /// forwarded ones.
    pub(super) fn fail_back6(
        &self,
        due: u32,
        carried: &CarriedFlows,
    ) -> Vec<[u8; SEQUENCE_PROBE6]> {
        let outranked = {
            let select = lock(&self.v6.select);
            select.leaving() & !select.down()
        };
        let pins = self.v6.pins.load();
        let mut probes = Vec::new();
        for i in 0..self.addrs.len() {
            if due & outranked & uplink_bit(i) != 0 {
                let moves = |f: &Flow<V6>| {
                    self.forward_of6(f).is_none()
                        && pins
                            .lookup(f.key.rem_addr)
                            .is_none_or(|p| p.uplink != f.uplink)
                };
                probes.extend(self.release6(super::uplink_id(i), moves, carried));
            }
        }
        probes
    }

    /// Whether an IPv6 UDP or ICMPv6 flow must move: its line's IPv6 is no longer eligible
    /// or its address changed, unless a pin holds it to a line whose IPv6 is up.
    fn must_move6(&self, flow: &Flow<V6>, line: &Line6) -> bool {
        let eligible =
            self.v6.leaving.load(Ordering::Relaxed) & uplink_bit(flow.uplink.into()) == 0;
        if line.epoch == flow.epoch && eligible {
            return false;
        }
        // a forwarded flow never moves: its client knows only this line's address
        if self.forward_of6(flow).is_some() {
            return false;
        }
        if line.epoch != flow.epoch {
            return true;
        }
        let pinned_here = (self.v6.pins.load())
            .lookup(flow.key.rem_addr)
            .is_some_and(|p| p.uplink == flow.uplink);
        !(pinned_here && line.facts.up)
    }

    /// Removes idle IPv6 flows (see [`Engine::expire`], which calls it), giving back their
    /// shares, and their ports once the fast path let go of them. A flow on the fast path
    /// lives as long as the fast path carries it (`carried`).
    pub(super) fn expire6(&self, now: Timestamp, carried: &CarriedFlows) {
        let timeouts = *lock(&self.timeouts);
        let scale = self.room.scale();
        let lines = self.v6.lines.load();
        let mut ports = Vec::new();
        for shard in self.v6.shards.iter() {
            let mut shard = lock(shard);
            let Shard6 {
                flows,
                affinity,
                fragments,
                ..
            } = &mut *shard;
            let mut ended = Vec::new();
            let idle_elsewhere = |f: &Flow<V6>| carried.get6(&f.key)?.idle_ms;
            flows.expire(now, &timeouts, scale, idle_elsewhere, |f, _| ended.push(*f));
            for f in &ended {
                self.room.removed(1);
                let line = (lines.get(usize::from(f.uplink)))
                    .and_then(|l| l.as_of(f.epoch))
                    .unwrap_or_default();
                let (forwarded, port) = self.give_back6(f, &line, now);
                ports.extend(port);
                if !forwarded {
                    affinity.detach(f.key.rem_addr, f.uplink, f.last_seen);
                }
            }
            affinity.expire(now);
            fragments.expire(now);
        }
        let mut nat = lock(&self.v6.nat);
        for port in ports {
            port.give_back(&mut nat);
        }
        nat.expire_hosts(now);
    }

    /// Gives back what an ended IPv6 flow held: its place in its forward, its host's share,
    /// its NAT66 port (a forwarded port was never the pool's), and withdraws it from the fast
    /// path if it is there (`line`: its line). Returns whether it was forwarded (it bound no
    /// destination), and the port to give back now, if the fast path does not hold it.
    fn give_back6(
        &self,
        flow: &Flow<V6>,
        line: &Line6,
        now: Timestamp,
    ) -> (bool, Option<Release<V6>>) {
        let forward = self.forward_of6(flow);
        if let Some(id) = forward {
            self.v6.forwards.closed(id, flow.key.rem_addr);
        }
        let port = if is_npt_flow(flow) {
            self.withdraw6(flow, line, None);
            lock(&self.v6.nat).unadmit(flow.key.int_addr, now);
            None
        } else if forward.is_none() {
            self.withdraw6(flow, line, Some(Release::new(endpoint6(flow), now)))
        } else {
            self.withdraw6(flow, line, None)
        };
        (forward.is_some(), port)
    }

    /// Ends one IPv6 flow now.
    fn end_flow6(&self, shard: &mut Shard6, key: &FlowKey<V6>, now: Timestamp) {
        let Some(flow) = shard.flows.remove(key) else {
            return;
        };
        self.room.removed(1);
        let line = self.v6.line_of(&flow);
        let (forwarded, port) = self.give_back6(&flow, &line, now);
        if let Some(port) = port {
            port.give_back(&mut lock(&self.v6.nat));
        }
        if !forwarded {
            shard
                .affinity
                .detach(key.rem_addr, flow.uplink, flow.last_seen);
        }
    }

    /// The line set of the uplinks whose IPv6 may take new flows (for the tests and status).
    pub fn ipv6_up(&self) -> u32 {
        !self.v6.leaving.load(Ordering::Relaxed) & super::first_uplinks(self.addrs.len())
    }

    /// IPv6 flows live (status, metrics).
    pub fn flows6(&self) -> usize {
        self.v6.flows()
    }

    /// The IPv6 host table, for the neighbour table's identities ([`Engine::set_host_identity`]).
    pub(in crate::engine) fn nat6(&self) -> std::sync::MutexGuard<'_, Nat<V6>> {
        lock(&self.v6.nat)
    }
}

/// Whether `flow` is translated by prefix (NPTv6), keeping its port: its external port is 0,
/// which no pool holds (they start at 1024). Its reply key is then no one's, and never
/// looked up: replies to it are found by its own key, their destination translated back.
fn is_npt_flow(flow: &Flow<V6>) -> bool {
    is_npt_port(flow.ext_port)
}

/// See [`is_npt_flow`].
fn is_npt_port(ext_port: u16) -> bool {
    ext_port == 0
}

fn endpoint6(flow: &Flow<V6>) -> Endpoint<V6> {
    Endpoint {
        addr: flow.key.int_addr,
        port: flow.key.int_port,
        proto: flow.key.proto,
        uplink: flow.uplink,
    }
}

#[cfg(test)]
mod tests;
