//! The NAT port pool, the ports one host may hold, and the limits on flows.

use super::*;

fn flags() -> Flags {
    Flags {
        lan: vec!["eth0".into()],
        uplinks: vec!["isp1,dev=eth1,gw=192.168.1.254".into()],
        ..Flags::default()
    }
}

fn facts(ephemeral: (u16, u16), services: &[u16]) -> SystemFacts {
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
    let c = Config::load(&flags()).unwrap();
    assert!(c.nat_ports_auto);
    // the kernel's defaults, no service above 1023
    assert_eq!(c.nat_pool(&facts((32768, 60999), &[22, 80])), (1024, 32767));
    // a service in the middle: the larger side
    assert_eq!(c.nat_pool(&facts((32768, 60999), &[8080])), (8081, 32767));
    // a wide ephemeral range leaves the top
    assert_eq!(c.nat_pool(&facts((1024, 60999), &[])), (61000, 65535));
    assert_eq!(
        largest_free_range((32768, 60999), [5000, 20000, 20001].into_iter()),
        (5001, 19999)
    );
    // a quarter of it per host, unless told
    assert_eq!(c.ports_per_host((1024, 32767)), 7936);
    assert_eq!(c.ports_per_host((61000, 61002)), 1);
}

#[test]
fn a_given_pool_and_host_limit_are_taken_and_bad_ones_named() {
    let mut f = flags();
    f.nat_ports = Some("40000-40999".into());
    f.max_ports_per_host = Some("100".into());
    let c = Config::load(&f).unwrap();
    assert!(!c.nat_ports_auto);
    assert_eq!(c.nat_pool(&facts((32768, 60999), &[])), (40000, 40999));
    assert_eq!(c.ports_per_host((40000, 40999)), 100);

    f.nat_ports = Some("auto".into());
    assert!(Config::load(&f).unwrap().nat_ports_auto);
    f.max_ports_per_host = Some("0".into());
    let e = Config::load(&f).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"--max-ports-per-host "0": must be a whole number"#),
        "{e}"
    );
}

#[test]
fn the_flow_limits_follow_the_memory_unless_given() {
    const GIB: u64 = 1 << 30;
    let c = Config::load(&flags()).unwrap();
    let l = c.limits(GIB);
    assert_eq!(
        (
            l.max_flows,
            l.max_flows_per_host,
            l.max_embryonic_per_forward
        ),
        (65_536, 4_096, 4_096)
    );
    assert_eq!(l.max_ports_per_host, c.ports_per_host(c.nat_ports));
    assert_eq!(c.limits(64 * GIB).max_flows, 1_048_576);

    let mut f = flags();
    f.max_flows = Some("20000".into());
    f.max_flows_per_host = Some("500".into());
    f.max_embryonic_per_forward = Some("256".into());
    f.max_ports_per_host = Some("77".into());
    let l = Config::load(&f).unwrap().limits(GIB);
    assert_eq!(
        (
            l.max_flows,
            l.max_flows_per_host,
            l.max_embryonic_per_forward
        ),
        (20_000, 500, 256)
    );
    assert_eq!(l.max_ports_per_host, 77);
    // the per-host default follows a given table size
    f.max_flows_per_host = None;
    assert_eq!(
        Config::load(&f).unwrap().limits(GIB).max_flows_per_host,
        1_250
    );
}

#[test]
fn bad_flow_limits_are_refused_naming_the_flag_or_key() {
    let mut f = flags();
    f.max_flows = Some("100".into());
    let e = load_err(&f);
    assert_eq!(e.origin, r#"--max-flows "100""#);
    assert!(e.message.contains("from 1024 to 67108864"), "{e}");
    f.max_flows = Some("5000".into());
    f.max_flows_per_host = Some("6000".into());
    let e = load_err(&f);
    assert_eq!(e.origin, r#"--max-flows-per-host "6000""#);
    assert!(e.message.contains("more than max_flows (5000)"), "{e}");
    f.max_flows_per_host = None;
    f.max_embryonic_per_forward = Some("10".into());
    assert_eq!(load_err(&f).origin, r#"--max-embryonic-per-forward "10""#);

    let text = "lan = [\"eth0\"]\nmax_flows = 4096\nmax_flows_per_host = \"many\"\nmax_embryonic_per_forward = 64\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let path = super::tests::write_temp("limits.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 3, max_flows_per_host", path.display())
    );
    let path = super::tests::write_temp("limits-ok.toml", &text.replace("\"many\"", "512"));
    let c = Config::load(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    })
    .unwrap();
    let l = c.limits(1 << 30);
    assert_eq!(
        (
            l.max_flows,
            l.max_flows_per_host,
            l.max_embryonic_per_forward
        ),
        (4096, 512, 64)
    );
}

#[test]
fn the_status_listens_on_loopback_unless_told_and_off_loopback_only_with_a_token() {
    let c = Config::load(&flags()).unwrap();
    assert_eq!(c.listen, Some("127.0.0.1:9911".parse().unwrap()));
    let mut f = flags();
    f.listen = Some("off".into());
    assert_eq!(Config::load(&f).unwrap().listen, None);
    f.listen = Some("0.0.0.0:9911".into());
    let e = load_err(&f);
    assert_eq!(e.origin, r#"--listen "0.0.0.0:9911""#);
    assert!(e.message.contains("--listen-token"), "{e}");
    f.listen_token = Some("s3cret".into());
    assert!(Config::load(&f).is_ok());
    f.listen = Some("9911".into());
    assert!(
        load_err(&f)
            .to_string()
            .starts_with(r#"--listen "9911": "9911" is not an address"#)
    );
}

/// The one error `f` makes: nothing else is reported with it.
fn load_err(f: &Flags) -> ConfigError {
    let errors = Config::load(f).expect_err("should be refused");
    assert_eq!(errors.errors().len(), 1, "one error only:\n{errors}");
    errors.errors()[0].clone()
}

#[test]
fn the_auto_pool_leaves_out_the_status_port_where_the_uplinks_reach_it() {
    let mut system = super::tests::facts();
    system.services.clear();
    let pool_with = |listen: &str| {
        let mut f = flags();
        f.listen = Some(listen.into());
        f.listen_token = Some("s3cret".into());
        let c = Config::load(&f).unwrap();
        (c.nat_pool(&system), c.resolve(&system).map(|_| ()))
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
    let mut f = flags();
    f.listen = Some("0.0.0.0:9911".into());
    f.listen_token = Some("s3cret".into());
    f.nat_ports = Some("5000-20000".into());
    let e = Config::load(&f).unwrap().resolve(&system).unwrap_err();
    let e = e.errors()[0].to_string();
    assert_eq!(
        e,
        "nat_ports: 5000-20000 contains port 9911, where wanlb serves its status (listen 0.0.0.0:9911) on an address the uplinks reach; choose a range without it"
    );
}
