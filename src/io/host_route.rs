//! The host's default route with `host_traffic = "follow"`: wanlb puts a default route of its
//! own in front of the system's and points it at the uplink [`HostRoute`] chooses.
//!
//! wanlb's route is `default via GW dev DEV src ADDR metric 0 proto 113`, prepended: metric 0
//! comes before every other, and of the routes with the same destination and metric the
//! kernel uses the first. The source address makes replies come back on that uplink. The
//! system's own default routes are never changed, so when wanlb's is gone they are in use
//! again exactly as they were, with what `ip -j` cannot show (a locked MTU) and without
//! wanlb reading them. The protocol number marks wanlb's route: one command removes it
//! wherever it is, and the undo journal holds that command for a stop, for a reload that
//! turns following off, and for the next start after a crash.

use std::time::{Duration, Instant};

use crate::host_traffic::{HostRoute, Step, UplinkRank};
use crate::uplink::{LinkKind, Uplink, UplinkId, Uplinks};

use super::journal::{Plumbing, Recorded};
use super::system::{self, SystemError};

/// The routing protocol number that marks wanlb's default route (`ip route show proto 113`).
pub const ROUTE_PROTO: u8 = 113;
/// After a change that failed, the next attempt waits this long (each is an `ip` command).
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Removes wanlb's default route, if there: the undo, and the first half of every switch.
fn remove_args() -> String {
    format!("route flush exact 0.0.0.0/0 proto {ROUTE_PROTO} table main")
}

/// wanlb's default route through `uplink`: via its gateway, or straight out of a
/// point-to-point link.
fn route_args(uplink: &Uplink) -> String {
    let via = match (uplink.link, uplink.gateway()) {
        (LinkKind::Ethernet, Some(gateway)) => format!("via {gateway} "),
        _ => String::new(),
    };
    format!(
        "route prepend default {via}dev {} src {} metric 0 proto {ROUTE_PROTO} table main",
        uplink.dev,
        uplink.addr()
    )
}

/// What the host's default route follows, by the settings in force (a reload may change
/// them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRouteSettings {
    /// Whether wanlb's route is there at all (`host_traffic = "follow"`).
    pub follow: bool,
    /// Each uplink's tier and weight, in the uplinks' order.
    pub ranks: Vec<(u8, u32)>,
}

/// The one owner of wanlb's default route in the main table: the control loop updates it.
pub struct HostRouteOwner<'a> {
    plumbing: &'a mut Plumbing,
    route: HostRoute,
    /// The journal's entry that removes wanlb's route, from before it was first added.
    journaled: Option<Recorded>,
    /// No attempt before this, after a failure.
    retry_at: Option<Instant>,
    /// The failure last logged as a warning: the same again is logged at debug.
    failing: Option<String>,
    /// The uplink wanlb's route points at, the address it gave as the source and the gateway
    /// it goes via: when the uplink's address (the kernel then removes the route) or gateway
    /// (`gw=auto`) changes, the route is made again.
    pointed: Option<(UplinkId, std::net::Ipv4Addr, Option<std::net::Ipv4Addr>)>,
}

impl<'a> HostRouteOwner<'a> {
    pub fn new(plumbing: &'a mut Plumbing) -> HostRouteOwner<'a> {
        HostRouteOwner {
            plumbing,
            route: HostRoute::default(),
            journaled: None,
            retry_at: None,
            failing: None,
            pointed: None,
        }
    }

    /// Makes the host's default route what `settings` (those in force) and the uplinks'
    /// health ask for, if it is not already; logs each change and why.
    pub fn update(&mut self, settings: &HostRouteSettings, uplinks: &Uplinks) {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let ranks: Vec<UplinkRank> = uplinks
            .iter()
            .zip(&settings.ranks)
            .map(|(u, &(tier, weight))| UplinkRank {
                state: u.status().state,
                tier,
                weight,
            })
            .collect();
        let names: Vec<&str> = uplinks.iter().map(|u| u.name.as_str()).collect();
        let follow = settings.follow;
        let step = match self.route.next(follow, &ranks, &names) {
            Some(step) => step,
            None => match self.pointed {
                Some((to, addr, gateway))
                    if (uplinks[to].addr(), uplinks[to].gateway()) != (addr, gateway) =>
                {
                    Step::Use {
                        to,
                        why: format!("{}'s address or gateway changed", uplinks[to].name),
                    }
                }
                _ => return,
            },
        };
        let made = match &step {
            Step::Use { to, .. } => self.point_at(&uplinks[*to]),
            Step::Restore => self.remove(),
        };
        if let Err(e) = made {
            let e = e.to_string();
            if self.failing.as_ref() == Some(&e) {
                tracing::debug!(error = %e, "the host's default route still cannot be changed");
            } else {
                tracing::warn!(error = %e, retry_in_s = RETRY_AFTER.as_secs(),
                    "cannot change the host's default route");
                self.failing = Some(e);
            }
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
            return;
        }
        match &step {
            Step::Use { to, why } => {
                let u = &uplinks[*to];
                tracing::info!(uplink = %u.name, dev = %u.dev, src = %u.addr(),
                    reason = %why, "host default route switched");
            }
            Step::Restore => tracing::info!(
                "host default route: wanlb's removed, the system's own in use again (host_traffic is off)"
            ),
        }
        self.route.done(&step);
        (self.retry_at, self.failing) = (None, None);
    }

    /// Points wanlb's default route at `uplink`, journaling its removal first.
    fn point_at(&mut self, uplink: &Uplink) -> Result<(), SystemError> {
        self.pointed = Some((uplink.id, uplink.addr(), uplink.gateway()));
        if self.journaled.is_none() {
            self.journaled = Some(self.plumbing.journal_ip(&remove_args())?);
        }
        // the new one is added once the old one is gone: a prepend in front of wanlb's own
        // old route would leave two of them
        system::run("ip", &system::words(&remove_args()), None)?;
        system::run("ip", &system::words(&route_args(uplink)), None)
    }

    /// Removes wanlb's default route now, and its entry from the journal.
    fn remove(&mut self) -> Result<(), SystemError> {
        if let Some(entry) = &self.journaled {
            self.plumbing.undo_now(entry)?;
            self.journaled = None;
        }
        self.pointed = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
