//! Destination affinity: a destination in use stays on the uplink it uses.
//!
//! A destination counts as in use while any flow to it lives, and for the idle timeout after
//! the last packet of its last flow. Keeping a count of live flows instead of stamping every
//! packet keeps this off the per-packet path: flows already record their last packet.

use std::collections::hash_map::Entry;

use ahash::AHashMap;

use super::{Stamp, Timestamp, UplinkId};

#[derive(Clone, Copy, Debug)]
struct Destination {
    uplink: UplinkId,
    live_flows: u32,
    last_used: Stamp,
}

#[derive(Debug)]
pub struct Affinity {
    destinations: AHashMap<u32, Destination>,
    idle_timeout_ms: u64,
}

impl Affinity {
    pub fn new(idle_timeout_ms: u64) -> Affinity {
        Affinity {
            destinations: AHashMap::new(),
            idle_timeout_ms,
        }
    }

    /// A reload's new idle timeout; it applies to bindings already made too.
    pub fn set_idle_timeout(&mut self, idle_timeout_ms: u64) {
        self.idle_timeout_ms = idle_timeout_ms;
    }

    fn fresh(&self, d: &Destination, now: Timestamp) -> bool {
        d.live_flows > 0 || now.since_stamp(d.last_used) < self.idle_timeout_ms
    }

    /// The uplink `dst` is bound to, if the binding has not expired.
    pub fn lookup(&self, dst: u32, now: Timestamp) -> Option<UplinkId> {
        self.destinations
            .get(&dst)
            .filter(|d| self.fresh(d, now))
            .map(|d| d.uplink)
    }

    /// A new flow to `dst` on `uplink`. Returns true when this binds the destination anew
    /// (it had no fresh binding, or a different uplink), for the per-uplink counters. Moving
    /// a destination to another uplink counts only the flows on the new one as its own.
    pub fn attach(&mut self, dst: u32, uplink: UplinkId, now: Timestamp) -> bool {
        let timeout = self.idle_timeout_ms;
        match self.destinations.entry(dst) {
            Entry::Vacant(v) => {
                v.insert(Destination {
                    uplink,
                    live_flows: 1,
                    last_used: now.stamp(),
                });
                true
            }
            Entry::Occupied(mut o) => {
                let d = o.get_mut();
                let stale = d.live_flows == 0 && now.since_stamp(d.last_used) >= timeout;
                let new_binding = stale || d.uplink != uplink;
                if d.uplink != uplink {
                    d.live_flows = 0;
                }
                d.uplink = uplink;
                d.live_flows += 1;
                d.last_used = d.last_used.later(now.stamp());
                new_binding
            }
        }
    }

    /// A flow to `dst` on `uplink` ended; its last packet was at `last_seen`. A flow left
    /// on an uplink the destination has since moved from does not count.
    pub fn detach(&mut self, dst: u32, uplink: UplinkId, last_seen: Stamp) {
        if let Some(d) = self.destinations.get_mut(&dst)
            && d.uplink == uplink
        {
            d.live_flows = d.live_flows.saturating_sub(1);
            d.last_used = d.last_used.later(last_seen);
        }
    }

    /// Forgets every destination bound to `uplink`, so their next flow is placed anew.
    pub fn release(&mut self, uplink: UplinkId) {
        self.destinations.retain(|_, d| d.uplink != uplink);
    }

    pub fn expire(&mut self, now: Timestamp) {
        let timeout = self.idle_timeout_ms;
        self.destinations
            .retain(|_, d| d.live_flows > 0 || now.since_stamp(d.last_used) < timeout);
    }

    pub fn len(&self) -> usize {
        self.destinations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn binding_lives_while_flows_live_and_idle_timeout_after() {
        let mut a = Affinity::new(10 * MIN);
        let t0 = Timestamp::from_millis(1000);
        assert!(a.attach(7, 1, t0));
        // flow alive for an hour without being detached: still bound
        assert_eq!(a.lookup(7, t0.after_ms(60 * MIN)), Some(1));
        a.detach(7, 1, t0.after_ms(5 * MIN).stamp());
        assert_eq!(a.lookup(7, t0.after_ms(15 * MIN - 1)), Some(1));
        assert_eq!(a.lookup(7, t0.after_ms(15 * MIN)), None);
        a.expire(t0.after_ms(15 * MIN));
        assert!(a.is_empty());
    }

    #[test]
    fn rebinding_counts_as_new() {
        let mut a = Affinity::new(MIN);
        let t0 = Timestamp::from_millis(0);
        assert!(a.attach(9, 0, t0));
        assert!(!a.attach(9, 0, t0.after_ms(1)));
        assert!(a.attach(9, 1, t0.after_ms(2)));
        assert_eq!(a.lookup(9, t0.after_ms(3)), Some(1));
        // the two flows of uplink 0 ending do not end the binding's one flow on uplink 1
        a.detach(9, 0, t0.stamp());
        a.detach(9, 0, t0.stamp());
        assert_eq!(a.lookup(9, t0.after_ms(10 * MIN)), Some(1));
        a.release(1);
        assert_eq!(a.lookup(9, t0.after_ms(4)), None);
    }
}
