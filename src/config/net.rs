//! Networks as the settings name them: IPv4 prefixes as the engine keeps them, IPv6 prefixes
//! beside them (`--lan-net`, `--pin`, `prefix6=`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{ConfigError, err};
use crate::engine::select::Prefix;

/// An IPv6 prefix, its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net6 {
    addr: Ipv6Addr,
    len: u8,
}

impl Net6 {
    /// The prefix of `len` bits of `addr`; `None` when `len` exceeds 128.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Net6> {
        if len > 128 {
            return None;
        }
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        Some(Net6 {
            addr: Ipv6Addr::from(u128::from(addr) & mask),
            len,
        })
    }

    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        Net6::new(addr, self.len).is_some_and(|n| n.addr == self.addr)
    }
}

impl fmt::Display for Net6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A network of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4(Prefix),
    V6(Net6),
}

impl Cidr {
    pub fn v4(&self) -> Option<Prefix> {
        match self {
            Cidr::V4(p) => Some(*p),
            Cidr::V6(_) => None,
        }
    }

    pub fn v6(&self) -> Option<Net6> {
        match self {
            Cidr::V6(n) => Some(*n),
            Cidr::V4(_) => None,
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (Cidr::V4(p), IpAddr::V4(a)) => p.contains(u32::from(a)),
            (Cidr::V6(n), IpAddr::V6(a)) => n.contains(a),
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4(p) => write!(f, "{}/{}", Ipv4Addr::from(p.addr()), p.prefix_len()),
            Cidr::V6(n) => n.fmt(f),
        }
    }
}

/// `A.B.C.D/LEN` or `IPV6/LEN` (a bare address is a /32 or a /128).
pub fn parse_cidr(s: &str, origin: &str) -> Result<Cidr, ConfigError> {
    let s = s.trim();
    if !s.contains(':') {
        return super::parse::parse_prefix(s, origin).map(Cidr::V4);
    }
    parse_net6(s, origin).map(Cidr::V6)
}

/// `IPV6/LEN` (a bare address is a /128).
pub fn parse_net6(s: &str, origin: &str) -> Result<Net6, ConfigError> {
    let (addr, len) = s.trim().split_once('/').unwrap_or((s.trim(), "128"));
    let addr: Ipv6Addr = addr.parse().or_else(|_| {
        err(
            origin,
            format!("{s:?} is not an IPv6 prefix like 2001:db8:1::/48"),
        )
    })?;
    if addr.to_ipv4_mapped().is_some() {
        return err(
            origin,
            format!("{s:?} is an IPv4-mapped address: write the IPv4 prefix itself"),
        );
    }
    let net = len.parse::<u8>().ok().and_then(|l| Net6::new(addr, l));
    net.ok_or_else(|| ConfigError {
        origin: origin.into(),
        message: format!("{s:?}: the prefix length must be 0 to 128"),
    })
}

/// `IPV6`.
pub fn parse_ipv6(s: &str, origin: &str, what: &str) -> Result<Ipv6Addr, ConfigError> {
    s.trim()
        .parse()
        .or_else(|_| err(origin, format!("{what} {s:?} is not an IPv6 address")))
}

/// Whether `a` can be a host's address beyond its link: not unspecified, loopback,
/// multicast, link-local or IPv4-mapped.
pub fn is_routable_unicast6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.is_unicast_link_local()
        || a.to_ipv4_mapped().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_prefixes_are_masked_and_checked() {
        let n = parse_net6("2001:2:1::7/48", "t").unwrap();
        assert_eq!(n.to_string(), "2001:2:1::/48");
        assert!(n.contains("2001:2:1:ffff::1".parse().unwrap()));
        assert!(!n.contains("2001:2:2::1".parse().unwrap()));
        assert_eq!(parse_net6("fd00::1", "t").unwrap().prefix_len(), 128);
        assert_eq!(parse_net6("::/0", "t").unwrap().to_string(), "::/0");
        let e = parse_net6("fd00::/129", "--pin x").unwrap_err();
        assert_eq!(
            e.message,
            "\"fd00::/129\": the prefix length must be 0 to 128"
        );
        assert!(parse_net6("::ffff:198.18.0.1/128", "t").is_err());
        assert!(parse_net6("fd00::g/64", "t").is_err());
    }

    #[test]
    fn a_cidr_is_either_family_by_its_text() {
        assert!(matches!(parse_cidr("198.18.3.0/24", "t"), Ok(Cidr::V4(_))));
        assert!(matches!(parse_cidr("fd00:3::/64", "t"), Ok(Cidr::V6(_))));
        let v6 = parse_cidr("fd00:3::/64", "t").unwrap();
        assert!(v6.contains("fd00:3::10".parse().unwrap()));
        assert!(!v6.contains("198.18.3.10".parse().unwrap()));
        assert_eq!(v6.to_string(), "fd00:3::/64");
    }

    #[test]
    fn link_local_and_special_addresses_are_not_routable() {
        for a in [
            "fe80::1",
            "febf::1",
            "::",
            "::1",
            "ff02::1",
            "::ffff:198.18.0.1",
        ] {
            assert!(!is_routable_unicast6(a.parse().unwrap()), "{a}");
        }
        for a in ["2001:2::1", "fd00::1", "fec0::1"] {
            assert!(is_routable_unicast6(a.parse().unwrap()), "{a}");
        }
    }
}
