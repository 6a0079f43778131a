//! What changes to an uplink do to the flows on it: health verdicts, a new address, a
//! reload's weights and tiers.

use super::flow::Flow;
use super::limits::idle_bindings_per_shard;
use super::offload::CarriedFlows;
use super::select::{Pins, Selector};
use super::wire::PROTO_TCP;
use super::{
    Direction, Engine, EngineConfig, SEQUENCE_PROBE, UdpAffinity, UplinkId, answer, lock,
    uplink_bit, uplink_id,
};

use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Engine {
    /// Applies a health verdict. Uplinks that leave service (this one going down, or a
    /// backup once a better tier is back) lose their destination bindings, so the next flow
    /// to each is placed anew, and their UDP and ICMP flows come back from the fast path, to
    /// move at their next packet. An uplink that went down also has its TCP connections ended
    /// (unless configured to keep them): the returned packets, to be written towards the LAN,
    /// ask each host for the sequence number its reset must carry (where each host's window
    /// is now for a connection on the fast path: `carried`, read just before).
    pub fn set_uplink_up(
        &self,
        uplink: UplinkId,
        up: bool,
        carried: &CarriedFlows,
    ) -> Vec<[u8; SEQUENCE_PROBE]> {
        self.reselect(|select| select.set_up(uplink, up), carried)
    }

    /// Applies what a reload may change while flows run: weights, tiers, pins, the
    /// affinity and idle timeouts, and what a dead uplink does to TCP. The uplinks, their
    /// addresses and the port pool of `config` are those the engine was made with. Flows
    /// keep their uplink and mapping, and destinations their binding, except on uplinks
    /// that leave service (an uplink made a backup while a better tier is up): those are
    /// released as when an uplink leaves on health.
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
        let leaving6 = self.v6.reconfigure(config);
        self.release6_leaving(leaving6);
        let weights = config.uplinks.iter().map(|u| u.weight).collect();
        let tiers = config.uplinks.iter().map(|u| u.tier).collect();
        let probes = self.reselect(
            |select| select.set_policy(weights, tiers),
            &CarriedFlows::NONE,
        );
        debug_assert!(probes.is_empty(), "a reload takes no uplink down");
    }

    /// Changes the selector with `change`, then releases what now leaves service.
    pub(super) fn reselect(
        &self,
        change: impl FnOnce(&mut Selector),
        carried: &CarriedFlows,
    ) -> Vec<[u8; SEQUENCE_PROBE]> {
        // one pass at a time (the monitor's verdicts, a reload), each over the flows its own
        // change affected
        let _one_at_a_time = lock(&self.reselecting);
        let (newly_down, newly_leaving) = {
            let mut select = lock(&self.select);
            let (down_before, leaving_before) = (select.down(), select.leaving());
            change(&mut select);
            let (down, leaving) = (select.down(), select.leaving());
            self.down.store(down, Ordering::Relaxed);
            self.off_for_cap
                .store(select.off_for_cap(), Ordering::Relaxed);
            self.leaving.store(leaving, Ordering::Relaxed);
            self.ineligible
                .store(select.ineligible(), Ordering::Relaxed);
            lock(&self.failback).outranked(leaving & !down);
            (down & !down_before, leaving & !leaving_before)
        };
        let reset = self.reset_tcp_on_down.load(Ordering::Relaxed);
        self.release(newly_down | newly_leaving, true, None, carried, |f| {
            reset && newly_down & uplink_bit(f.uplink.into()) != 0
        })
    }

    /// A new address for `uplink` (a DHCP renewal, a PPPoE reconnect): new flows use it at
    /// once. Flows on the old one cannot follow it: UDP and ICMP move at their next packet
    /// (to the same uplink, since their destinations keep their binding), TCP is reset towards
    /// the LAN host whatever `reset_tcp_on_down` says (the returned probes ask for the
    /// sequence numbers, as [`Engine::set_uplink_up`]'s do).
    pub fn set_uplink_addr(
        &self,
        uplink: UplinkId,
        addr: u32,
        carried: &CarriedFlows,
    ) -> Vec<[u8; SEQUENCE_PROBE]> {
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
        self.release(
            uplink_bit(uplink.into()),
            false,
            Some(epoch),
            carried,
            |_| true,
        )
    }

    /// Releases what the uplinks in `affected` (one bit each) hold: with `unbind`, their
    /// destinations' bindings; their UDP and ICMP flows, which come back from the fast path to
    /// move at their next packet; and the TCP connections `reset_tcp` picks, which come back
    /// too and are reset towards the LAN host (the returned probes ask each host for the
    /// sequence number its reset must carry). Other TCP connections are left to finish, and
    /// forwarded flows stay, unless the address changed (`renewed`, the new epoch): then they
    /// come back from the fast path and go on from the new address.
    pub(super) fn release(
        &self,
        affected: u32,
        unbind: bool,
        renewed: Option<u8>,
        carried: &CarriedFlows,
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
                // a hairpinned flow never crosses its uplink: only the address it names matters
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
                    if let (true, true, Some(c)) = (reset, f.on_fast_path, carried.get(&f.key)) {
                        let out = Direction::Outbound;
                        f.tcp.refresh(out, c.acks[out.index()]);
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
                        && let Some(host_expects) = f.tcp.receive_point(Direction::Outbound)
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
}
