//! The settings against a system made up for each test: interfaces, services, routes.

use std::net::Ipv4Addr;

use super::*;
use crate::config::tests::write_temp;
use crate::config::{Config, Flags, GatewaySpec};

fn flags(uplinks: &[&str], pins: &[&str]) -> Flags {
    Flags {
        lan: vec!["eth0".into()],
        uplinks: uplinks.iter().map(|s| s.to_string()).collect(),
        pins: pins.iter().map(|s| s.to_string()).collect(),
        ..Flags::default()
    }
}

const ISP1: &str = "isp1,dev=eth1,gw=192.168.1.254,weight=2";
const ISP2: &str = "isp2,dev=eth2,gw=192.168.2.254";

/// A LAN and one uplink.
fn one_uplink() -> Flags {
    flags(&["isp1,dev=eth1,gw=192.168.1.254"], &[])
}

/// A LAN, two uplinks and `forwards`.
fn with_forwards(forwards: &[&str]) -> Flags {
    Flags {
        forwards: forwards.iter().map(|s| s.to_string()).collect(),
        ..flags(&["isp1,dev=eth1,gw=192.168.1.254", ISP2], &[])
    }
}

fn iface(name: &str, addr: [u8; 4], len: u8) -> Interface {
    Interface {
        name: name.into(),
        index: 2,
        mac: [2, 0, 0, 0, 0, 1],
        hardware_type: 1,
        point_to_point: false,
        mtu: 1500,
        ipv4: vec![(Ipv4Addr::from(addr), len)],
    }
}

fn service(proto: &str, port: u16, addr: [u8; 4]) -> LocalService {
    LocalService {
        proto: proto.into(),
        port,
        addr: addr.into(),
    }
}

fn facts() -> SystemFacts {
    SystemFacts {
        interfaces: vec![
            iface("eth0", [192, 168, 3, 100], 24),
            iface("eth1", [192, 168, 1, 1], 24),
            iface("eth2", [192, 168, 2, 1], 24),
        ],
        ephemeral_ports: (32768, 60999),
        services: vec![service("tcp", 80, [0, 0, 0, 0])],
        default_routes: vec![],
    }
}

#[test]
fn gw_auto_takes_the_interfaces_default_route() {
    let c = Config::load(&flags(&["isp1,dev=eth1,gw=auto", ISP2], &[])).unwrap();
    assert_eq!(c.uplinks[0].gw, Some(GatewaySpec::Auto));
    let mut system = facts();
    system.interfaces[1].index = 3;
    // no route yet: said plainly
    let e = check(&c, &system).unwrap_err().to_string();
    assert!(
        e.contains("gw=auto: the main table has no default route through eth1"),
        "{e}"
    );
    system.default_routes = vec![
        (2, Ipv4Addr::new(192, 168, 2, 254)),
        (3, Ipv4Addr::new(192, 168, 1, 254)),
    ];
    let r = check(&c, &system).unwrap();
    assert_eq!(r.uplinks[0].gateway, Some(Ipv4Addr::new(192, 168, 1, 254)));
    // the route's gateway is checked like a given one
    system.default_routes = vec![(3, Ipv4Addr::new(10, 0, 0, 1))];
    let e = check(&c, &system).unwrap_err().to_string();
    assert!(e.contains("gw 10.0.0.1 is not on eth1's subnet"), "{e}");
    // in the file too
    let dir = std::env::temp_dir().join(format!("wanlb-gw-auto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wanlb.toml");
    std::fs::write(
        &file,
        "lan = [\"eth0\"]\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"auto\"\n",
    )
    .unwrap();
    let c = Config::load(&Flags {
        config: Some(file),
        ..Flags::default()
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c.unwrap().uplinks[0].gw, Some(GatewaySpec::Auto));
}

#[test]
fn system_checks() {
    let c = Config::load(&flags(&[ISP1, ISP2], &[])).unwrap();
    let r = check(&c, &facts()).unwrap();
    assert_eq!(r.uplinks[1].addr, Ipv4Addr::new(192, 168, 2, 1));

    let c = Config::load(&flags(&[ISP1, "isp2,dev=eth2,gw=192.168.9.254"], &[])).unwrap();
    let e = check(&c, &facts()).unwrap_err().to_string();
    assert_eq!(
        e,
        r#"--uplink "isp2,dev=eth2,gw=192.168.9.254": gw 192.168.9.254 is not on eth2's subnet 192.168.2.0/24"#
    );

    let c = Config::load(&flags(&[ISP1, "isp2,dev=eth7,gw=192.168.2.254"], &[])).unwrap();
    assert!(
        check(&c, &facts())
            .unwrap_err()
            .to_string()
            .ends_with(r#"dev "eth7": no such interface"#)
    );

    let c = Config::load(&flags(
        &[ISP1, "isp2,dev=eth2,gw=192.168.2.254,src=192.168.2.7"],
        &[],
    ))
    .unwrap();
    assert!(
        check(&c, &facts())
            .unwrap_err()
            .to_string()
            .ends_with("src 192.168.2.7 is not an address of eth2")
    );

    let mut f = flags(&[ISP1], &[]);
    f.nat_ports = Some("50000-65535".into());
    let e = check(&Config::load(&f).unwrap(), &facts()).unwrap_err();
    let e = &e.errors()[0];
    assert_eq!(e.origin, "nat_ports");
    assert!(e.message.contains("ip_local_port_range"));

    let mut f = flags(&[ISP1], &[]);
    f.nat_ports = Some("61000-65535".into());
    let mut sys = facts();
    sys.services.push(service("udp", 62000, [0, 0, 0, 0]));
    let e = check(&Config::load(&f).unwrap(), &sys).unwrap_err();
    assert!(e.to_string().contains("udp/62000"));
}

/// A PPP session's interface: no MAC, its address a /32 with the peer at the other end.
fn ppp0() -> Interface {
    Interface {
        mac: [0; 6],
        hardware_type: 512,
        point_to_point: true,
        ..iface("ppp0", [198, 18, 5, 1], 32)
    }
}

#[test]
fn a_point_to_point_uplink_needs_no_gateway_and_an_ethernet_one_does() {
    let mut sys = facts();
    sys.interfaces.push(ppp0());
    let c = Config::load(&flags(&[ISP1, "dsl,dev=ppp0"], &[])).unwrap();
    assert_eq!(c.uplinks[1].gw, None);
    let r = check(&c, &sys).unwrap();
    assert_eq!(
        (r.uplinks[0].link, r.uplinks[1].link),
        (LinkKind::Ethernet, LinkKind::PointToPoint)
    );
    assert_eq!(r.uplinks[1].addr, Ipv4Addr::new(198, 18, 5, 1));
    // a peer address is for the reports: off the /32, and still fine
    let c = Config::load(&flags(&[ISP1, "dsl,dev=ppp0,gw=198.18.9.9"], &[])).unwrap();
    assert!(check(&c, &sys).is_ok());
    // but not the link's own address
    let c = Config::load(&flags(&[ISP1, "dsl,dev=ppp0,gw=198.18.5.1"], &[])).unwrap();
    let e = check(&c, &sys).unwrap_err().to_string();
    assert!(
        e.ends_with("gw 198.18.5.1 is ppp0's own address, not its peer's"),
        "{e}"
    );
    // an Ethernet uplink without one is refused, naming the key
    let c = Config::load(&flags(&["isp1,dev=eth1", ISP2], &[])).unwrap();
    let e = check(&c, &sys).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"--uplink "isp1,dev=eth1": gw=IPV4 is missing: eth1 is an Ethernet link"#),
        "{e}"
    );
    // and in the file the same
    let text = "lan = [\"eth0\"]\n[[uplink]]\nname = \"dsl\"\ndev = \"ppp0\"\ncheck = [\"198.19.255.1\"]\n";
    let file = write_temp("ppp.toml", text);
    let c = Config::load(&Flags {
        config: Some(file.to_path_buf()),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.uplinks[0].gw, None);
    assert_eq!(
        check(&c, &sys).unwrap().uplinks[0].link,
        LinkKind::PointToPoint
    );
}

#[test]
fn an_uplink_on_a_link_wanlb_cannot_frame_for_is_refused() {
    let mut sys = facts();
    sys.interfaces.push(Interface {
        hardware_type: 772,
        ..iface("lo", [127, 0, 0, 1], 8)
    });
    let c = Config::load(&flags(&[ISP1, "isp2,dev=lo"], &[])).unwrap();
    let e = check(&c, &sys).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"--uplink "isp2,dev=lo": dev "lo": wanlb sends on Ethernet links and on point-to-point links"#),
        "{e}"
    );
}

#[test]
fn the_system_checks_report_every_uplink() {
    let c = Config::load(&flags(
        &[
            ISP1,
            "isp2,dev=eth7,gw=192.168.2.254",
            "isp3,dev=eth2,gw=192.168.9.254",
        ],
        &[],
    ))
    .unwrap();
    let mut sys = facts();
    sys.interfaces.retain(|i| i.name != "eth0");
    let e = check(&c, &sys).unwrap_err();
    let lines: Vec<_> = e.errors().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            r#"--lan "eth0": no such interface"#,
            r#"--uplink "isp2,dev=eth7,gw=192.168.2.254": dev "eth7": no such interface"#,
            r#"--uplink "isp3,dev=eth2,gw=192.168.9.254": gw 192.168.9.254 is not on eth2's subnet 192.168.2.0/24"#,
        ]
    );
    // a LAN without addresses, but there: that is said once
    let mut sys = facts();
    sys.interfaces[0].ipv4.clear();
    let e = check(&Config::load(&flags(&[ISP1], &[])).unwrap(), &sys).unwrap_err();
    assert_eq!(e.errors().len(), 1, "{e}");
    assert!(e.to_string().contains("eth0 has no IPv4 address"), "{e}");
}

// the NAT pool

fn pool_facts(ephemeral: (u16, u16), services: &[u16]) -> SystemFacts {
    SystemFacts {
        ephemeral_ports: ephemeral,
        services: services
            .iter()
            .map(|&port| LocalService {
                proto: "tcp".into(),
                port,
                addr: Ipv4Addr::UNSPECIFIED,
            })
            .collect(),
        ..SystemFacts::default()
    }
}

#[test]
fn the_default_pool_is_the_largest_range_clear_of_ephemeral_ports_and_services() {
    let c = Config::load(&one_uplink()).unwrap();
    assert_eq!(c.nat_ports, None);
    // the kernel's defaults, no service above 1023
    assert_eq!(
        nat_pool(&c, &pool_facts((32768, 60999), &[22, 80])),
        (1024, 32767)
    );
    // a service in the middle: the larger side
    assert_eq!(
        nat_pool(&c, &pool_facts((32768, 60999), &[8080])),
        (8081, 32767)
    );
    // a wide ephemeral range leaves the top
    assert_eq!(
        nat_pool(&c, &pool_facts((1024, 60999), &[])),
        (61000, 65535)
    );
    assert_eq!(
        largest_free_range((32768, 60999), [5000, 20000, 20001].into_iter()),
        (5001, 19999)
    );
    // a quarter of it per host, unless told
    assert_eq!(c.ports_per_host((1024, 32767)), 7936);
    assert_eq!(c.ports_per_host((61000, 61002)), 1);
}

#[test]
fn the_auto_pool_leaves_out_the_status_port_where_the_uplinks_reach_it() {
    let mut system = facts();
    system.services.clear();
    let pool_with = |listen: &str| {
        let mut f = one_uplink();
        f.listen = Some(listen.into());
        f.listen_token = Some("s3cret".into());
        let c = Config::load(&f).unwrap();
        (nat_pool(&c, &system), check(&c, &system).map(|_| ()))
    };
    // on loopback, or another host's address, it shares nothing with the uplinks' ports
    for listen in ["127.0.0.1:9911", "192.168.3.100:9911", "[::1]:9911"] {
        assert_eq!(pool_with(listen), ((1024, 32767), Ok(())), "{listen}");
    }
    // on every address, or an uplink's: its port is kept out of the pool
    for listen in [
        "0.0.0.0:9911",
        "192.168.1.1:9911",
        "[::]:9911",
        "[::ffff:192.168.1.1]:9911",
    ] {
        assert_eq!(pool_with(listen), ((9912, 32767), Ok(())), "{listen}");
    }
    // and a pool given with it in is refused, naming both
    let mut f = one_uplink();
    f.listen = Some("0.0.0.0:9911".into());
    f.listen_token = Some("s3cret".into());
    f.nat_ports = Some("5000-20000".into());
    let e = check(&Config::load(&f).unwrap(), &system).unwrap_err();
    let e = e.errors()[0].to_string();
    assert_eq!(
        e,
        "nat_ports: 5000-20000 contains port 9911, where wanlb serves its status (listen 0.0.0.0:9911) on an address the uplinks reach; choose a range without it"
    );
}

// the forwards

#[test]
fn a_forward_goes_to_a_lan_host_from_a_port_no_service_of_the_gateway_holds() {
    // facts(): eth0 192.168.3.100/24 (the LAN), eth1 192.168.1.1, eth2 192.168.2.1; a TCP
    // service on port 80 of every address
    let resolve = |forwards: &[&str], extra: &[LocalService]| -> Vec<String> {
        let mut sys = facts();
        sys.services.extend_from_slice(extra);
        match check(&Config::load(&with_forwards(forwards)).unwrap(), &sys) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors().iter().map(ToString::to_string).collect(),
        }
    };
    assert!(resolve(&["tcp:8080=192.168.3.10:80@isp2"], &[]).is_empty());
    // outside the LAN, or the gateway itself
    let found = resolve(&["tcp:8080=10.1.2.3:80@isp2"], &[]);
    assert_eq!(
        found,
        [
            r#"--forward "tcp:8080=10.1.2.3:80@isp2": 10.1.2.3 is not in the LAN (192.168.3.0/24); a routed LAN's network is added with --lan-net"#
        ]
    );
    let found = resolve(&["tcp:8080=192.168.3.100:80@isp2"], &[]);
    assert!(
        found[0]
            .ends_with("192.168.3.100 is an address of this gateway; a forward goes to a LAN host"),
        "{found:?}"
    );
    // a routed LAN, once named, is the LAN
    let mut f = with_forwards(&["tcp:8080=10.1.2.3:80@isp2"]);
    f.lan_net = vec!["10.1.2.0/24".into()];
    assert!(check(&Config::load(&f).unwrap(), &facts()).is_ok());

    // a service on the port: on every address, or on that line's; not on the other line's,
    // nor of the other protocol
    let found = resolve(&["tcp:80=192.168.3.10:80@isp2"], &[]);
    assert_eq!(
        found,
        [
            r#"--forward "tcp:80=192.168.3.10:80@isp2": tcp/80 is used by a service on this host (0.0.0.0:80): the forward would cut it off from isp2; forward another port, or move the service"#
        ]
    );
    let on_isp2 = service("udp", 5060, [192, 168, 2, 1]);
    let on_isp1 = service("udp", 5060, [192, 168, 1, 1]);
    let forward = ["udp:5060=192.168.3.10:5060@isp2"];
    assert_eq!(resolve(&forward, &[on_isp2]).len(), 1);
    assert!(resolve(&forward, &[on_isp1]).is_empty());
    assert!(
        resolve(
            &["tcp:5060=192.168.3.10:5060@isp2"],
            &[service("udp", 5060, [0; 4])]
        )
        .is_empty()
    );
}

#[test]
fn forwarded_ports_leave_the_nat_pool_as_it_would_be() {
    // the pool keeps forwarded ports aside itself: the automatic range is not cut in two,
    // and a given range may hold one
    let c = Config::load(&with_forwards(&["tcp:8080=192.168.3.10:80@isp2"])).unwrap();
    assert_eq!(nat_pool(&c, &facts()), (1024, 32767));
    let mut f = with_forwards(&["tcp:61000=192.168.3.10:80@isp2"]);
    f.nat_ports = Some("61000-65535".into());
    assert!(check(&Config::load(&f).unwrap(), &facts()).is_ok());
}

#[test]
fn a_given_pool_is_the_pool() {
    let mut f = one_uplink();
    f.nat_ports = Some("2000-20000".into());
    let c = Config::load(&f).unwrap();
    assert_eq!(
        nat_pool(&c, &pool_facts((32768, 60999), &[])),
        (2000, 20000)
    );
    let plan = check(&c, &facts()).unwrap();
    assert_eq!(plan.nat_pool, (2000, 20000));
    assert_eq!(
        plan.lan_sources,
        [Prefix::new(u32::from(Ipv4Addr::new(192, 168, 3, 0)), 24).unwrap()]
    );
}

#[test]
fn loose_reverse_path_filtering_is_named_only_with_two_lans_or_more() {
    let lans = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let sysctls = |all: u8, eth0: u8, eth4: u8| {
        move |dev: &str| match dev {
            "all" => Some(all),
            "eth0" => Some(eth0),
            "eth4" => Some(eth4),
            _ => None,
        }
    };
    // one LAN: nothing to take from another network's shares
    assert_eq!(loose_reverse_path(&lans(&["eth0"]), sysctls(0, 2, 2)), []);
    // strict on both, by the interface or by `all`
    assert_eq!(
        loose_reverse_path(&lans(&["eth0", "eth4"]), sysctls(0, 1, 1)),
        []
    );
    assert_eq!(
        loose_reverse_path(&lans(&["eth0", "eth4"]), sysctls(1, 0, 1)),
        []
    );
    // the kernel takes the larger: loose (2) anywhere wins over strict
    assert_eq!(
        loose_reverse_path(&lans(&["eth0", "eth4"]), sysctls(2, 1, 1)),
        [("eth0".to_string(), 2), ("eth4".to_string(), 2)]
    );
    assert_eq!(
        loose_reverse_path(&lans(&["eth0", "eth4"]), sysctls(0, 1, 0)),
        [("eth4".to_string(), 0)]
    );
    // one it cannot read is left out
    assert_eq!(
        loose_reverse_path(&lans(&["eth0", "wan.9"]), sysctls(0, 2, 1)),
        [("eth0".to_string(), 2)]
    );
}
