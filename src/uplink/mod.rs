//! What each uplink is at run time: one record per uplink, [`Uplink`], indexed by its
//! [`UplinkId`] (its place in the settings) in [`Uplinks`]. A record says where the uplink
//! leads (its interface as it is now: index and MAC, which a redial changes), over what kind
//! of link, the address its traffic leaves from, its gateway and the gateway's MAC as learned,
//! and its health as last decided.
//!
//! The record is the one owner of that state. The monitor thread alone changes it, through
//! the one way each kind of change has (`io/monitor/apply.rs`), which carries it on, in the
//! order it needs, to the copies others keep for speed: the engine's addresses and selector,
//! the socket filters' map, wanlb's nftables table, the kernel fast path's maps and programs,
//! and the uplink's sockets. The workers, the host route and the reports read the record.
//! Plain data and atomics; the sockets live in io/. An uplink's place in the policy (weight,
//! tier, health targets) is in the settings, which a reload may change: never copied here.

mod addressing;
mod addressing6;
mod ipv6;
mod link;

use std::net::Ipv4Addr;
use std::ops::Index;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

pub use crate::engine::UplinkId;
use crate::health::{State, Stats};
pub use addressing::{Addressing, LinkChange, LinkEvent};
pub use addressing6::{Addressing6, Delegation, Router6};
pub use ipv6::Ipv6Facts;
pub use link::{LinkKind, NextHop, format_mac};
use link::{mac_to_u64, u64_to_mac};

/// Health as the status reports show it.
#[derive(Clone, Debug)]
pub struct Status {
    pub state: State,
    pub since: SystemTime,
    /// Why it is in this state (empty at start).
    pub reason: String,
    pub carrier: bool,
    pub stats: Stats,
    /// State changes so far.
    pub changes: u64,
}

/// One uplink at run time (see the module's doc). Its name, device and kind of link come
/// from the settings and the system and never change; the rest is learned while running.
#[derive(Debug)]
pub struct Uplink {
    pub id: UplinkId,
    pub name: String,
    pub dev: String,
    pub link: LinkKind,
    /// The index of its interface now.
    ifindex: AtomicU32,
    /// Its interface's MAC in the low 48 bits; 0 on a point-to-point link, which has none.
    mac: AtomicU64,
    /// The address its traffic leaves from, as the interface has it now.
    addr: AtomicU32,
    /// The gateway ARP asks for (0: none); on a point-to-point link the peer's address, if
    /// given, only for the reports. With `gw=auto` it follows the interface's default route.
    gateway: AtomicU32,
    /// The gateway's MAC in the low 48 bits; 0 while unknown.
    gateway_mac: AtomicU64,
    status: Mutex<Status>,
    /// Its IPv6, on a line that carries IPv6 (`gw6`).
    v6: Option<Mutex<Ipv6Facts>>,
    /// Its IPv6 router's MAC in the low 48 bits (0 while unknown), kept beside the facts
    /// for the packet path, which reads it for every IPv6 packet it sends.
    router_mac6: AtomicU64,
}

impl Uplink {
    /// Uplink `id`, `name` in the settings, on interface `dev`, a link of kind `link`; its
    /// interface and address unknown until given ([`Uplink::on_interface`],
    /// [`Uplink::with_address`]), its gateway's MAC and health unknown.
    pub fn new(id: UplinkId, name: &str, dev: &str, link: LinkKind) -> Uplink {
        Uplink {
            id,
            name: name.to_string(),
            dev: dev.to_string(),
            link,
            ifindex: AtomicU32::new(0),
            mac: AtomicU64::new(0),
            addr: AtomicU32::new(0),
            gateway: AtomicU32::new(0),
            gateway_mac: AtomicU64::new(0),
            status: Mutex::new(Status {
                state: State::Unknown,
                since: SystemTime::now(),
                reason: String::new(),
                carrier: true,
                stats: Stats::default(),
                changes: 0,
            }),
            v6: None,
            router_mac6: AtomicU64::new(0),
        }
    }

    /// Carrying IPv6 too, with these facts at start.
    pub fn with_ipv6(mut self, facts: Ipv6Facts) -> Uplink {
        self.v6 = Some(Mutex::new(facts));
        self
    }

    /// Its IPv6 as last learned, on a line that carries IPv6.
    pub fn ipv6(&self) -> Option<Ipv6Facts> {
        let v6 = self.v6.as_ref()?;
        Some(v6.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Whether new IPv6 flows may use it now.
    pub fn ipv6_up(&self) -> bool {
        self.ipv6().is_some_and(|v6| v6.is_up(self.is_up()))
    }

    /// Changes its IPv6 facts with `f`; returns what `f` returns (None on a line without
    /// IPv6).
    pub(crate) fn update_ipv6<R>(&self, f: impl FnOnce(&mut Ipv6Facts) -> R) -> Option<R> {
        let v6 = self.v6.as_ref()?;
        let mut facts = v6.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut facts);
        let mac = facts.router_mac.map_or(0, mac_to_u64);
        self.router_mac6.store(mac, Ordering::Relaxed);
        Some(r)
    }

    /// On interface `ifindex`, whose MAC is `mac` (all zero on a point-to-point link).
    pub fn on_interface(self, ifindex: u32, mac: [u8; 6]) -> Uplink {
        self.ifindex.store(ifindex, Ordering::Relaxed);
        self.mac.store(mac_to_u64(mac), Ordering::Relaxed);
        self
    }

    /// With the address and gateway it has at start.
    pub fn with_address(self, addr: Ipv4Addr, gateway: Option<Ipv4Addr>) -> Uplink {
        self.addr.store(u32::from(addr), Ordering::Relaxed);
        self.gateway
            .store(gateway.map_or(0, u32::from), Ordering::Relaxed);
        self
    }

    /// The index of its interface now.
    pub fn ifindex(&self) -> u32 {
        self.ifindex.load(Ordering::Relaxed)
    }

    /// Its interface's MAC (all zero on a point-to-point link).
    pub fn mac(&self) -> [u8; 6] {
        u64_to_mac(self.mac.load(Ordering::Relaxed))
    }

    /// Its interface came back as a new one, `ifindex` with MAC `mac` (a redial): the gateway
    /// behind it is asked for its MAC anew.
    pub(crate) fn moved_to(&self, ifindex: u32, mac: [u8; 6]) {
        self.ifindex.store(ifindex, Ordering::Relaxed);
        self.mac.store(mac_to_u64(mac), Ordering::Relaxed);
        self.gateway_mac.store(0, Ordering::Relaxed);
    }

    /// The address its traffic leaves from (the last one it had while it has none).
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.load(Ordering::Relaxed))
    }

    pub(crate) fn set_addr(&self, addr: Ipv4Addr) {
        self.addr.store(u32::from(addr), Ordering::Relaxed);
    }

    pub fn gateway(&self) -> Option<Ipv4Addr> {
        match self.gateway.load(Ordering::Relaxed) {
            0 => None,
            g => Some(Ipv4Addr::from(g)),
        }
    }

    /// A new gateway (`gw=auto`): its MAC is not known any more.
    pub(crate) fn set_gateway(&self, gateway: Ipv4Addr) {
        self.gateway.store(u32::from(gateway), Ordering::Relaxed);
        self.gateway_mac.store(0, Ordering::Relaxed);
    }

    /// Where its packets go next: the gateway once ARP found its MAC, or at once the peer of
    /// a point-to-point link.
    pub fn next_hop(&self) -> Option<NextHop> {
        match self.link {
            LinkKind::Ethernet => self.gateway_mac().map(NextHop::Gateway),
            LinkKind::PointToPoint => Some(NextHop::Peer),
        }
    }

    /// Where its IPv6 packets go next: its IPv6 router once neighbour discovery found its
    /// MAC, or the peer of a point-to-point link.
    pub fn next_hop6(&self) -> Option<NextHop> {
        self.v6.as_ref()?;
        match (self.link, self.router_mac6.load(Ordering::Relaxed)) {
            (LinkKind::Ethernet, 0) => None,
            (LinkKind::Ethernet, mac) => Some(NextHop::Gateway(u64_to_mac(mac))),
            (LinkKind::PointToPoint, _) => Some(NextHop::Peer),
        }
    }

    pub fn gateway_mac(&self) -> Option<[u8; 6]> {
        match self.gateway_mac.load(Ordering::Relaxed) {
            0 => None,
            v => Some(u64_to_mac(v)),
        }
    }

    /// Records the gateway's MAC; true if it changed.
    pub(crate) fn set_gateway_mac(&self, mac: [u8; 6]) -> bool {
        self.gateway_mac.swap(mac_to_u64(mac), Ordering::Relaxed) != mac_to_u64(mac)
    }

    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    pub fn is_up(&self) -> bool {
        self.lock().state == State::Up
    }

    /// Updates the health shown; `change` records a new state and why.
    pub(crate) fn update(&self, carrier: bool, stats: Stats, change: Option<(State, String)>) {
        let mut s = self.lock();
        s.carrier = carrier;
        s.stats = stats;
        if let Some((state, reason)) = change {
            s.state = state;
            s.reason = reason;
            s.since = SystemTime::now();
            s.changes += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every uplink's record, in the settings' order: `uplinks[id]` is uplink `id`'s.
#[derive(Debug)]
pub struct Uplinks(Vec<Uplink>);

impl Uplinks {
    /// The records `uplinks`, each at the place its id names.
    pub fn new(uplinks: Vec<Uplink>) -> Uplinks {
        assert!(
            uplinks
                .iter()
                .enumerate()
                .all(|(i, u)| usize::from(u.id) == i),
            "uplink ids are their places"
        );
        Uplinks(uplinks)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Uplink> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Index<UplinkId> for Uplinks {
    type Output = Uplink;

    fn index(&self, id: UplinkId) -> &Uplink {
        &self.0[usize::from(id)]
    }
}

impl<'a> IntoIterator for &'a Uplinks {
    type Item = &'a Uplink;
    type IntoIter = std::slice::Iter<'a, Uplink>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The id of the uplink at place `i` of the settings (at most [`crate::engine::MAX_UPLINKS`]:
/// the settings refuse more).
pub fn id_at(i: usize) -> UplinkId {
    UplinkId::try_from(i).expect("at most MAX_UPLINKS uplinks, which fit an UplinkId")
}

#[cfg(test)]
mod addressing6_tests;
#[cfg(test)]
mod tests;
