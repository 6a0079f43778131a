//! What the kernel says about an uplink's interface (netlink: links, addresses, default
//! routes), and so the address the uplink uses: a pure tracker, fed the kernel's events, that
//! says what changed for its uplink.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::addressing6::Addressing6;

/// A change the kernel reported about links, IPv4 addresses and default routes (netlink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link exists, with this state (administratively up with carrier, or not).
    Link {
        ifindex: u32,
        name: String,
        carrier: bool,
    },
    /// A link was removed (a PPPoE session ended, a USB modem unplugged).
    LinkGone { ifindex: u32, name: String },
    /// An IPv4 address, with the length of its subnet's prefix, was added to (`present`) or
    /// removed from a link.
    Address {
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
        present: bool,
    },
    /// An IPv4 default route of the main table through a link, added or removed (what a
    /// DHCP client installs).
    DefaultRoute {
        ifindex: u32,
        gateway: Ipv4Addr,
        present: bool,
    },
    /// An IPv6 address of a link (not link-local), added or removed, and whether it is one a
    /// line's traffic may use for long: not temporary (RFC 8981), deprecated, tentative or
    /// failed duplicate address detection.
    Address6 {
        ifindex: u32,
        addr: Ipv6Addr,
        prefix_len: u8,
        stable: bool,
        present: bool,
    },
    /// An IPv6 default route of the main table through a link (what router advertisements
    /// install), added or removed.
    DefaultRoute6 {
        ifindex: u32,
        gateway: Ipv6Addr,
        /// Its metric (priority): the kernel takes the lowest.
        metric: u32,
        present: bool,
    },
    /// A prefix a DHCPv6 client was delegated, as systemd-networkd and dhcpcd mark it: an
    /// `unreachable` route of protocol dhcp in the main table.
    Delegated {
        prefix: Ipv6Addr,
        prefix_len: u8,
        present: bool,
    },
}

/// What a [`LinkEvent`] means for one uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    Carrier(bool),
    /// Its interface was removed: the uplink is dead.
    Gone,
    /// An interface of its name appeared with another index (pppd's redial deletes `ppp0` and
    /// makes a new one), with this carrier: the uplink follows it from now on, and its
    /// sockets and the fast path's program must be opened on it again. It has no address
    /// until the kernel says so.
    Reappeared {
        ifindex: u32,
        carrier: bool,
    },
    /// The address it should use now, or none.
    Address(Option<Ipv4Addr>),
    /// With `gw=auto`: the gateway its interface's default route names now.
    Gateway(Ipv4Addr),
    /// The IPv6 address its IPv6 flows use now, or none.
    Address6(Option<Ipv6Addr>),
    /// The IPv6 router its IPv6 goes to now, or none (`gw6=auto` without a default route).
    Router6(Option<Ipv6Addr>),
    /// The IPv6 prefix it was delegated now, or none.
    Prefix6(Option<(Ipv6Addr, u8)>),
}

/// What the kernel says about one uplink's interface, and so the address the uplink uses: the
/// settings' `src` while the interface has it, else the interface's first IPv4 address (a
/// DHCP renewal or a PPPoE reconnect may change it). Pure: fed the kernel's events.
#[derive(Clone, Debug)]
pub struct Addressing {
    dev: String,
    ifindex: u32,
    src: Option<Ipv4Addr>,
    /// The interface's addresses with their prefix lengths, in the order the kernel gave them.
    addrs: Vec<(Ipv4Addr, u8)>,
    /// With `gw=auto`, the gateways of the interface's default routes, newest first.
    gateways: Option<Vec<Ipv4Addr>>,
    /// Its IPv6, on a line that carries IPv6.
    v6: Option<Addressing6>,
}

impl Addressing {
    /// Interface `dev`, number `ifindex`, with the addresses `addrs` (and their prefix
    /// lengths); `src`: the address the settings give the uplink, if any.
    pub fn new(
        dev: &str,
        ifindex: u32,
        src: Option<Ipv4Addr>,
        addrs: Vec<(Ipv4Addr, u8)>,
    ) -> Addressing {
        Addressing {
            dev: dev.to_string(),
            ifindex,
            src,
            addrs,
            gateways: None,
            v6: None,
        }
    }

    /// Follows the uplink's IPv6 too, as `v6` says.
    pub fn with_ipv6(mut self, v6: Addressing6) -> Addressing {
        self.v6 = Some(v6);
        self
    }

    /// Its IPv6, on a line that carries IPv6.
    pub fn v6(&self) -> Option<&Addressing6> {
        self.v6.as_ref()
    }

    /// Follows the gateway of the interface's default route (`gw=auto`), `gateway` at start.
    pub fn following_gateway(mut self, gateway: Option<Ipv4Addr>) -> Addressing {
        self.gateways = Some(gateway.into_iter().collect());
        self
    }

    /// The address the uplink should use now.
    pub fn current(&self) -> Option<Ipv4Addr> {
        let mut addrs = self.addrs.iter().map(|&(a, _)| a);
        match self.src {
            Some(src) => addrs.any(|a| a == src).then_some(src),
            None => addrs.next(),
        }
    }

    /// The interface's addresses with their prefix lengths: the subnets the kernel routes
    /// itself.
    pub fn subnets(&self) -> &[(Ipv4Addr, u8)] {
        &self.addrs
    }

    /// The index of the interface followed.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Takes in the kernel's whole state, as a dump of every link, address and default route
    /// gives it (at start, and after its changes overflowed the socket): what is not in it is
    /// gone. Says what changed for this uplink.
    pub fn resync(&mut self, dump: &[LinkEvent]) -> Vec<LinkChange> {
        let mut changes = Vec::new();
        let link = dump.iter().find_map(|e| match e {
            LinkEvent::Link {
                ifindex,
                name,
                carrier,
            } if *ifindex == self.ifindex || *name == self.dev => Some((*ifindex, *carrier)),
            _ => None,
        });
        let before = self.current();
        match link {
            Some((ifindex, carrier)) if ifindex == self.ifindex => {
                changes.push(LinkChange::Carrier(carrier));
            }
            Some((ifindex, carrier)) => {
                self.ifindex = ifindex;
                changes.push(LinkChange::Reappeared { ifindex, carrier });
            }
            None => changes.push(LinkChange::Gone),
        }
        self.addrs = dump
            .iter()
            .filter_map(|e| match e {
                LinkEvent::Address {
                    ifindex,
                    addr,
                    prefix_len,
                    present: true,
                } if *ifindex == self.ifindex => Some((*addr, *prefix_len)),
                _ => None,
            })
            .collect();
        if self.current() != before {
            changes.push(LinkChange::Address(self.current()));
        }
        if let Some(v6) = &mut self.v6 {
            let ifindex = self.ifindex;
            let ours = dump.iter().filter(|e| match e {
                LinkEvent::Address6 { ifindex: i, .. }
                | LinkEvent::DefaultRoute6 { ifindex: i, .. } => *i == ifindex,
                LinkEvent::Delegated { .. } => true,
                _ => false,
            });
            changes.extend(v6.resync(ours));
        }
        if let Some(gateways) = &mut self.gateways {
            let before = gateways.first().copied();
            let now: Vec<Ipv4Addr> = dump
                .iter()
                .filter_map(|e| match e {
                    LinkEvent::DefaultRoute {
                        ifindex,
                        gateway,
                        present: true,
                    } if *ifindex == self.ifindex => Some(*gateway),
                    _ => None,
                })
                .collect();
            // without a route, the last gateway stays (as for a route removed)
            if !now.is_empty() {
                *gateways = now;
            }
            match gateways.first() {
                Some(&g) if Some(g) != before => changes.push(LinkChange::Gateway(g)),
                _ => {}
            }
        }
        changes
    }

    /// Takes in `event`; says what changed for this uplink, if anything.
    pub fn apply(&mut self, event: &LinkEvent) -> Option<LinkChange> {
        match event {
            LinkEvent::Link {
                ifindex, carrier, ..
            } if *ifindex == self.ifindex => Some(LinkChange::Carrier(*carrier)),
            LinkEvent::Link {
                ifindex,
                name,
                carrier,
            } if *name == self.dev => {
                // a new interface of its name: its addresses come in events of their own
                self.ifindex = *ifindex;
                self.addrs.clear();
                if let Some(v6) = &mut self.v6 {
                    v6.forget_interface();
                }
                Some(LinkChange::Reappeared {
                    ifindex: *ifindex,
                    carrier: *carrier,
                })
            }
            LinkEvent::LinkGone { ifindex, .. } if *ifindex == self.ifindex => {
                self.addrs.clear();
                if let Some(v6) = &mut self.v6 {
                    v6.forget_interface();
                }
                Some(LinkChange::Gone)
            }
            LinkEvent::Address6 { ifindex, .. } | LinkEvent::DefaultRoute6 { ifindex, .. }
                if *ifindex == self.ifindex =>
            {
                self.v6.as_mut()?.apply(event)
            }
            LinkEvent::Delegated { .. } => self.v6.as_mut()?.apply(event),
            LinkEvent::Address {
                ifindex,
                addr,
                prefix_len,
                present,
            } if *ifindex == self.ifindex => {
                let before = self.current();
                let entry = (*addr, *prefix_len);
                let known = self.addrs.contains(&entry);
                if *present && !known {
                    self.addrs.push(entry);
                } else if !*present {
                    self.addrs.retain(|a| *a != entry);
                }
                let now = self.current();
                (now != before).then_some(LinkChange::Address(now))
            }
            LinkEvent::DefaultRoute {
                ifindex,
                gateway,
                present,
            } if *ifindex == self.ifindex => {
                let gateways = self.gateways.as_mut()?;
                let before = gateways.first().copied();
                // the newest route is the one in force (a replace says nothing of the old)
                gateways.retain(|g| g != gateway);
                if *present {
                    gateways.insert(0, *gateway);
                }
                // without a route, the last gateway stays: a renewal may remove the route
                // before it adds the new one
                match gateways.first() {
                    Some(&now) if Some(now) != before => Some(LinkChange::Gateway(now)),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}
