use super::*;

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

/// The one error `f` makes: nothing else is reported with it.
fn load_err(f: &Flags) -> ConfigError {
    let errors = Config::load(f).expect_err("should be refused");
    assert_eq!(errors.errors().len(), 1, "one error only:\n{errors}");
    errors.errors()[0].clone()
}

#[test]
fn the_documented_command_line_parses() {
    let c = Config::load(&flags(&[ISP1, ISP2], &["174.143.119.91/32=isp2"])).unwrap();
    assert_eq!(c.lan, ["eth0"]);
    assert_eq!(c.uplinks.len(), 2);
    assert_eq!((c.uplinks[0].weight, c.uplinks[1].weight), (2, 1));
    assert_eq!(
        c.uplinks[1].gw,
        Some(GatewaySpec::Address(Ipv4Addr::new(192, 168, 2, 254)))
    );
    assert_eq!(c.pins[0].uplink, "isp2");
    assert_eq!(c.affinity_timeout, Duration::from_secs(600));
    assert_eq!(c.tun, "wanlb0");
}

#[test]
fn the_example_file_parses_to_the_example_network() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wanlb.toml");
    let c = Config::load(&Flags {
        config: Some(path),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.lan, ["eth0"]);
    let u: Vec<_> = c
        .uplinks
        .iter()
        .map(|u| (u.name.as_str(), u.dev.as_str(), u.gw, u.weight))
        .collect();
    assert_eq!(
        u,
        [
            (
                "isp1",
                "eth1",
                Some(GatewaySpec::Address(Ipv4Addr::new(192, 168, 1, 254))),
                2
            ),
            (
                "isp2",
                "eth2",
                Some(GatewaySpec::Address(Ipv4Addr::new(192, 168, 2, 254))),
                1
            )
        ]
    );
    assert_eq!(c.pins.len(), 1);
    assert_eq!(
        c.pins[0].prefix,
        Prefix::new(u32::from(Ipv4Addr::new(174, 143, 119, 91)), 32).unwrap()
    );
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    let cases: [(&[&str], &[&str], &str); 8] = [
        (
            &[ISP1, ISP2],
            &["174.143.119.91/32=isp3"],
            r#"--pin "174.143.119.91/32=isp3": unknown uplink "isp3""#,
        ),
        (
            &["isp1,dev=eth1,gw=192.168.1.254,weight=0"],
            &[],
            "--uplink \"isp1,dev=eth1,gw=192.168.1.254,weight=0\": weight must be",
        ),
        (
            &["isp1,dev=eth1,gw=192.168.1.254,weight=two"],
            &[],
            "weight must be a whole number",
        ),
        (&["isp1,gw=192.168.1.254"], &[], "dev=IFACE is missing"),
        (
            &["isp1,dev=eth1,gw=192.168.1.999"],
            &[],
            r#"gw "192.168.1.999" is not an IPv4 address"#,
        ),
        (
            &[ISP1, "isp1,dev=eth2,gw=192.168.2.254"],
            &[],
            r#"uplink name "isp1" is given twice"#,
        ),
        (
            &[ISP1, "isp9,dev=eth1,gw=192.168.2.254"],
            &[],
            r#"dev "eth1" is already used"#,
        ),
        (
            &[ISP1],
            &["174.143.119.91/33=isp1"],
            "prefix length must be 0 to 32",
        ),
    ];
    for (uplinks, pins, expected) in cases {
        let e = load_err(&flags(uplinks, pins)).to_string();
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    }
    let mut f = flags(&[ISP1], &[]);
    f.affinity_timeout = Some("10 minutes".into());
    assert!(
        load_err(&f)
            .to_string()
            .starts_with(r#"--affinity-timeout "10 minutes": "10 minutes" is not a duration"#)
    );
    assert!(
        load_err(&flags(&[], &[]))
            .to_string()
            .starts_with("--uplink: at least one uplink")
    );
}

/// A settings file a test writes; removed, with its directory, when dropped.
pub(super) struct TempFile(PathBuf);

impl std::ops::Deref for TempFile {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Writes `text` to a file called `name` in a directory of its own.
pub(super) fn write_temp(name: &str, text: &str) -> TempFile {
    // tests run at once in one process: each file has a directory of its own
    static WRITTEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wanlb-config-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    TempFile(path)
}

#[test]
fn file_errors_name_the_line_and_key() {
    let text = "lan = [\"eth0\"]\n\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\nweight = 0\n";
    let path = write_temp("weight0.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 7, uplink \"isp1\" weight", path.display())
    );

    let text = "lan = [\"eth0\"]\n[[uplink]]\nname = \"a\"\ndev = \"eth1\"\ngw = \"1.1.1.1\"\n[[uplink]]\nname = \"a\"\ndev = \"eth2\"\ngw = \"2.2.2.2\"\n";
    let path = write_temp("dup.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.to_string(),
        format!(
            "{} line 7, [[uplink]] #2: uplink name \"a\" is used twice",
            path.display()
        )
    );

    let path = write_temp("unknown.toml", "lan = [\"eth0\"]\nlans = 3\n");
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert!(e.origin.ends_with("line 2"), "{e}");
    assert!(e.message.contains("lans"), "{e}");

    let text = "lan = [\"eth0\"]\n[[uplink]]\nname = \"a\"\ndev = \"eth1\"\ngw = \"1.1.1.1\"\n[[pin]]\ndst = \"9.9.9.9/32\"\nuplink = \"b\"\n";
    let path = write_temp("pin.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 8, [[pin]] uplink", path.display())
    );
}

#[test]
fn flags_override_file_uplinks_by_name_and_add_new_ones() {
    let text =
        "lan = [\"eth0\"]\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let path = write_temp("override.toml", text);
    let mut f = flags(&["isp1,dev=eth1,gw=192.168.1.254,weight=5", ISP2], &[]);
    f.config = Some(path.to_path_buf());
    let c = Config::load(&f).unwrap();
    assert_eq!(
        c.uplinks
            .iter()
            .map(|u| (u.name.as_str(), u.weight))
            .collect::<Vec<_>>(),
        [("isp1", 5), ("isp2", 1)]
    );
    assert_eq!(
        c.lan,
        ["eth0"],
        "the same LAN from file and flag is listed once"
    );
}

#[test]
fn busy_poll_is_off_by_default_and_bounded() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().busy_poll,
        Duration::ZERO
    );
    let mut f = flags(&[ISP1], &[]);
    f.busy_poll = Some("50us".into());
    assert_eq!(
        Config::load(&f).unwrap().busy_poll,
        Duration::from_micros(50)
    );
    f.busy_poll = Some("20ms".into());
    assert_eq!(
        Config::load(&f).unwrap().busy_poll,
        Duration::from_millis(20)
    );
    f.busy_poll = Some("0".into());
    assert_eq!(Config::load(&f).unwrap().busy_poll, Duration::ZERO);
    f.busy_poll = Some("2s".into());
    assert!(load_err(&f).to_string().contains("at most 1s"));
}

#[test]
fn offload_is_auto_by_default_and_named_when_wrong() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().fast_path,
        FastPathMode::Auto
    );
    let mut f = flags(&[ISP1], &[]);
    f.offload = Some("off".into());
    assert_eq!(Config::load(&f).unwrap().fast_path, FastPathMode::Off);
    f.offload = Some("yes".into());
    let e = load_err(&f).to_string();
    assert!(
        e.contains("--offload \"yes\"") && e.contains("auto, on or off"),
        "{e}"
    );
}

#[test]
fn durations() {
    let d = |s| parse_duration(s, "x");
    assert_eq!(d("600s").unwrap(), Duration::from_secs(600));
    assert_eq!(d("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(d("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
    for bad in ["", "10", "m", "10x", "-5s", "0s"] {
        assert!(d(bad).is_err(), "{bad:?}");
    }
}

pub(super) fn iface(name: &str, addr: [u8; 4], len: u8) -> Interface {
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

pub(super) fn service(proto: &str, port: u16, addr: [u8; 4]) -> LocalService {
    LocalService {
        proto: proto.into(),
        port,
        addr: addr.into(),
    }
}

pub(super) fn facts() -> SystemFacts {
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
    let e = c.resolve(&system).unwrap_err().to_string();
    assert!(
        e.contains("gw=auto: the main table has no default route through eth1"),
        "{e}"
    );
    system.default_routes = vec![
        (2, Ipv4Addr::new(192, 168, 2, 254)),
        (3, Ipv4Addr::new(192, 168, 1, 254)),
    ];
    let r = c.resolve(&system).unwrap();
    assert_eq!(r[0].gateway, Some(Ipv4Addr::new(192, 168, 1, 254)));
    // the route's gateway is checked like a given one
    system.default_routes = vec![(3, Ipv4Addr::new(10, 0, 0, 1))];
    let e = c.resolve(&system).unwrap_err().to_string();
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
    let r = c.resolve(&facts()).unwrap();
    assert_eq!(r[1].addr, Ipv4Addr::new(192, 168, 2, 1));

    let c = Config::load(&flags(&[ISP1, "isp2,dev=eth2,gw=192.168.9.254"], &[])).unwrap();
    let e = c.resolve(&facts()).unwrap_err().to_string();
    assert_eq!(
        e,
        r#"--uplink "isp2,dev=eth2,gw=192.168.9.254": gw 192.168.9.254 is not on eth2's subnet 192.168.2.0/24"#
    );

    let c = Config::load(&flags(&[ISP1, "isp2,dev=eth7,gw=192.168.2.254"], &[])).unwrap();
    assert!(
        c.resolve(&facts())
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
        c.resolve(&facts())
            .unwrap_err()
            .to_string()
            .ends_with("src 192.168.2.7 is not an address of eth2")
    );

    let mut f = flags(&[ISP1], &[]);
    f.nat_ports = Some("50000-65535".into());
    let e = Config::load(&f).unwrap().resolve(&facts()).unwrap_err();
    let e = &e.errors()[0];
    assert_eq!(e.origin, "nat_ports");
    assert!(e.message.contains("ip_local_port_range"));

    let mut f = flags(&[ISP1], &[]);
    f.nat_ports = Some("61000-65535".into());
    let mut sys = facts();
    sys.services.push(service("udp", 62000, [0, 0, 0, 0]));
    assert!(
        Config::load(&f)
            .unwrap()
            .resolve(&sys)
            .unwrap_err()
            .to_string()
            .contains("udp/62000")
    );
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
    let r = c.resolve(&sys).unwrap();
    assert_eq!(
        (r[0].link, r[1].link),
        (LinkKind::Ethernet, LinkKind::PointToPoint)
    );
    assert_eq!(r[1].addr, Ipv4Addr::new(198, 18, 5, 1));
    // a peer address is for the reports: off the /32, and still fine
    let c = Config::load(&flags(&[ISP1, "dsl,dev=ppp0,gw=198.18.9.9"], &[])).unwrap();
    assert!(c.resolve(&sys).is_ok());
    // but not the link's own address
    let c = Config::load(&flags(&[ISP1, "dsl,dev=ppp0,gw=198.18.5.1"], &[])).unwrap();
    let e = c.resolve(&sys).unwrap_err().to_string();
    assert!(
        e.ends_with("gw 198.18.5.1 is ppp0's own address, not its peer's"),
        "{e}"
    );
    // an Ethernet uplink without one is refused, naming the key
    let c = Config::load(&flags(&["isp1,dev=eth1", ISP2], &[])).unwrap();
    let e = c.resolve(&sys).unwrap_err().to_string();
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
    assert_eq!(c.resolve(&sys).unwrap()[0].link, LinkKind::PointToPoint);
}

#[test]
fn an_uplink_on_a_link_wanlb_cannot_frame_for_is_refused() {
    let mut sys = facts();
    sys.interfaces.push(Interface {
        hardware_type: 772,
        ..iface("lo", [127, 0, 0, 1], 8)
    });
    let c = Config::load(&flags(&[ISP1, "isp2,dev=lo"], &[])).unwrap();
    let e = c.resolve(&sys).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"--uplink "isp2,dev=lo": dev "lo": wanlb sends on Ethernet links and on point-to-point links"#),
        "{e}"
    );
}

#[test]
fn health_defaults_and_flags() {
    let c = Config::load(&flags(&[ISP1, ISP2], &[])).unwrap();
    assert_eq!(c.health, HealthSettings::default());
    assert_eq!(c.health.interval, Duration::from_millis(200));
    assert_eq!(c.health.timeout, Duration::from_millis(600));
    assert_eq!((c.health.down_after, c.health.up_after), (3, 10));
    assert_eq!(c.on_uplink_down, OnUplinkDown::Reset);
    assert!(c.targets_of(&c.uplinks[0]).is_empty());

    let mut f = flags(
        &[
            ISP1,
            "isp2,dev=eth2,gw=192.168.2.254,tier=2,check=198.19.255.9,check=198.19.255.10",
        ],
        &["174.143.119.91/32=isp2!", "10.0.0.0/8=isp1"],
    );
    f.health_targets = vec!["198.19.255.1".into(), "198.19.255.2".into()];
    f.health_interval = Some("100ms".into());
    f.health_timeout = Some("1s".into());
    f.down_after = Some("2".into());
    f.up_after = Some("5".into());
    f.max_loss = Some("20%".into());
    f.max_rtt = Some("150ms".into());
    f.on_uplink_down = Some("keep".into());
    f.on_change = Some("logger wanlb".into());
    let c = Config::load(&f).unwrap();
    let targets = |i: usize| -> Vec<String> {
        c.targets_of(&c.uplinks[i])
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    assert_eq!(targets(0), ["198.19.255.1", "198.19.255.2"]);
    assert_eq!(
        targets(1),
        ["198.19.255.9", "198.19.255.10"],
        "check replaces the global list"
    );
    assert_eq!((c.uplinks[0].tier, c.uplinks[1].tier), (1, 2));
    assert!(c.pins.iter().any(|p| p.uplink == "isp2" && p.strict));
    assert!(c.pins.iter().any(|p| p.uplink == "isp1" && !p.strict));
    let h = &c.health;
    assert_eq!(h.interval, Duration::from_millis(100));
    assert_eq!(h.timeout, Duration::from_secs(1));
    assert_eq!((h.down_after, h.up_after), (2, 5));
    assert_eq!(h.max_loss_pct, Some(20));
    assert_eq!(h.max_rtt, Some(Duration::from_millis(150)));
    assert_eq!(c.on_uplink_down, OnUplinkDown::Keep);
    assert_eq!(c.on_change.as_deref(), Some("logger wanlb"));
}

#[test]
fn bad_health_settings_are_refused_naming_the_flag() {
    type Set = fn(&mut Flags);
    let cases: [(Set, &str); 9] = [
        (
            |f| f.health_targets = vec!["198.19.1".into()],
            r#"--health-target "198.19.1": health target "198.19.1" is not an IPv4 address"#,
        ),
        (
            |f| f.health_targets = vec!["0.0.0.0".into()],
            "must be a unicast address",
        ),
        (
            |f| f.health_interval = Some("1ms".into()),
            r#"--health-interval "1ms": must be from"#,
        ),
        (
            |f| f.health_timeout = Some("soon".into()),
            r#"--health-timeout "soon": "soon" is not a duration"#,
        ),
        (
            |f| f.down_after = Some("0".into()),
            r#"--down-after "0": must be a whole number from 1 to 100"#,
        ),
        (|f| f.up_after = Some("many".into()), r#"--up-after "many""#),
        (
            |f| f.max_loss = Some("100".into()),
            r#"--max-loss "100": must be a whole number from 1 to 99"#,
        ),
        (
            |f| f.on_uplink_down = Some("drop".into()),
            r#"--on-uplink-down "drop": must be reset (the default) or keep"#,
        ),
        (|f| f.on_change = Some("  ".into()), "--on-change"),
    ];
    for (set, expected) in cases {
        let mut f = flags(&[ISP1], &[]);
        set(&mut f);
        let e = load_err(&f).to_string();
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    }
    for (spec, expected) in [
        (
            "isp1,dev=eth1,gw=192.168.1.254,tier=0",
            "tier: must be a whole number from 1 to 9",
        ),
        (
            "isp1,dev=eth1,gw=192.168.1.254,check=nowhere",
            r#"health target "nowhere""#,
        ),
    ] {
        let e = load_err(&flags(&[spec], &[])).to_string();
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    }
}

#[test]
fn health_keys_in_the_file_name_their_line() {
    let text = "lan = [\"eth0\"]\nhealth_target = [\"198.19.255.9\"]\nmax_loss = 30\n\n[[uplink]]\nname = \"lte\"\ndev = \"wwan0\"\ngw = \"192.168.8.1\"\ntier = 2\ncheck = [\"198.19.255.1\"]\n\n[[pin]]\ndst = \"198.19.9.0/24\"\nuplink = \"lte\"\nstrict = true\n";
    let path = write_temp("health.toml", text);
    let c = Config::load(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.health_targets, [Ipv4Addr::new(198, 19, 255, 9)]);
    assert_eq!(c.health.max_loss_pct, Some(30));
    assert_eq!(c.uplinks[0].tier, 2);
    assert_eq!(
        c.targets_of(&c.uplinks[0]),
        [Ipv4Addr::new(198, 19, 255, 1)]
    );
    assert!(c.pins[0].strict);

    let bad = text.replace("tier = 2", "tier = 12");
    let path = write_temp("health-bad.toml", &bad);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 9, uplink \"lte\" tier", path.display())
    );
    let bad = text.replace("max_loss = 30", "max_loss = \"lots\"");
    let path = write_temp("health-bad2.toml", &bad);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(e.origin, format!("{} line 3, max_loss", path.display()));
}

#[test]
fn duplicate_targets_and_an_unreachable_rtt_limit_are_refused() {
    let mut f = flags(&[ISP1], &[]);
    f.health_targets = vec!["198.19.255.1".into(), "198.19.255.1".into()];
    let e = load_err(&f).to_string();
    assert_eq!(
        e,
        r#"--health-target "198.19.255.1": health target 198.19.255.1 is listed twice"#
    );
    let e = load_err(&flags(
        &["isp1,dev=eth1,gw=192.168.1.254,check=198.19.255.1,check=198.19.255.1"],
        &[],
    ))
    .to_string();
    assert!(
        e.starts_with("--uplink \"isp1,") && e.contains("listed twice"),
        "{e}"
    );
    let mut f = flags(&[ISP1], &[]);
    f.max_rtt = Some("600ms".into());
    let e = load_err(&f).to_string();
    assert!(
        e.starts_with(r#"--max-rtt "600ms": 600ms can never be reached"#),
        "{e}"
    );
    f.health_timeout = Some("1s".into());
    assert!(Config::load(&f).is_ok());
}

#[test]
fn idle_timeouts_default_to_the_rfcs_and_come_from_the_file_then_the_flags() {
    let c = Config::load(&flags(&[ISP1], &[])).unwrap();
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(
        (
            c.timeouts.tcp_established,
            c.timeouts.tcp_transitory,
            c.timeouts.tcp_reset,
            c.timeouts.udp,
            c.timeouts.icmp
        ),
        (7_440_000, 240_000, 240_000, 300_000, 60_000)
    );
    // the example's [timeouts] shows the defaults, commented out
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wanlb.toml");
    let c = Config::load(&Flags {
        config: Some(example),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.timeouts, Timeouts::default());
    let text = "lan = [\"eth0\"]\n\n[timeouts]\ntcp_established = \"1d\"\ntcp_transitory = \"5m\"\ntcp_reset = \"30s\"\nudp = \"2m30s\"\nicmp = \"90s\"\n\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let file = write_temp("timeouts.toml", text);
    let mut f = Flags {
        config: Some(file.to_path_buf()),
        ..Flags::default()
    };
    let t = Config::load(&f).unwrap().timeouts;
    assert_eq!(
        t,
        Timeouts {
            tcp_established: 86_400_000,
            tcp_transitory: 300_000,
            tcp_reset: 30_000,
            udp: 150_000,
            icmp: 90_000,
        }
    );
    // a flag overrides its key, the rest stay as the file says
    f.timeouts.tcp_established = Some("3h".into());
    f.timeouts.tcp_reset = Some("10s".into());
    let t = Config::load(&f).unwrap().timeouts;
    assert_eq!((t.tcp_established, t.tcp_reset), (10_800_000, 10_000));
    assert_eq!(
        (t.tcp_transitory, t.udp, t.icmp),
        (300_000, 150_000, 90_000)
    );
    // the exact minimums pass
    let mut f = flags(&[ISP1], &[]);
    f.timeouts = TimeoutFlags {
        tcp_established: Some("2h4m".into()),
        tcp_transitory: Some("4m".into()),
        tcp_reset: Some("1s".into()),
        udp: Some("120s".into()),
        icmp: Some("1m".into()),
    };
    let t = Config::load(&f).unwrap().timeouts;
    assert_eq!(
        (
            t.tcp_established,
            t.tcp_transitory,
            t.tcp_reset,
            t.udp,
            t.icmp
        ),
        (7_440_000, 240_000, 1000, 120_000, 60_000)
    );
}

#[test]
fn idle_timeouts_below_the_rfc_minimums_are_refused_naming_the_flag() {
    let cases = [
        (
            TimeoutFlags {
                tcp_established: Some("2h".into()),
                ..TimeoutFlags::default()
            },
            r#"--tcp-established-timeout "2h": must be at least 2h4m (RFC 5382 REQ-5), got "2h""#,
        ),
        (
            TimeoutFlags {
                tcp_transitory: Some("239s".into()),
                ..TimeoutFlags::default()
            },
            r#"--tcp-transitory-timeout "239s": must be at least 4m (RFC 5382 REQ-5)"#,
        ),
        (
            TimeoutFlags {
                tcp_reset: Some("500ms".into()),
                ..TimeoutFlags::default()
            },
            r#"--tcp-reset-timeout "500ms": must be at least 1s"#,
        ),
        (
            TimeoutFlags {
                udp: Some("1m".into()),
                ..TimeoutFlags::default()
            },
            r#"--udp-timeout "1m": must be at least 2m (RFC 4787 REQ-5)"#,
        ),
        (
            TimeoutFlags {
                icmp: Some("59s".into()),
                ..TimeoutFlags::default()
            },
            r#"--icmp-timeout "59s": must be at least 1m (RFC 5508 REQ-1)"#,
        ),
        (
            TimeoutFlags {
                udp: Some("8d".into()),
                ..TimeoutFlags::default()
            },
            r#"--udp-timeout "8d": can be at most 7d, got "8d""#,
        ),
        (
            TimeoutFlags {
                icmp: Some("soon".into()),
                ..TimeoutFlags::default()
            },
            r#"--icmp-timeout "soon": "soon" is not a duration"#,
        ),
    ];
    for (timeouts, expected) in cases {
        let mut f = flags(&[ISP1], &[]);
        f.timeouts = timeouts;
        let e = load_err(&f).to_string();
        assert!(
            e.starts_with(expected),
            "{e:?} should start with {expected:?}"
        );
    }
}

#[test]
fn idle_timeout_keys_in_the_file_name_their_line() {
    let base = "lan = [\"eth0\"]\n[timeouts]\nudp = \"5m\"\nKEY\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    for (key, origin_key, message) in [
        (
            "tcp_established = \"1h\"",
            "timeouts.tcp_established",
            "must be at least 2h4m",
        ),
        ("icmp = \"10s\"", "timeouts.icmp", "must be at least 1m"),
        (
            "tcp_reset = \"forever\"",
            "timeouts.tcp_reset",
            "is not a duration",
        ),
    ] {
        let path = write_temp("timeouts-bad.toml", &base.replace("KEY", key));
        let e = load_err(&Flags {
            config: Some(path.clone()),
            ..Flags::default()
        });
        assert_eq!(e.origin, format!("{} line 4, {origin_key}", path.display()));
        assert!(e.message.contains(message), "{e}");
    }
    // a key that is not a timeout, or a number without a unit
    for (key, message) in [
        ("tcp_establshed = \"3h\"", "unknown field `tcp_establshed`"),
        ("udp = 300", "invalid type"),
    ] {
        let text = base.replace("udp = \"5m\"\nKEY", key);
        let path = write_temp("timeouts-bad2.toml", &text);
        let e = load_err(&Flags {
            config: Some(path.clone()),
            ..Flags::default()
        });
        assert_eq!(e.origin, format!("{} line 3", path.display()), "{e}");
        assert!(e.message.contains(message), "{e}");
    }
}

#[test]
fn durations_are_written_as_they_are_read() {
    for (ms, text) in [
        (7_440_000, "2h4m"),
        (240_000, "4m"),
        (60_000, "1m"),
        (90_500, "1m30s500ms"),
        (86_400_000 + 3_600_000, "1d1h"),
    ] {
        let d = Duration::from_millis(ms);
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text, "x").unwrap(), d);
    }
}

/// Every error `f` makes, origin and message apart, in the order reported.
fn all_errors(f: &Flags) -> Vec<(String, String)> {
    let errors = Config::load(f).expect_err("should be refused");
    errors
        .errors()
        .iter()
        .map(|e| (e.origin.clone(), e.message.clone()))
        .collect()
}

#[test]
fn a_file_with_several_errors_has_each_reported_with_its_line_and_key_in_order() {
    let text = r#"lan = ["eth0"]
workers = 0
health_interval = "soon"

[timeouts]
udp = "1m"

[[uplink]]
name = "isp1"
dev = "eth1"
gw = "192.168.1.999"
tier = 0

[[uplink]]
name = "isp2"
dev = "eth2"
gw = "192.168.2.254"

[[pin]]
dst = "174.143.119.91/32"
uplink = "isp1"

[[pin]]
dst = "10.0.0.0/8"
uplink = "isp9"
"#;
    let path = write_temp("several.toml", text);
    let f = Flags {
        config: Some(path.clone()),
        affinity_timeout: Some("forever".into()),
        ..Flags::default()
    };
    let errors = all_errors(&f);
    let at = |line: u32, key: &str| format!("{} line {line}, {key}", path.display());
    let expected = [
        (
            at(2, "workers"),
            r#"must be a whole number from 1 to 64, got "0""#,
        ),
        (at(3, "health_interval"), r#""soon" is not a duration"#),
        (
            at(6, "timeouts.udp"),
            "must be at least 2m (RFC 4787 REQ-5)",
        ),
        (
            at(11, r#"uplink "isp1" gw"#),
            r#"gw "192.168.1.999" is not an IPv4 address"#,
        ),
        (
            at(12, r#"uplink "isp1" tier"#),
            r#"must be a whole number from 1 to 9, got "0""#,
        ),
        // the pin to isp1, refused above, is not an "unknown uplink" too
        (
            at(25, "[[pin]] uplink"),
            r#"unknown uplink "isp9" (uplinks: isp1, isp2)"#,
        ),
        // the flags after the file
        (
            r#"--affinity-timeout "forever""#.to_string(),
            r#""forever" is not a duration"#,
        ),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for ((origin, message), (want_origin, want_message)) in errors.iter().zip(&expected) {
        assert_eq!(origin, want_origin);
        assert!(message.starts_with(want_message), "{message:?}");
    }
    // one a line, as check-config and run print them
    let shown = Config::load(&f).unwrap_err().to_string();
    let lines: Vec<_> = shown.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{shown}");
    assert!(lines[3].starts_with(&format!("{}: gw ", at(11, r#"uplink "isp1" gw"#))));
}

#[test]
fn several_bad_flags_are_all_reported() {
    let mut f = flags(
        &[
            "isp1,dev=eth1,gw=192.168.1.999,weight=0",
            "isp2,dev=eth2,gw=192.168.2.254",
        ],
        &["174.143.119.91/33=isp2"],
    );
    f.health_interval = Some("soon".into());
    f.offload = Some("yes".into());
    let errors = all_errors(&f);
    let origins: Vec<_> = errors.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        origins,
        [
            r#"--health-interval "soon""#,
            r#"--uplink "isp1,dev=eth1,gw=192.168.1.999,weight=0""#,
            r#"--uplink "isp1,dev=eth1,gw=192.168.1.999,weight=0""#,
            r#"--pin "174.143.119.91/33=isp2""#,
            r#"--offload "yes""#,
        ]
    );
    assert!(
        errors[1].1.starts_with(r#"gw "192.168.1.999""#),
        "{errors:?}"
    );
    assert!(errors[2].1.starts_with("weight must be"), "{errors:?}");
    assert!(errors[4].1.contains("auto, on or off"), "{errors:?}");
}

#[test]
fn an_error_is_not_followed_by_what_only_follows_from_it() {
    // a pin to an uplink refused, and no usable uplink left
    let e = load_err(&flags(&["isp1,gw=192.168.1.254"], &["10.0.0.0/8=isp1"]));
    assert_eq!(e.message, "dev=IFACE is missing");
    // no LAN interface left, but one was given
    let mut f = flags(&[ISP1], &[]);
    f.lan = vec!["eth 0".into()];
    assert!(load_err(&f).message.contains("must be 1 to 15 letters"));
    // the RTT limit is not measured against the default timeout standing in for a bad one
    let mut f = flags(&[ISP1], &[]);
    f.health_timeout = Some("700".into());
    f.max_rtt = Some("650ms".into());
    assert!(load_err(&f).message.contains("is not a duration"));
    // nor is an empty token taken for none
    let mut f = flags(&[ISP1], &[]);
    f.listen = Some("0.0.0.0:9911".into());
    f.listen_token = Some(" ".into());
    let e = load_err(&f);
    assert_eq!(
        (e.origin.as_str(), e.message.as_str()),
        ("--listen-token", "the token is empty")
    );
    // a second flag of the same name is reported, not the first's override
    let errors = all_errors(&flags(
        &[
            ISP1,
            "isp1,dev=eth2,gw=192.168.2.254",
            "isp1,dev=eth3,gw=1.1.1.1",
        ],
        &[],
    ));
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn a_file_that_is_not_toml_stops_there_and_the_flags_are_still_checked() {
    let path = write_temp(
        "syntax.toml",
        "lan = [\"eth0\"]\nworkers = 2\n[[uplink]\nname = \"isp1\"\n",
    );
    let mut f = Flags {
        config: Some(path.clone()),
        ..Flags::default()
    };
    f.workers = Some(0);
    let errors = all_errors(&f);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, format!("{} line 3", path.display()));
    assert_eq!(errors[1].0, "--workers 0");
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
    let e = c.resolve(&sys).unwrap_err();
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
    let e = Config::load(&flags(&[ISP1], &[]))
        .unwrap()
        .resolve(&sys)
        .unwrap_err();
    assert_eq!(e.errors().len(), 1, "{e}");
    assert!(e.to_string().contains("eth0 has no IPv4 address"), "{e}");
}

#[test]
fn the_log_level_comes_from_the_file_then_the_flag() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().log_level,
        LevelFilter::INFO
    );
    let text = "lan = [\"eth0\"]\nlog_level = \"warn\"\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let file = write_temp("level.toml", text);
    let mut f = Flags {
        config: Some(file.to_path_buf()),
        ..Flags::default()
    };
    assert_eq!(Config::load(&f).unwrap().log_level, LevelFilter::WARN);
    f.log_level = Some("debug".into());
    assert_eq!(Config::load(&f).unwrap().log_level, LevelFilter::DEBUG);
    for (text, level) in [
        ("error", LevelFilter::ERROR),
        ("warn", LevelFilter::WARN),
        ("info", LevelFilter::INFO),
        ("debug", LevelFilter::DEBUG),
        ("trace", LevelFilter::TRACE),
    ] {
        assert_eq!(parse_log_level(text, "x"), Ok(level));
    }
    for bad in ["", "off", "INFO", "verbose", "4"] {
        assert!(parse_log_level(bad, "x").is_err(), "{bad:?}");
    }
    let bad = text.replace("\"warn\"", "\"loud\"");
    let path = write_temp("level-bad.toml", &bad);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(e.origin, format!("{} line 2, log_level", path.display()));
}

#[test]
fn host_traffic_is_off_by_default_and_named_when_wrong() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().host_traffic,
        HostTraffic::Off
    );
    let mut f = flags(&[ISP1], &[]);
    f.host_traffic = Some("follow".into());
    assert_eq!(Config::load(&f).unwrap().host_traffic, HostTraffic::Follow);
    f.host_traffic = Some("balance".into());
    assert_eq!(
        load_err(&f).to_string(),
        r#"--host-traffic "balance": must be off (the default) or follow"#
    );

    let text = "lan = [\"eth0\"]\nhost_traffic = \"follow\"\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let path = write_temp("host-traffic.toml", text);
    let mut f = Flags {
        config: Some(path.clone()),
        ..Flags::default()
    };
    assert_eq!(Config::load(&f).unwrap().host_traffic, HostTraffic::Follow);
    f.host_traffic = Some("off".into());
    assert_eq!(
        Config::load(&f).unwrap().host_traffic,
        HostTraffic::Off,
        "the flag wins over the file"
    );
    let path = write_temp("host-traffic-bad.toml", &text.replace("follow", "always"));
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.to_string(),
        format!(
            "{} line 2, host_traffic: must be off (the default) or follow",
            path.display()
        )
    );
}

#[test]
fn tun_names_are_taken_with_dots_and_dashes_but_not_as_a_path() {
    for name in ["wan.0", "wan-0", "wan_0", "w.l-0"] {
        let mut f = flags(&[ISP1], &[]);
        f.tun = Some(name.into());
        assert_eq!(Config::load(&f).unwrap().tun, name);
    }
    for name in [".", "..", "wan/0", "", "a-name-too-long-0"] {
        let mut f = flags(&[ISP1], &[]);
        f.tun = Some(name.into());
        let e = load_err(&f);
        assert_eq!(e.origin, format!("--tun {name:?}"), "{e}");
        assert!(e.message.contains("TUN name"), "{e}");
    }
}
