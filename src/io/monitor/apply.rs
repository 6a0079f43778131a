//! The one way each change of an uplink is made. An uplink's record
//! ([`crate::uplink::Uplink`]) owns its state; others keep copies of parts of it, for speed or
//! because the kernel needs them: the engine (the address new flows leave from, and whether
//! the uplink takes them), its socket filters (the address replies come to), wanlb's nftables
//! table (the addresses the kernel must not answer for, and the subnets it routes itself),
//! the kernel fast path (where the uplink's packets go, and the interface they come in on)
//! and its sockets (bound to its interface). What an uplink's data cap does to it, and its
//! failback, are put into the engine here too. Each method here changes the record and every
//! copy together, in the order that change needs, and says so in the log once it is all in
//! effect. The host's default route (io/host_route.rs) and the reports read the record and
//! follow. Only the monitor thread makes these changes.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use crate::engine::Timestamp;
use crate::health::{State, Transition};
use crate::metered::CapEffect;
use crate::uplink::{LinkKind, NextHop, Uplink, UplinkId, format_mac};

use super::super::hook::{Event, Events};
use super::super::iface;
use super::super::vnet;
use super::super::worker::{PacketIo, Shared};
use super::{TableUpdate, TableUplink, Watched};

/// What the changes reach besides the records.
pub(super) struct Apply<'a, T: PacketIo> {
    pub shared: &'a Shared,
    pub table: TableUpdate<'a>,
    /// Where the engine's packets for the LAN (sequence probes) are written.
    pub tun: T,
    pub events: Events,
    /// wanlb's nftables table could not follow an address change yet.
    pub table_stale: bool,
    /// What each uplink's cap does to it, as put into the engine (none yet: no cap).
    pub caps: Vec<CapEffect>,
}

impl<T: PacketIo> Apply<'_, T> {
    /// Uplink `id` (of `uplinks`) has address `addr` from now on: new flows leave
    /// from it, flows on the old one are ended as on a dead uplink, and the socket filters and
    /// wanlb's nftables table follow.
    ///
    /// In this order: the record, then the nftables table and the socket filters, which take
    /// the new address before the first flow uses it, so the kernel never answers its replies
    /// itself; then the engine, whose TCP connections of the old address are reset towards
    /// the LAN. A table that could not be updated is tried again every second
    /// ([`Apply::retry_table`]).
    pub fn readdress(&mut self, uplinks: &mut [Watched<'_>], id: UplinkId, addr: Ipv4Addr) {
        let shared = self.shared;
        let uplink = &shared.uplinks[id];
        let old = uplink.addr();
        if old == addr {
            return;
        }
        uplink.set_addr(addr);
        self.table_stale = !self.update_table(uplinks);
        if let Err(e) = uplinks[usize::from(id)].sockets.filters.set_addr(addr) {
            tracing::warn!(uplink = %uplink.name, error = %e, "cannot give the socket filters the new address; replies to it are not seen");
        }
        let carried = shared.carried().unwrap_or_default();
        let probes = shared.engine.set_uplink_addr(id, u32::from(addr), &carried);
        shared.carry_out();
        if !probes.is_empty() {
            tracing::info!(uplink = %uplink.name, connections = probes.len(), "resetting TCP connections of the old address");
        }
        self.send_to_lan(probes);
        // said once it is all in effect
        tracing::info!(uplink = %uplink.name, from = %old, to = %addr, "uplink address changed");
    }

    /// Tries again to make wanlb's nftables table name the uplinks as they are now.
    pub fn retry_table(&mut self, uplinks: &[Watched<'_>]) {
        self.table_stale = !self.update_table(uplinks);
    }

    /// Makes wanlb's nftables table name the uplinks' addresses and their interfaces' subnets
    /// as they are now; false if it could not.
    fn update_table(&self, uplinks: &[Watched<'_>]) -> bool {
        let now: Vec<TableUplink<'_>> = uplinks
            .iter()
            .map(|w| {
                let uplink = &self.shared.uplinks[w.id];
                TableUplink {
                    addr: uplink.addr(),
                    subnets: w.addressing.subnets(),
                    v6: uplink.ipv6().map(|v6| (v6.addr, v6.prefix)),
                }
            })
            .collect();
        match (self.table)(&now) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot update wanlb's nftables table for a new address; trying again every second");
                false
            }
        }
    }

    /// The health figures of uplink `w` shown as they are now (carrier, RTT, loss), without a
    /// change of state.
    pub fn figures(&self, w: &Watched<'_>) {
        self.shared.uplinks[w.id].update(w.carrier, w.health.stats(), None);
    }

    /// Puts a health verdict about uplink `w` into effect: going down, the kernel fast path
    /// stops carrying its flows first, so that they reach the engine, which then moves or
    /// ends them; coming up, the engine takes it back into use, then the fast path (once its
    /// next hop is known). The record, and the `--on-change` command, last.
    pub fn verdict(&self, w: &Watched<'_>, change: Transition) {
        let shared = self.shared;
        let uplink = &shared.uplinks[w.id];
        let stats = w.health.stats();
        let up = change.state == State::Up;
        let reason = change.reason.to_string();
        let rtt_ms = stats.rtt_ms_text();
        let loss_pct = stats.loss_pct();
        let probed: Vec<String> = w.targets.iter().map(|t| t.to_string()).collect();
        if up {
            tracing::info!(uplink = %uplink.name, reason = %reason, targets = %probed.join(","),
                rtt_ms = %rtt_ms, loss_pct, "uplink up");
        } else {
            let unanswered: Vec<String> = w
                .health
                .unanswered()
                .iter()
                .filter_map(|&t| w.targets.get(t).map(|a| a.to_string()))
                .collect();
            let unanswered = if unanswered.is_empty() {
                "none".to_string()
            } else {
                unanswered.join(",")
            };
            let gateway_mac = match uplink.link {
                LinkKind::Ethernet => uplink.gateway_mac().map_or("unknown".into(), format_mac),
                LinkKind::PointToPoint => "none (point-to-point)".into(),
            };
            tracing::info!(uplink = %uplink.name, reason = %reason, unanswered = %unanswered,
                targets = %probed.join(","), carrier = w.carrier, gateway_mac = %gateway_mac,
                rtt_ms = %rtt_ms, loss_pct, "uplink down");
            // stop carrying its flows in the kernel first, so they reach the engine
            self.set_fast_path(uplink, None);
        }
        let carried = shared.carried().unwrap_or_default();
        let probes = shared.engine.set_uplink_up(w.id, up, &carried);
        shared.carry_out();
        if !probes.is_empty() {
            tracing::info!(uplink = %uplink.name, connections = probes.len(), "resetting TCP connections");
        }
        self.send_to_lan(probes);
        if up && let Some(next_hop) = uplink.next_hop() {
            self.set_fast_path(uplink, Some(next_hop));
        }
        uplink.update(w.carrier, stats, Some((change.state, reason.clone())));
        let _ = self.events.send(Event {
            uplink: uplink.name.clone(),
            event: change.state.name(),
            state: change.state.name(),
            reason,
            cap: None,
        });
    }

    /// Puts what each uplink's cap does now (`effects`, in the uplinks' order, from the
    /// meters) into the engine, where it changed: ranked below the uplinks under their caps,
    /// out of service (its flows handled as at failover), or back in its tier.
    pub fn caps(&mut self, effects: &[CapEffect]) {
        let shared = self.shared;
        self.caps.resize(effects.len(), CapEffect::None);
        for (i, &effect) in effects.iter().enumerate() {
            if self.caps[i] == effect {
                continue;
            }
            self.caps[i] = effect;
            let uplink = &shared.uplinks[crate::uplink::id_at(i)];
            match effect {
                CapEffect::None => {
                    tracing::info!(uplink = %uplink.name, "under its cap: back in its tier")
                }
                CapEffect::Backup => {
                    tracing::warn!(uplink = %uplink.name, "cap reached: ranked below every uplink under its cap")
                }
                CapEffect::Off => {
                    tracing::warn!(uplink = %uplink.name, "cap reached: out of service until its count starts again")
                }
            }
            let carried = shared.carried().unwrap_or_default();
            let probes = shared.engine.set_cap_effect(uplink.id, effect, &carried);
            shared.carry_out();
            if !probes.is_empty() {
                tracing::info!(uplink = %uplink.name, connections = probes.len(), "resetting TCP connections");
            }
            self.send_to_lan(probes.v4);
            self.send_to_lan(probes.v6);
        }
    }

    /// Resets the TCP connections still on uplinks whose failback is due (`failback=move`,
    /// a better uplink up for the grace).
    pub fn fail_back(&self, now: Timestamp) {
        let shared = self.shared;
        let due = shared.engine.failbacks_due(now);
        if due == 0 {
            return;
        }
        let carried = shared.carried().unwrap_or_default();
        let probes = shared.engine.fail_back(due, &carried);
        shared.carry_out();
        let names: Vec<&str> = shared
            .uplinks
            .iter()
            .filter(|u| due & 1 << u.id != 0)
            .map(|u| u.name.as_str())
            .collect();
        tracing::info!(uplinks = %names.join(","), connections = probes.len(),
            "failback: resetting the TCP connections still on a backup uplink");
        self.send_to_lan(probes.v4);
        self.send_to_lan(probes.v6);
    }

    /// With `gw=auto`, uplink `w`'s interface's default route names another gateway: its MAC
    /// is asked for anew, and until then the kernel fast path leaves the uplink's flows to
    /// userspace, which waits for it.
    pub fn gateway_changed(&self, w: &Watched<'_>, gateway: Ipv4Addr) {
        let uplink = &self.shared.uplinks[w.id];
        tracing::info!(uplink = %uplink.name, dev = %uplink.dev, gateway = %gateway,
            "gateway changed (the interface's default route)");
        uplink.set_gateway(gateway);
        // a point-to-point uplink's peer needs no MAC: nothing else changes
        if w.sockets.arp.is_some() {
            self.set_fast_path(uplink, None);
        }
    }

    /// The gateway of `uplink` answered ARP from `mac`: if that is new, packets go to it from
    /// now on, the fast path's too while the uplink is up.
    pub fn gateway_resolved(&self, uplink: &Uplink, mac: [u8; 6]) {
        if uplink.set_gateway_mac(mac) {
            tracing::info!(uplink = %uplink.name, mac = %format_mac(mac), "gateway resolved");
            if uplink.is_up() {
                self.set_fast_path(uplink, Some(NextHop::Gateway(mac)));
            }
        }
    }

    /// Uplink `w`'s interface was removed (a PPPoE session ended, a USB modem unplugged): the
    /// uplink is dead, which the caller tells its health, and its workers let go of their data
    /// sockets until the interface comes back.
    pub fn interface_gone(&self, w: &Watched<'_>) {
        let uplink = &self.shared.uplinks[w.id];
        tracing::info!(uplink = %uplink.name, dev = %uplink.dev, "interface removed");
        w.sockets.close_data();
    }

    /// Uplink `w`'s interface came back as a new one, number `ifindex` (pppd's redial deletes
    /// `ppp0` and makes another): the record takes its index and MAC (and forgets the
    /// gateway's, which ARP asks for again), the kernel fast path attaches its program there
    /// and moves the uplink's flows to it, and every socket of the uplink is opened on it
    /// again, the workers taking theirs at their next loop. The uplink comes back into use as
    /// after losing carrier, once it has an address and its probes are answered through the
    /// new interface. False if the new interface cannot be used (logged): the uplink then
    /// stays down.
    pub fn redial(&self, w: &mut Watched<'_>, ifindex: u32) -> bool {
        let uplink = &self.shared.uplinks[w.id];
        let found = iface::list().map(|all| all.into_iter().find(|i| i.index == ifindex));
        let interface = match found {
            Ok(Some(interface)) => interface,
            Ok(None) => {
                tracing::warn!(uplink = %uplink.name, dev = %uplink.dev, ifindex,
                    "the interface came back as a new one and went again before its sockets could be opened");
                return false;
            }
            Err(e) => {
                tracing::warn!(uplink = %uplink.name, dev = %uplink.dev, error = %e,
                    "the interface came back as a new one, which cannot be read: this uplink stays down until wanlb is restarted");
                return false;
            }
        };
        if LinkKind::of(interface.hardware_type, interface.point_to_point) != Some(uplink.link) {
            tracing::warn!(uplink = %uplink.name, dev = %uplink.dev, ifindex,
                hardware_type = interface.hardware_type,
                "the interface came back as another kind of link: this uplink stays down until wanlb is restarted");
            return false;
        }
        uplink.moved_to(ifindex, interface.mac);
        if let Some(fast) = &self.shared.fast_path
            && let Err(e) = fast.reattach_uplink(w.id, ifindex, interface.mac)
        {
            tracing::warn!(uplink = %uplink.name, error = %e,
                "cannot attach the kernel fast path to the new interface; this uplink's flows stay in userspace");
        }
        if let Err(e) = w.sockets.reopen(uplink) {
            tracing::warn!(uplink = %uplink.name, dev = %uplink.dev, error = %e,
                "cannot open this uplink's sockets on the new interface: it stays down until wanlb is restarted");
            return false;
        }
        // still in use (its removal went unheard): the fast path carries it again at once
        if uplink.is_up()
            && let Some(next_hop) = uplink.next_hop()
        {
            self.set_fast_path(uplink, Some(next_hop));
        }
        tracing::info!(uplink = %uplink.name, dev = %uplink.dev, ifindex,
            "the interface is back as a new one: this uplink's sockets and fast path moved to it");
        true
    }

    /// Writes the engine's packets for LAN hosts (sequence probes, IPv4's or IPv6's) to TUN.
    pub fn send_to_lan<const N: usize>(&self, probes: Vec<[u8; N]>) {
        for p in probes {
            let mut frame = vec![0u8; vnet::LEN];
            frame.extend_from_slice(&p);
            if self.tun.send(&frame).is_err() {
                self.shared
                    .io
                    .tun_write_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// [`Apply::set_fast_path`] of the line's IPv6.
    pub fn set_fast_path6(&self, uplink: &Uplink, next_hop: Option<NextHop>) {
        if let Some(fast) = &self.shared.fast_path
            && let Err(e) = fast.set_next_hop6(uplink.id, next_hop)
        {
            tracing::warn!(uplink = %uplink.name, error = %e,
                "cannot update the kernel fast path for this uplink's IPv6; its IPv6 flows stay in userspace");
        }
    }

    fn set_fast_path(&self, uplink: &Uplink, next_hop: Option<NextHop>) {
        if let Some(fast) = &self.shared.fast_path
            && let Err(e) = fast.set_next_hop(uplink.id, next_hop)
        {
            tracing::warn!(uplink = %uplink.name, error = %e,
                "cannot update the kernel fast path for this uplink; its flows stay in userspace");
        }
    }
}
