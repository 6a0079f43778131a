//! Destination affinity: a destination in use stays on the uplink it uses.
//!
//! A destination counts as in use while any flow to it lives, and for the idle timeout after
//! the last packet of its last flow. Keeping a count of live flows instead of stamping every
//! packet keeps this off the per-packet path: flows already record their last packet.
//!
//! Bounded: a binding with live flows costs at most one per flow (the flow table is bounded);
//! idle ones, kept for the timeout, are at most [`Affinity::set_max_idle`]. When that many are
//! kept, a destination whose last flow ends is forgotten at once (its next flow is placed
//! anew), so a host spraying new destinations cannot grow the table past it.

use std::collections::hash_map::Entry;

use ahash::AHashMap;

use super::family::{Family, V4};
use super::{Stamp, Timestamp, UplinkId};

#[derive(Clone, Copy, Debug)]
struct Destination {
    uplink: UplinkId,
    live_flows: u32,
    last_used: Stamp,
}

#[derive(Debug)]
pub struct Affinity<F: Family = V4> {
    destinations: AHashMap<F::Addr, Destination>,
    idle_timeout_ms: u64,
    /// Bindings without a live flow, and how many may be kept.
    idle: usize,
    max_idle: usize,
}

impl<F: Family> Affinity<F> {
    pub fn new(idle_timeout_ms: u64) -> Affinity<F> {
        Affinity {
            destinations: AHashMap::new(),
            idle_timeout_ms,
            idle: 0,
            max_idle: usize::MAX,
        }
    }

    /// How many bindings without a live flow may be kept (a reload may change it: those kept
    /// stay until they expire).
    pub fn set_max_idle(&mut self, max_idle: usize) {
        self.max_idle = max_idle;
    }

    /// A reload's new idle timeout; it applies to bindings already made too.
    pub fn set_idle_timeout(&mut self, idle_timeout_ms: u64) {
        self.idle_timeout_ms = idle_timeout_ms;
    }

    fn fresh(&self, d: &Destination, now: Timestamp) -> bool {
        d.live_flows > 0 || now.since_stamp(d.last_used) < self.idle_timeout_ms
    }

    /// The uplink `dst` is bound to, if the binding has not expired.
    pub fn lookup(&self, dst: F::Addr, now: Timestamp) -> Option<UplinkId> {
        self.destinations
            .get(&dst)
            .filter(|d| self.fresh(d, now))
            .map(|d| d.uplink)
    }

    /// A new flow to `dst` on `uplink`. Returns true when this binds the destination anew
    /// (it had no fresh binding, or a different uplink), for the per-uplink counters. Moving
    /// a destination to another uplink counts only the flows on the new one as its own.
    pub fn attach(&mut self, dst: F::Addr, uplink: UplinkId, now: Timestamp) -> bool {
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
                if d.live_flows == 0 {
                    self.idle -= 1;
                }
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
    /// on an uplink the destination has since moved from does not count. Returns true when
    /// that was the destination's last flow and it is forgotten at once, the idle bindings
    /// being as many as may be kept.
    pub fn detach(&mut self, dst: F::Addr, uplink: UplinkId, last_seen: Stamp) -> bool {
        let Entry::Occupied(mut o) = self.destinations.entry(dst) else {
            return false;
        };
        let d = o.get_mut();
        if d.uplink != uplink {
            return false;
        }
        d.last_used = d.last_used.later(last_seen);
        // already idle: a flow placed before the destination came back to this uplink
        if d.live_flows == 0 {
            return false;
        }
        d.live_flows -= 1;
        if d.live_flows > 0 {
            return false;
        }
        if self.idle >= self.max_idle {
            o.remove();
            return true;
        }
        self.idle += 1;
        false
    }

    /// Forgets every destination bound to `uplink`, so their next flow is placed anew.
    pub fn release(&mut self, uplink: UplinkId) {
        let mut idle = 0;
        self.destinations.retain(|_, d| {
            let keep = d.uplink != uplink;
            if !keep && d.live_flows == 0 {
                idle += 1;
            }
            keep
        });
        self.idle -= idle;
    }

    pub fn expire(&mut self, now: Timestamp) {
        let timeout = self.idle_timeout_ms;
        let mut expired = 0;
        self.destinations.retain(|_, d| {
            let keep = d.live_flows > 0 || now.since_stamp(d.last_used) < timeout;
            if !keep {
                expired += 1;
            }
            keep
        });
        self.idle -= expired;
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
        let mut a = Affinity::<V4>::new(10 * MIN);
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
        let mut a = Affinity::<V4>::new(MIN);
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
        assert_eq!(a.idle, 0);
    }

    #[test]
    fn idle_bindings_are_bounded_and_a_full_table_forgets_the_next_at_once() {
        let mut a = Affinity::<V4>::new(10 * MIN);
        a.set_max_idle(2);
        let t0 = Timestamp::from_millis(0);
        for dst in 1..=3 {
            a.attach(dst, 0, t0);
        }
        assert!(!a.detach(1, 0, t0.stamp()));
        assert!(!a.detach(2, 0, t0.stamp()));
        assert_eq!((a.idle, a.len()), (2, 3));
        // a third idle binding is not kept: the destination is placed anew next time
        assert!(a.detach(3, 0, t0.stamp()));
        assert_eq!(a.lookup(3, t0.after_ms(1)), None);
        assert_eq!(a.len(), 2);
        // a binding in use again is not idle; its end makes it idle again
        a.attach(1, 0, t0.after_ms(2));
        assert_eq!(a.idle, 1);
        assert!(!a.detach(3, 0, t0.stamp()), "unknown: nothing to forget");
        a.attach(4, 1, t0.after_ms(3));
        assert!(!a.detach(4, 1, t0.stamp()));
        assert_eq!(a.idle, 2);
        // expiry and release count them down
        a.expire(t0.after_ms(10 * MIN + 3));
        assert_eq!((a.idle, a.len()), (0, 1));
        a.release(0);
        assert!(a.is_empty());
        assert_eq!(a.idle, 0);
    }
}
