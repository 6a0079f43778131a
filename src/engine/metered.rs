//! What makes an uplink cost money, as the engine sees it: a data cap reached (the uplink
//! ranked below the others, or out of service), failback off a backup uplink after a grace,
//! and new destinations placed by bytes. The counting itself is the caller's: the engine is
//! told the effect of each cap and each uplink's recent bytes.

use super::failback::FailbackPolicy;
use super::offload::CarriedFlows;
use super::select::Balance;
use super::wire::PROTO_TCP;
use super::{Engine, SEQUENCE_PROBE, SEQUENCE_PROBE6, Timestamp, UplinkId, lock};
use crate::metered::CapEffect;

use std::sync::atomic::Ordering;

/// The sequence probes of TCP connections being reset, IPv4's and IPv6's, to write to the
/// TUN device: each asks its LAN host for its sequence number, and its answer is turned into
/// the reset.
#[derive(Debug, Default)]
pub struct Resets {
    pub v4: Vec<[u8; SEQUENCE_PROBE]>,
    pub v6: Vec<[u8; SEQUENCE_PROBE6]>,
}

impl Resets {
    /// Connections being reset.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Engine {
    /// What `uplink`'s cap does to it from now on: ranked below the uplinks under their caps
    /// (what runs on it keeps running), or out of service as if down (its TCP connections,
    /// IPv4 and IPv6, reset as `reset_tcp_on_down` says: the returned probes ask for their
    /// sequence numbers, `carried` saying where the fast path's connections are).
    pub fn set_cap_effect(
        &self,
        uplink: UplinkId,
        effect: CapEffect,
        carried: &CarriedFlows,
    ) -> Resets {
        let v6 = self.set_cap_effect6(uplink, effect, carried);
        let v4 = self.reselect(|select| select.set_cap(uplink, effect), carried);
        Resets { v4, v6 }
    }

    /// How new destinations are spread, and each uplink's failback (one per uplink); a reload
    /// may change them.
    pub fn set_line_policy(&self, balance: Balance, failback: Vec<FailbackPolicy>) {
        lock(&self.select).set_balance(balance);
        lock(&self.v6.select).set_balance(balance);
        lock(&self.failback).set_policies(failback);
    }

    /// Each uplink's bytes over the recent window, by which `balance=bytes` places new
    /// destinations.
    pub fn set_recent_bytes(&self, bytes: &[u64]) {
        lock(&self.select).set_recent_bytes(bytes);
        lock(&self.v6.select).set_recent_bytes(bytes);
    }

    /// The uplinks whose failback is due now (`failback=move`, a better uplink up for their
    /// grace), one bit each, each once per time it is outranked: for [`Engine::fail_back`].
    /// Called often (every second or more): the grace is counted from the first call that
    /// sees an uplink outranked.
    pub fn failbacks_due(&self, now: Timestamp) -> u32 {
        lock(&self.failback).due(now)
    }

    /// Resets the TCP connections, IPv4 and IPv6, of the uplinks in `due`
    /// ([`Engine::failbacks_due`]) that are still outranked: the returned probes ask for their
    /// sequence numbers (`carried` saying where the fast path's connections are). Connections
    /// pinned to their uplink, and forwarded ones, stay.
    pub fn fail_back(&self, due: u32, carried: &CarriedFlows) -> Resets {
        if due == 0 {
            return Resets::default();
        }
        let _one_at_a_time = lock(&self.reselecting);
        let v6 = self.fail_back6(due, carried);
        // an uplink no longer outranked since (its better uplink gone again) keeps its flows
        let due = due & self.leaving.load(Ordering::Relaxed) & !self.down.load(Ordering::Relaxed);
        let pins = self.pins.load();
        let v4 = self.release(due, false, None, carried, |f| {
            f.key.proto == PROTO_TCP
                && self.forward_of(f).is_none()
                && pins
                    .lookup(f.key.rem_addr)
                    .is_none_or(|p| p.uplink != f.uplink)
        });
        Resets { v4, v6 }
    }
}
