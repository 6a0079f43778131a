//! What each uplink is at run time: where it leads, over what kind of link, its place in the
//! policy, the gateway's MAC as learned, and its health as last decided. This is the one owner of that state: the
//! monitor thread writes it, the workers, the fast path and the status reports read it.
//! Plain data and atomics; the sockets a line has live in io/.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The address its traffic leaves from.
    pub addr: Ipv4Addr,
    /// The gateway ARP asks for; on a point-to-point link the peer's address, if given, only
    /// for the reports.
    pub gateway: Option<Ipv4Addr>,
    pub live: Live,
}

/// What is learned at run time, starting unknown.
#[derive(Debug)]
pub struct Live {
    /// The gateway's MAC in the low 48 bits; 0 while unknown.
    gateway_mac: AtomicU64,
    status: Mutex<Status>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            addr: Ipv4Addr::new(198, 18, 5, 1),
            gateway: None,
            live: Live::default(),
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
