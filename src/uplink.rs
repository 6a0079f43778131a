//! What each uplink is at run time: where it leads, over what kind of link, its place in the
//! policy, the gateway's MAC as learned, and its health as last decided. This is the one owner of that state: the
//! monitor thread writes it, the workers, the fast path and the status reports read it.
//! Plain data and atomics; the sockets a line has live in io/.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

use crate::health::{State, Stats};

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

/// The kind of link an uplink's interface is, which decides how packets are framed on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// Ethernet-like: frames carry an Ethernet header addressed to the gateway's MAC, which
    /// ARP finds.
    Ethernet,
    /// A point-to-point link without a link-layer header (PPP and PPPoE, a raw-IP LTE modem,
    /// TUN, WireGuard, GRE, IPIP): packets go out bare, to the one peer there is, with
    /// nothing to resolve.
    PointToPoint,
}

// Hardware types (ARPHRD_*, as in /sys/class/net/DEV/type). Those after Ethernet are the links
// the kernel itself treats as having no MAC header (dev_is_mac_header_xmit): bare IP.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_TUNNEL: u16 = 768;
const ARPHRD_TUNNEL6: u16 = 769;
const ARPHRD_SIT: u16 = 776;
const ARPHRD_IPGRE: u16 = 778;
const ARPHRD_IP6GRE: u16 = 823;
const ARPHRD_NONE: u16 = 0xfffe;

impl LinkKind {
    /// The kind of a link of hardware type `hardware_type` (`point_to_point`: it has the
    /// POINTOPOINT flag), or `None` for links wanlb cannot send on (loopback, InfiniBand...).
    pub fn of(hardware_type: u16, point_to_point: bool) -> Option<LinkKind> {
        match hardware_type {
            ARPHRD_ETHER => Some(LinkKind::Ethernet),
            // GRE without a remote address is a broadcast link with a header of its own
            ARPHRD_IPGRE | ARPHRD_IP6GRE if !point_to_point => None,
            ARPHRD_PPP | ARPHRD_RAWIP | ARPHRD_NONE | ARPHRD_TUNNEL | ARPHRD_TUNNEL6
            | ARPHRD_SIT | ARPHRD_IPGRE | ARPHRD_IP6GRE => Some(LinkKind::PointToPoint),
            _ => None,
        }
    }

    /// Bytes before the IP header in a frame on this link, as a packet socket sees it.
    pub const fn header_len(self) -> usize {
        match self {
            LinkKind::Ethernet => 14,
            LinkKind::PointToPoint => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Ethernet => "ethernet",
            LinkKind::PointToPoint => "point-to-point",
        }
    }
}

/// Where an uplink's packets go next, once that is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// The gateway, at this MAC: frames get an Ethernet header.
    Gateway([u8; 6]),
    /// The far end of a point-to-point link: packets go bare.
    Peer,
}

/// An uplink: where it leads, from the settings and the system, and `live`, what the
/// monitor learns while running. Its place in the policy (weight, tier, health targets) is
/// in the settings, which a reload may change.
#[derive(Debug)]
pub struct Uplink {
    pub name: String,
    pub dev: String,
    pub ifindex: u32,
    pub link: LinkKind,
    /// All zero on a point-to-point link, which has no MAC.
    pub mac: [u8; 6],
    pub live: Live,
}

/// What is learned at run time.
#[derive(Debug)]
pub struct Live {
    /// The address its traffic leaves from, as the interface has it now.
    addr: AtomicU32,
    /// The gateway ARP asks for (0: none); on a point-to-point link the peer's address, if
    /// given, only for the reports. With `gw=auto` it follows the interface's default route.
    gateway: AtomicU32,
    /// The gateway's MAC in the low 48 bits; 0 while unknown.
    gateway_mac: AtomicU64,
    status: Mutex<Status>,
}

impl Live {
    /// Starting with the address and gateway the line has at start, its gateway's MAC and
    /// health unknown.
    pub fn new(addr: Ipv4Addr, gateway: Option<Ipv4Addr>) -> Live {
        Live {
            addr: AtomicU32::new(u32::from(addr)),
            gateway: AtomicU32::new(gateway.map_or(0, u32::from)),
            gateway_mac: AtomicU64::new(0),
            status: Mutex::new(Status {
                state: State::Unknown,
                since: SystemTime::now(),
                reason: String::new(),
                carrier: true,
                stats: Stats::default(),
                changes: 0,
            }),
        }
    }
}

fn mac_to_u64(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
}

fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Uplink {
    /// The address its traffic leaves from (the last one it had while it has none).
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.live.addr.load(Ordering::Relaxed))
    }

    pub fn set_addr(&self, addr: Ipv4Addr) {
        self.live.addr.store(u32::from(addr), Ordering::Relaxed);
    }

    pub fn gateway(&self) -> Option<Ipv4Addr> {
        match self.live.gateway.load(Ordering::Relaxed) {
            0 => None,
            g => Some(Ipv4Addr::from(g)),
        }
    }

    /// A new gateway (`gw=auto`): its MAC is not known any more.
    pub fn set_gateway(&self, gateway: Ipv4Addr) {
        self.live
            .gateway
            .store(u32::from(gateway), Ordering::Relaxed);
        self.live.gateway_mac.store(0, Ordering::Relaxed);
    }

    /// Where its packets go next: the gateway once ARP found its MAC, or at once the peer of
    /// a point-to-point link.
    pub fn next_hop(&self) -> Option<NextHop> {
        match self.link {
            LinkKind::Ethernet => self.gateway_mac().map(NextHop::Gateway),
            LinkKind::PointToPoint => Some(NextHop::Peer),
        }
    }

    pub fn gateway_mac(&self) -> Option<[u8; 6]> {
        match self.live.gateway_mac.load(Ordering::Relaxed) {
            0 => None,
            v => Some(u64_to_mac(v)),
        }
    }

    /// Records the gateway's MAC; true if it changed.
    pub fn set_gateway_mac(&self, mac: [u8; 6]) -> bool {
        self.live
            .gateway_mac
            .swap(mac_to_u64(mac), Ordering::Relaxed)
            != mac_to_u64(mac)
    }

    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    pub fn is_up(&self) -> bool {
        self.lock().state == State::Up
    }

    /// Updates the health shown; `change` records a new state and why.
    pub fn update(&self, carrier: bool, stats: Stats, change: Option<(State, String)>) {
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
        self.live.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
    /// An IPv4 address was added to (`present`) or removed from a link.
    Address {
        ifindex: u32,
        addr: Ipv4Addr,
        present: bool,
    },
    /// An IPv4 default route of the main table through a link, added or removed (what a
    /// DHCP client installs).
    DefaultRoute {
        ifindex: u32,
        gateway: Ipv4Addr,
        present: bool,
    },
}

/// What a [`LinkEvent`] means for one uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    Carrier(bool),
    /// Its interface was removed: the line is dead.
    Gone,
    /// An interface of its name appeared with another index: its sockets are bound to the
    /// old one.
    Reappeared {
        ifindex: u32,
    },
    /// The address it should use now, or none.
    Address(Option<Ipv4Addr>),
    /// With `gw=auto`: the gateway its interface's default route names now.
    Gateway(Ipv4Addr),
}

/// What the kernel says about one uplink's interface, and so the address the uplink uses: the
/// settings' `src` while the interface has it, else the interface's first IPv4 address (a
/// DHCP renewal or a PPPoE reconnect may change it). Pure: fed the kernel's events.
#[derive(Clone, Debug)]
pub struct Addressing {
    dev: String,
    ifindex: u32,
    src: Option<Ipv4Addr>,
    /// The interface's addresses, in the order the kernel gave them.
    addrs: Vec<Ipv4Addr>,
    /// With `gw=auto`, the gateways of the interface's default routes, newest first.
    gateways: Option<Vec<Ipv4Addr>>,
}

impl Addressing {
    pub fn new(dev: &str, ifindex: u32, src: Option<Ipv4Addr>, addrs: Vec<Ipv4Addr>) -> Addressing {
        Addressing {
            dev: dev.to_string(),
            ifindex,
            src,
            addrs,
            gateways: None,
        }
    }

    /// Follows the gateway of the interface's default route (`gw=auto`), `gateway` at start.
    pub fn following_gateway(mut self, gateway: Option<Ipv4Addr>) -> Addressing {
        self.gateways = Some(gateway.into_iter().collect());
        self
    }

    /// The address the uplink should use now.
    pub fn current(&self) -> Option<Ipv4Addr> {
        match self.src {
            Some(src) => self.addrs.contains(&src).then_some(src),
            None => self.addrs.first().copied(),
        }
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
        match link {
            Some((ifindex, carrier)) if ifindex == self.ifindex => {
                changes.push(LinkChange::Carrier(carrier));
            }
            Some((ifindex, _)) => changes.push(LinkChange::Reappeared { ifindex }),
            None => changes.push(LinkChange::Gone),
        }
        let before = self.current();
        self.addrs = dump
            .iter()
            .filter_map(|e| match e {
                LinkEvent::Address {
                    ifindex,
                    addr,
                    present: true,
                } if *ifindex == self.ifindex => Some(*addr),
                _ => None,
            })
            .collect();
        if self.current() != before {
            changes.push(LinkChange::Address(self.current()));
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
            LinkEvent::Link { ifindex, name, .. } if *name == self.dev => {
                Some(LinkChange::Reappeared { ifindex: *ifindex })
            }
            LinkEvent::LinkGone { ifindex, .. } if *ifindex == self.ifindex => {
                self.addrs.clear();
                Some(LinkChange::Gone)
            }
            LinkEvent::Address {
                ifindex,
                addr,
                present,
            } if *ifindex == self.ifindex => {
                let before = self.current();
                let known = self.addrs.contains(addr);
                if *present && !known {
                    self.addrs.push(*addr);
                } else if !*present {
                    self.addrs.retain(|a| a != addr);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn address(ifindex: u32, last: u8, present: bool) -> LinkEvent {
        LinkEvent::Address {
            ifindex,
            addr: Ipv4Addr::new(198, 18, 1, last),
            present,
        }
    }

    #[test]
    fn an_uplink_follows_its_interfaces_first_address() {
        let a = |last| Ipv4Addr::new(198, 18, 1, last);
        let mut line = Addressing::new("eth1", 3, None, vec![a(1)]);
        assert_eq!(line.current(), Some(a(1)));
        // another interface's address, or the one it has again, change nothing
        assert_eq!(line.apply(&address(4, 9, true)), None);
        assert_eq!(line.apply(&address(3, 1, true)), None);
        // a renewal: the new address first added, then the old one removed
        assert_eq!(line.apply(&address(3, 2, true)), None);
        assert_eq!(
            line.apply(&address(3, 1, false)),
            Some(LinkChange::Address(Some(a(2))))
        );
        // the lease lost: no address, then one again
        assert_eq!(
            line.apply(&address(3, 2, false)),
            Some(LinkChange::Address(None))
        );
        assert_eq!(
            line.apply(&address(3, 7, true)),
            Some(LinkChange::Address(Some(a(7))))
        );
    }

    #[test]
    fn with_gw_auto_the_gateway_follows_the_default_route() {
        let g = |last| Ipv4Addr::new(198, 18, 1, last);
        let route = |ifindex, last, present| LinkEvent::DefaultRoute {
            ifindex,
            gateway: g(last),
            present,
        };
        let mut fixed = Addressing::new("eth1", 3, None, vec![g(1)]);
        assert_eq!(fixed.apply(&route(3, 253, true)), None, "a given gw stays");
        let mut line = Addressing::new("eth1", 3, None, vec![g(1)]).following_gateway(Some(g(254)));
        assert_eq!(line.apply(&route(4, 9, true)), None, "another interface's");
        // told again at start (the kernel's dump): no change
        assert_eq!(line.apply(&route(3, 254, true)), None);
        // a renewal removes the route, then adds one through another router
        assert_eq!(line.apply(&route(3, 254, false)), None);
        assert_eq!(
            line.apply(&route(3, 254, false)),
            None,
            "the last gateway stays"
        );
        assert_eq!(
            line.apply(&route(3, 253, true)),
            Some(LinkChange::Gateway(g(253)))
        );
        // a replace: only the new route is told; the newest is in force
        assert_eq!(
            line.apply(&route(3, 252, true)),
            Some(LinkChange::Gateway(g(252)))
        );
        assert_eq!(
            line.apply(&route(3, 252, false)),
            Some(LinkChange::Gateway(g(253)))
        );
    }

    #[test]
    fn a_dump_says_what_is_gone_too() {
        let a = |last| Ipv4Addr::new(198, 18, 1, last);
        let link = |ifindex, name: &str| LinkEvent::Link {
            ifindex,
            name: name.into(),
            carrier: true,
        };
        let mut line = Addressing::new("eth1", 3, None, vec![a(1)]);
        // the address changed while nobody listened (before start, or in an overflow)
        let dump = [link(3, "eth1"), address(3, 2, true), address(4, 9, true)];
        assert_eq!(
            line.resync(&dump),
            [LinkChange::Carrier(true), LinkChange::Address(Some(a(2)))]
        );
        // the same again: only the carrier, said again
        assert_eq!(line.resync(&dump), [LinkChange::Carrier(true)]);
        // no address in it: none left; the interface missing: gone; back with a new index
        assert_eq!(
            line.resync(&[link(3, "eth1")]),
            [LinkChange::Carrier(true), LinkChange::Address(None)]
        );
        assert_eq!(line.resync(&[link(4, "eth2")]), [LinkChange::Gone]);
        assert_eq!(
            line.resync(&[link(7, "eth1")]),
            [LinkChange::Reappeared { ifindex: 7 }]
        );
    }

    #[test]
    fn addresses_told_again_keep_their_order() {
        let a = |last| Ipv4Addr::new(198, 18, 1, last);
        let mut line = Addressing::new("eth1", 3, None, vec![a(1), a(2)]);
        // the kernel's answer to asking for every address, at start or after an overflow
        assert_eq!(line.apply(&address(3, 1, true)), None);
        assert_eq!(line.apply(&address(3, 2, true)), None);
        assert_eq!(line.current(), Some(a(1)));
    }

    #[test]
    fn a_given_src_is_used_while_the_interface_has_it() {
        let a = |last| Ipv4Addr::new(198, 18, 1, last);
        let mut line = Addressing::new("eth1", 3, Some(a(5)), vec![a(1), a(5)]);
        assert_eq!(line.current(), Some(a(5)));
        assert_eq!(line.apply(&address(3, 1, false)), None);
        assert_eq!(
            line.apply(&address(3, 5, false)),
            Some(LinkChange::Address(None))
        );
        assert_eq!(
            line.apply(&address(3, 6, true)),
            None,
            "not the address it was given"
        );
        assert_eq!(
            line.apply(&address(3, 5, true)),
            Some(LinkChange::Address(Some(a(5))))
        );
    }

    #[test]
    fn a_removed_interface_is_gone_and_its_return_is_noticed() {
        let mut line = Addressing::new("ppp0", 9, None, vec![Ipv4Addr::new(198, 18, 5, 1)]);
        let link = |ifindex, carrier| LinkEvent::Link {
            ifindex,
            name: "ppp0".into(),
            carrier,
        };
        assert_eq!(
            line.apply(&link(9, false)),
            Some(LinkChange::Carrier(false))
        );
        let gone = LinkEvent::LinkGone {
            ifindex: 9,
            name: "ppp0".into(),
        };
        assert_eq!(line.apply(&gone), Some(LinkChange::Gone));
        assert_eq!(line.current(), None);
        assert_eq!(
            line.apply(&link(12, true)),
            Some(LinkChange::Reappeared { ifindex: 12 })
        );
    }

    #[test]
    fn mac_packs_into_u64_and_back() {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        assert_eq!(u64_to_mac(mac_to_u64(mac)), mac);
        assert_eq!(format_mac(mac), "02:42:ac:11:00:02");
    }

    #[test]
    fn links_without_a_mac_header_are_point_to_point_and_the_rest_is_refused() {
        assert_eq!(LinkKind::of(1, false), Some(LinkKind::Ethernet));
        // ppp0, wwan0 in raw-IP mode, TUN and WireGuard, IPIP and GRE with a remote
        for hardware_type in [512, 519, 0xfffe, 768, 778] {
            assert_eq!(
                LinkKind::of(hardware_type, true),
                Some(LinkKind::PointToPoint),
                "{hardware_type}"
            );
        }
        assert_eq!(LinkKind::of(0xfffe, false), Some(LinkKind::PointToPoint));
        // GRE without a remote has a header; loopback and InfiniBand are no lines
        assert_eq!(LinkKind::of(778, false), None);
        assert_eq!(LinkKind::of(772, false), None);
        assert_eq!(LinkKind::of(32, false), None);
        assert_eq!(LinkKind::Ethernet.header_len(), 14);
        assert_eq!(LinkKind::PointToPoint.header_len(), 0);
    }

    #[test]
    fn a_point_to_point_line_needs_no_mac_to_be_reached() {
        let uplink = |link| Uplink {
            name: "isp".into(),
            dev: "dev".into(),
            ifindex: 3,
            link,
            mac: [0; 6],
            live: Live::new(Ipv4Addr::new(198, 18, 5, 1), None),
        };
        let ppp = uplink(LinkKind::PointToPoint);
        assert_eq!(ppp.next_hop(), Some(NextHop::Peer));
        let eth = uplink(LinkKind::Ethernet);
        assert_eq!(eth.next_hop(), None, "until ARP answers");
        eth.set_gateway_mac([2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(
            eth.next_hop(),
            Some(NextHop::Gateway([2, 0, 0, 0, 0, 0xfe]))
        );
    }
}
