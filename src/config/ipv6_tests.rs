//! IPv6 in the settings: an uplink's gw6, prefix6 and src6, IPv6 networks in --lan-net and
//! --pin, IPv6 health targets and forwards to IPv6 hosts, and what is refused.

use std::net::{IpAddr, Ipv6Addr};

use super::tests::{ISP2, flags, load_err, write_temp};
use super::*;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn an_uplinks_ipv6_keys_parse_from_the_flag_and_the_file() {
    let f = flags(
        &[
            "isp1,dev=eth1,gw=192.168.1.254,gw6=fe80::1,prefix6=2001:2:1::/48,check=2001:2:ff::1",
            "isp2,dev=eth2,gw=192.168.2.254,gw6=auto,src6=2001:2:0:2::1",
        ],
        &["2001:2:ff::/48=isp2!"],
    );
    let c = Config::load(&f).unwrap();
    let (one, two) = (&c.uplinks[0], &c.uplinks[1]);
    assert_eq!(one.gw6, Some(Gateway6Spec::Address(a("fe80::1"))));
    assert_eq!(
        one.prefix6,
        Some(Prefix6Spec::Net(Net6::new(a("2001:2:1::"), 48).unwrap()))
    );
    assert_eq!(c.targets6_of(one), [a("2001:2:ff::1")]);
    assert!(c.targets4_of(one).is_empty());
    assert_eq!(
        (two.gw6, two.src6),
        (Some(Gateway6Spec::Auto), Some(a("2001:2:0:2::1")))
    );
    assert_eq!(two.prefix6, None);
    assert_eq!(c.pins[0].prefix.to_string(), "2001:2:ff::/48");
    assert!(c.pins[0].strict);
    assert!(c.has_ipv6());

    let text = "lan = [\"eth0\"]\nlan_net = [\"fd00:3::/64\", \"198.18.50.0/24\"]\n\
                health_target = [\"198.19.255.1\", \"2001:2:ff::1\"]\n\
                [[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n\
                gw6 = \"auto\"\nprefix6 = \"auto\"\n";
    let path = write_temp("ipv6.toml", text);
    let mut f = flags(&[], &[]);
    f.config = Some(path.to_path_buf());
    let c = Config::load(&f).unwrap();
    assert_eq!(c.uplinks[0].prefix6, Some(Prefix6Spec::Auto));
    assert_eq!(c.lan_net[0].to_string(), "fd00:3::/64");
    assert_eq!(c.lan_net[1].to_string(), "198.18.50.0/24");
    assert_eq!(c.uplink_targets6(), [vec![a("2001:2:ff::1")]]);
    assert_eq!(
        c.uplink_targets(),
        [vec!["198.19.255.1".parse::<std::net::Ipv4Addr>().unwrap()]]
    );
    let written: Vec<String> = c
        .written()
        .iter()
        .map(|w| format!("{}={}", w.key, w.value))
        .collect();
    assert!(
        written.contains(&"lan_net=fd00:3::/64, 198.18.50.0/24".to_string()),
        "{written:?}"
    );
    assert!(
        written.contains(&"health_target=198.19.255.1, 2001:2:ff::1".to_string()),
        "{written:?}"
    );
}

#[test]
fn bad_ipv6_values_are_refused_naming_the_key() {
    let refused = |spec: &str| load_err(&flags(&[spec, ISP2], &[])).to_string();
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,gw6=ff02::2");
    assert!(
        e.contains("gw6 ff02::2 must be the router's unicast address"),
        "{e}"
    );
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,gw6=198.18.1.254");
    assert!(e.contains("is not an IPv6 address"), "{e}");
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,gw6=auto,prefix6=2001:2:1::/72");
    assert!(e.contains("from /32 to /64"), "{e}");
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,gw6=auto,prefix6=fe80::/64");
    assert!(e.contains("global or unique-local prefix"), "{e}");
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,gw6=auto,src6=fe80::1");
    assert!(
        e.contains("src6 fe80::1 must be a global or unique-local address"),
        "{e}"
    );
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,check=fe80::1");
    assert!(
        e.contains("health target fe80::1 must be a global or unique-local"),
        "{e}"
    );
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,prefix6=2001:2:1::/48");
    assert!(e.contains("prefix6 needs gw6"), "{e}");
    let e = refused("isp1,dev=eth1,gw=192.168.1.254,src6=2001:2::1");
    assert!(e.contains("src6 needs gw6"), "{e}");
    let e = load_err(&flags(
        &["isp1,dev=eth1,gw=192.168.1.254", ISP2],
        &["fd00::/200=isp1"],
    ));
    assert!(
        e.to_string().contains("the prefix length must be 0 to 128"),
        "{e}"
    );
}

#[test]
fn delegated_prefixes_are_one_lines_each() {
    let both_auto = flags(
        &[
            "isp1,dev=eth1,gw=192.168.1.254,gw6=auto,prefix6=auto",
            "isp2,dev=eth2,gw=192.168.2.254,gw6=auto,prefix6=auto",
        ],
        &[],
    );
    let e = load_err(&both_auto);
    assert!(
        e.message
            .contains("prefix6=auto is also given to uplink \"isp1\""),
        "{e}"
    );
    assert!(e.origin.contains("isp2"), "{e}");
    let overlapping = flags(
        &[
            "isp1,dev=eth1,gw=192.168.1.254,gw6=auto,prefix6=2001:2:1::/48",
            "isp2,dev=eth2,gw=192.168.2.254,gw6=auto,prefix6=2001:2:1:100::/56",
        ],
        &[],
    );
    let e = load_err(&overlapping);
    assert!(
        e.message
            .contains("overlaps uplink \"isp1\"'s 2001:2:1::/48"),
        "{e}"
    );
}

#[test]
fn ipv6_health_targets_count_apart_from_ipv4_ones() {
    let mut f = flags(&["isp1,dev=eth1,gw=192.168.1.254", ISP2], &[]);
    f.health_target = (1..=16)
        .map(|i| format!("198.19.255.{i}"))
        .chain((1..=16).map(|i| format!("2001:2:ff::{i}")))
        .collect();
    let c = Config::load(&f).unwrap();
    assert_eq!(c.health_target.len(), 32);
    assert!(c.health_target.contains(&IpAddr::V6(a("2001:2:ff::10"))));
    f.health_target.push("2001:2:ff::17".into());
    let e = load_err(&f);
    assert!(
        e.message
            .contains("at most 16 health targets of each family"),
        "{e}"
    );
}

#[test]
fn a_forward_to_an_ipv6_host_is_written_in_brackets() {
    let mut f = flags(&["isp1,dev=eth1,gw=192.168.1.254,gw6=auto", ISP2], &[]);
    f.forwards = vec![
        "tcp:8080=[fd00:3::10]:80@isp1".into(),
        "tcp:8080=198.18.3.10:80@isp1".into(),
    ];
    let c = Config::load(&f).unwrap();
    // the same port of the same line, once per family
    assert_eq!(c.forwards.len(), 2);
    assert_eq!(c.forwards[0].to_string(), "tcp:8080=[fd00:3::10]:80@isp1");
    assert_eq!(c.forwards4().count(), 1);
    assert_eq!(c.forwards[0].to4(), None);
    f.forwards = vec!["tcp:8080=[fe80::10]:80@isp1".into()];
    let e = load_err(&f);
    assert!(
        e.message.contains("a global or unique-local address"),
        "{e}"
    );
    f.forwards = vec!["tcp:8080=[fd00:3::10%2]:80@isp1".into()];
    assert!(Config::load(&f).is_err());
}
