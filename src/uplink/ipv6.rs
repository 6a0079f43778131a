//! An uplink's IPv6 as its record keeps it: the address its IPv6 flows use, its router and
//! the router's MAC as neighbour discovery found it, the prefix it was delegated, and the
//! health of its IPv6, judged apart from its IPv4 (a line whose IPv6 died while its IPv4
//! works is common). Changed by the monitor only, through io/monitor/apply.rs; read by the
//! reports.

use std::net::Ipv6Addr;
use std::time::SystemTime;

use crate::health::{State, Stats};

/// One uplink's IPv6, as last learned.
#[derive(Clone, Debug, PartialEq)]
pub struct Ipv6Facts {
    /// The address NAT66 translates to, as the interface has it now.
    pub addr: Option<Ipv6Addr>,
    /// Its IPv6 router (none on a point-to-point link, or while `gw6=auto` finds none).
    pub router: Option<Ipv6Addr>,
    /// The router's MAC, from its neighbour advertisement.
    pub router_mac: Option<[u8; 6]>,
    /// The prefix delegated to the gateway through this line (NPTv6), if any.
    pub prefix: Option<(Ipv6Addr, u8)>,
    /// A point-to-point link: packets go bare to the peer, no router needed.
    pub to_peer: bool,
    /// Its IPv6 is judged by IPv6 targets of its own, apart from the line's IPv4; without,
    /// it is up only while the line is.
    pub own_targets: bool,
    /// The health of its IPv6.
    pub state: State,
    pub since: SystemTime,
    /// Why it is in this state (empty at start).
    pub reason: String,
    pub stats: Stats,
}

impl Ipv6Facts {
    pub fn new(
        addr: Option<Ipv6Addr>,
        router: Option<Ipv6Addr>,
        prefix: Option<(Ipv6Addr, u8)>,
        to_peer: bool,
    ) -> Ipv6Facts {
        Ipv6Facts {
            addr,
            router,
            router_mac: None,
            prefix,
            to_peer,
            own_targets: false,
            state: State::Unknown,
            since: SystemTime::now(),
            reason: String::new(),
            stats: Stats::default(),
        }
    }

    /// Whether new IPv6 flows may use the line, `line_up` saying whether the line is (by
    /// its IPv4 health): its IPv6 is judged up, it has an address and a next hop, and without
    /// IPv6 targets of its own the line is up.
    pub fn is_up(&self, line_up: bool) -> bool {
        self.ipv6_alive() && (self.own_targets || line_up)
    }

    fn ipv6_alive(&self) -> bool {
        self.state == State::Up
            // NAT66 needs the line's address; NPTv6 needs only its prefix (a line with no
            // global address on its side, only the link-local one, is common)
            && (self.addr.is_some() || self.prefix.is_some())
            && (self.to_peer || self.router_mac.is_some())
    }

    /// The mode its IPv6 flows are translated in.
    pub fn translation(&self) -> &'static str {
        match self.prefix {
            Some(_) => "nptv6",
            None => "nat66",
        }
    }
}
