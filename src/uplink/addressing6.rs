//! What the kernel says about one uplink's IPv6: the address NAT66 translates to, the router
//! its IPv6 goes to, and the prefix it was delegated. Pure: fed the kernel's events by
//! [`super::Addressing`], which knows the interface's index.

use std::net::Ipv6Addr;

use super::addressing::{LinkChange, LinkEvent};

/// Where an uplink's IPv6 router comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Router6 {
    /// As the settings give it.
    Fixed(Ipv6Addr),
    /// The interface's IPv6 default routes' routers (`gw6=auto`), newest first.
    Auto(Vec<Ipv6Addr>),
    /// A point-to-point link: the peer, reached without an address.
    Peer,
}

/// Where the prefix an uplink was delegated comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delegation {
    /// None: NAT66 to the uplink's address.
    None,
    Fixed(Ipv6Addr, u8),
    /// The prefixes the system's DHCPv6 client was delegated (`prefix6=auto`), newest first.
    Auto(Vec<(Ipv6Addr, u8)>),
}

/// One uplink's IPv6 as the kernel shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addressing6 {
    src6: Option<Ipv6Addr>,
    /// The interface's IPv6 addresses (not link-local), their prefix lengths and whether they
    /// are stable, in the order the kernel gave them.
    addrs: Vec<(Ipv6Addr, u8, bool)>,
    /// The address chosen for NAT66 (without `src6`), kept while it stays fit: choosing
    /// anew resets the line's IPv6 TCP connections.
    chosen: Option<Ipv6Addr>,
    router: Router6,
    delegation: Delegation,
}

impl Addressing6 {
    pub fn new(src6: Option<Ipv6Addr>, router: Router6, delegation: Delegation) -> Addressing6 {
        Addressing6 {
            src6,
            addrs: Vec::new(),
            chosen: None,
            router,
            delegation,
        }
    }

    /// The address the uplink's IPv6 flows are translated to now: `src6` while the interface
    /// has it, else the one chosen among its stable addresses (see [`Addressing6::choose`]).
    pub fn current(&self) -> Option<Ipv6Addr> {
        if let Some(src6) = self.src6 {
            return self.addrs.iter().any(|a| a.0 == src6).then_some(src6);
        }
        self.chosen
    }

    /// Keeps the chosen address while the interface has it stable and it is global, or no
    /// stable global one exists; else takes the first stable global address, else the first
    /// stable unique-local one. The kernel tells an address again each time a router
    /// advertisement or a DHCPv6 renewal refreshes its lifetimes: that changes nothing.
    fn choose(&mut self) {
        let stable = || self.addrs.iter().filter(|a| a.2).map(|a| a.0);
        let global = stable().find(|a| !a.is_unique_local());
        let fit =
            |a: &Ipv6Addr| stable().any(|s| s == *a) && (global.is_none() || !a.is_unique_local());
        if !self.chosen.is_some_and(|a| fit(&a)) {
            self.chosen = global.or_else(|| stable().next());
        }
    }

    /// The router its IPv6 goes to now (None on a point-to-point link, or while
    /// `gw6=auto` finds no default route).
    pub fn router(&self) -> Option<Ipv6Addr> {
        match &self.router {
            Router6::Fixed(a) => Some(*a),
            Router6::Auto(routers) => routers.first().copied(),
            Router6::Peer => None,
        }
    }

    /// Whether its next hop needs no router (a point-to-point link).
    pub fn to_peer(&self) -> bool {
        self.router == Router6::Peer
    }

    /// The prefix it was delegated now, if any.
    pub fn prefix(&self) -> Option<(Ipv6Addr, u8)> {
        match &self.delegation {
            Delegation::None => None,
            Delegation::Fixed(p, len) => Some((*p, *len)),
            Delegation::Auto(prefixes) => prefixes.first().copied(),
        }
    }

    /// The interface's IPv6 subnets (not link-local), which the kernel routes itself.
    pub fn subnets(&self) -> impl Iterator<Item = (Ipv6Addr, u8)> + '_ {
        self.addrs.iter().map(|a| (a.0, a.1))
    }

    /// A new interface of the uplink's name: its addresses and routes come in events of
    /// their own.
    pub fn forget_interface(&mut self) {
        self.addrs.clear();
        self.chosen = None;
        if let Router6::Auto(routers) = &mut self.router {
            routers.clear();
        }
    }

    /// Takes in `event`, known to be about the uplink's interface (or a delegated prefix);
    /// says what changed, if anything.
    pub fn apply(&mut self, event: &LinkEvent) -> Option<LinkChange> {
        let before = self.snapshot();
        if !self.take(event) {
            return None;
        }
        self.choose();
        self.changes_since(before).into_iter().next()
    }

    /// Takes in `event` without choosing anew; false if it is not about IPv6.
    fn take(&mut self, event: &LinkEvent) -> bool {
        match event {
            LinkEvent::Address6 {
                addr,
                prefix_len,
                stable,
                present,
                ..
            } => {
                // told again, an address keeps its place
                let entry = (*addr, *prefix_len, *stable);
                match self.addrs.iter().position(|a| a.0 == *addr) {
                    Some(i) if *present => self.addrs[i] = entry,
                    Some(i) => drop(self.addrs.remove(i)),
                    None if *present => self.addrs.push(entry),
                    None => {}
                }
            }
            LinkEvent::DefaultRoute6 {
                gateway, present, ..
            } => {
                if let Router6::Auto(routers) = &mut self.router {
                    routers.retain(|g| g != gateway);
                    if *present {
                        routers.insert(0, *gateway);
                    }
                }
            }
            LinkEvent::Delegated {
                prefix,
                prefix_len,
                present,
            } => {
                if let Delegation::Auto(prefixes) = &mut self.delegation {
                    // a new prefix goes first; one told again (a renewal) keeps its place
                    let entry = (*prefix, *prefix_len);
                    let known = prefixes.contains(&entry);
                    if !*present {
                        prefixes.retain(|p| *p != entry);
                    } else if !known {
                        prefixes.insert(0, entry);
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Takes in the kernel's whole state (`dump`, the events about this interface and the
    /// delegated prefixes): what is not in it is gone. Says what changed.
    pub fn resync<'e>(&mut self, dump: impl Iterator<Item = &'e LinkEvent>) -> Vec<LinkChange> {
        let before = self.snapshot();
        self.addrs.clear();
        if let Router6::Auto(routers) = &mut self.router {
            routers.clear();
        }
        let known = match &mut self.delegation {
            Delegation::Auto(prefixes) => std::mem::take(prefixes),
            _ => Vec::new(),
        };
        for e in dump {
            self.take(e);
        }
        // prefixes known before keep their order, after any new ones
        if let Delegation::Auto(prefixes) = &mut self.delegation {
            let still: Vec<_> = known.into_iter().filter(|p| prefixes.contains(p)).collect();
            prefixes.retain(|p| !still.contains(p));
            prefixes.extend(still);
        }
        self.choose();
        self.changes_since(before)
    }

    fn snapshot(&self) -> Snapshot {
        (self.current(), self.router(), self.prefix())
    }

    fn changes_since(&self, (addr, router, prefix): Snapshot) -> Vec<LinkChange> {
        let mut changes = Vec::new();
        if self.current() != addr {
            changes.push(LinkChange::Address6(self.current()));
        }
        if self.router() != router {
            changes.push(LinkChange::Router6(self.router()));
        }
        if self.prefix() != prefix {
            changes.push(LinkChange::Prefix6(self.prefix()));
        }
        changes
    }
}

type Snapshot = (Option<Ipv6Addr>, Option<Ipv6Addr>, Option<(Ipv6Addr, u8)>);
