//! Which uplink the gateway's own traffic takes. With `host_traffic = "follow"` the host's
//! default route (main table) follows the best uplink up: of the uplinks up, those of the
//! lowest tier, the highest weight among them, the first of equals (the uplink that takes the
//! most new destinations). The choice is made here without I/O; io/host_route.rs puts it into
//! the routing table.
//!
//! With no uplink up the route stays as it is: no route works then, and moving it would only
//! add a switch when an uplink returns. Before the first verdict that leaves the system's own
//! route in place.

use std::cmp::Reverse;

use crate::health::State;
use crate::uplink::{UplinkId, id_at};

/// One uplink as the choice sees it: its health and its place in the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkRank {
    pub state: State,
    pub tier: u8,
    pub weight: u32,
}

/// The uplink the host's default route should use (`uplinks` in the uplinks' order), or None
/// while none is up.
pub fn best_uplink(uplinks: &[UplinkRank]) -> Option<UplinkId> {
    uplinks
        .iter()
        .enumerate()
        .filter(|(_, u)| u.state == State::Up)
        .min_by_key(|&(i, u)| (u.tier, Reverse(u.weight), i))
        .map(|(i, _)| id_at(i))
}

/// A change to the host's default route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Point it at uplink `to`; `why` is for the log.
    Use { to: UplinkId, why: String },
    /// Put the system's own route back: following was switched off.
    Restore,
}

/// The host's default route as wanlb left it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostRoute {
    /// The uplink it points at; None: the system's own route.
    via: Option<UplinkId>,
}

impl HostRoute {
    /// The change to make now, if any. `follow` is the setting in force, `uplinks` the
    /// uplinks in order and `names` their names, for the reason.
    pub fn next(&self, follow: bool, uplinks: &[UplinkRank], names: &[&str]) -> Option<Step> {
        if !follow {
            return self.via.map(|_| Step::Restore);
        }
        let best = best_uplink(uplinks)?;
        let rank = |id: UplinkId| uplinks[usize::from(id)];
        let name = |id: UplinkId| names[usize::from(id)];
        let why = match self.via {
            Some(now) if now == best => return None,
            None => format!("{} is the best line up", name(best)),
            Some(now) if rank(now).state != State::Up => {
                format!("{} is {}", name(now), rank(now).state.name())
            }
            Some(now) => {
                let (b, n) = (rank(best), rank(now));
                format!(
                    "{} is preferred to {} (tier {}, weight {} against tier {}, weight {})",
                    name(best),
                    name(now),
                    b.tier,
                    b.weight,
                    n.tier,
                    n.weight
                )
            }
        };
        Some(Step::Use { to: best, why })
    }

    /// Records that `step` was made.
    pub fn done(&mut self, step: &Step) {
        self.via = match step {
            Step::Use { to, .. } => Some(*to),
            Step::Restore => None,
        };
    }
}

#[cfg(test)]
mod tests;
