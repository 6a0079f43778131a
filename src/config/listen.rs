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
pub(super) fn parse_listen_host(s: &str, origin: &str) -> Result<String, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::parse_listen_host;
    use crate::config::tests::write_temp;
    use crate::config::{Config, Flags};

    #[test]
    fn listen_hosts_come_from_the_file_and_the_flags_add_to_them() {
        let text = "lan = [\"eth0\"]\nlisten_hosts = [\"GW.example.net\", \"198.18.0.1\"]\n\
                    [[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
        let file = write_temp("hosts.toml", text);
        let mut f = Flags {
            config: Some(file.to_path_buf()),
            ..Flags::default()
        };
        assert_eq!(
            Config::load(&f).unwrap().listen_hosts,
            ["gw.example.net", "198.18.0.1"]
        );
        f.listen_hosts = vec!["gw.example.net".into(), "status.example.net".into()];
        assert_eq!(
            Config::load(&f).unwrap().listen_hosts,
            ["gw.example.net", "198.18.0.1", "status.example.net"],
            "a name given twice is listed once"
        );
        f.listen_hosts = vec!["gw:9911".into()];
        let e = Config::load(&f).unwrap_err();
        assert_eq!(e.errors()[0].origin, "--listen-host \"gw:9911\"");
        let bad = write_temp("hosts-bad.toml", &text.replace("198.18.0.1", "a b"));
        let e = Config::load(&Flags {
            config: Some(bad.to_path_buf()),
            ..Flags::default()
        })
        .unwrap_err();
        assert_eq!(
            e.errors()[0].origin,
            format!("{} line 2, listen_hosts", bad.display())
        );
    }

    #[test]
    fn names_and_addresses_are_kept_as_a_host_header_carries_them() {
        for (given, kept) in [
            ("gw.example.net", "gw.example.net"),
            ("GW.Example.NET.", "gw.example.net"),
            ("router", "router"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("198.18.0.1", "198.18.0.1"),
            ("2001:2::1", "2001:2::1"),
            ("[2001:2::1]", "2001:2::1"),
            ("::ffff:198.18.0.1", "198.18.0.1"),
        ] {
            assert_eq!(parse_listen_host(given, "x"), Ok(kept.into()), "{given}");
        }
    }

    #[test]
    fn what_no_host_header_can_name_is_refused_with_its_key() {
        for (given, why) in [
            ("gw.example.net:9911", "without a port"),
            ("[2001:2::1]:9911", "without a port"),
            ("", "not a host name"),
            ("*.example.net", "not a host name"),
            ("gw..example.net", "not a host name"),
            ("-gw.example.net", "not a host name"),
            ("gw_1.example.net", "not a host name"),
            ("user@gw.example.net", "not a host name"),
            ("gw.example.net/status", "not a host name"),
        ] {
            let e = parse_listen_host(given, "--listen-host").unwrap_err();
            assert_eq!(e.origin, "--listen-host", "{given}");
            assert!(e.message.contains(why), "{given}: {}", e.message);
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(parse_listen_host(&long, "x").is_err(), "a label of 64");
        let longest = vec!["a".repeat(63); 4].join(".");
        assert!(parse_listen_host(&longest, "x").is_err(), "255 characters");
    }
}
