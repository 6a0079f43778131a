//! The kind of link an uplink's interface is, and where its packets go next.

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

pub(crate) fn mac_to_u64(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
}

pub(crate) fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
