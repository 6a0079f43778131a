//! `listen_hosts`: the names (and addresses) the control port answers to, besides localhost
//! and the address a request arrived at. A browser sends the name of the address it opened as
//! `Host`; a page that rebinds its own name to the gateway's address is refused because its
//! name is in no list.

use std::net::IpAddr;

use super::{ConfigError, err};

/// The longest DNS name (RFC 1035: 255 octets on the wire, 253 as text).
const MAX_NAME: usize = 253;

/// A host name or an IP address, as a browser's `Host` would carry it, without a port:
/// lowercased, without a trailing dot or an IPv6 address's brackets.
pub fn parse_listen_host(s: &str, origin: &str) -> Result<String, ConfigError> {
    let given = s.trim();
    let bare = given
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(given);
    if let Ok(addr) = bare.parse::<IpAddr>() {
        return Ok(addr.to_canonical().to_string());
    }
    let name = bare.strip_suffix('.').unwrap_or(bare).to_ascii_lowercase();
    if name.contains(':') {
        return err(
            origin,
            format!(
                "{given:?}: give the name without a port (a listed name is answered on any port)"
            ),
        );
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > MAX_NAME || !name.split('.').all(label_ok) {
        return err(
            origin,
            format!(
                "{given:?} is not a host name like gateway.example.net (letters, digits and \
                 hyphens between dots) nor an IP address"
            ),
        );
    }
    Ok(name)
}
