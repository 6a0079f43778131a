//! Who the control port answers: requests that name this gateway in `Host` (against DNS
//! rebinding), POSTs that a page of another site did not send (against CSRF), and, with a
//! token, requests that carry it.
//!
//! A browser sends as `Host` the name in the address it opened, whatever that name resolves
//! to. A page of `rebind.attacker.example` that points its own name at 127.0.0.1 reaches
//! wanlb with `Host: rebind.attacker.example`, which is refused. What is answered:
//! `localhost`, a loopback or unspecified address, the address the request arrived at (so
//! `http://198.18.4.1:9911/` works when wanlb listens there, or on 0.0.0.0), and the names
//! and addresses of `listen_hosts`; with any port, since a tunnel or a proxy may change it.

use std::net::IpAddr;

use hyper::header::{AUTHORIZATION, HOST, HeaderMap, HeaderValue, ORIGIN};
use hyper::http::uri::Authority;

/// What a request lacks to be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its `Host` names neither this gateway nor a listed name.
    Host,
    /// A POST from a page of another origin (`Origin`, `Sec-Fetch-Site`).
    Origin,
    /// No token, or another one.
    Token,
}

/// A name or an address of `listen_hosts`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Listed {
    Name(String),
    Addr(IpAddr),
}

/// The control port's settings for who is answered.
#[derive(Clone, Debug, Default)]
pub struct Access {
    token: Option<String>,
    listed: Vec<Listed>,
}

impl Access {
    /// `token` from `listen_token`, `hosts` from `listen_hosts` (lowercased names and
    /// addresses, as the settings keep them).
    pub fn new(token: Option<String>, hosts: &[String]) -> Access {
        let listed = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(addr) => Listed::Addr(addr.to_canonical()),
                Err(_) => Listed::Name(h.to_ascii_lowercase()),
            })
            .collect();
        Access { token, listed }
    }

    /// Whether the request with `headers`, which arrived at the local address `local`, names
    /// this gateway as its host.
    pub fn host(&self, headers: &HeaderMap, local: IpAddr) -> Result<(), Refusal> {
        // one Host, as RFC 9112 requires
        let mut hosts = headers.get_all(HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err(Refusal::Host);
        };
        let host = host_of(host).ok_or(Refusal::Host)?;
        let answered = match host.parse::<IpAddr>().map(|a| a.to_canonical()) {
            Ok(addr) => {
                addr.is_loopback()
                    || addr.is_unspecified()
                    || addr == local.to_canonical()
                    || self.listed.contains(&Listed::Addr(addr))
            }
            Err(_) => host == "localhost" || self.listed.contains(&Listed::Name(host)),
        };
        answered.then_some(()).ok_or(Refusal::Host)
    }

    /// Whether a token is set (`listen_token`).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the request carries the token, if one is needed.
    pub fn token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .ok_or(Refusal::Token)?;
        same_secret(given, token.as_bytes())
            .then_some(())
            .ok_or(Refusal::Token)
    }
}

/// Whether a POST with `headers` comes from a page of this server's own origin, or from no
/// page at all (`wanlb reload`, curl): a browser says where a request comes from in
/// `Sec-Fetch-Site` and `Origin`, and a page cannot forge either.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(site) = headers.get("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err(Refusal::Origin);
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    // a browser writes Origin and Host from the same address: scheme://HOST for a page of
    // this origin (`null` and every other site differ)
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok().map(str::to_ascii_lowercase);
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let host = host.to_ascii_lowercase();
            let ours = ["http://", "https://"]
                .iter()
                .any(|scheme| origin.strip_prefix(scheme) == Some(host.as_str()));
            ours.then_some(()).ok_or(Refusal::Origin)
        }
        _ => Err(Refusal::Origin),
    }
}

/// The host a `Host` header names, without its port, brackets or trailing dot, lowercased;
/// None unless it is a host and an optional port and nothing else.
fn host_of(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    if text.contains('@') {
        return None; // user information belongs in no Host
    }
    let authority: Authority = text.parse().ok()?;
    // a port, if any, is a number of 16 bits
    let ported = authority.host().len() != authority.as_str().len();
    if authority.as_str().len() != text.len() || ported && authority.port_u16().is_none() {
        return None;
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The token of `Authorization: Bearer TOKEN` (the scheme's name in any case, RFC 9110).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// `a == b`, in a time that tells nothing of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let differ = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    a.len() == b.len() && differ == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 4, 1));

    fn host_of_request(access: &Access, host: &str) -> Result<(), Refusal> {
        access.host(&headers(&[("host", host)]), LOCAL)
    }

    #[test]
    fn localhost_and_the_address_the_request_arrived_at_are_answered() {
        let access = Access::new(None, &[]);
        for host in [
            "localhost",
            "LocalHost:9911",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:9911",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9911",
            "0.0.0.0:9911",
            "198.18.4.1",
            "198.18.4.1:9911",
            "[::ffff:198.18.4.1]:9911",
        ] {
            assert_eq!(host_of_request(&access, host), Ok(()), "{host}");
        }
    }

    #[test]
    fn other_names_and_addresses_are_refused() {
        let access = Access::new(None, &[]);
        for host in [
            "rebind.attacker.example",
            "rebind.attacker.example:9911",
            "localhost.attacker.example",
            "sub.localhost",
            "198.18.4.2:9911",
            "198.18.4.1.attacker.example",
            "[2001:2::1]:9911",
            "localhost@attacker.example",
            "attacker.example@localhost",
            "localhost:9911/x",
            "localhost:99999",
            "localhost:port",
            "",
            ":9911",
            "[::1",
        ] {
            assert_eq!(
                host_of_request(&access, host),
                Err(Refusal::Host),
                "{host:?}"
            );
        }
        // a request without Host names nothing
        assert_eq!(access.host(&HeaderMap::new(), LOCAL), Err(Refusal::Host));
        // nor does one with two
        let two = headers(&[("host", "localhost"), ("host", "rebind.attacker.example")]);
        assert_eq!(access.host(&two, LOCAL), Err(Refusal::Host));
    }

    #[test]
    fn listed_names_and_addresses_are_answered_on_any_port() {
        let access = Access::new(None, &["gw.example.net".into(), "2001:2::1".into()]);
        for host in [
            "gw.example.net",
            "GW.example.net:8443",
            "gw.example.net.",
            "[2001:2::1]:9911",
        ] {
            assert_eq!(host_of_request(&access, host), Ok(()), "{host}");
        }
        for host in ["example.net", "x.gw.example.net", "[2001:2::2]"] {
            assert_eq!(host_of_request(&access, host), Err(Refusal::Host), "{host}");
        }
    }

    #[test]
    fn a_post_from_another_origin_or_site_is_refused() {
        let host = ("host", "127.0.0.1:9911");
        for ok in [
            vec![host],
            vec![host, ("origin", "http://127.0.0.1:9911")],
            vec![host, ("origin", "HTTPS://127.0.0.1:9911")],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
            vec![
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:9911"),
            ],
            // no browser: wanlb reload, curl
            vec![],
        ] {
            assert_eq!(same_origin(&headers(&ok)), Ok(()), "{ok:?}");
        }
        for refused in [
            vec![host, ("origin", "http://attacker.example")],
            vec![host, ("origin", "http://127.0.0.1:9912")],
            vec![host, ("origin", "http://127.0.0.1")],
            vec![host, ("origin", "http://127.0.0.1:9911.attacker.example")],
            vec![host, ("origin", "ftp://127.0.0.1:9911")],
            vec![host, ("origin", "null")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("sec-fetch-site", "something-new")],
            vec![
                host,
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://127.0.0.1:9911"),
            ],
            vec![("origin", "http://127.0.0.1:9911")],
        ] {
            assert_eq!(
                same_origin(&headers(&refused)),
                Err(Refusal::Origin),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn the_token_is_needed_only_when_there_is_one() {
        assert_eq!(Access::new(None, &[]).token(&HeaderMap::new()), Ok(()));
        let access = Access::new(Some("s3cret".into()), &[]);
        for ok in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
            assert_eq!(
                access.token(&headers(&[("authorization", ok)])),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer  s3cret",
            "Bearer",
            "Basic s3cret",
            "s3cret",
            "",
        ] {
            assert_eq!(
                access.token(&headers(&[("authorization", bad)])),
                Err(Refusal::Token),
                "{bad:?}"
            );
        }
        assert_eq!(access.token(&HeaderMap::new()), Err(Refusal::Token));
    }
}
