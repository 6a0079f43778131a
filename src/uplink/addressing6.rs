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
    router: Router6,
    delegation: Delegation,
}

impl Addressing6 {
    pub fn new(src6: Option<Ipv6Addr>, router: Router6, delegation: Delegation) -> Addressing6 {
        Addressing6 {
            src6,
            addrs: Vec::new(),
            router,
            delegation,
        }
    }

    /// The address the uplink's IPv6 flows are translated to now: `src6` while the interface
    /// has it, else its first stable global address, else its first stable unique-local one.
    pub fn current(&self) -> Option<Ipv6Addr> {
        if let Some(src6) = self.src6 {
            return self.addrs.iter().any(|a| a.0 == src6).then_some(src6);
        }
        let stable = || self.addrs.iter().filter(|a| a.2).map(|a| a.0);
        stable()
            .find(|a| !a.is_unique_local())
            .or_else(|| stable().next())
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
        if let Router6::Auto(routers) = &mut self.router {
            routers.clear();
        }
    }

    /// Takes in `event`, known to be about the uplink's interface (or a delegated prefix);
    /// says what changed, if anything.
    pub fn apply(&mut self, event: &LinkEvent) -> Option<LinkChange> {
        let before = self.snapshot();
        match event {
            LinkEvent::Address6 {
                addr,
                prefix_len,
                stable,
                present,
                ..
            } => {
                self.addrs.retain(|a| a.0 != *addr);
                if *present {
                    self.addrs.push((*addr, *prefix_len, *stable));
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
                    let entry = (*prefix, *prefix_len);
                    prefixes.retain(|p| *p != entry);
                    if *present {
                        prefixes.insert(0, entry);
                    }
                }
            }
            _ => return None,
        }
        self.changes_since(before).into_iter().next()
    }

    /// Takes in the kernel's whole state (`dump`, the events about this interface and the
    /// delegated prefixes): what is not in it is gone. Says what changed.
    pub fn resync<'e>(&mut self, dump: impl Iterator<Item = &'e LinkEvent>) -> Vec<LinkChange> {
        let before = self.snapshot();
        self.addrs.clear();
        if let Router6::Auto(routers) = &mut self.router {
            routers.clear();
        }
        if let Delegation::Auto(prefixes) = &mut self.delegation {
            prefixes.clear();
        }
        for e in dump {
            self.apply(e);
        }
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
